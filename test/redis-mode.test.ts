/**
 * Redis mode end to end, as operators run it: two `sluice proxy` processes
 * and one `sluice control` process against a real redis-server.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { ExperimentStatus } from '../control/lifecycle.js';
import { startSampleApp } from '../demo/sample-app.js';
import { inParallel, Pool, waitFor } from './helpers.js';
import { startRedis } from './redis-server.js';

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function sluice(t: TestContext, args: string[], env: Record<string, string> = {}): ChildProcess {
  const child = spawn('node', ['bin/sluice.js', ...args], { env: { ...process.env, SLUICE_LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  });
  child.once('exit', (code) => {
    if (code !== 0 && code !== null) t.diagnostic(`sluice ${args[0]} exited ${code}: ${output.slice(-2000)}`);
  });
  return child;
}

async function json(pool: Pool, method: string, path: string, body?: unknown) {
  const r = await pool.request({ method: method as 'GET', path, headers: body ? { 'content-type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined });
  const text = await r.body.text();
  return { status: r.statusCode, body: text ? JSON.parse(text) : null };
}

test('two proxy processes and a control process: exact totals, a failing canary rolled back on every replica', async (t) => {
  const redis = await startRedis(t);
  if (redis === null) return;
  const apps = await Promise.all([
    startSampleApp({ name: 'v1', errorRate: 0, seed: 1 }),
    startSampleApp({ name: 'v2', errorRate: 0.05, seed: 2 }),
  ]);
  t.after(() => Promise.all(apps.map((a) => a.close())));
  const dir = mkdtempSync(join(tmpdir(), 'sluice-redis-mode-'));
  const config = join(dir, 'sluice.yaml');
  writeFileSync(
    config,
    `routes:
  - name: shop
    versions:
      - { name: v1, url: ${apps[0]!.url} }
      - { name: v2, url: ${apps[1]!.url} }
    weights: { v1: 100 }
`,
  );
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
