/**
 * The verdict and gate endpoints (admin/gate.ts, docs/gates.md): the answers
 * Argo Rollouts' `web` metric provider and Flagger's webhooks read. Real
 * Sluice and sample apps drive three experiments to their three outcomes;
 * the mapping's remaining cases are checked on records built by hand.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test, type TestContext } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { gateVerdict } from '../admin/gate.js';
import type { RunningSluice } from '../cli/run-sluice.js';
import { parseConfig } from '../config/config.js';
import { pendingStatus } from '../control/lifecycle.js';
import type { ExperimentRecord } from '../control/ports.js';
import { parseExperiment, validateExperiment } from '../control/spec.js';
import type { ExperimentStatus } from '../control/status.js';
import { startSampleApp, type SampleAppOptions } from '../demo/sample-app.js';
import { Pool, startSluice, waitFor } from './support/helpers.js';

const AUTH = { authorization: 'Bearer tok' };
const BODY_KEYS = ['experiment', 'iteration', 'reason', 'state', 'verdict', 'winner'];
/** What Flagger posts to a webhook (docs.flagger.app/usage/webhooks): read and ignored by the gate. */
const FLAGGER_PAYLOAD = { name: 'podinfo', namespace: 'test', phase: 'Progressing', checksum: '85d557f47b', metadata: { experiment: 'x' } };

interface Setup {
  readonly sluice: RunningSluice;
  readonly admin: Pool;
  readonly traffic: Pool;
}

/** One Sluice (admin token `tok`) with a route per path prefix, each with versions v1 and v2. */
async function setup(t: TestContext, routes: Record<string, [SampleAppOptions, SampleAppOptions]>): Promise<Setup> {
  const apps = await Promise.all(Object.values(routes).flat().map((a) => startSampleApp(a)));
  const sluice = await startSluice({
    admin: { listen: '127.0.0.1:0', token: 'tok' },
    routes: Object.keys(routes).map((name, i) => ({
      name,
      match: { pathPrefix: `/${name}` },
      versions: [
        { name: 'v1', url: apps[2 * i]!.url },
        { name: 'v2', url: apps[2 * i + 1]!.url },
      ],
    })),
  });
  const admin = new Pool(sluice.adminUrl, { connections: 2 });
  const traffic = new Pool(sluice.trafficUrl, { connections: 12 });
  t.after(async () => {
    await traffic.close();
    await admin.close();
    await sluice.close();
    await Promise.all(apps.map((a) => a.close()));
  });
  return { sluice, admin, traffic };
}

async function call(s: Setup, method: 'GET' | 'POST' | 'PUT', path: string, opts: { body?: string; headers?: Record<string, string> } = {}) {
  const r = await s.admin.request({ method, path, headers: opts.headers ?? AUTH, body: opts.body });
  const text = await r.body.text();
  return { status: r.statusCode, headers: r.headers, json: text ? JSON.parse(text) : null };
}

const json = (body: unknown) => ({ body: JSON.stringify(body), headers: { ...AUTH, 'content-type': 'application/json' } });

/** Keyless GETs spread over `paths` until stopped. */
function load(s: Setup, paths: readonly string[], concurrency = 9) {
  let running = true;
  const workers = Array.from({ length: concurrency }, async (_, i) => {
    const path = paths[i % paths.length]!;
    while (running) await (await s.traffic.request({ path, method: 'GET' })).body.dump();
  });
  return async () => {
    running = false;
    await Promise.all(workers);
  };
}

/** A Canary on `route` judged on error-rate ≤ 1%; FixedSplit without promotion: Sluice judges, another tool promotes (docs/gates.md). */
function canary(name: string, route: string, extra: { minSamples?: number; intervalSeconds?: number; maxIterations?: number } = {}) {
  return {
    kind: 'Experiment',
    name,
    spec: {
      route,
      versions: [{ name: 'v1' }, { name: 'v2' }],
      testingPattern: 'Canary',
      deploymentPattern: 'FixedSplit',
      promote: false,
      criteria: { objectives: [{ metric: 'error-rate', upperLimit: 0.01 }], minSamples: extra.minSamples ?? 100 },
      weights: { initial: { v1: 50, v2: 50 } },
      duration: { intervalSeconds: extra.intervalSeconds ?? 0.15, maxIterations: extra.maxIterations ?? 60 },
    },
  };
}

