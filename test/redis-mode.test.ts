/**
 * Redis mode end to end, as operators run it: two `sluice proxy` processes
 * and one `sluice control` process against a real redis-server.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ExperimentStatus } from '../control/status.js';
import { freePort, inParallel, Pool, waitFor } from './support/helpers.js';
import { json, sluice, startShop } from './support/processes.js';
import { startRedis } from './support/redis-server.js';

test('two proxy processes and a control process: exact totals, a failing canary rolled back on every replica', async (t) => {
  const redis = await startRedis(t);
  if (redis === null) return;
  const { config } = await startShop(t, [{ errorRate: 0, seed: 1 }, { errorRate: 0.05, seed: 2 }]);
  const prefix = `e2e${process.pid}:`;
  const ports = await Promise.all(Array.from({ length: 5 }, freePort));
  const proxies = [0, 1].map((i) => ({ traffic: ports[i * 2]!, admin: ports[i * 2 + 1]! }));
  for (const p of proxies) {
    sluice(t, ['proxy', '-c', config, '--redis', redis.url, '--redis-prefix', prefix, '--listen', `127.0.0.1:${p.traffic}`, '--admin-listen', `127.0.0.1:${p.admin}`]);
  }
  sluice(t, ['control', '--redis', redis.url, '--redis-prefix', prefix, '--admin-listen', `127.0.0.1:${ports[4]}`]);

  const control = new Pool(`http://127.0.0.1:${ports[4]}`, { connections: 2 });
  const admins = proxies.map((p) => new Pool(`http://127.0.0.1:${p.admin}`, { connections: 2 }));
  const traffic = proxies.map((p) => new Pool(`http://127.0.0.1:${p.traffic}`, { connections: 8 }));
  t.after(() => Promise.all([control, ...admins, ...traffic].map((p) => p.close())));

  await waitFor('every process ready, one leader, routes seeded', async () => {
    for (const a of admins) if ((await json(a, 'GET', '/readyz')).status !== 200) return false;
    const leader = await json(control, 'GET', '/leader');
    const routes = await json(control, 'GET', '/routes');
    return leader.body?.leader === true && routes.body?.routes?.length === 1;
  }, 20_000, 100);

  // One /routes shape in both modes: the control's contract fields are the proxy's.
  await waitFor('the proxy on the seeded state', async () => (await json(admins[0]!, 'GET', '/routes/shop')).body.generation === (await json(control, 'GET', '/routes/shop')).body.generation);
  const [fromControl, fromProxy] = [(await json(control, 'GET', '/routes/shop')).body, (await json(admins[0]!, 'GET', '/routes/shop')).body];
  assert.deepEqual(Object.keys(fromControl), ['name', 'generation', 'weights', 'versions']);
  const contract = ({ name, generation, weights, versions }: typeof fromControl) => ({ name, generation, weights, versions });
  assert.deepEqual(contract(fromControl), contract(fromProxy));

  // A weight change through a proxy is refused: the control plane owns them in Redis mode.
  assert.equal((await json(admins[0]!, 'PUT', '/routes/shop/weights', { v1: 50, v2: 50 })).status, 409);

  const put = await json(control, 'PUT', '/experiments/canary', {
    kind: 'Experiment',
    name: 'canary',
    spec: {
      route: 'shop',
      versions: [{ name: 'v1' }, { name: 'v2' }],
      testingPattern: 'Canary',
      criteria: { objectives: [{ metric: 'error-rate', upperLimit: 0.01 }], minSamples: 100 },
      weights: { initial: { v1: 50, v2: 50 } },
      duration: { intervalSeconds: 1, maxIterations: 30 },
    },
  });
  assert.equal(put.status, 201, JSON.stringify(put.body));
  // Both replicas follow the experiment's initial split.
  await waitFor('the 50/50 split on both proxies', async () => {
    for (const a of admins) if ((await json(a, 'GET', '/routes/shop')).body.weights.v2 !== 50) return false;
    return true;
  });

  let sent = 0;
  let running = true;
  const load = inParallel(16, 16, async (i) => {
    while (running) {
      const r = await traffic[i % 2]!.request({ path: '/', method: 'GET' });
      await r.body.dump();
      sent++;
    }
  });
  const final = await waitFor('the canary to fail', async () => {
    const st = (await json(control, 'GET', '/experiments/canary')).body.status as ExperimentStatus;
    return ['Completed', 'Failed', 'Aborted'].includes(st.state) ? st : null;
  }, 40_000, 200);
  running = false;
  await load;
  assert.equal(final.state, 'Failed', final.reason);
  for (const a of admins) {
    await waitFor('the rollback on every proxy', async () => (await json(a, 'GET', '/routes/shop')).body.weights.v2 === 0);
  }

  // After the proxies' next flush, the control plane's totals are exactly what was sent.
  await waitFor('exact totals at the control plane', async () => {
    const stats = (await json(control, 'GET', '/stats')).body.routes.shop;
    const total = Object.values(stats.versions as Record<string, { requests: number }>).reduce((s, v) => s + v.requests, 0);
    return total === sent && stats.replicas.length === 2;
  }, 10_000, 100);
});

test('sluice start --redis runs both planes in one process: proxy admin and control API side by side', async (t) => {
  const redis = await startRedis(t);
  if (redis === null) return;
  const { config } = await startShop(t, [{ errorRate: 0, seed: 3 }, { errorRate: 0, seed: 4 }]);
  const [traffic, admin, controlPort] = await Promise.all([freePort(), freePort(), freePort()]);
  sluice(t, ['start', '-c', config, '--redis', redis.url, '--redis-prefix', `start${process.pid}:`, '--listen', `127.0.0.1:${traffic}`, '--admin-listen', `127.0.0.1:${admin}`], {
    SLUICE_CONTROL_LISTEN: `127.0.0.1:${controlPort}`,
  });
  const proxyAdmin = new Pool(`http://127.0.0.1:${admin}`);
  const control = new Pool(`http://127.0.0.1:${controlPort}`);
  const client = new Pool(`http://127.0.0.1:${traffic}`);
  t.after(() => Promise.all([proxyAdmin, control, client].map((p) => p.close())));
  await waitFor('both APIs up and this process leading', async () => {
    if ((await json(proxyAdmin, 'GET', '/readyz')).status !== 200) return false;
    return (await json(control, 'GET', '/leader')).body?.leader === true;
  }, 20_000, 100);
  // A weight change made on the control API reaches the proxy in the same process through Redis.
  assert.equal((await json(control, 'PUT', '/routes/shop/weights', { v1: 0, v2: 100 })).status, 200);
  await waitFor('the proxy to follow', async () => (await json(proxyAdmin, 'GET', '/routes/shop')).body.weights.v2 === 100);
  const r = await client.request({ path: '/', method: 'GET' });
  assert.equal(r.headers['x-sluice-version'], 'v2');
  await r.body.dump();
});
