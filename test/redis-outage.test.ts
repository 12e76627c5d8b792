/**
 * Redis mode through a Redis outage (issue 4, acceptance 2), as operators run
 * it: one `sluice proxy` process under a steady closed-loop load against a real
 * redis-server that is SIGKILLed for 10 s and then restarted empty (no
 * persistence). The data plane must not notice — no failed request, readiness
 * green — the outage must be visible (`sluice_store_up 0`, a warning in the
 * log), memory must stay flat (no unbounded offline queue), and once Redis is
 * back the replica re-seeds its routing state and re-sends its absolute
 * snapshot, so the totals are exact again.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { createRedis } from '../common/redis.js';
import { RedisKeys } from '../common/redis-keys.js';
import { RedisAggregates } from '../control/redis-aggregates.js';
import { parseRouteState } from '../common/route-state.js';
import { freePort, get, Pool, waitFor } from './support/helpers.js';
import { sluice, startShop } from './support/processes.js';
import { startRedis } from './support/redis-server.js';

const OUTAGE_MS = 10_000;
const WORKERS = 16;
/**
 * RSS may grow during the outage by this much plus twice what it swung, under the same load with
 * Redis up, in a window of the same sampling just before: GC timing on a busy machine moves RSS by
 * tens of MiB either way, while a leak (a queue of unsent writes, say) grows far past it in 10 s.
 */
const RSS_BUDGET_KB = 20 * 1024;
const BASELINE_MS = 5000;

/** Resident set size of a process in KiB, from /proc/<pid>/status. */
function rssKb(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]);
}

/** The value of an unlabelled gauge in a Prometheus text exposition, or null. */
function gauge(metrics: string, name: string): number | null {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics);
  return m ? Number(m[1]) : null;
}

