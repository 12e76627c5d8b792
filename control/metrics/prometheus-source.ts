/**
 * `source: prometheus` — an instant query against the Prometheus HTTP API
 * (`/api/v1/query`), the `rest` source with the request and the extraction
 * fixed. The query must come back as one number: a scalar, or a vector with
 * exactly one sample (aggregate with sum/sum by to get there).
 */
import type { Problems } from '../../common/validation.js';
import { join } from '../../common/validation.js';
import type { HttpQuerySpec, MetricSpecBase } from './base.js';
import { HTTP_KEYS, readHttp, readTemplate } from './fields.js';
import { answerExcerpt, buildQuery, type HttpAnswer, type HttpQuery, parseJson, renderTemplate, requestLabel, requireOk, send } from './http-query.js';
import type { Json } from './jsonpath.js';
import { describeValue, failedReading, metricError, okReading, toNumber } from './reading.js';
import { secretsOf } from './template.js';
import type { MetricQueryResult, MetricSourceImpl, QueryContext } from './types.js';

export interface PrometheusMetricSpec extends MetricSpecBase, HttpQuerySpec {
  readonly source: 'prometheus';
  /** PromQL template; the query must return one sample (an empty result is "no data"). */
  readonly query: string;
}

declare module './base.js' {
  interface MetricSpecs {
    prometheus: PrometheusMetricSpec;
  }
}

export const prometheusSource: MetricSourceImpl<PrometheusMetricSpec> = {
  keys: [...HTTP_KEYS, 'query'],
  read: (c, o, path, base) => ({ ...base, source: 'prometheus', ...readPrometheus(c.p, o, path, c.versions) }),
  async query(spec: PrometheusMetricSpec, ctx: QueryContext): Promise<MetricQueryResult> {
    let q: HttpQuery;
    let query: string;
    try {
      ({ q, query } = render(spec, ctx));
    } catch (err) {
      const secrets = [spec.url, spec.query, ...Object.values(spec.headers)].flatMap((t) => secretsOf(t, ctx.env));
      return { reading: failedReading(err, secrets), request: null, response: null };
    }
    let response: string | null = null;
    try {
      const answer = await send(q);
      response = answerExcerpt(answer.text, q.secrets);
      return { reading: okReading(valueOf(answer, q, query)), request: q.shown, response };
    } catch (err) {
      return { reading: failedReading(err, q.secrets), request: q.shown, response };
    }
  },
};

/** The API endpoint under the configured base URL (which may itself have a path prefix). */
export function queryEndpoint(base: string): string {
  return `${base.replace(/\/+$/, '')}/api/v1/query`;
}

function render(spec: PrometheusMetricSpec, ctx: QueryContext): { q: HttpQuery; query: string } {
  const base = renderTemplate(spec.url, ctx, spec.params);
  const query = renderTemplate(spec.query, ctx, spec.params);
  const form = (text: string) => new URLSearchParams({ query: text }).toString();
  const templates = [spec.url, spec.query];
  if (spec.method === 'POST') {
    const url = { text: queryEndpoint(base.text), masked: queryEndpoint(base.masked) };
    const body = { text: form(query.text), masked: form(query.masked) };
    const q = buildQuery(spec, ctx, { url, body, extraHeaders: { 'content-type': 'application/x-www-form-urlencoded' } }, templates);
    return { q, query: query.masked };
  }
  const url = { text: `${queryEndpoint(base.text)}?${form(query.text)}`, masked: `${queryEndpoint(base.masked)}?${form(query.masked)}` };
  return { q: buildQuery(spec, ctx, { url, body: null }, templates), query: query.masked };
}

interface PromAnswer {
  status?: unknown;
  error?: unknown;
  errorType?: unknown;
  data?: { resultType?: unknown; result?: unknown };
}

