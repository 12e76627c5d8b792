/**
 * Custom metric sources (control/metrics): mock, rest and prometheus against
 * real servers on loopback — extraction per version, secrets that reach the
 * backend but nothing shown, every failure as a named error with no value,
 * validation by path, and `sluice metrics test` run as a user runs it.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { SluiceError } from '../common/errors.js';
import { JQ_TIMEOUT_MS } from '../control/metrics/extract.js';
import { checkMetricQueries, readAllMetrics, readMetric, testMetrics } from '../control/metrics/index.js';
import { compileJsonPath, type Json } from '../control/metrics/jsonpath.js';
import { mockReading } from '../control/metrics/mock-source.js';
import type { MetricQueryResult, QueryContext } from '../control/metrics/types.js';
import { validateExperiment } from '../control/spec.js';
import type { MetricSpec } from '../control/spec-types.js';
import type { MockMetricSpec } from '../control/metrics/mock-source.js';
import { startPrometheus } from './support/prometheus-server.js';
import { refusingUrl, startUpstream, type Upstream, waitFor } from './support/helpers.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SECRET = 's3cr3t-T0KEN-4f9a';
const BASE: Omit<QueryContext, 'version'> = {
  experiment: 'checkout-v2',
  route: 'shop',
  elapsedSeconds: 42,
  intervalSeconds: 10,
  iteration: 3,
  seed: 7,
  env: { METRICS_TOKEN: SECRET },
};
const ctx = (version: string, over: Partial<QueryContext> = {}): QueryContext => ({ ...BASE, version, ...over });

/** A full experiment document around `metrics` (Canary v1/v2, one objective on my-metric). */
function experiment(metrics: unknown[], objectiveMetric = 'my-metric'): Record<string, unknown> {
  return {
    kind: 'Experiment',
    name: 'checkout-v2',
    spec: {
      route: 'shop',
      versions: [{ name: 'v1' }, { name: 'v2' }],
      testingPattern: 'Canary',
      criteria: { objectives: [{ metric: objectiveMetric, upperLimit: 0.1 }] },
      duration: { intervalSeconds: 10, maxIterations: 5 },
      metrics,
    },
  };
}

/** The validated spec of one metric (defaults applied), named my-metric unless it says otherwise. */
function metric(fields: Record<string, unknown>): MetricSpec {
  const doc = validateExperiment(experiment([{ name: 'my-metric', ...fields }], String(fields.name ?? 'my-metric')));
  return doc.spec.metrics[0]!;
}

function problemsOf(raw: unknown): Array<{ path: string; message: string }> {
  try {
    validateExperiment(raw);
    return [];
  } catch (err) {
    if (err instanceof SluiceError && err.code === 'SLUICE_EXPERIMENT_INVALID') return [...err.details];
    throw err;
  }
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(typeof body === 'string' ? body : JSON.stringify(body));
}

/** Nothing shown of a result (request, answer excerpt, error) may contain the secret. */
function assertNoSecret(r: unknown): void {
  assert.ok(!JSON.stringify(r).includes(SECRET), `secret leaked: ${JSON.stringify(r)}`);
}

function assertError(r: MetricQueryResult, code: string, pattern?: RegExp): void {
  assert.equal(r.reading.value, null, `a failed read carries no value: ${JSON.stringify(r.reading)}`);
  assert.equal(r.reading.error?.code, code, JSON.stringify(r.reading));
  if (pattern) assert.match(r.reading.error.message, pattern);
  assertNoSecret(r);
}

// ---------------------------------------------------------------- a metrics backend

/** Per-version values a backend serves; tests change them to see fresh readings. */
interface Backend {
  upstream: Upstream;
  values: Record<string, number>;
  /** What every request gets instead, while set. */
  fault: ((res: http.ServerResponse, req: http.IncomingMessage) => void) | null;
}

/**
 * GET /versions/NAME?… → { "data": { "version": NAME, "value": values[NAME] } } (404 for an unknown version);
 * GET /all → { "data": [ { "version", "value" }, … ] }; POST /query with a JSON body { version } → like /versions/NAME.
 */
async function startBackend(values: Record<string, number>): Promise<Backend> {
  const backend: Backend = { upstream: null as unknown as Upstream, values, fault: null };
  const one = (res: http.ServerResponse, version: string) =>
    version in backend.values ? json(res, 200, { data: { version, value: backend.values[version] } }) : json(res, 404, { error: `no version ${version}` });
  backend.upstream = await startUpstream('backend', (req, res, body) => {
    if (backend.fault) return backend.fault(res, req);
    const url = new URL(req.url!, 'http://x');
    const m = /^\/versions\/([^/]+)$/.exec(url.pathname);
    if (m) return one(res, decodeURIComponent(m[1]!));
    if (url.pathname === '/all') return json(res, 200, { data: Object.entries(backend.values).map(([version, value]) => ({ version, value })) });
    if (url.pathname === '/query' && req.method === 'POST') return one(res, (JSON.parse(body.toString()) as { version: string }).version);
    json(res, 404, { error: 'not found' });
  });
  return backend;
}

function restSpec(backend: Backend, fields: Record<string, unknown> = {}): MetricSpec {
  return metric({
    type: 'mean',
    source: 'rest',
    url: `${backend.upstream.url}/versions/{{version}}?id={{params.id}}&window={{interval}}&t={{elapsedSeconds}}&exp={{experiment}}&route={{route}}&i={{iteration}}`,
    headers: { Authorization: 'Bearer {{env.METRICS_TOKEN}}' },
    params: { v1: { id: 'alpha' }, v2: { id: 'beta' } },
    jq: '.data.value',
    ...fields,
  });
}

// ---------------------------------------------------------------- rest