test('Redis killed for 10 s under load, restarted empty: no failed request, flat memory, exact totals again', { timeout: 90_000 }, async (t) => {
  // The load is stopped first (t.after hooks run in registration order): before the pools close under it.
  let running = true;
  let load: Promise<unknown> = Promise.resolve();
  t.after(async () => {
    running = false;
    await load;
  });
  const redis = await startRedis(t);
  if (redis === null) return;
  const { apps, config } = await startShop(t, [{ seed: 1 }, { seed: 2 }], { v1: 50, v2: 50 });
  const prefix = `outage${process.pid}:`;
  const keys = new RedisKeys(prefix);
  const [trafficPort, adminPort] = await Promise.all([freePort(), freePort()]);
  const proxy = sluice(t, ['proxy', '-c', config, '--redis', redis.url, '--redis-prefix', prefix, '--listen', `127.0.0.1:${trafficPort}`, '--admin-listen', `127.0.0.1:${adminPort}`]);
  const pid = proxy.process.pid!;

  const admin = new Pool(`http://127.0.0.1:${adminPort}`, { connections: 2, headersTimeout: 5000, bodyTimeout: 5000 });
  const traffic = new Pool(`http://127.0.0.1:${trafficPort}`, { connections: WORKERS, headersTimeout: 5000, bodyTimeout: 5000 });
  t.after(() => Promise.all([admin, traffic].map((p) => p.close())));
  const storeUp = async () => gauge((await get(admin, '/metrics')).body, 'sluice_store_up');

  // A client of our own, only to look at what the proxy wrote (a new one after the restart).
  const inspect = async () => {
    const client = createRedis(redis.url, { connectionName: 'outage-test' });
    t.after(() => client.disconnect());
    await client.connect();
    return client;
  };
  const before = await inspect();

  await waitFor('the proxy ready, its routing state seeded, its measurements flushed', async () => {
    if ((await get(admin, '/readyz')).status !== 200) return false;
    return (await before.exists(keys.route('shop'))) === 1 && (await storeUp()) === 1;
  }, 20_000, 100);
  before.disconnect();

  // The closed-loop load: WORKERS requests in flight for the whole test.
  let ok = 0;
  let failed = 0;
  const failures: string[] = [];
  load = Promise.all(
    Array.from({ length: WORKERS }, async () => {
      while (running) {
        try {
          const r = await traffic.request({ method: 'GET', path: '/' });
          await r.body.dump();
          if (r.statusCode === 200) ok++;
          else {
            failed++;
            if (failures.length < 5) failures.push(`status ${r.statusCode}`);
          }
        } catch (err) {
          failed++;
          if (failures.length < 5) failures.push((err as Error).message);
          await new Promise(setImmediate); // a request that fails at once must not starve the event loop
        }
      }
    }),
  );

  // Warm up (JIT, connection pools, heap at its working size), then take the baseline: how much RSS
  // swings under this load with Redis up, sampled as during the outage.
  await sleep(3000);
  const rssStart = rssKb(pid);
  let rssSwing = 0;
  for (const t0 = Date.now(); Date.now() - t0 < BASELINE_MS; ) {
    await sleep(500);
    rssSwing = Math.max(rssSwing, rssKb(pid) - rssStart);
  }
  const budgetKb = RSS_BUDGET_KB + 2 * rssSwing;
  const okBefore = ok;
  const rssBefore = rssKb(pid);

  await redis.kill();
  const outageStart = Date.now();
  let rssMax = rssBefore;
  const readyz: number[] = [];
  let sawDown = false;
  while (Date.now() - outageStart < OUTAGE_MS) {
    await sleep(500);
    rssMax = Math.max(rssMax, rssKb(pid));
    readyz.push((await get(admin, '/readyz')).status);
    if ((await storeUp()) === 0) sawDown = true;
  }
  const okDuring = ok - okBefore;
  await redis.restart(); // empty: nothing persisted
  const growthKb = rssMax - rssBefore;
  t.diagnostic(
    `proxy RSS ${(rssBefore / 1024).toFixed(1)} MiB before the outage, max ${(rssMax / 1024).toFixed(1)} MiB during it: growth ${(growthKb / 1024).toFixed(1)} MiB (swing with Redis up ${(rssSwing / 1024).toFixed(1)} MiB, budget ${(budgetKb / 1024).toFixed(1)} MiB)`,
  );

  assert.ok(sawDown, 'sluice_store_up was never 0 during the outage');
  assert.ok(readyz.length >= 10 && readyz.every((s) => s === 200), `readiness went red during the outage: ${readyz.join(',')}`);
  assert.ok(okDuring > 0, 'no request completed during the outage');
  assert.ok(growthKb < budgetKb, `proxy RSS grew by ${growthKb} KiB during the outage (budget ${budgetKb} KiB: 20 MiB + 2 × the swing with Redis up)`);

  // Redis is back: the proxy sees it, re-seeds its routing state and flushes its absolute snapshot.
  const after = await inspect();
  await waitFor('sluice_store_up back to 1', async () => (await storeUp()) === 1, 10_000, 100);
  const route = await waitFor('the routing state re-seeded into the empty Redis', () => after.get(keys.route('shop')), 10_000, 100);
  const state = parseRouteState(route);
  assert.ok(state !== null, `not a routing state: ${route}`);
  assert.deepEqual(state.weights, { v1: 50, v2: 50 });
  assert.equal(await after.sismember(keys.routes(), 'shop'), 1);

  // Keep the load on a little after the recovery (as many requests as the 3 s warm-up served, over 3 × 2 s), then stop
  // it and wait for the next flush. Counted, not timed: a busy machine serves them later, not fewer.
  const okBack = ok;
  await waitFor('2 s worth of requests after the recovery', () => ok >= okBack + Math.round((2 * okBefore) / 3) || failed > 0, 30_000, 20);
  running = false;
  await load;
  assert.equal(failed, 0, `${failed} failed client requests (of ${ok + failed}): ${failures.join('; ')}`);
  t.diagnostic(`requests: ${ok} ok (${okBefore} before the outage, ${okDuring} during it, ${ok - okBefore - okDuring} after), ${failed} failed`);

  const aggregates = new RedisAggregates(after, keys);
  let total = -1;
  const totals = await waitFor(`exact totals after the recovery (${ok} requests; the store's last total is logged on failure)`, async () => {
    const versions = await aggregates.versions('shop');
    total = Object.values(versions).reduce((s, v) => s + v.requests, 0);
    if (total > ok) throw new Error(`the store counts ${total} requests, more than the ${ok} sent`);
    return total === ok ? versions : null;
  }, 10_000, 100).catch((err: Error) => {
    throw new Error(`${err.message} (last total ${total})`);
  });
  // Each version's total is exactly what its upstream received; the one replica reported once.
  assert.equal(totals.v1?.requests, apps[0]!.requests);
  assert.equal(totals.v2?.requests, apps[1]!.requests);
  assert.equal((await aggregates.replicas('shop')).length, 1);
  assert.match(proxy.output(), /store unreachable/, 'the outage is not in the proxy log');
});
