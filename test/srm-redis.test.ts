/**
 * The sample-ratio check in Redis mode, end to end: two `sluice proxy`
 * replicas and a `sluice control` against a real redis-server. One replica's
 * routing is sabotaged from outside the product (test/support/skewed-random.mjs,
 * preloaded with --import): a fifth of one version's keyless traffic goes to
 * the other. The control plane, reading each generation's counts from Redis,
 * must flag it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { ExperimentStatus } from '../control/status.js';
import { freePort, Pool, waitFor } from './support/helpers.js';
import { endlessAb, json, sluice, startShop, steadyLoad } from './support/processes.js';
import { startRedis } from './support/redis-server.js';

const SKEW = fileURLToPath(new URL('./support/skewed-random.mjs', import.meta.url));

test('SRM in Redis mode: a replica whose weighted draw is skewed is flagged; its healthy twin is not the cause', async (t) => {
  const redis = await startRedis(t);
  if (redis === null) return;
  const { config } = await startShop(t, [{ seed: 51 }, { seed: 52 }]);
  const prefix = `srm${process.pid}:`;
  const ports = await Promise.all(Array.from({ length: 5 }, freePort));
  const proxies = [0, 1].map((i) => ({ traffic: ports[i * 2]!, admin: ports[i * 2 + 1]! }));
  proxies.forEach((p, i) =>
    sluice(
      t,
      ['proxy', '-c', config, '--redis', redis.url, '--redis-prefix', prefix, '--listen', `127.0.0.1:${p.traffic}`, '--admin-listen', `127.0.0.1:${p.admin}`],
      i === 1 ? { NODE_OPTIONS: `--import ${SKEW}` } : {},
    ),
  );
  sluice(t, ['control', '--redis', redis.url, '--redis-prefix', prefix, '--admin-listen', `127.0.0.1:${ports[4]}`]);
  const control = new Pool(`http://127.0.0.1:${ports[4]}`, { connections: 2 });
  const admins = proxies.map((p) => new Pool(`http://127.0.0.1:${p.admin}`, { connections: 2 }));
  const traffic = proxies.map((p) => new Pool(`http://127.0.0.1:${p.traffic}`, { connections: 8 }));
  t.after(() => Promise.all([control, ...admins, ...traffic].map((p) => p.close())));
  await waitFor('every process ready, one leader, routes seeded', async () => {
    try {
      for (const a of admins) if ((await json(a, 'GET', '/readyz')).status !== 200) return false;
      return (await json(control, 'GET', '/leader')).body?.leader === true && (await json(control, 'GET', '/routes')).body?.routes?.length === 1;
    } catch {
      return false;
    }
  }, 20_000, 100);

  const put = await json(control, 'PUT', '/experiments/srm', endlessAb('srm', 1, 60));
  assert.equal(put.status, 201, JSON.stringify(put.body));
  await waitFor('the 50/50 split on both proxies', async () => {
    for (const a of admins) if ((await json(a, 'GET', '/routes/shop')).body.weights.v2 !== 50) return false;
    return true;
  });
  // Both replicas take traffic; only the skewed one misroutes.
  const loads = traffic.map((p) => steadyLoad(t, p, 4));
  const flagged = await waitFor('the control plane to flag the mismatch', async () => {
    const st = (await json(control, 'GET', '/experiments/srm')).body.status as ExperimentStatus;
    return st.srmFlagged > 0 ? st : null;
  }, 40_000, 200);
  await Promise.all(loads.map((l) => l.stop()));
  const hit = flagged.history.find((h) => h.srm?.flagged)!;
  assert.match(hit.reason, /sample ratio mismatch/);
  const observed = hit.srm!.observed;
  assert.ok((observed.v1 ?? 0) > (observed.v2 ?? 0), `the skew sends more to v1: ${JSON.stringify(observed)}`);
  for (const l of loads) assert.deepEqual(l.failures, []);
});