describe('rest source', () => {
  test('jq picks each version’s value; templates render per version; the secret header reaches the backend and nothing shown', async (t) => {
    const backend = await startBackend({ v1: 0.05, v2: 0.08 });
    t.after(() => backend.upstream.close());
    const spec = restSpec(backend);
    for (const [version, id] of [['v1', 'alpha'], ['v2', 'beta']] as const) {
      const r = await readMetric(spec, ctx(version, { elapsedSeconds: 41.2, intervalSeconds: 7.5 }));
      assert.deepEqual(r.reading, { value: backend.values[version], count: null, stdDev: null, error: null });
      const seen = backend.upstream.seen.at(-1)!;
      // elapsedSeconds and interval are whole seconds, rounded up; interval in Prometheus duration syntax.
      assert.equal(seen.url, `/versions/${version}?id=${id}&window=8s&t=42&exp=checkout-v2&route=shop&i=3`);
      assert.equal(seen.headers.authorization, `Bearer ${SECRET}`);
      assert.deepEqual(r.request, {
        method: 'GET',
        url: `${backend.upstream.url}/versions/${version}?id=${id}&window=8s&t=42&exp=checkout-v2&route=shop&i=3`,
        headers: { Authorization: 'Bearer ***' },
        body: null,
      });
      assert.equal(r.response, JSON.stringify({ data: { version, value: backend.values[version] } }));
      assertNoSecret(r);
    }
  });

  test('JSONPath with a filter per version, and a POST body template with a secret', async (t) => {
    const backend = await startBackend({ v1: 12.5, v2: 9.75 });
    t.after(() => backend.upstream.close());
    const byPath = metric({ type: 'mean', source: 'rest', url: `${backend.upstream.url}/all`, jsonPath: "$.data[?(@.version == '{{version}}')].value" });
    const byPost = metric({
      type: 'mean',
      source: 'rest',
      method: 'POST',
      url: `${backend.upstream.url}/query`,
      body: '{ "version": "{{version}}", "token": "{{env.METRICS_TOKEN}}" }',
      jq: '.data.value',
    });
    for (const version of ['v1', 'v2']) {
      assert.equal((await readMetric(byPath, ctx(version))).reading.value, backend.values[version]);
      const r = await readMetric(byPost, ctx(version));
      assert.equal(r.reading.value, backend.values[version]);
      const seen = backend.upstream.seen.at(-1)!;
      assert.deepEqual(JSON.parse(seen.body.toString()), { version, token: SECRET });
      assert.equal(seen.headers['content-type'], 'application/json');
      assert.equal(r.request?.body, `{ "version": "${version}", "token": "***" }`);
      assertNoSecret(r);
    }
  });

  test('a backend answering 500 is retried with backoff, then SLUICE_METRIC_HTTP — its body masked', async (t) => {
    const backend = await startBackend({ v1: 1 });
    t.after(() => backend.upstream.close());
    // The error page echoes the Authorization header: the message quoting it must not.
    backend.fault = (res, req) => json(res, 500, { error: `upstream broke for ${req.headers.authorization}` });
    const started = Date.now();
    const r = await readMetric(restSpec(backend, { retries: 2 }), ctx('v1'));
    assertError(r, 'SLUICE_METRIC_HTTP', /answered 500 after 3 attempts/);
    assert.match(r.reading.error!.message, /Bearer \*\*\*/);
    assert.equal(backend.upstream.seen.length, 3, 'one attempt and two retries');
    // Backoff 200 ms, then 400 ms.
    assert.ok(Date.now() - started >= 550, `retries were spaced (${Date.now() - started} ms)`);
  });

  test('a version without its params cannot be rendered; a 4xx is not retried', async (t) => {
    const backend = await startBackend({ v1: 1 });
    t.after(() => backend.upstream.close());
    const r = await readMetric(restSpec(backend), ctx('v9'));
    assertError(r, 'SLUICE_METRIC_TEMPLATE', /params/);
    const r404 = await readMetric(restSpec(backend, { params: {}, url: `${backend.upstream.url}/versions/nope` }), ctx('v1'));
    assertError(r404, 'SLUICE_METRIC_HTTP', /answered 404: .*no version nope/);
    assert.equal(backend.upstream.seen.length, 1);
  });

  test('a backend that does not answer: SLUICE_METRIC_TIMEOUT within the bound of timeoutSeconds × attempts + backoff', async (t) => {
    const backend = await startBackend({ v1: 1 });
    t.after(() => backend.upstream.close());
    backend.fault = () => {}; // never answers
    const started = Date.now();
    const r = await readMetric(restSpec(backend, { timeoutSeconds: 0.3, retries: 1 }), ctx('v1'));
    const took = Date.now() - started;
    assertError(r, 'SLUICE_METRIC_TIMEOUT', /did not answer within 0\.3 s after 2 attempts/);
    assert.equal(backend.upstream.seen.length, 2);
    assert.ok(took >= 600 && took < 600 + 200 + 1000, `took ${took} ms`);
  });

  test('answers that are not a number: named errors, never a value', async (t) => {
    const backend = await startBackend({ v1: 1 });
    t.after(() => backend.upstream.close());
    const spec = restSpec(backend);
    const cases: Array<[string, (res: http.ServerResponse) => void, string, RegExp]> = [
      ['a string', (res) => json(res, 200, { data: { value: 'abc' } }), 'SLUICE_METRIC_NOT_NUMERIC', /the string "abc", not a number/],
      ['a boolean', (res) => json(res, 200, { data: { value: true } }), 'SLUICE_METRIC_NOT_NUMERIC', /boolean true/],
      ['an object', (res) => json(res, 200, { data: { value: { x: 1 } } }), 'SLUICE_METRIC_NOT_NUMERIC', /an object/],
      ['null', (res) => json(res, 200, { data: { value: null } }), 'SLUICE_METRIC_NO_DATA', /null/],
      ['HTML', (res) => (res.writeHead(200, { 'content-type': 'text/html' }), res.end('<html>oops</html>')), 'SLUICE_METRIC_NOT_JSON', /<html>oops/],
      ['an empty body', (res) => (res.writeHead(200), res.end()), 'SLUICE_METRIC_NOT_JSON', /empty body/],
      ['over 1 MiB, declared', (res) => json(res, 200, { pad: 'x'.repeat(1100 * 1024) }), 'SLUICE_METRIC_HTTP', /more than 1 MiB/],
      ['over 1 MiB, streamed', (res) => (res.writeHead(200), res.write(`{"pad":"${'x'.repeat(800 * 1024)}`), res.end(`${'x'.repeat(800 * 1024)}"}`)), 'SLUICE_METRIC_HTTP', /more than 1 MiB/],
    ];
    for (const [what, fault, code, pattern] of cases) {
      backend.fault = fault;
      const r = await readMetric(spec, ctx('v1'));
      assertError(r, code, pattern);
      if (code !== 'SLUICE_METRIC_HTTP') assert.ok(r.response !== null, `${what}: the answer is kept for metrics test`);
    }
    // A number in a string is a number (Prometheus and many APIs send them so).
    backend.fault = (res) => json(res, 200, { data: { value: ' 2.5e-1 ' } });
    assert.equal((await readMetric(spec, ctx('v1'))).reading.value, 0.25);
  });

  test('jq: several outputs, no output, a runtime error, and an expression that never ends', async (t) => {
    const backend = await startBackend({ v1: 1, v2: 2 });
    t.after(() => backend.upstream.close());
    const url = `${backend.upstream.url}/all`;
    // jq-web sets process.exitCode on every jq error; the worker must keep that away (node:test sets it on a failed test, so compare).
    const exitCode = process.exitCode;
    assertError(await readMetric(metric({ type: 'mean', source: 'rest', url, jq: '.data[].value' }), ctx('v1')), 'SLUICE_METRIC_EXTRACT', /selected 2 values .*exactly one/);
    assertError(await readMetric(metric({ type: 'mean', source: 'rest', url, jq: '.data[] | select(.version == "v9") | .value' }), ctx('v1')), 'SLUICE_METRIC_NO_DATA', /selected nothing/);
    assertError(await readMetric(metric({ type: 'mean', source: 'rest', url, jq: '.data | error("broken: \\(length)")' }), ctx('v1')), 'SLUICE_METRIC_EXTRACT', /broken: 2/);
    const started = Date.now();
    assertError(await readMetric(metric({ type: 'mean', source: 'rest', url, jq: 'repeat(1)' }), ctx('v1')), 'SLUICE_METRIC_EXTRACT', /did not finish/);
    assert.ok(Date.now() - started < JQ_TIMEOUT_MS + 2000, 'the runaway expression was cut');
    // The next expression gets a fresh jq and works.
    assert.equal((await readMetric(metric({ type: 'mean', source: 'rest', url, jq: '.data[] | select(.version == "{{version}}") | .value' }), ctx('v2'))).reading.value, 2);
    assert.equal(process.exitCode, exitCode);
  });

  test('a failure in between yields an error, never the last good value; the recovered backend gives the fresh one', async (t) => {
    const backend = await startBackend({ v1: 0.1 });
    t.after(() => backend.upstream.close());
    const spec = restSpec(backend, { retries: 0 });
    assert.equal((await readMetric(spec, ctx('v1'))).reading.value, 0.1);
    backend.fault = (res) => json(res, 503, { error: 'down' });
    assertError(await readMetric(spec, ctx('v1')), 'SLUICE_METRIC_HTTP', /503/);
    backend.fault = null;
    backend.values.v1 = 0.2;
    assert.equal((await readMetric(spec, ctx('v1'))).reading.value, 0.2);
  });

  test('a refused connection: SLUICE_METRIC_UNREACHABLE after the retries; an unset env variable: SLUICE_METRIC_TEMPLATE', async () => {
    const url = await refusingUrl();
    const spec = metric({ type: 'mean', source: 'rest', url: `${url}/x?key={{env.METRICS_TOKEN}}`, jq: '.v', retries: 1 });
    const r = await readMetric(spec, ctx('v1'));
    assertError(r, 'SLUICE_METRIC_UNREACHABLE', /connection refused \(ECONNREFUSED\) after 2 attempts/);
    assert.equal(r.request?.url, `${url}/x?key=***`);
    assertError(await readMetric(spec, ctx('v1', { env: {} })), 'SLUICE_METRIC_TEMPLATE', /METRICS_TOKEN is not set/);
  });
});

