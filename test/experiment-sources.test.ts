/**
 * Custom metrics driving real experiments end to end (issue 5): mock metrics
 * with no traffic at all; a REST backend whose failures show up as named
 * errors in the status (never a stale value) and whose secret never leaks;
 * a real Prometheus scraping Sluice feeding an objective.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test, type TestContext } from 'node:test';
import { pino } from 'pino';
import { reportText } from '../cli/format.js';
import type { Experiment } from '../cli/client.js';
import { runSluice, type RunningSluice } from '../cli/run-sluice.js';
import type { ExperimentStatus } from '../control/status.js';
import { startSampleApp, type SampleAppOptions } from '../demo/sample-app.js';
import { validateConfig } from '../config/config.js';
import { Pool, waitFor } from './support/helpers.js';
import { json, steadyLoad } from './support/processes.js';
import { startPrometheus } from './support/prometheus-server.js';

interface Setup {
  readonly sluice: RunningSluice;
  readonly admin: Pool;
  readonly traffic: Pool;
  /** Every log line Sluice wrote (debug and up). */
  readonly logs: string[];
}

async function setup(t: TestContext, apps: SampleAppOptions[], env: Record<string, string> = {}): Promise<Setup> {
  const started = await Promise.all(apps.map((a) => startSampleApp(a)));
  const logs: string[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void logs.push(line) });
  const saved = { ...process.env };
  Object.assign(process.env, env);
  t.after(() => {
    for (const k of Object.keys(env)) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  });
  const config = validateConfig(
    {
      listen: '127.0.0.1:0',
      admin: { listen: '127.0.0.1:0' },
      routes: [{ name: 'shop', versions: started.map((a) => ({ name: a.name, url: a.url })) }],
    },
    { env: {} },
  );
  const sluice = await runSluice(config, log);
  const admin = new Pool(sluice.adminUrl, { connections: 2 });
  const traffic = new Pool(sluice.trafficUrl, { connections: 16 });
  t.after(async () => {
    await traffic.close();
    await admin.close();
    await sluice.close();
    await Promise.all(started.map((a) => a.close()));
  });
  return { sluice, admin, traffic, logs };
}

async function status(s: Setup, name: string): Promise<ExperimentStatus> {
  return (await json(s.admin, 'GET', `/experiments/${name}`)).body.status as ExperimentStatus;
}

async function waitEnd(s: Setup, name: string, timeoutMs = 30_000): Promise<ExperimentStatus> {
  return waitFor(`experiment ${name} to end`, async () => {
    const st = await status(s, name);
    return ['Completed', 'Failed', 'Aborted'].includes(st.state) ? st : null;
  }, timeoutMs, 50);
}

