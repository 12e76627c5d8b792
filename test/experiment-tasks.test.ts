/**
 * Tasks in real experiments (issue 5): synthetic load as the only traffic,
 * pinned per-version load, finish tasks with `if` and `onError`, start
 * tasks that fail, and what `describe` shows of them.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import type { Experiment } from '../cli/client.js';
import { describeText } from '../cli/format.js';
import type { ExperimentStatus, TaskRun } from '../control/status.js';
import { startSampleApp, type SampleAppOptions } from '../demo/sample-app.js';
import { Pool, refusingUrl, startSluice, startUpstream, waitFor } from './support/helpers.js';
import { json } from './support/processes.js';
import type { RunningSluice } from '../cli/run-sluice.js';

interface Setup {
  readonly sluice: RunningSluice;
  readonly admin: Pool;
}

async function setup(t: TestContext, apps: SampleAppOptions[]): Promise<Setup> {
  const started = await Promise.all(apps.map((a) => startSampleApp(a)));
  const sluice = await startSluice({ routes: [{ name: 'shop', versions: started.map((a) => ({ name: a.name, url: a.url })) }] }, { allowExec: true });
  const admin = new Pool(sluice.adminUrl, { connections: 2 });
  t.after(async () => {
    await admin.close();
    await sluice.close();
    await Promise.all(started.map((a) => a.close()));
  });
  return { sluice, admin };
}

async function run(s: Setup, name: string, spec: Record<string, unknown>, timeoutMs = 30_000): Promise<ExperimentStatus> {
  const put = await json(s.admin, 'PUT', `/experiments/${name}`, { kind: 'Experiment', name, spec: { route: 'shop', ...spec } });
  assert.equal(put.status, 201, JSON.stringify(put.body));
  return waitFor(`experiment ${name} to end`, async () => {
    const st = (await json(s.admin, 'GET', `/experiments/${name}`)).body.status as ExperimentStatus;
    return ['Completed', 'Failed', 'Aborted'].includes(st.state) ? st : null;
  }, timeoutMs, 50);
}

function task(st: ExperimentStatus, name: string): TaskRun {
  const r = st.tasks.find((x) => x.name === name);
  assert.ok(r, `no run of ${name} in ${JSON.stringify(st.tasks)}`);
  return r;
}

/** An A/B decided by mock metrics in a few iterations, without traffic: a quick way to reach the finish tasks. */
const QUICK_AB = {
  versions: [{ name: 'v1' }, { name: 'v2' }],
  testingPattern: 'A/B',
  criteria: { reward: { metric: 'orders' }, minSamples: 100 },
  duration: { intervalSeconds: 0.3, maxIterations: 60 },
  metrics: [{ name: 'orders', source: 'mock', type: 'rate', values: { v1: { mean: 0.05 }, v2: { mean: 0.1 } }, countPerSecond: 1000 }],
};

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-tasks-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