// ---------------------------------------------------------------- prometheus (API shape, against a stand-in)

/** Answers /api/v1/query like Prometheus: `answer(query)` gives the `data` or an error. */
async function startPromApi(answer: (query: string) => { status: number; body: unknown }): Promise<Upstream> {
  return startUpstream('prometheus', (req, res, body) => {
    const url = new URL(req.url!, 'http://x');
    if (url.pathname !== '/api/v1/query') return json(res, 404, 'not found');
    const query = req.method === 'POST' ? new URLSearchParams(body.toString()).get('query') : url.searchParams.get('query');
    const a = answer(query ?? '');
    json(res, a.status, a.body);
  });
}

const vector = (...values: string[]) => ({ status: 200, body: { status: 'success', data: { resultType: 'vector', result: values.map((v, i) => ({ metric: { i: String(i) }, value: [1700000000, v] })) } } });

describe('prometheus source (API shapes)', () => {
  test('one sample per version, GET or POST; empty, several series, NaN, errors', async (t) => {
    const api = await startPromApi((q) => {
      if (q.includes('v1')) return vector('0.25');
      if (q.includes('v2')) return vector('0.5');
      if (q.includes('empty')) return vector();
      if (q.includes('many')) return vector('1', '2');
      if (q.includes('nan')) return { status: 200, body: { status: 'success', data: { resultType: 'scalar', result: [1700000000, 'NaN'] } } };
      if (q.includes('matrix')) return { status: 200, body: { status: 'success', data: { resultType: 'matrix', result: [] } } };
      return { status: 400, body: { status: 'error', errorType: 'bad_data', error: `parse error: unexpected ${q.length}` } };
    });
    t.after(() => api.close());
    const spec = (query: string, extra: Record<string, unknown> = {}) =>
      metric({ type: 'mean', source: 'prometheus', url: `${api.url}/`, query, headers: { Authorization: 'Bearer {{env.METRICS_TOKEN}}' }, ...extra });
    for (const method of ['GET', 'POST']) {
      const r = await readMetric(spec('sum(x{version="{{version}}"}[{{interval}}])', { method }), ctx('v2'));
      assert.equal(r.reading.value, 0.5, method);
      const seen = api.seen.at(-1)!;
      assert.equal(seen.method, method);
      assert.equal(seen.headers.authorization, `Bearer ${SECRET}`);
      const sent = method === 'GET' ? new URL(seen.url, 'http://x').searchParams.get('query') : new URLSearchParams(seen.body.toString()).get('query');
      assert.equal(sent, 'sum(x{version="v2"}[10s])');
      assertNoSecret(r);
    }
    assertError(await readMetric(spec('empty'), ctx('v1')), 'SLUICE_METRIC_NO_DATA', /empty vector/);
    assertError(await readMetric(spec('many'), ctx('v1')), 'SLUICE_METRIC_EXTRACT', /2 series.*sum/);
    assertError(await readMetric(spec('nan'), ctx('v1')), 'SLUICE_METRIC_NO_DATA', /NaN/);
    assertError(await readMetric(spec('matrix'), ctx('v1')), 'SLUICE_METRIC_EXTRACT', /matrix/);
    const bad = await readMetric(spec('sum(('), ctx('v1'));
    assertError(bad, 'SLUICE_METRIC_HTTP', /bad_data: parse error: unexpected 5/);
    assert.equal(api.seen.filter((s) => s.url.includes('sum%28%28')).length, 1, 'a 400 is not retried');
  });
});