/** The one number of an instant query's answer; `query` is the masked query, for messages. */
function valueOf(answer: HttpAnswer, q: HttpQuery, query: string): number {
  // Prometheus explains a refused query (400 bad_data, 422 execution, 503 timeout) in a JSON body.
  const doc = isJsonObject(answer.text) ? (parseJson(answer, q) as PromAnswer) : null;
  if (doc !== null && doc.status === 'error') {
    const reason = `${typeof doc.errorType === 'string' ? `${doc.errorType}: ` : ''}${typeof doc.error === 'string' ? doc.error : 'unknown error'}`;
    throw metricError('SLUICE_METRIC_HTTP', `Prometheus refused the query ${JSON.stringify(query)} (${answer.status}): ${answerExcerpt(reason, q.secrets, 300)}`);
  }
  requireOk(answer, q);
  const data = (doc ?? (parseJson(answer, q) as PromAnswer)).data;
  if (doc?.status !== 'success' || data === undefined) {
    throw metricError('SLUICE_METRIC_NOT_JSON', `${requestLabel(q)} did not answer like the Prometheus query API (no status "success" with data)`);
  }
  const result = data.result as Json;
  switch (data.resultType) {
    case 'scalar':
      return sampleValue(result, query);
    case 'vector': {
      const samples = Array.isArray(result) ? result : [];
      if (samples.length === 0) throw metricError('SLUICE_METRIC_NO_DATA', `the query ${JSON.stringify(query)} returned an empty vector (no series match yet)`);
      if (samples.length > 1) {
        throw metricError('SLUICE_METRIC_EXTRACT', `the query ${JSON.stringify(query)} returned ${samples.length} series; it must return one: aggregate it, e.g. sum(…) or sum by () (…)`);
      }
      const sample = samples[0];
      const value = sample !== null && typeof sample === 'object' && !Array.isArray(sample) ? sample.value : undefined;
      return sampleValue(value ?? null, query);
    }
    default:
      throw metricError('SLUICE_METRIC_EXTRACT', `the query ${JSON.stringify(query)} returned a ${String(data.resultType)}; it must return an instant vector with one sample or a scalar`);
  }
}

/** `[<unix time>, "<value>"]`; Prometheus' NaN (0/0: no requests yet) means no data, not a number. */
function sampleValue(pair: Json, query: string): number {
  const v = Array.isArray(pair) && pair.length === 2 ? pair[1] : undefined;
  if (v === 'NaN') throw metricError('SLUICE_METRIC_NO_DATA', `the query ${JSON.stringify(query)} returned NaN (a division by zero: nothing counted yet)`);
  if (v === undefined) throw metricError('SLUICE_METRIC_EXTRACT', `the query ${JSON.stringify(query)} returned a malformed sample ${describeValue(pair)}`);
  return toNumber(v, `the query ${JSON.stringify(query)}`);
}

function isJsonObject(text: string): boolean {
  return /^\s*\{/.test(text);
}

// ---------------------------------------------------------------- reading the spec

function readPrometheus(
  p: Problems,
  o: Record<string, unknown>,
  path: string,
  versions: readonly string[],
): Omit<PrometheusMetricSpec, 'name' | 'type' | 'source' | 'sampleSize' | 'stdDev'> {
  const http = readHttp(p, o, path, versions);
  // The API path is appended to it: a query or fragment would swallow it.
  if (/[?#]/.test(http.url)) p.add(join(path, 'url'), 'Prometheus\' base URL must not have a query or fragment (/api/v1/query is appended to it)');
  const queryPath = join(path, 'query');
  let query = '';
  if (o.query == null) p.add(queryPath, 'required: the PromQL query, e.g. sum(rate(sluice_requests_total{version="{{version}}"}[{{interval}}]))');
  else query = readTemplate(p, o.query, queryPath, http.params, versions) ?? '';
  if (o.query != null && typeof o.query === 'string' && o.query.trim() === '') p.add(queryPath, 'must not be empty');
  return { ...http, query };
}