/** Both endpoints for one experiment: the verdict's body (always 200) and the gate's status, which must carry the same body. */
async function both(s: Setup, name: string) {
  const verdict = await call(s, 'GET', `/experiments/${name}/verdict`);
  assert.equal(verdict.status, 200, JSON.stringify(verdict.json));
  assert.deepEqual(Object.keys(verdict.json).sort(), BODY_KEYS);
  assert.equal(verdict.headers['cache-control'], 'no-store');
  const gate = await call(s, 'POST', `/experiments/${name}/gate`, json(FLAGGER_PAYLOAD));
  assert.deepEqual(gate.json, verdict.json, 'the gate answers with the verdict body');
  return { body: verdict.json as { experiment: string; verdict: string; state: string; winner: string | null; iteration: number; reason: string }, gateStatus: gate.status };
}

async function status(s: Setup, name: string): Promise<ExperimentStatus> {
  return (await call(s, 'GET', `/experiments/${name}`)).json.status as ExperimentStatus;
}

describe('gate', () => {
  test('a passing canary passes (200), a failing one fails (412), a running one is inconclusive (425); token, 404 and any body', async (t) => {
    const s = await setup(t, {
      good: [{ name: 'v1', seed: 1 }, { name: 'v2', seed: 2 }],
      bad: [{ name: 'v1', seed: 3 }, { name: 'v2', errorRate: 0.05, seed: 4 }],
      wait: [{ name: 'v1', seed: 5 }, { name: 'v2', seed: 6 }],
    });
    for (const doc of [
      canary('good-canary', 'good'),
      canary('bad-canary', 'bad'),
      // Never enough samples to judge: it iterates, Running, until aborted.
      canary('waiting', 'wait', { minSamples: 1_000_000, intervalSeconds: 0.2, maxIterations: 10_000 }),
    ]) {
      const put = await call(s, 'PUT', `/experiments/${doc.name}`, json(doc));
      assert.equal(put.status, 201, JSON.stringify(put.json));
    }
    const stop = load(s, ['/good', '/bad', '/wait']);
    try {
      // Before anything is decided, every gate holds: 425 Too Early.
      const early = await both(s, 'waiting');
      assert.equal(early.body.verdict, 'inconclusive');
      assert.equal(early.gateStatus, 425);

      await waitFor('both canaries to end', async () => {
        const [g, b] = await Promise.all([status(s, 'good-canary'), status(s, 'bad-canary')]);
        return ['Completed', 'Failed'].includes(g.state) && ['Completed', 'Failed'].includes(b.state);
      }, 40_000, 50);
      await waitFor('the waiting experiment to have iterated', async () => (await status(s, 'waiting')).iteration >= 2, 10_000, 50);
    } finally {
      await stop();
    }

    const good = await both(s, 'good-canary');
    assert.equal(good.body.state, 'Completed', good.body.reason);
    assert.equal(good.body.verdict, 'pass');
    assert.equal(good.body.winner, 'v2');
    assert.equal(good.gateStatus, 200);
    assert.equal(good.body.experiment, 'good-canary');
    assert.ok(good.body.iteration >= 1);
    assert.match(good.body.reason, /meets every objective/);
    // promote: false — the winner is recorded, traffic goes back to the baseline: promoting is the job of the tool
    // that drives the rollout (its stable Service then selects the new pods).
    assert.deepEqual((await call(s, 'GET', '/routes/good')).json.weights, { v1: 100, v2: 0 });

    const bad = await both(s, 'bad-canary');
    assert.equal(bad.body.state, 'Failed', bad.body.reason);
    assert.equal(bad.body.verdict, 'fail');
    assert.equal(bad.gateStatus, 412);
    assert.equal(bad.body.winner, 'v1');
    assert.match(bad.body.reason, /error-rate/);

    const running = await both(s, 'waiting');
    assert.equal(running.body.state, 'Running');
    assert.equal(running.body.verdict, 'inconclusive');
    assert.equal(running.gateStatus, 425);
    assert.equal(running.body.winner, null);
    assert.ok(running.body.iteration >= 2);
    assert.match(running.body.reason, /insufficient samples/);

    // Paused is still undecided; aborted is a failure.
    assert.equal((await call(s, 'POST', '/experiments/waiting/pause')).status, 200);
    const paused = await both(s, 'waiting');
    assert.equal(paused.body.state, 'Paused');
    assert.equal(paused.gateStatus, 425);
    assert.equal((await call(s, 'POST', '/experiments/waiting/abort')).status, 200);
    const aborted = await both(s, 'waiting');
    assert.equal(aborted.body.state, 'Aborted');
    assert.equal(aborted.body.verdict, 'fail');
    assert.equal(aborted.gateStatus, 412);

    // The gate reads no body: none, a form, even broken JSON get the verdict, never a 400 or 415.
    for (const opts of [
      { headers: AUTH },
      { body: 'a=1', headers: { ...AUTH, 'content-type': 'application/x-www-form-urlencoded' } },
      { body: '{not json', headers: { ...AUTH, 'content-type': 'application/json' } },
    ]) {
      const r = await call(s, 'POST', '/experiments/good-canary/gate', opts);
      assert.equal(r.status, 200, JSON.stringify(opts));
      assert.equal(r.json.verdict, 'pass');
    }

    // Unknown experiment: 404 on both, so a misnamed gate never passes.
    for (const method of ['GET', 'POST'] as const) {
      const r = await call(s, method, `/experiments/nope/${method === 'GET' ? 'verdict' : 'gate'}`);
      assert.equal(r.status, 404);
      assert.equal(r.json.error.code, 'SLUICE_EXPERIMENT_NOT_FOUND');
    }

    // The admin API's token guards both, like every other admin call.
    for (const headers of [{}, { authorization: 'Bearer nope' }, { authorization: 'tok' }] as Record<string, string>[]) {
      for (const [method, path] of [['GET', '/experiments/good-canary/verdict'], ['POST', '/experiments/good-canary/gate']] as const) {
        const r = await call(s, method, path, { headers });
        assert.equal(r.status, 401, `${method} ${path} ${JSON.stringify(headers)}`);
        assert.equal(r.json.error.code, 'SLUICE_UNAUTHORIZED');
      }
    }
  });

  describe('the mapping from a status to a verdict', () => {
    const doc = (testingPattern: string, versions: string[], extra: Record<string, unknown> = {}) =>
      validateExperiment({
        kind: 'Experiment',
        name: 'm',
        spec: {
          route: 'r',
          versions: versions.map((name) => ({ name })),
          testingPattern,
          criteria: testingPattern === 'A/B' || testingPattern === 'A/B/n' ? { reward: { metric: 'conversion-rate' } } : { objectives: [{ metric: 'error-rate', upperLimit: 0.01 }] },
          ...extra,
        },
      });
    const record = (d: ReturnType<typeof doc>, status: Partial<ExperimentStatus>): ExperimentRecord => ({
      doc: d,
      status: { ...pendingStatus(d, '2025-01-01T00:00:00.000Z'), ...status },
      start: null,
    });
    const canaryDoc = doc('Canary', ['v1', 'v2']);
    const verdict = (r: ExperimentRecord) => gateVerdict(r).verdict;

    test('Pending, Running and Paused are inconclusive', () => {
      for (const state of ['Pending', 'Running', 'Paused'] as const) assert.equal(verdict(record(canaryDoc, { state })), 'inconclusive', state);
    });

    test('a candidate judged infeasible in one iteration is not a failure until Sluice says so', () => {
      const infeasible = { samples: 500, metrics: {}, verdict: 'infeasible' as const, pFeasible: 0.2, pBest: null, expectedLoss: null, objectives: [], metricErrors: {} };
      const r = record(canaryDoc, { state: 'Running', iteration: 3, reason: 'inconclusive: v2 (P = 0.200)', versions: { v2: infeasible } });
      assert.equal(verdict(r), 'inconclusive');
    });

    test('Failed and Aborted fail, whoever is recorded as the winner', () => {
      assert.equal(verdict(record(canaryDoc, { state: 'Failed', winner: 'v1', reason: 'candidate v2 violates its objectives' })), 'fail');
      // A failing finish task turns Completed into Failed and keeps the winner: still a failure for the pipeline.
      assert.equal(verdict(record(canaryDoc, { state: 'Failed', winner: 'v2', reason: 'finish task notify failed' })), 'fail');
      assert.equal(verdict(record(canaryDoc, { state: 'Aborted', reason: 'aborted; traffic back to v1' })), 'fail');
    });

    test('Completed: a candidate winner passes, the baseline winning fails, no winner is inconclusive', () => {
      assert.equal(verdict(record(canaryDoc, { state: 'Completed', winner: 'v2' })), 'pass');
      const abn = doc('A/B/n', ['blue', 'green', 'red']);
      assert.equal(verdict(record(abn, { state: 'Completed', winner: 'red' })), 'pass');
      const baselineWon = gateVerdict(record(abn, { state: 'Completed', winner: 'blue', reason: 'blue is best' }));
      assert.equal(baselineWon.verdict, 'fail');
      assert.match(baselineWon.reason, /baseline blue .* over green, red: blue is best/);
      assert.equal(verdict(record(canaryDoc, { state: 'Completed', winner: null, reason: 'insufficient samples' })), 'inconclusive');
    });

    test('Conformance: its one version winning passes; ending without a winner is inconclusive', () => {
      const conf = doc('Conformance', ['v1']);
      assert.equal(verdict(record(conf, { state: 'Completed', winner: 'v1' })), 'pass');
      assert.equal(verdict(record(conf, { state: 'Completed', winner: null })), 'inconclusive');
      assert.equal(verdict(record(conf, { state: 'Failed' })), 'fail');
    });

    test('while finish tasks run: towards Failed or Aborted fails at once, towards Completed waits for them', () => {
      const ending = (state: 'Completed' | 'Failed' | 'Aborted') => ({ state, reason: `${state} because`, finishedAt: '2025-01-01T00:01:00.000Z' });
      const finishing = (state: 'Completed' | 'Failed' | 'Aborted', winner: string | null) =>
        gateVerdict(record(canaryDoc, { state: 'Running', winner, reason: `finishing (${state}): running finish tasks`, ending: ending(state) }));
      const failing = finishing('Failed', 'v1');
      assert.equal(failing.verdict, 'fail');
      assert.equal(failing.state, 'Running');
      assert.match(failing.reason, /^finishing \(Failed\): Failed because/);
      assert.equal(finishing('Aborted', null).verdict, 'fail');
      const completing = finishing('Completed', 'v2');
      assert.equal(completing.verdict, 'inconclusive');
      assert.match(completing.reason, /finish tasks are still running/);
    });

    test('the body: name, verdict, state, winner, iteration, reason', () => {
      const a = gateVerdict(record(canaryDoc, { state: 'Completed', winner: 'v2', iteration: 7, reason: 'candidate v2 meets every objective' }));
      assert.deepEqual(a, {
        experiment: 'm',
        verdict: 'pass',
        state: 'Completed',
        winner: 'v2',
        iteration: 7,
        reason: 'Completed with v2 as the winner: candidate v2 meets every objective',
      });
    });
  });

  test('docs/gates.md: its Sluice config and experiment are valid, and the Argo and Flagger gates outlast the experiment', () => {
    const md = readFileSync(new URL('../docs/gates.md', import.meta.url), 'utf8');
    const blocks = [...md.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);
    const objects = blocks.flatMap((b) => parseAllDocuments(b).map((d) => d.toJS() as Record<string, any>));
    const byKind = (kind: string) => objects.find((o) => o?.kind === kind)!;

    for (const b of blocks.filter((b) => b.startsWith('# sluice.yaml'))) {
      const config = parseConfig(b, { env: { SLUICE_TOKEN: 'a-token' } });
      assert.equal(config.routes.length, 1);
    }
    const exp = parseExperiment(blocks.find((b) => b.startsWith('kind: Experiment'))!);
    assert.equal(exp.spec.deploymentPattern, 'FixedSplit');
    assert.equal(exp.spec.promote, false);
    // The Flagger variant: the same document under another name, route and versions.
    const podinfo = parseExperiment(
      blocks.find((b) => b.startsWith('kind: Experiment'))!
        .replace('name: checkout-canary', 'name: podinfo-canary').replace('route: checkout', 'route: podinfo')
        .replaceAll('stable', 'primary'),
    );
    assert.deepEqual(podinfo.spec.versions.map((v) => v.name), ['primary', 'canary']);
    const experimentSeconds = exp.spec.duration.maxIterations * exp.spec.duration.intervalSeconds;
    const seconds = (d: string) => Number.parseInt(d, 10) * (d.endsWith('m') ? 60 : 1);

    const metric = byKind('AnalysisTemplate').spec.metrics[0];
    assert.match(metric.provider.web.url, /\/experiments\/\{\{args\.experiment\}\}\/verdict$/);
    assert.equal(metric.provider.web.jsonPath, '{$.verdict}');
    assert.equal(metric.successCondition, 'result == "pass"');
    assert.equal(metric.failureCondition, 'result == "fail"');
    assert.equal(metric.inconclusiveLimit, metric.count - 1);
    assert.ok(metric.count * seconds(metric.interval) > experimentSeconds);
    assert.deepEqual(byKind('AnalysisTemplate').spec.args.find((a: { name: string }) => a.name === 'sluice-token').valueFrom.secretKeyRef, { name: 'sluice-admin-token', key: 'token' });

    const analysis = byKind('Canary').spec.analysis;
    const gate = analysis.webhooks.find((w: { type: string }) => w.type === 'rollout');
    assert.match(gate.metadata.cmd, /-X POST .*\/experiments\/podinfo-canary\/gate$/);
    assert.match(gate.metadata.cmd, /--fail-with-body/);
    assert.ok(analysis.threshold * seconds(analysis.interval) > experimentSeconds);
  });
});