// ---------------------------------------------------------------- every source: the same contract

describe('the source contract', () => {
  test('every source: a good read has a finite value and no error; a bad one an error code and no value; never a rejection', async (t) => {
    const backend = await startBackend({ v1: 3, v2: 4 });
    t.after(() => backend.upstream.close());
    const api = await startPromApi((q) => (q.includes('bad') ? { status: 200, body: { status: 'success', data: { resultType: 'vector', result: [] } } } : vector('7')));
    t.after(() => api.close());
    const cases: Array<[string, MetricSpec, MetricSpec]> = [
      ['mock', metric({ type: 'mean', source: 'mock', values: { v1: { mean: 1 }, v2: { mean: 2 } } }), { ...(metric({ type: 'mean', source: 'mock', values: { v1: 1, v2: 2 } }) as MockMetricSpec), values: {} }],
      ['rest', restSpec(backend), restSpec(backend, { jq: '.data.nothing' })],
      ['prometheus', metric({ type: 'mean', source: 'prometheus', url: api.url, query: 'good' }), metric({ type: 'mean', source: 'prometheus', url: api.url, query: 'bad' })],
    ];
    for (const [source, good, bad] of cases) {
      for (const version of ['v1', 'v2']) {
        const ok = await readMetric(good, ctx(version));
        assert.equal(ok.reading.error, null, `${source}: ${JSON.stringify(ok.reading)}`);
        assert.ok(Number.isFinite(ok.reading.value), source);
        assert.equal(ok.request === null, source === 'mock', `${source}: a request is shown exactly when one is sent`);
        const failed = await readMetric(bad, ctx(version));
        assert.equal(failed.reading.value, null, source);
        assert.match(failed.reading.error?.code ?? '', /^SLUICE_METRIC_/, source);
        assertNoSecret([ok, failed]);
      }
    }
  });

  test('readAllMetrics: every metric × version by version then metric, failures as readings', async (t) => {
    const backend = await startBackend({ v1: 3, v2: 4 });
    t.after(() => backend.upstream.close());
    const doc = validateExperiment(
      experiment([
        { name: 'my-metric', type: 'mean', source: 'rest', url: `${backend.upstream.url}/versions/{{version}}`, jq: '.data.value' },
        { name: 'broken', type: 'mean', source: 'rest', url: `${await refusingUrl()}/x`, jq: '.v', retries: 0 },
        { name: 'made-up', type: 'rate', source: 'mock', values: { v1: 0.1, v2: { mean: 0.2 } } },
      ]),
    );
    const all = await readAllMetrics(doc, BASE);
    assert.deepEqual(Object.keys(all), ['v1', 'v2']);
    assert.deepEqual(Object.keys(all.v1!).sort(), ['broken', 'made-up', 'my-metric']);
    assert.equal(all.v1!['my-metric']!.value, 3);
    assert.equal(all.v2!['my-metric']!.value, 4);
    assert.equal(all.v2!.broken!.error?.code, 'SLUICE_METRIC_UNREACHABLE');
    assert.equal(all.v2!['made-up']!.count, 420);
    const only = await testMetrics(doc, BASE, 'made-up');
    assert.deepEqual(only.map((r) => `${r.metric}/${r.version}`), ['made-up/v1', 'made-up/v2']);
  });
});

// ---------------------------------------------------------------- mock

