import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { get, inParallel, Pool, requireBinary, startSluice, startUpstream } from './support/helpers.js';

/** The value of one series in Prometheus text output, or 0 when absent. */
function series(text: string, name: string, labels: Record<string, string>): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{')) continue;
    const inner = line.slice(name.length + 1, line.indexOf('}'));
    const have = inner.split(',');
    if (want.every((w) => have.includes(w)) && have.length === want.length) return Number(line.slice(line.indexOf('}') + 2));
  }
  return 0;
}

test('/metrics passes promtool and its counters match the requests sent', async (t) => {
  const promtool = requireBinary(t, 'promtool', 'prometheus');
  if (promtool === null) return;
  const ok = await startUpstream('ok', (_req, res) => {
    res.writeHead(200, { 'x-sluice-reward': '2.5' });
    res.end('ok');
  }, { record: false });
  const failing = await startUpstream('bad', (_req, res) => {
    res.writeHead(503);
    res.end('down');
  }, { record: false });
  const sluice = await startSluice({
    routes: [
      {
        name: 'checkout',
        versions: [
          { name: 'v1', url: ok.url },
          { name: 'v2', url: failing.url },
        ],
        weights: { v1: 100 },
        rules: [{ match: { headers: { 'x-canary': 'true' } }, version: 'v2' }],
      },
    ],
  });
  const pool = new Pool(sluice.trafficUrl, { connections: 20 });
  const admin = new Pool(sluice.adminUrl);
  t.after(async () => {
    await pool.close();
    await admin.close();
    await sluice.close();
    await ok.close();
    await failing.close();
  });

  await inParallel(300, 20, async () => assert.equal((await get(pool, '/buy')).status, 200));
  await inParallel(45, 20, async () => assert.equal((await get(pool, '/buy', { 'x-canary': 'true' })).status, 503));

  const text = await (await admin.request({ path: '/metrics', method: 'GET' })).body.text();
  const check = spawnSync(promtool, ['check', 'metrics'], { input: text, encoding: 'utf8' });
  assert.equal(check.status, 0, `promtool: ${check.stdout}${check.stderr}`);

  assert.equal(series(text, 'sluice_requests_total', { route: 'checkout', version: 'v1', code: '200' }), 300);
  assert.equal(series(text, 'sluice_requests_total', { route: 'checkout', version: 'v2', code: '503' }), 45);
  assert.equal(series(text, 'sluice_request_duration_seconds_count', { route: 'checkout', version: 'v1' }), 300);
  assert.equal(series(text, 'sluice_request_duration_seconds_bucket', { route: 'checkout', version: 'v1', le: '+Inf' }), 300);
  assert.equal(series(text, 'sluice_rewards_total', { route: 'checkout', version: 'v1' }), 300);
  assert.equal(series(text, 'sluice_reward_sum', { route: 'checkout', version: 'v1' }), 750);
  assert.equal(series(text, 'sluice_route_weight', { route: 'checkout', version: 'v1' }), 100);
  assert.equal(series(text, 'sluice_route_weight', { route: 'checkout', version: 'v2' }), 0);

  // /stats agrees, in the shape scripts rely on.
  const stats = (await (await admin.request({ path: '/stats', method: 'GET' })).body.json()) as {
    routes: Record<string, { versions: Record<string, { requests: number; errors: number; rewards: number; rewardSum: number; latencyMs: Record<string, number> }> }>;
  };
  const v1 = stats.routes.checkout!.versions.v1!;
  const v2 = stats.routes.checkout!.versions.v2!;
  assert.equal(v1.requests, 300);
  assert.equal(v1.errors, 0);
  assert.equal(v1.rewards, 300);
  assert.equal(v1.rewardSum, 750);
  assert.equal(v2.requests, 45);
  assert.equal(v2.errors, 45);
  for (const k of ['mean', 'p50', 'p95', 'p99']) assert.ok(typeof v1.latencyMs[k] === 'number' && v1.latencyMs[k]! > 0, k);
});