describe('custom metrics in experiments', () => {
  test('mock metrics drive an A/B experiment to the expected winner with no traffic at all', async (t) => {
    const s = await setup(t, [{ name: 'v1' }, { name: 'v2' }]);
    const put = await json(s.admin, 'PUT', '/experiments/mock-ab', {
      kind: 'Experiment',
      name: 'mock-ab',
      spec: {
        route: 'shop',
        versions: [{ name: 'v1' }, { name: 'v2' }],
        testingPattern: 'A/B',
        criteria: { reward: { metric: 'orders' }, minSamples: 100 },
        duration: { intervalSeconds: 0.5, maxIterations: 40 },
        metrics: [{ name: 'orders', source: 'mock', type: 'rate', values: { v1: { mean: 0.05 }, v2: { mean: 0.08 } }, countPerSecond: 400 }],
      },
    });
    assert.equal(put.status, 201, JSON.stringify(put.body));
    const st = await waitEnd(s, 'mock-ab');
    assert.equal(st.state, 'Completed', st.reason);
    assert.equal(st.winner, 'v2', st.reason);
    assert.deepEqual(st.weights, { v1: 0, v2: 100 });
    // No request ever went through the proxy: the verdict came from the mock source alone.
    for (const v of ['v1', 'v2']) assert.equal(st.versions[v]!.metrics['request-count'], 0);
    assert.ok((st.versions.v2!.metrics.orders ?? 0) > 0.05, JSON.stringify(st.versions.v2!.metrics));
    assert.ok(st.versions.v2!.samples >= 100, `samples ${st.versions.v2!.samples}`);
  });

  test('a REST metric: jq per version, secret header sent but never in status, logs or report; 500, timeout and non-numeric answers are named errors, never stale values', async (t) => {
    const SECRET = 'S3CRET-token-value-4711';
    let mode: 'ok' | '500' | 'hang' | 'text' = '500';
    const seenKeys = new Set<string>();
    const backend = http.createServer((req, res) => {
      seenKeys.add(String(req.headers['x-api-key']));
      const url = new URL(req.url ?? '/', 'http://x');
      const version = url.searchParams.get('version') ?? '';
      if (req.headers['x-api-key'] !== SECRET) {
        res.writeHead(401).end();
        return;
      }
      if (mode === '500') return void res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"boom"}');
      if (mode === 'hang') return; // never answers; closed at the end
      const rate = version === 'v1' ? 0.01 : 0.02;
      const value = mode === 'text' ? 'not a number' : rate;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ results: { [version]: { errorRate: value, requests: 5000 } } }));
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
    t.after(() => {
      backend.closeAllConnections();
      return new Promise<void>((r) => backend.close(() => r()));
    });
    const base = `http://127.0.0.1:${(backend.address() as AddressInfo).port}`;
    const s = await setup(t, [{ name: 'v1' }, { name: 'v2' }], { SLUICE_TEST_API_KEY: SECRET });
    const query = {
      source: 'rest',
      url: `${base}/metrics?version={{version}}&elapsed={{elapsedSeconds}}`,
      headers: { 'x-api-key': '{{env.SLUICE_TEST_API_KEY}}' },
      timeoutSeconds: 0.4,
      retries: 1,
    };
    const put = await json(s.admin, 'PUT', '/experiments/rest-canary', {
      kind: 'Experiment',
      name: 'rest-canary',
      spec: {
        route: 'shop',
        versions: [{ name: 'v1' }, { name: 'v2' }],
        testingPattern: 'Canary',
        criteria: { objectives: [{ metric: 'backend-error-rate', upperLimit: 0.05 }], minSamples: 100 },
        duration: { intervalSeconds: 0.3, maxIterations: 200 },
        metrics: [
          { ...query, name: 'backend-error-rate', type: 'rate', jq: '.results | to_entries[0].value.errorRate', sampleSize: 'backend-requests' },
          { ...query, name: 'backend-requests', type: 'count', jq: '.results | to_entries[0].value.requests' },
        ],
      },
    });
    assert.equal(put.status, 201, JSON.stringify(put.body));

    // Each failure mode in turn: the error is named in the status for the iterations after the switch.
    const expectError = async (m: typeof mode, code: string) => {
      mode = m;
      const from = (await status(s, 'rest-canary')).iteration + 1;
      const st = await waitFor(`${code} in the status`, async () => {
        const cur = await status(s, 'rest-canary');
        return cur.iteration > from && cur.versions.v2?.metricErrors?.['backend-error-rate']?.code === code ? cur : null;
      }, 15_000);
      assert.equal(st.state, 'Running', st.reason);
      assert.equal(st.versions.v2!.metrics['backend-error-rate'], null, 'a failed read shows no value, not the last good one');
      assert.match(st.reason, new RegExp(`backend-error-rate for v2 \\(${code}\\)`));
      return st;
    };
    await expectError('500', 'SLUICE_METRIC_HTTP');
    await expectError('hang', 'SLUICE_METRIC_TIMEOUT');
    await expectError('text', 'SLUICE_METRIC_NOT_NUMERIC');
    mode = 'ok';
    const st = await waitEnd(s, 'rest-canary');
    assert.equal(st.state, 'Completed', st.reason);
    assert.equal(st.winner, 'v2');
    assert.equal(st.versions.v2!.metrics['backend-error-rate'], 0.02);
    assert.equal(st.versions.v1!.metrics['backend-error-rate'], 0.01);
    assert.deepEqual([...seenKeys], [SECRET], 'every request carried the secret header');

    // The secret is nowhere a user or an operator can read.
    const full = await json(s.admin, 'GET', '/experiments/rest-canary');
    assert.ok(!JSON.stringify(full.body).includes(SECRET), 'secret in the API');
    assert.ok(!reportText(full.body as Experiment).includes(SECRET), 'secret in the report');
    assert.ok(s.logs.length > 0);
    assert.ok(!s.logs.join('').includes(SECRET), 'secret in the logs');
  });

  test('a real Prometheus scraping Sluice feeds a prometheus objective: a candidate with 5% errors fails error-rate <= 1%', async (t) => {
    const s = await setup(t, [
      { name: 'v1', errorRate: 0, seed: 11 },
      { name: 'v2', errorRate: 0.05, seed: 12 },
    ]);
    const prom = await startPrometheus(t, [new URL(s.sluice.adminUrl).host]);
    if (!prom) return;
    const sel = 'route="shop",version="{{version}}"';
    const window = '[{{elapsedSeconds}}s]';
    const put = await json(s.admin, 'PUT', '/experiments/prom-canary', {
      kind: 'Experiment',
      name: 'prom-canary',
      spec: {
        route: 'shop',
        versions: [{ name: 'v1' }, { name: 'v2' }],
        testingPattern: 'Canary',
        criteria: { objectives: [{ metric: 'prom-error-rate', upperLimit: 0.01 }], minSamples: 200 },
        weights: { initial: { v1: 50, v2: 50 } },
        duration: { intervalSeconds: 1, maxIterations: 40 },
        metrics: [
          {
            name: 'prom-error-rate',
            source: 'prometheus',
            type: 'rate',
            url: prom.url,
            // A version that never failed has no 5xx series: `or vector(0)` makes that a 0, not "no data".
            query: `(sum(increase(sluice_requests_total{${sel},code=~"5.."}${window})) or vector(0)) / sum(increase(sluice_requests_total{${sel}}${window}))`,
            sampleSize: 'prom-requests',
          },
          { name: 'prom-requests', source: 'prometheus', type: 'count', url: prom.url, query: `sum(increase(sluice_requests_total{${sel}}${window}))` },
        ],
      },
    });
    assert.equal(put.status, 201, JSON.stringify(put.body));
    const traffic = steadyLoad(t, s.traffic, 8);
    let st: ExperimentStatus;
    try {
      st = await waitEnd(s, 'prom-canary', 45_000);
    } finally {
      await traffic.stop();
    }
    assert.equal(st.state, 'Failed', `${st.reason}\n${prom.output()}`);
    assert.equal(st.winner, 'v1', 'a failed canary keeps the baseline');
    assert.deepEqual(st.weights, { v1: 100, v2: 0 });
    assert.match(st.reason, /prom-error-rate/);
    // The verdict came from Prometheus' numbers, which agree with what the proxy counted.
    const last = st.history.at(-1)!.versions;
    const promRate = last.v2!.metrics['prom-error-rate']!;
    const proxyRate = last.v2!.metrics['error-rate']!;
    assert.ok(promRate > 0.02 && promRate < 0.1, `Prometheus error rate of v2: ${promRate}`);
    assert.ok(Math.abs(promRate - proxyRate) < 0.03, `Prometheus ${promRate} vs proxy ${proxyRate}`);
    t.diagnostic(`v2 error rate: Prometheus ${promRate.toFixed(4)}, proxy ${proxyRate.toFixed(4)}; Failed at iteration ${st.iteration} (${last.v2!.samples} samples)`);
    assert.equal(last.v1!.metrics['prom-error-rate'], 0);
    assert.ok(last.v2!.samples >= 200, `samples ${last.v2!.samples}`);
  });
});