describe('mock source', () => {
  const mock = (type: 'rate' | 'mean' | 'count', values: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
    metric({ type, source: 'mock', values, ...extra }) as MockMetricSpec;

  test('deterministic: the same (seed, elapsed time, metric, version) gives the same reading; any change another', () => {
    const spec = mock('rate', { v1: { mean: 0.05 }, v2: { mean: 0.08 } });
    const a = mockReading(spec, ctx('v1'));
    assert.deepEqual(mockReading(spec, ctx('v1')), a);
    // The iteration does not matter: a reading is a function of the time elapsed, like a counter's.
    assert.deepEqual(mockReading(spec, ctx('v1', { iteration: 4 })), a);
    assert.notEqual(mockReading(spec, ctx('v1', { seed: 8 })).value, a.value);
    assert.notEqual(mockReading(spec, ctx('v1', { elapsedSeconds: 43 })).value, a.value);
    assert.notEqual(mockReading({ ...spec, name: 'other' }, ctx('v1')).value, a.value);
    assert.equal(a.count, 420, 'n = countPerSecond (10) × 42 s');
    assert.equal(a.stdDev, null);
  });

  test('the noise shrinks as 1/sqrt(count), around the configured mean', () => {
    const sd = (xs: number[]) => {
      const m = xs.reduce((s, x) => s + x, 0) / xs.length;
      return { mean: m, sd: Math.sqrt(xs.reduce((s, x) => s + (x - m) ** 2, 0) / (xs.length - 1)) };
    };
    const spec = mock('mean', { v1: { mean: 100, stdDev: 20 }, v2: { mean: 1 } });
    const at = (t: number) => sd(Array.from({ length: 2000 }, (_, seed) => mockReading(spec, ctx('v1', { seed, elapsedSeconds: t })).value!));
    const early = at(10);
    const late = at(1000);
    // s / sqrt(n): 20 / sqrt(100) = 2 at 10 s, 20 / sqrt(10 000) = 0.2 at 1000 s (±10% for 2000 draws).
    assert.ok(Math.abs(early.sd - 2) < 0.2, `sd at 10 s: ${early.sd}`);
    assert.ok(Math.abs(late.sd - 0.2) < 0.02, `sd at 1000 s: ${late.sd}`);
    assert.ok(Math.abs(early.mean - 100) < 0.2 && Math.abs(late.mean - 100) < 0.02, 'centred on the mean');
    const r = mockReading(spec, ctx('v1', { elapsedSeconds: 10 }));
    assert.equal(r.count, 100);
    assert.equal(r.stdDev, 20);
    assert.equal(mockReading(spec, ctx('v2')).stdDev, 1, 'default stdDev: |mean|');
  });

  test('readings are cumulative: the error at one look carries over to the next (correlation sqrt(t/t2)), fading over time', () => {
    const spec = mock('mean', { v1: { mean: 0, stdDev: 1 }, v2: { mean: 0 } });
    // z-scores of the reading: value · sqrt(n) / s, n = 10 per second.
    const z = (seed: number, t: number) => (mockReading(spec, ctx('v1', { seed, elapsedSeconds: t })).value! * Math.sqrt(10 * t));
    const corr = (t1: number, t2: number) => {
      const xs = Array.from({ length: 1000 }, (_, seed) => [z(seed, t1), z(seed, t2)] as const);
      const m = (k: 0 | 1) => xs.reduce((s, x) => s + x[k], 0) / xs.length;
      const [m1, m2] = [m(0), m(1)];
      let sxy = 0;
      let sxx = 0;
      let syy = 0;
      for (const [x, y] of xs) {
        sxy += (x - m1) * (y - m2);
        sxx += (x - m1) ** 2;
        syy += (y - m2) ** 2;
      }
      return sxy / Math.sqrt(sxx * syy);
    };
    // Cumulative sums of per-second noise: corr(z_t1, z_t2) = sqrt(t1/t2). Fresh draws per look would give 0.
    // Tolerance: the sample correlation of 1000 pairs has a standard error of (1 − r²)/sqrt(1000) ≤ 0.032.
    const near = corr(100, 101);
    const far = corr(10, 1000);
    assert.ok(near > 0.98, `corr(100 s, 101 s) = ${near}`);
    assert.ok(Math.abs(far - 0.1) < 0.1, `corr(10 s, 1000 s) = ${far}, expected about sqrt(10/1000) = 0.1`);
  });

  test('rate readings stay within 0..1 and scatter like a binomial proportion; counts grow with time', () => {
    const spec = mock('rate', { v1: { mean: 0.02 }, v2: { mean: 0.5 } }, { countPerSecond: 1 });
    const early = Array.from({ length: 500 }, (_, seed) => mockReading(spec, ctx('v1', { seed, elapsedSeconds: 5 })).value!);
    assert.ok(early.every((x) => x >= 0 && x <= 1));
    assert.ok(early.some((x) => x === 0), 'clamped at 0');
    const half = Array.from({ length: 2000 }, (_, seed) => mockReading(spec, ctx('v2', { seed, elapsedSeconds: 100 })).value!);
    const m = half.reduce((s, x) => s + x, 0) / half.length;
    const s = Math.sqrt(half.reduce((acc, x) => acc + (x - m) ** 2, 0) / (half.length - 1));
    assert.ok(Math.abs(s - 0.05) < 0.005, `sqrt(0.25 / 100) = 0.05, got ${s}`);
    const counts = mock('count', { v1: { mean: 2.5 }, v2: { mean: 0 } });
    assert.deepEqual(mockReading(counts, ctx('v1', { elapsedSeconds: 10 })), { value: 25, count: null, stdDev: null, error: null });
    assert.equal(mockReading(counts, ctx('v2')).value, 0);
    assert.equal(mockReading(spec, ctx('v1', { elapsedSeconds: 0 })).count, 1, 'at least one observation');
  });
});

// ---------------------------------------------------------------- validation

describe('validation of spec.metrics', () => {
  test('defaults', () => {
    const spec = metric({ type: 'mean', source: 'rest', url: 'http://127.0.0.1:1/x', jq: '.v' });
    assert.deepEqual(spec, {
      name: 'my-metric', type: 'mean', source: 'rest', sampleSize: null, stdDev: null,
      url: 'http://127.0.0.1:1/x', method: 'GET', headers: {}, body: null, params: {}, timeoutSeconds: 5, retries: 2, jq: '.v', jsonPath: null,
    });
    const m = metric({ type: 'rate', source: 'mock', values: { v1: 0.1, v2: { mean: 0.2 } } });
    assert.deepEqual(m, { name: 'my-metric', type: 'rate', source: 'mock', sampleSize: null, stdDev: null, values: { v1: { mean: 0.1, stdDev: null }, v2: { mean: 0.2, stdDev: null } }, countPerSecond: 10 });
  });

  const rest = { name: 'my-metric', type: 'mean', source: 'rest', url: 'http://127.0.0.1:1/x', jq: '.v' };
  const prom = { name: 'my-metric', type: 'mean', source: 'prometheus', url: 'http://127.0.0.1:9090', query: 'sum(up)' };
  const mockM = { name: 'my-metric', type: 'rate', source: 'mock', values: { v1: { mean: 0.1 }, v2: { mean: 0.2 } } };
  const at = 'spec.metrics[0]';
  const cases: Array<[string, unknown, string[]]> = [
    ['not a list', 'nope', ['spec.metrics']],
    ['not a mapping', 5, [at]],
    ['no source', { name: 'my-metric', type: 'mean' }, [`${at}.source`]],
    ['unknown source', { ...rest, source: 'graphite' }, [`${at}.source`]],
    ['no type', { ...rest, type: undefined }, [`${at}.type`]],
    ['unknown type', { ...rest, type: 'ratio' }, [`${at}.type`]],
    ['bad name', { ...rest, name: 'my metric!' }, [`${at}.name`]],
    ['unknown field', { ...rest, colour: 'blue' }, [`${at}.colour`]],
    ['a prometheus field on rest', { ...rest, query: 'up' }, [`${at}.query`]],
    ['a body on prometheus', { ...prom, body: 'x' }, [`${at}.body`]],
    ['rest without jq or jsonPath', { ...rest, jq: undefined }, [at]],
    ['rest with both', { ...rest, jsonPath: '$.v' }, [at]],
    ['a bad JSONPath', { ...rest, jq: undefined, jsonPath: '$.a[?(@.b ==' }, [`${at}.jsonPath`]],
    ['no url', { ...rest, url: undefined }, [`${at}.url`]],
    ['not http', { ...rest, url: 'ftp://h/x' }, [`${at}.url`]],
    ['unknown variable', { ...rest, url: 'http://h/{{versoin}}' }, [`${at}.url`]],
    ['a dotted scalar variable', { ...rest, url: 'http://h/{{version.name}}' }, [`${at}.url`]],
    ['a param not given for every version', { ...rest, url: 'http://h/{{params.id}}', params: { v1: { id: 'a' } } }, [`${at}.url`]],
    ['params of an unknown version', { ...rest, params: { v3: { id: 'a' } } }, [`${at}.params.v3`]],
    ['a param that is not text', { ...rest, params: { v1: { id: [1] } } }, [`${at}.params.v1.id`]],
    ['a bad header name', { ...rest, headers: { 'x y': 'v' } }, [`${at}.headers.x y`]],
    ['a header template with an unknown variable', { ...rest, headers: { 'x-a': '{{nope}}' } }, [`${at}.headers.x-a`]],
    ['a reserved header', { ...rest, headers: { Host: 'h' } }, [`${at}.headers.Host`]],
    ['a body with GET', { ...rest, body: '{}' }, [`${at}.body`]],
    ['bad method', { ...rest, method: 'PUT' }, [`${at}.method`]],
    ['bad timeout', { ...rest, timeoutSeconds: 0 }, [`${at}.timeoutSeconds`]],
    ['bad retries', { ...rest, retries: 1.5 }, [`${at}.retries`]],
    ['a jq template with an unknown variable', { ...rest, jq: '.["{{nope}}"]' }, [`${at}.jq`]],
    ['prometheus without query', { ...prom, query: undefined }, [`${at}.query`]],
    ['a prometheus base URL with a query', { ...prom, url: 'http://127.0.0.1:9090/?x=1' }, [`${at}.url`]],
    ['prometheus with an empty query', { ...prom, query: ' ' }, [`${at}.query`]],
    ['mock without values', { ...mockM, values: undefined }, [`${at}.values`]],
    ['mock missing a version', { ...mockM, values: { v1: { mean: 0.1 } } }, [`${at}.values.v2`]],
    ['mock with an unknown version', { ...mockM, values: { ...mockM.values, v3: { mean: 0.1 } } }, [`${at}.values.v3`]],
    ['mock rate outside 0..1', { ...mockM, values: { v1: { mean: 1.5 }, v2: { mean: 0.2 } } }, [`${at}.values.v1.mean`]],
    ['mock without mean', { ...mockM, values: { v1: {}, v2: { mean: 0.2 } } }, [`${at}.values.v1.mean`]],
    ['mock stdDev on a rate', { ...mockM, values: { v1: { mean: 0.1, stdDev: 1 }, v2: { mean: 0.2 } } }, [`${at}.values.v1.stdDev`]],
    ['mock stdDev <= 0', { ...mockM, type: 'mean', values: { v1: { mean: 1, stdDev: 0 }, v2: { mean: 2 } } }, [`${at}.values.v1.stdDev`]],
    ['mock negative count', { ...mockM, type: 'count', values: { v1: { mean: -1 }, v2: { mean: 2 } } }, [`${at}.values.v1.mean`]],
    ['mock bad countPerSecond', { ...mockM, countPerSecond: -1 }, [`${at}.countPerSecond`]],
    ['a rate without sampleSize (spec.ts)', { ...prom, type: 'rate' }, [`${at}.sampleSize`]],
    ['a sampleSize naming nothing (spec.ts)', { ...prom, type: 'rate', sampleSize: 'nothing' }, [`${at}.sampleSize`]],
  ];
  for (const [what, item, paths] of cases) {
    test(`problem by path: ${what}`, () => {
      const raw = experiment(Array.isArray(item) || typeof item !== 'object' || item === null ? [] : [item]);
      if (what === 'not a list') (raw.spec as Record<string, unknown>).metrics = item;
      else if (typeof item !== 'object') (raw.spec as Record<string, unknown>).metrics = [item];
      const found = problemsOf(raw);
      const underMetrics = [...new Set(found.map((d) => d.path).filter((p) => p.startsWith('spec.metrics')))].sort();
      assert.deepEqual(underMetrics, [...paths].sort(), JSON.stringify(found, null, 1));
    });
  }

  test('a JSONPath is checked with the variables rendered per version', () => {
    const m = metric({ type: 'mean', source: 'rest', url: 'http://h/x', jsonPath: '$.data.{{version}}[{{iteration}}][{{params.i}}]', params: { v1: { i: 0 }, v2: { i: 1 } } });
    assert.equal(m.source === 'rest' && m.jsonPath, '$.data.{{version}}[{{iteration}}][{{params.i}}]');
    const found = problemsOf(experiment([{ name: 'my-metric', type: 'mean', source: 'rest', url: 'http://h/x', jsonPath: '$.a[{{params.i}}]', params: { v1: { i: 0 }, v2: { i: 'b c' } } }]));
    assert.deepEqual(found.map((d) => d.path), ['spec.metrics[0].jsonPath'], 'v2 renders to an invalid path');
  });

  test('a valid prometheus rate with sampleSize, headers, params and POST passes', () => {
    const m = metric({
      name: 'my-metric',
      type: 'rate',
      source: 'prometheus',
      url: 'https://prom.example.com/prefix',
      method: 'POST',
      query: 'sum(rate(x{version="{{version}}",id="{{params.id}}"}[{{interval}}]))',
      headers: { Authorization: 'Bearer {{env.PROM_TOKEN}}' },
      params: { v1: { id: 1 }, v2: { id: 'b' } },
      sampleSize: 'request-count',
      timeoutSeconds: 2.5,
      retries: 0,
    });
    assert.equal(m.source === 'prometheus' && m.params.v1?.id, '1');
  });

  test('checkMetricQueries: a jq expression that does not compile is named by path at apply time', async () => {
    const doc = validateExperiment(
      experiment([
        { name: 'my-metric', type: 'mean', source: 'rest', url: 'http://h/x', jq: '.data["{{version}}"] | .value' },
        { name: 'other', type: 'mean', source: 'rest', url: 'http://h/x', jq: '.a |||' },
        // Variables render to the versions' own values for the check: a number where a number is needed, a name where a name.
        { name: 'third', type: 'mean', source: 'rest', url: 'http://h/x', jq: '.data.{{version}}[{{iteration}}] | .[{{params.i}}]', params: { v1: { i: 0 }, v2: { i: 1 } } },
      ]),
    );
    assert.deepEqual(await checkMetricQueries(doc), [{ path: 'spec.metrics[1].jq', message: "jq does not compile: syntax error, unexpected '|'" }]);
  });
});

describe('JSONPath subset', () => {
  const doc: Json = { a: { b: [1, 2, 3], 'c-d': 4 }, list: [{ k: 'x', v: 1 }, { k: 'y', v: 2, w: true }], n: null };
  const cases: Array<[string, Json[]]> = [
    ['$.a.b[0]', [1]],
    ['$.a.b[-1]', [3]],
    ['$.a.b[0,2]', [1, 3]],
    ['$.a.b[1:]', [2, 3]],
    ['$.a.b[::-1]', [3, 2, 1]],
    ["$['a']['c-d']", [4]],
    ['$.a.c-d', [4]],
    ['$.list[*].v', [1, 2]],
    ["$.list[?(@.k == 'y')].v", [2]],
    ['$.list[?(@.v >= 1 && @.k != "x")].k', ['y']],
    ['$.list[?(@.w)].k', ['y']],
    ['$..v', [1, 2]],
    ['$.n', [null]],
    ['$.missing', []],
  ];
  for (const [path, want] of cases) {
    test(path, () => assert.deepEqual(compileJsonPath(path)(doc), want));
  }
  test('syntax errors name the position', () => {
    assert.throws(() => compileJsonPath('a.b'), /starts with \$/);
    assert.throws(() => compileJsonPath('$.a[?(@.b =='), /position \d+/);
  });
});

// ---------------------------------------------------------------- real Prometheus

describe('prometheus source against a real Prometheus', () => {
  test('reads what Prometheus scraped, per version; fresh after the counters move; its errors named', async (t) => {
    // A target serving counters per version, as a Sluice proxy would.
    const counts: Record<string, { ok: number; err: number }> = { v1: { ok: 93, err: 7 }, v2: { ok: 390, err: 10 } };
    const target = await startUpstream('target', (_req, res) => {
      const lines = ['# TYPE sluice_requests_total counter'];
      for (const [version, c] of Object.entries(counts)) {
        lines.push(`sluice_requests_total{route="shop",version="${version}",code="200"} ${c.ok}`);
        lines.push(`sluice_requests_total{route="shop",version="${version}",code="500"} ${c.err}`);
      }
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      res.end(lines.join('\n') + '\n');
    }, { record: false });
    t.after(() => target.close());
    const prom = await startPrometheus(t, [`127.0.0.1:${target.port}`]);
    if (!prom) return;
    const errorRate = metric({
      type: 'rate',
      sampleSize: 'request-count',
      source: 'prometheus',
      url: prom.url,
      query: 'sum(sluice_requests_total{route="{{route}}",version="{{version}}",code=~"5.."}) / sum(sluice_requests_total{route="{{route}}",version="{{version}}"})',
    });
    assert.equal((await readMetric(errorRate, ctx('v1'))).reading.value, 7 / 100);
    assert.equal((await readMetric(errorRate, ctx('v2'))).reading.value, 10 / 400);
    counts.v1 = { ok: 180, err: 20 };
    await waitFor('the next scrape to be read', async () => (await readMetric(errorRate, ctx('v1'))).reading.value === 20 / 200, 5000, 200);
    const q = (query: string) => metric({ type: 'mean', source: 'prometheus', url: prom.url, query, retries: 0 });
    assert.equal((await readMetric(q('scalar(sum(sluice_requests_total{version="{{version}}"}))'), ctx('v2'))).reading.value, 400);
    assertError(await readMetric(q('sum(sluice_requests_total{version="v9"})'), ctx('v1')), 'SLUICE_METRIC_NO_DATA', /empty vector/);
    assertError(await readMetric(q('sluice_requests_total{version="{{version}}"}'), ctx('v1')), 'SLUICE_METRIC_EXTRACT', /2 series/);
    assertError(await readMetric(q('sum(rate(sluice_requests_total[{{interval}}])'), ctx('v1')), 'SLUICE_METRIC_HTTP', /bad_data: .*parse error/);
    assertError(await readMetric(q('scalar(vector(0) / 0)'), ctx('v1')), 'SLUICE_METRIC_NO_DATA', /NaN/);

    // `sluice metrics test` against it: the rendered PromQL and the value Prometheus holds.
    const dir = mkdtempSync(join(tmpdir(), 'sluice-metrics-prom-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'exp.yaml');
    writeFileSync(file, JSON.stringify(experiment([{ name: 'my-metric', type: 'rate', sampleSize: 'request-count', source: 'prometheus', url: prom.url, query: errorRate.source === 'prometheus' ? errorRate.query : '' }])));
    const r = await cli(['metrics', 'test', '-f', file], {});
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /my-metric \(prometheus, rate\) — version v1\n(.*\n)*?\s+query: +sum\(sluice_requests_total\{route="shop",version="v1",code=~"5\.\."\}\) \/ sum\(sluice_requests_total\{route="shop",version="v1"\}\)\n(.*\n)*?\s+value: +0\.1\n/);
    assert.match(r.stdout, /version v2\n(.*\n)*?\s+value: +0\.025\n/);
  });
});

// ---------------------------------------------------------------- sluice metrics test

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: readonly string[], env: Record<string, string>): Promise<CliResult> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SLUICE_') && k !== 'NODE_TEST_CONTEXT'));
  return new Promise((resolve) => {
    execFile(process.execPath, ['bin/sluice.js', ...args], { cwd: ROOT, env: { ...base, ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stdout, stderr });
    });
  });
}

