/**
 * Tasks in Redis mode: the finish tasks of an experiment survive the loss of
 * the control replica that ran them. `status.ending` is stored with the
 * record, so the next leader runs the interrupted task again and only then
 * shows the experiment Completed (docs/contract.md: a Completed experiment is
 * one whose finish tasks ran).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { ExperimentStatus } from '../control/status.js';
import { freePort, Pool, waitFor } from './support/helpers.js';
import { controlLeading, json, sluice, startShop } from './support/processes.js';
import { startRedis } from './support/redis-server.js';

test('Redis mode: the control replica running a finish task is SIGKILLed; the next leader runs it again, then the experiment is Completed', { timeout: 60_000 }, async (t) => {
  const redis = await startRedis(t);
  if (redis === null) return;
  const { config } = await startShop(t, [{}, {}]);
  const dir = mkdtempSync(join(tmpdir(), 'sluice-redis-tasks-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'promote.log');
  const prefix = `tasks${process.pid}:`;
  const [trafficPort, proxyAdminPort, firstPort, secondPort] = await Promise.all(Array.from({ length: 4 }, freePort));
  sluice(t, ['proxy', '-c', config, '--redis', redis.url, '--redis-prefix', prefix, '--listen', `127.0.0.1:${trafficPort}`, '--admin-listen', `127.0.0.1:${proxyAdminPort}`]);
  const control = (port: number) => sluice(t, ['control', '--redis', redis.url, '--redis-prefix', prefix, '--admin-listen', `127.0.0.1:${port}`, '--lease-ttl', '1500', '--allow-exec']);
  const first = control(firstPort!);
  const api1 = new Pool(`http://127.0.0.1:${firstPort}`, { connections: 2 });
  const api2 = new Pool(`http://127.0.0.1:${secondPort}`, { connections: 2 });
  t.after(() => Promise.all([api1.close(), api2.close()]));

  await waitFor('the first control leading, with the route', () => controlLeading(api1), 20_000, 50);
  const put = await json(api1, 'PUT', '/experiments/ab', {
    kind: 'Experiment',
    name: 'ab',
    spec: {
      route: 'shop',
      versions: [{ name: 'v1' }, { name: 'v2' }],
      testingPattern: 'A/B',
      criteria: { reward: { metric: 'orders' }, minSamples: 100 },
      duration: { intervalSeconds: 0.3, maxIterations: 60 },
      metrics: [{ name: 'orders', source: 'mock', type: 'rate', values: { v1: { mean: 0.05 }, v2: { mean: 0.1 } }, countPerSecond: 1000 }],
      tasks: {
        finish: [{ task: 'exec', name: 'slow-promote', command: ['sh', '-c', 'echo started >> "$OUT"; sleep 3; echo "$SLUICE_WINNER $SLUICE_STATE" >> "$OUT"'], env: { OUT: out } }],
      },
    },
  });
  assert.equal(put.status, 201, JSON.stringify(put.body));

  // The decision is made and stored (`ending`), the task has started: kill the replica running it.
  const finishing = await waitFor('the finish task running on the first control', async () => {
    const s = (await json(api1, 'GET', '/experiments/ab')).body.status as ExperimentStatus;
    let started = '';
    try {
      started = readFileSync(out, 'utf8');
    } catch {
      // not yet
    }
    return s.ending !== null && started.includes('started') ? s : null;
  }, 20_000, 20);
  assert.equal(finishing.ending!.state, 'Completed');
  assert.equal(finishing.winner, 'v2');
  assert.equal(finishing.state, 'Running', 'not Completed before its finish tasks ran');
  first.process.kill('SIGKILL');
  assert.equal(await first.exited, 'SIGKILL');

  control(secondPort!);
  const done = await waitFor('Completed on the second control', async () => {
    const r = await json(api2, 'GET', '/experiments/ab').catch(() => null);
    const s = r?.body?.status as ExperimentStatus | undefined;
    return s?.state === 'Completed' ? s : null;
  }, 30_000, 50);
  assert.equal(done.winner, 'v2');
  assert.equal(done.ending, null);
  // The new leader ran the task again, to the end. The command the killed replica had started runs
  // in its own process group and finishes on its own: tasks are at least once (docs/tasks.md).
  const lines = readFileSync(out, 'utf8').trim().split('\n');
  assert.equal(lines.filter((l) => l === 'started').length, 2, lines.join(' | '));
  assert.equal(lines.filter((l) => l === 'v2 Completed').length, 2, lines.join(' | '));
  const runs = done.tasks.filter((r) => r.name === 'slow-promote');
  assert.deepEqual(runs.map((r) => r.state), ['succeeded']);
});
