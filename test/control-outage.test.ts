/**
 * A store outage without any restart (issue 4, "Outages"): Redis stops
 * answering (SIGSTOP) for several seconds while an experiment runs, then
 * comes back with its data (SIGCONT). The proxy keeps serving; the control
 * plane makes no iteration while the store is away, and afterwards goes on
 * at the next iteration — none skipped, none repeated.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ExperimentStatus } from '../control/status.js';
import { freePort, Pool, waitFor } from './support/helpers.js';
import { controlLeading, endlessAb, json, sluice, startShop, steadyLoad } from './support/processes.js';
import { startRedis } from './support/redis-server.js';

const INTERVAL_MS = 400;
const OUTAGE_MS = 4000;

test('Redis unreachable for 4 s mid-experiment: traffic unaffected, no iteration during the outage, then the next one — none skipped or repeated', { timeout: 60_000 }, async (t) => {
  const redis = await startRedis(t);
  if (redis === null) return;
  const { config } = await startShop(t, [{ conversionRate: 0.1, seed: 1 }, { conversionRate: 0.1, seed: 2 }]);
  const prefix = `outage${process.pid}:`;
  const [trafficPort, proxyAdminPort, controlPort] = await Promise.all(Array.from({ length: 3 }, freePort));
  sluice(t, ['proxy', '-c', config, '--redis', redis.url, '--redis-prefix', prefix, '--listen', `127.0.0.1:${trafficPort}`, '--admin-listen', `127.0.0.1:${proxyAdminPort}`]);
  sluice(t, ['control', '--redis', redis.url, '--redis-prefix', prefix, '--admin-listen', `127.0.0.1:${controlPort}`, '--lease-ttl', '1500']);
  const control = new Pool(`http://127.0.0.1:${controlPort}`, { connections: 2 });
  const proxyAdmin = new Pool(`http://127.0.0.1:${proxyAdminPort}`, { connections: 2 });
  const traffic = new Pool(`http://127.0.0.1:${trafficPort}`, { connections: 4 });
  t.after(() => Promise.all([control, proxyAdmin, traffic].map((p) => p.close())));
  // The process may be stopped when a check fails: never leave it frozen.
  t.after(() => {
    try {
      if (redis.pid !== undefined) process.kill(redis.pid, 'SIGCONT');
    } catch {
      // already stopped by its own cleanup
    }
  });

  await waitFor('the proxy ready and the control leading with the route', async () => {
    if ((await json(proxyAdmin, 'GET', '/readyz')).status !== 200) return false;
    return controlLeading(control);
  }, 20_000, 50);
  // Equal versions and an unreachable minSamples: the experiment just keeps iterating.
  const put = await json(control, 'PUT', '/experiments/ab', endlessAb('ab', INTERVAL_MS / 1000, 500));
  assert.equal(put.status, 201, JSON.stringify(put.body));

  const load = steadyLoad(t, traffic, 4, 2);

  const status = async () => (await json(control, 'GET', '/experiments/ab')).body.status as ExperimentStatus;
  await waitFor('iteration 3', async () => (await status()).iteration >= 3, 10_000, 20);

  const stoppedAt = Date.now();
  process.kill(redis.pid!, 'SIGSTOP');
  const okBefore = load.ok;
  await waitFor('the outage to last', () => Date.now() - stoppedAt >= OUTAGE_MS, OUTAGE_MS + 1000, 50);
  const okDuring = load.ok - okBefore;
  const resumedAt = Date.now();
  process.kill(redis.pid!, 'SIGCONT');

  const after = await waitFor('two iterations after the outage', async () => {
    const s = await status();
    return s.history.filter((h) => Date.parse(h.at) > resumedAt).length >= 2 ? s : null;
  }, 15_000, 50);
  await load.stop();

  const numbers = after.history.map((h) => h.iteration);
  assert.deepEqual(numbers, Array.from({ length: numbers.length }, (_, i) => i + 1), `iterations skipped or repeated: ${numbers.join(',')}`);
  assert.equal(after.iteration, numbers.length);
  // Writes to a stopped Redis cannot land: no iteration is stored with a time inside the outage
  // (one already in flight when it began may carry a time just after `stoppedAt`).
  const during = after.history.filter((h) => Date.parse(h.at) > stoppedAt + INTERVAL_MS && Date.parse(h.at) < resumedAt);
  assert.deepEqual(during.map((h) => h.iteration), [], 'iterations recorded while the store was away');
  assert.equal(after.state, 'Running', after.reason);
  assert.equal(load.failures.length, 0, `requests failed during the outage: ${load.failures.slice(0, 3).join('; ')}`);
  assert.ok(okDuring > 100, `traffic went on during the outage (${okDuring} requests)`);
  t.diagnostic(`outage ${OUTAGE_MS} ms; ${okDuring} requests served during it, 0 failed; iterations 1..${after.iteration}, none repeated or skipped`);
});