describe('tasks in experiments', () => {
  test('an experiment with no external traffic reaches its verdict on synthetic load alone (readiness, then load at 200 qps)', async (t) => {
    const s = await setup(t, [{ name: 'v1', seed: 1 }, { name: 'v2', seed: 2 }]);
    const st = await run(s, 'load-only', {
      versions: [{ name: 'v1' }, { name: 'v2' }],
      testingPattern: 'Canary',
      criteria: { objectives: [{ metric: 'error-rate', upperLimit: 0.05 }], minSamples: 100 },
      weights: { initial: { v1: 50, v2: 50 } },
      duration: { intervalSeconds: 1, maxIterations: 30 },
      tasks: {
        start: [
          { task: 'readiness', timeoutSeconds: 5 },
          { task: 'load', qps: 200, durationSeconds: 60, concurrency: 16 },
        ],
      },
    }, 45_000);
    assert.equal(st.state, 'Completed', st.reason);
    assert.equal(st.winner, 'v2');
    assert.equal(task(st, 'start-0-readiness').state, 'succeeded');
    const loadRun = await waitFor('the load run to be recorded as stopped', async () => {
      const cur = (await json(s.admin, 'GET', '/experiments/load-only')).body.status as ExperimentStatus;
      const r = task(cur, 'start-1-load');
      return r.state !== 'running' ? r : null;
    });
    assert.equal(loadRun.state, 'succeeded', JSON.stringify(loadRun));
    const out = loadRun.output as { requests: number; errors: number; achievedQps: number };
    assert.ok(Math.abs(out.achievedQps - 200) <= 20, `achieved ${out.achievedQps} qps`);
    t.diagnostic(`synthetic load: ${out.requests} requests at ${out.achievedQps} qps (200 asked), ${out.errors} errors; verdict at iteration ${st.iteration}`);
    assert.equal(out.errors, 0);
    // Every request the experiment measured was synthetic.
    const measured = (st.versions.v1!.metrics['request-count'] ?? 0) + (st.versions.v2!.metrics['request-count'] ?? 0);
    assert.ok(measured > 0 && measured <= out.requests, `measured ${measured}, sent ${out.requests}`);
  });

  test('per-version load is pinned: each listed version gets its qps whatever the weights', async (t) => {
    const s = await setup(t, [{ name: 'v1', seed: 3 }, { name: 'v2', seed: 4 }]);
    const st = await run(s, 'pinned', {
      versions: [{ name: 'v1' }, { name: 'v2' }],
      testingPattern: 'Canary',
      criteria: { objectives: [{ metric: 'error-rate', upperLimit: 0.05 }], minSamples: 100 },
      weights: { initial: { v1: 90, v2: 10 }, maxCandidateWeightIncrement: 10 },
      duration: { intervalSeconds: 1, maxIterations: 3 },
      tasks: { start: [{ task: 'load', qps: 60, durationSeconds: 60, versions: ['v1', 'v2'] }] },
    });
    const first = st.history[0]!;
    const [a, b] = [first.versions.v1!.samples, first.versions.v2!.samples];
    // 90/10 weights would give a ratio of 9; pinned load gives each version the same rate.
    assert.ok(a > 20 && b > 20 && a / b < 1.3 && b / a < 1.3, `v1 ${a}, v2 ${b}`);
    // Pinned requests are not keyless: the sample-ratio check does not see them.
    assert.equal(first.srm, null);
  });

  test('finish tasks: exec gets SLUICE_WINNER, a Slack notify arrives, an unreachable receiver with onError: continue does not fail the experiment', async (t) => {
    const s = await setup(t, [{ name: 'v1' }, { name: 'v2' }]);
    const dir = tempDir(t);
    const slack = await startUpstream('slack');
    t.after(() => slack.close());
    const out = join(dir, 'winner.txt');
    const st = await run(s, 'finish-ok', {
      ...QUICK_AB,
      tasks: {
        finish: [
          { task: 'notify', name: 'page-nobody', url: await refusingUrl(), onError: 'continue', if: 'always' },
          { task: 'exec', name: 'record-winner', command: ['sh', '-c', 'printf "%s %s" "$SLUICE_WINNER" "$SLUICE_STATE" > "$OUT"'], env: { OUT: out } },
          { task: 'notify', name: 'tell-slack', url: `${slack.url}/hook`, format: 'slack' },
          { task: 'exec', name: 'only-on-failure', command: ['sh', '-c', 'exit 1'], if: 'failure' },
        ],
      },
    });
    assert.equal(st.state, 'Completed', st.reason);
    assert.equal(st.winner, 'v2');
    assert.equal(readFileSync(out, 'utf8'), 'v2 Completed');
    const nobody = task(st, 'page-nobody');
    assert.equal(nobody.state, 'failed');
    assert.equal(nobody.error?.code, 'SLUICE_TASK_HTTP');
    assert.equal(task(st, 'record-winner').state, 'succeeded');
    assert.equal(task(st, 'tell-slack').state, 'succeeded');
    const skipped = task(st, 'only-on-failure');
    assert.equal(skipped.state, 'skipped', 'an if: failure task ran on success');
    assert.deepEqual(skipped.output, { reason: 'if: failure, and the experiment is Completed' });
    const hook = slack.seen.find((r) => r.url === '/hook');
    assert.ok(hook, 'the Slack hook received nothing');
    const payload = JSON.parse(hook.body.toString()) as { text: string; blocks: unknown[] };
    assert.match(payload.text, /finish-ok/);
    assert.match(payload.text, /v2/);
    assert.ok(Array.isArray(payload.blocks) && payload.blocks.length > 0);
    // The finish runs are in the history of the last iteration, and describe lists every run.
    assert.ok(st.history.at(-1)!.tasks?.some((r) => r.name === 'record-winner'));
    const described = describeText((await json(s.admin, 'GET', '/experiments/finish-ok')).body as Experiment);
    assert.match(described, /Tasks:/);
    assert.match(described, /page-nobody .*failed \(continued\).*SLUICE_TASK_HTTP/);
    assert.match(described, /record-winner .*succeeded/);
    assert.match(described, /only-on-failure .*skipped .*if: failure, and the experiment is Completed/);
    // The runs are in the metrics too: a failed promotion hook is something to alert on.
    const metrics = await (await s.admin.request({ method: 'GET', path: '/metrics' })).body.text();
    assert.match(metrics, /sluice_experiment_task_runs\{experiment="finish-ok",phase="finish",state="failed"\} 1\n/);
    assert.match(metrics, /sluice_experiment_task_runs\{experiment="finish-ok",phase="finish",state="succeeded"\} 2\n/);
    assert.match(metrics, /sluice_experiment_task_runs\{experiment="finish-ok",phase="finish",state="skipped"\} 1\n/);
  });

  test('an unreachable receiver with onError: fail fails the experiment, visibly', async (t) => {
    const s = await setup(t, [{ name: 'v1' }, { name: 'v2' }]);
    const st = await run(s, 'finish-fail', {
      ...QUICK_AB,
      tasks: { finish: [{ task: 'notify', name: 'must-notify', url: await refusingUrl(), onError: 'fail' }] },
    });
    assert.equal(st.state, 'Failed');
    assert.match(st.reason, /finish task must-notify failed: SLUICE_TASK_HTTP/);
    assert.equal(task(st, 'must-notify').state, 'failed');
    assert.equal(st.ending, null);
  });

  test('a failing start task fails the experiment before any weight moves; if: failure finish tasks run, if: success ones do not', async (t) => {
    const s = await setup(t, [{ name: 'v1' }, { name: 'v2' }]);
    const dir = tempDir(t);
    const out = join(dir, 'state.txt');
    const before = (await json(s.admin, 'GET', '/routes/shop')).body.weights;
    const st = await run(s, 'not-ready', {
      ...QUICK_AB,
      tasks: {
        start: [{ task: 'readiness', urls: { v2: await refusingUrl() }, timeoutSeconds: 1, intervalSeconds: 0.2 }],
        finish: [
          { task: 'exec', name: 'on-failure', command: ['sh', '-c', 'printf "%s" "$SLUICE_STATE" > "$OUT"'], env: { OUT: out }, if: 'failure' },
          { task: 'exec', name: 'on-success', command: ['true'] },
        ],
      },
    });
    assert.equal(st.state, 'Failed');
    assert.match(st.reason, /start task start-0-readiness failed: SLUICE_TASK_TIMEOUT/);
    assert.equal(st.iteration, 0);
    assert.equal(readFileSync(out, 'utf8'), 'Failed');
    assert.equal(task(st, 'on-success').state, 'skipped');
    const after = (await json(s.admin, 'GET', '/routes/shop')).body.weights;
    assert.deepEqual(after, before, 'weights moved although the experiment never started');
  });

  test('loop tasks run after every k-th iteration, and each run is in the history record of that iteration', async (t) => {
    const s = await setup(t, [{ name: 'v1' }, { name: 'v2' }]);
    const hook = await startUpstream('hook');
    t.after(() => hook.close());
    const st = await run(s, 'looping', {
      ...QUICK_AB,
      // minSamples out of reach: nothing is judged, the experiment runs all its iterations.
      criteria: { reward: { metric: 'orders' }, minSamples: 1_000_000_000 },
      duration: { intervalSeconds: 0.2, maxIterations: 7 },
      tasks: { loop: [{ task: 'notify', name: 'progress', url: `${hook.url}/progress`, every: 2 }] },
    });
    assert.equal(st.iteration, 7);
    // Every 2nd iteration before the last (the last one ends the experiment: finish tasks follow it instead).
    const posted = hook.seen.filter((r) => r.url === '/progress').map((r) => (JSON.parse(r.body.toString()) as { iteration: number }).iteration);
    assert.deepEqual(posted, [2, 4, 6]);
    for (const h of st.history) {
      const runs = (h.tasks ?? []).map((r) => r.name);
      assert.deepEqual(runs, h.iteration % 2 === 0 ? ['progress'] : [], `iteration ${h.iteration}`);
    }
    assert.deepEqual(st.tasks.map((r) => [r.phase, r.iteration, r.state]), [['loop', 2, 'succeeded'], ['loop', 4, 'succeeded'], ['loop', 6, 'succeeded']]);
  });

  test('a background load that fails on its own (timeout) with onError: fail fails the running experiment; traffic back to the baseline', async (t) => {
    const s = await setup(t, [{ name: 'v1' }, { name: 'v2' }]);
    const st = await run(s, 'load-fails', {
      ...QUICK_AB,
      criteria: { reward: { metric: 'orders' }, minSamples: 1_000_000_000 },
      tasks: { start: [{ task: 'load', name: 'too-long', qps: 20, durationSeconds: 30, timeoutSeconds: 1 }] },
    });
    assert.equal(st.state, 'Failed');
    assert.match(st.reason, /start task too-long failed: SLUICE_TASK_TIMEOUT.*traffic back to v1/);
    assert.deepEqual(st.weights, { v1: 100, v2: 0 });
    const load = task(st, 'too-long');
    assert.equal(load.state, 'failed');
    const sent = (load.output as { requests?: number } | null)?.requests ?? 0;
    assert.ok(sent > 0, `the partial counts are kept (${sent} requests)`);
  });
});