describe('sluice metrics test', () => {
  test('prints the rendered requests (secrets masked), the answers and the values of a REST and a Prometheus metric; exit 0, 1, 2', async (t) => {
    const backend = await startBackend({ v1: 0.05, v2: 0.08 });
    t.after(() => backend.upstream.close());
    const api = await startPromApi((q) => (q.includes('"v1"') ? vector('0.0125') : q.includes('"v2"') ? vector('0.03') : vector()));
    t.after(() => api.close());
    const dir = mkdtempSync(join(tmpdir(), 'sluice-metrics-test-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const doc = (extra = '') => `kind: Experiment
name: checkout-v2
spec:
  route: shop
  versions: [{ name: v1 }, { name: v2 }]
  testingPattern: Canary
  criteria:
    objectives:
      - { metric: error-rate-5xx, upperLimit: 0.05 }
      - { metric: revenue, lowerLimit: 0.01 }
  duration: { intervalSeconds: 30, maxIterations: 10 }
  metrics:
    - name: error-rate-5xx
      type: rate
      sampleSize: request-count
      source: prometheus
      url: ${api.url}
      query: 'sum(rate(sluice_requests_total{version="{{version}}",code=~"5.."}[{{interval}}]))'
      headers: { Authorization: "Bearer {{env.METRICS_TOKEN}}" }
    - name: revenue
      type: mean
      source: rest
      url: ${backend.upstream.url}/versions/{{version}}?key={{env.METRICS_TOKEN}}
      jq: .data.value
${extra}`;
    const good = join(dir, 'good.yaml');
    writeFileSync(good, doc());
    const failing = join(dir, 'failing.yaml');
    writeFileSync(failing, doc(`    - name: broken
      type: mean
      source: rest
      url: ${backend.upstream.url}/versions/nope
      jq: .data.value
`));
    const invalid = join(dir, 'invalid.yaml');
    writeFileSync(invalid, doc(`    - name: broken
      type: mean
      source: rest
      url: ${backend.upstream.url}/x
      jq: '.a |||'
`));
    const env = { METRICS_TOKEN: SECRET };
    const [ok, some, bad, one] = await Promise.all([
      cli(['metrics', 'test', '-f', good], env),
      cli(['metrics', 'test', '-f', failing], env),
      cli(['metrics', 'test', '-f', invalid], env),
      cli(['metrics', 'test', '-f', good, '--metric', 'revenue', '--json'], env),
    ]);
    const show = (r: CliResult) => `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
    assert.equal(ok.code, 0, show(ok));
    for (const r of [ok, some, bad, one]) assert.ok(!(r.stdout + r.stderr).includes(SECRET), `secret in the output: ${show(r)}`);
    // Prometheus: the query as rendered, the masked header, the value.
    assert.match(ok.stdout, /error-rate-5xx \(prometheus, rate\) — version v1\n\s+request: +GET http:\/\/127\.0\.0\.1:\d+\/api\/v1\/query\?query=sum/);
    assert.match(ok.stdout, /query: +sum\(rate\(sluice_requests_total\{version="v2",code=~"5\.\."\}\[30s\]\)\)\n\s+header: +Authorization: Bearer \*\*\*\n\s+response: +\{"status":"success".*\n\s+value: +0\.03\n/);
    // REST: the masked URL, the answer, the value.
    assert.match(ok.stdout, /revenue \(rest, mean\) — version v1\n\s+request: +GET http:\/\/127\.0\.0\.1:\d+\/versions\/v1\?key=\*\*\*\n\s+response: +\{"data":\{"version":"v1","value":0\.05\}\}\n\s+value: +0\.05\n/);
    assert.match(ok.stdout, /4 of 4 reads gave a value/);
    // The requests were really sent with the secret.
    assert.ok(backend.upstream.seen.some((s) => s.url === `/versions/v2?key=${SECRET}`));
    assert.ok(api.seen.some((s) => s.headers.authorization === `Bearer ${SECRET}`));

    assert.equal(some.code, 1, show(some));
    assert.match(some.stdout, /broken \(rest, mean\) — version v2\n(.*\n)*\s+error: +SLUICE_METRIC_HTTP: GET .*\/versions\/nope answered 404/);
    assert.match(some.stdout, /4 of 6 reads gave a value; 2 failed/);

    assert.equal(bad.code, 2, show(bad));
    assert.match(bad.stderr, /spec\.metrics\[2\]\.jq: jq does not compile/);
    // `sluice validate` compiles jq as apply does: the same problem, found offline.
    const validated = await cli(['validate', '-f', invalid], env);
    assert.equal(validated.code, 1, show(validated));
    assert.match(validated.stderr, /spec\.metrics\[2\]\.jq: jq does not compile/);

    assert.equal(one.code, 0, show(one));
    const parsed = JSON.parse(one.stdout) as Array<{ metric: string; version: string; reading: { value: number } }>;
    assert.deepEqual(parsed.map((r) => [r.metric, r.version, r.reading.value]), [['revenue', 'v1', 0.05], ['revenue', 'v2', 0.08]]);
  });
});
