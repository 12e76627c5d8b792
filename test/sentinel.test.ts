/**
 * Redis Sentinel (issue 4, acceptance 6): a `sluice proxy` and a `sluice
 * control` process reach Redis through three sentinels; a SENTINEL FAILOVER
 * in the middle of an experiment under load → both follow the new master,
 * no client request fails, the experiment keeps iterating (written to the
 * new master), and the control plane's totals are exact afterwards.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ExperimentStatus } from '../control/status.js';
import type { ExperimentRecord } from '../control/ports.js';
import { freePort, Pool, waitFor } from './support/helpers.js';
import { controlLeading, endlessAb, json, sluice, startShop, steadyLoad } from './support/processes.js';
import { startSentinels } from './support/redis-sentinel-harness.js';

test('SENTINEL FAILOVER during an experiment: proxy and control follow the new master, 0 failed requests, exact totals', { timeout: 45_000 }, async (t) => {
  const t0 = Date.now();
  const lap = (what: string) => t.diagnostic(`${what}: ${Date.now() - t0} ms`);
  const sentinels = await startSentinels(t);
  if (sentinels === null) return;
  lap('master, replica and 3 sentinels settled');

  const { config } = await startShop(t, [{ errorRate: 0, seed: 1 }, { errorRate: 0, seed: 2 }]);
  const prefix = `sentinel${process.pid}:`;
  const [trafficPort, proxyAdminPort, controlPort] = await Promise.all([freePort(), freePort(), freePort()]);
  sluice(t, ['proxy', '-c', config, '--redis', sentinels.url, '--redis-prefix', prefix, '--listen', `127.0.0.1:${trafficPort}`, '--admin-listen', `127.0.0.1:${proxyAdminPort}`]);
  sluice(t, ['control', '--redis', sentinels.url, '--redis-prefix', prefix, '--admin-listen', `127.0.0.1:${controlPort}`]);

  const control = new Pool(`http://127.0.0.1:${controlPort}`, { connections: 2 });
  const proxyAdmin = new Pool(`http://127.0.0.1:${proxyAdminPort}`, { connections: 2 });
  const traffic = new Pool(`http://127.0.0.1:${trafficPort}`, { connections: 8 });
  t.after(() => Promise.all([control, proxyAdmin, traffic].map((p) => p.close())));

  await waitFor(
    'proxy and control ready through the sentinels, one leader, the route seeded',
    async () => {
      try {
        if ((await json(proxyAdmin, 'GET', '/readyz')).status !== 200) return false;
        if ((await json(control, 'GET', '/readyz')).status !== 200) return false;
        return await controlLeading(control);
      } catch {
        return false; // not listening yet
      }
    },
    15_000,
    100,
  );
  lap('proxy and control ready');

  // A long A/B test: minSamples is never reached, so it keeps iterating every 0.5 s.
  const put = await json(control, 'PUT', '/experiments/ab', endlessAb('ab', 0.5));
  assert.equal(put.status, 201, JSON.stringify(put.body));
  await waitFor('the 50/50 split on the proxy', async () => (await json(proxyAdmin, 'GET', '/routes/shop')).body.weights.v2 === 50);

  // The iteration counter as the control plane reports it, sampled all along: it must never go back.
  // While the control plane reconnects it may answer 503 (store unavailable): ask again.
  const status = () =>
    waitFor('the experiment status', async () => {
      const r = await json(control, 'GET', '/experiments/ab');
      return r.status === 200 ? (r.body.status as ExperimentStatus) : null;
    }, 5000, 50);
  const iterations: number[] = [];
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      try {
        const st = await status();
        iterations.push(st.iteration);
      } catch {
        // the admin API answers even while the store is away; a hiccup here is not the point
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  })();

  const load = steadyLoad(t, traffic, 8);
  t.after(async () => {
    watching = false;
    await watcher;
  });

  await waitFor('an iteration under load before the failover', async () => (await status()).iteration >= 2, 10_000, 100);
  // A second of load before the failover, its count the yardstick for the load on the new master below.
  const okWarm = load.ok;
  await new Promise((r) => setTimeout(r, 1000));
  const perSecond = Math.max(1, load.ok - okWarm);
  const beforeFailover = await status();
  lap(`failover starts at iteration ${beforeFailover.iteration}, ${load.ok} requests so far`);

  const { newMasterPort, ms } = await sentinels.failover();
  assert.equal(newMasterPort, sentinels.replica.port);
  lap(`replica ${newMasterPort} is master (ROLE and all 3 sentinels) after ${ms} ms`);
  // The control plane writes the experiment to the new master: read it there, directly.
  const stored = async (): Promise<ExperimentRecord | null> => {
    const raw = await sentinels.command(newMasterPort, 'GET', `${prefix}experiment:ab`).catch(() => null);
    return typeof raw === 'string' ? (JSON.parse(raw) as ExperimentRecord) : null;
  };
  const atPromotion = (await stored())?.status.iteration ?? 0;
  // The clients follow +switch-master: without that they would stay on the former master,
  // which keeps taking (and later discarding) writes until the sentinels demote it, ~10 s on.
  const promoted = Date.now();
  await waitFor('the control writing the experiment to the new master', async () => ((await stored())?.status.iteration ?? 0) > atPromotion, 4000, 50);
  lap(`the control writes to the new master ${Date.now() - promoted} ms after the promotion`);

  // Load continues on the new master: as many requests as 2.5 s took before the failover, however long they take now.
  const okOnNew = load.ok;
  await waitFor('2.5 s worth of requests on the new master', () => load.ok >= okOnNew + Math.round(2.5 * perSecond) || load.failures.length > 0, 30_000, 20);
  await load.stop();
  const completed = load.ok;
  lap(`load stopped: ${completed} requests completed, ${load.failures.length} failed`);
  assert.deepEqual(load.failures.slice(0, 5), [], `${load.failures.length} client requests failed`);

  const advanced = await waitFor(
    'the experiment iterating on the new master',
    async () => {
      const r = await stored();
      return r !== null && r.status.iteration >= atPromotion + 3 ? r.status : null;
    },
    10_000,
    100,
  ).catch(async (err: unknown) => {
    const roles = await Promise.all([sentinels.master.port, sentinels.replica.port].map((p) => sentinels.command(p, 'ROLE').then((r) => `${p}: ${(r as string[])[0]}`, (e: Error) => `${p}: ${e.message}`)));
    const leader = await json(control, 'GET', '/leader').catch(() => null);
    throw new Error(`${(err as Error).message}; roles ${roles.join(', ')}; control leader ${JSON.stringify(leader?.body)}; iterations seen ${iterations.join(',')}`);
  });
  assert.equal(advanced.state, 'Running', advanced.reason);
  lap(`experiment at iteration ${advanced.iteration} on the new master (${atPromotion} at promotion)`);

  // The totals: every completed request counted exactly once, after the proxy's next flush to the new master.
  let last = -1;
  try {
    await waitFor(
      'exact totals at the control plane',
      async () => {
        const stats = (await json(control, 'GET', '/stats')).body?.routes?.shop;
        if (!stats) return false;
        last = Object.values(stats.versions as Record<string, { requests: number }>).reduce((s, v) => s + v.requests, 0);
        return last === completed;
      },
      10_000,
      100,
    );
  } catch (err) {
    assert.fail(`control totals ${last} != ${completed} completed requests (${(err as Error).message})`);
  }
  lap('exact totals');

  watching = false;
  await watcher;
  // Sentinel replicates asynchronously: what the control wrote to the former master between the
  // promotion and its clients' reconnection (+switch-master) is discarded when that master resyncs,
  // so those iterations run again. Nothing written before the failover may be lost.
  const drops = iterations.flatMap((n, i) => (i > 0 && n < iterations[i - 1]! ? [[iterations[i - 1]!, n] as const] : []));
  for (const [from, to] of drops) assert.ok(to >= beforeFailover.iteration, `iteration went back from ${from} to ${to}, before the failover (${beforeFailover.iteration})`);
  const repeated = drops.reduce((s, [from, to]) => s + from - to, 0);
  lap(`iterations repeated after the failover (written to the former master during the switch): ${repeated}`);
  const history = advanced.history.map((h) => h.iteration);
  assert.equal(new Set(history).size, history.length, `an iteration recorded twice on the new master: ${history.join(',')}`);
  // For the record: the sentinels demote the former master only several seconds after the switch.
  const oldRole = (await sentinels.command(sentinels.master.port, 'ROLE').catch(() => ['?'])) as unknown[];
  lap(`done; former master's role now: ${String(oldRole[0])}`);
});
