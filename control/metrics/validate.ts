/**
 * Validation of `spec.metrics` (the per-source fields). Cross-references
 * (objectives and rewards naming a metric, sampleSize/stdDev names, a rate's
 * sampleSize) are checked in control/spec.ts, which sees the whole document.
 * jq expressions are compiled at apply time (index.ts, checkMetricQueries):
 * jq loads asynchronously and this reader is synchronous.
 *
 * Returns one spec per list item, in order, so that spec.ts's
 * `spec.metrics[i]` paths line up; an item too broken to read becomes a
 * placeholder that draws no further problems.
 */
import type { Problems } from '../../common/validation.js';
import { expected, expectedText, index, isObj, join, mapping, readEnum, readInt, readName } from '../../common/validation.js';
import {
  type HttpQuerySpec,
  METRIC_SOURCES,
  METRIC_TYPES,
  type MetricSpec,
  type MetricType,
  type MockMetricSpec,
  type MockVersionValue,
  type PrometheusMetricSpec,
  type RestMetricSpec,
} from '../spec-types.js';
import { jsonPathProblem } from './extract.js';
import { checkRenderings, TEMPLATE_ROOTS } from './http-query.js';
import { variablesOf } from './template.js';

/** Every default in one place (docs/metrics.md lists the same). */
export const METRIC_DEFAULTS = {
  method: 'GET',
  timeoutSeconds: 5,
  retries: 2,
  countPerSecond: 10,
} as const;

const MAX_NAME = 63;
const MAX_TIMEOUT_SECONDS = 300;
const MAX_RETRIES = 10;
const MAX_COUNT_PER_SECOND = 1_000_000;
const METHODS = ['GET', 'POST'] as const;
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_-]*$/;
/** Set by Sluice (or by undici from the body): a template for them would only break the request. */
const RESERVED_HEADERS = ['host', 'content-length', 'transfer-encoding', 'connection'];

const BASE_KEYS = ['name', 'type', 'source', 'sampleSize', 'stdDev'];
const HTTP_KEYS = [...BASE_KEYS, 'url', 'method', 'headers', 'params', 'timeoutSeconds', 'retries'];
const KEYS: Record<MetricSpec['source'], readonly string[]> = {
  mock: [...BASE_KEYS, 'values', 'countPerSecond'],
  rest: [...HTTP_KEYS, 'body', 'jq', 'jsonPath'],
  prometheus: [...HTTP_KEYS, 'query'],
};

/** Reads `spec.metrics`; every problem is added to `p` by path. */
export function readMetricSpecs(p: Problems, raw: unknown, path: string, versions: readonly string[]): MetricSpec[] {
  if (raw == null) return [];
  if (!Array.isArray(raw)) return expected(p, path, 'a list of metrics', raw, []);
  return raw.map((x, i) => readMetric(p, x, index(path, i), versions));
}

function placeholder(name: string, type: MetricType | null): MockMetricSpec {
  return { name, type: type ?? 'mean', source: 'mock', sampleSize: null, stdDev: null, values: {}, countPerSecond: METRIC_DEFAULTS.countPerSecond };
}

function readMetric(p: Problems, v: unknown, path: string, versions: readonly string[]): MetricSpec {
  if (!isObj(v)) return expected(p, path, 'a mapping (name, type, source, …)', v, placeholder('', null));
  const source =
    v.source == null
      ? p.reject(join(path, 'source'), `required: one of ${METRIC_SOURCES.join(', ')}`, null)
      : readEnum(p, v.source, join(path, 'source'), METRIC_SOURCES, null);
  // Without a known source the allowed fields are unknown: report the source alone.
  const o = source === null ? v : mapping(p, v, path, KEYS[source])!;
  const name = readName(p, o.name, join(path, 'name'), MAX_NAME);
  const type =
    o.type == null
      ? p.reject(join(path, 'type'), `required: one of ${METRIC_TYPES.join(', ')}`, null)
      : readEnum(p, o.type, join(path, 'type'), METRIC_TYPES, null);
  if (source === null) return placeholder(name, type);
  const base = {
    name,
    type: type ?? 'mean',
    sampleSize: optMetricName(p, o.sampleSize, join(path, 'sampleSize')),
    stdDev: optMetricName(p, o.stdDev, join(path, 'stdDev')),
  };
  switch (source) {
    case 'mock':
      return { ...base, source, ...readMock(p, o, path, type, versions) };
    case 'rest':
      return { ...base, source, ...readRest(p, o, path, versions) };
    case 'prometheus':
      return { ...base, source, ...readPrometheus(p, o, path, versions) };
  }
}

function optMetricName(p: Problems, v: unknown, path: string): string | null {
  if (v == null) return null;
  const name = readName(p, v, path, MAX_NAME);
  return name === '' ? null : name;
}

// ---------------------------------------------------------------- mock

function readMock(
  p: Problems,
  o: Record<string, unknown>,
  path: string,
  type: MetricType | null,
  versions: readonly string[],
): Pick<MockMetricSpec, 'values' | 'countPerSecond'> {
  const countPerSecond = readPositive(p, o.countPerSecond, join(path, 'countPerSecond'), METRIC_DEFAULTS.countPerSecond, MAX_COUNT_PER_SECOND);
  const valuesPath = join(path, 'values');
  if (o.values == null) {
    p.add(valuesPath, `required: a value per version, e.g. { ${versions.map((n) => `${n}: { mean: 0.05 }`).join(', ') || 'v1: { mean: 0.05 }'} }`);
    return { values: {}, countPerSecond };
  }
  const raw = byVersion(p, o.values, valuesPath, versions, 'a mapping of version name to { mean, stdDev? }');
  if (!raw) return { values: {}, countPerSecond };
  const values: Record<string, MockVersionValue> = {};
  for (const version of versions) {
    const at = join(valuesPath, version);
    if (raw[version] == null) p.add(at, 'required: every version of the experiment needs a value ({ mean: x })');
    else values[version] = readMockValue(p, raw[version], at, type);
  }
  return { values, countPerSecond };
}

/** `{ mean, stdDev? }`, or a bare number as shorthand for `{ mean }`. */
function readMockValue(p: Problems, v: unknown, path: string, type: MetricType | null): MockVersionValue {
  const o = typeof v === 'number' ? { mean: v } : mapping(p, v, path, ['mean', 'stdDev']);
  if (!o) return { mean: 0, stdDev: null };
  const meanPath = typeof v === 'number' ? path : join(path, 'mean');
  let mean = 0;
  if (o.mean == null) p.add(meanPath, 'required: the true value the readings converge to');
  else if (typeof o.mean !== 'number' || !Number.isFinite(o.mean)) expected(p, meanPath, 'a finite number', o.mean, null);
  else if (type === 'rate' && (o.mean < 0 || o.mean > 1)) p.add(meanPath, `a rate's mean is within 0..1 (0.05 = 5%), got ${o.mean}`);
  else if (type === 'count' && o.mean < 0) p.add(meanPath, `a count's mean is events per second, >= 0, got ${o.mean}`);
  else mean = o.mean;
  let stdDev: number | null = null;
  if (o.stdDev != null) {
    const at = join(path, 'stdDev');
    if (type !== null && type !== 'mean') p.add(at, `stdDev applies to type: mean only (a ${type}'s noise follows from its mean and count)`);
    else if (typeof o.stdDev !== 'number' || !Number.isFinite(o.stdDev) || o.stdDev <= 0) expected(p, at, 'a number > 0', o.stdDev, null);
    else stdDev = o.stdDev;
  }
  return { mean, stdDev };
}

// ---------------------------------------------------------------- rest and prometheus

function readRest(p: Problems, o: Record<string, unknown>, path: string, versions: readonly string[]): Omit<RestMetricSpec, 'name' | 'type' | 'source' | 'sampleSize' | 'stdDev'> {
  const http = readHttp(p, o, path, versions);
  const body = o.body == null ? null : readTemplate(p, o.body, join(path, 'body'), http.params, versions);
  if (body !== null && http.method !== 'POST') p.add(join(path, 'body'), 'a body needs method: POST');
  const jq = o.jq == null ? null : readTemplate(p, o.jq, join(path, 'jq'), http.params, versions);
  const jsonPath = o.jsonPath == null ? null : readTemplate(p, o.jsonPath, join(path, 'jsonPath'), http.params, versions);
  if (o.jq != null && o.jsonPath != null) p.add(path, 'give jq or jsonPath, not both');
  else if (o.jq == null && o.jsonPath == null) p.add(path, 'needs jq or jsonPath: the expression that picks the value out of the answer (e.g. jq: .data.value)');
  if (jsonPath !== null) {
    // route and experiment are not known here; any name will do for a syntax check.
    const known = { route: 'route', experiment: 'experiment', intervalSeconds: 10 };
    const problems = new Set(checkRenderings(jsonPath, versions, http.params, known).map(jsonPathProblem));
    for (const problem of problems) if (problem !== null) p.add(join(path, 'jsonPath'), problem);
  }
  return { ...http, body, jq, jsonPath };
}

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

function readHttp(p: Problems, o: Record<string, unknown>, path: string, versions: readonly string[]): HttpQuerySpec {
  // params first: the other templates are checked against them.
  const params = readParams(p, o.params, join(path, 'params'), versions);
  const urlPath = join(path, 'url');
  let url = '';
  if (o.url == null) p.add(urlPath, 'required: an http: or https: URL (a template)');
  else {
    url = readTemplate(p, o.url, urlPath, params, versions) ?? '';
    if (url !== '' && !/^https?:\/\//i.test(url)) p.add(urlPath, `expected an http:// or https:// URL, got ${JSON.stringify(url)}`);
  }
  const headers: Record<string, string> = {};
  const headersPath = join(path, 'headers');
  for (const [name, value] of Object.entries(headerMap(p, o.headers, headersPath))) {
    const at = join(headersPath, name);
    if (!TOKEN.test(name)) p.add(at, 'not a valid header name');
    else if (RESERVED_HEADERS.includes(name.toLowerCase())) p.add(at, `${name} is set by Sluice`);
    else {
      const t = readTemplate(p, value, at, params, versions);
      if (t !== null) headers[name] = t;
    }
  }
  return {
    url,
    method: readEnum(p, o.method, join(path, 'method'), METHODS, METRIC_DEFAULTS.method),
    headers,
    body: null,
    params,
    timeoutSeconds: readPositive(p, o.timeoutSeconds, join(path, 'timeoutSeconds'), METRIC_DEFAULTS.timeoutSeconds, MAX_TIMEOUT_SECONDS),
    retries: readInt(p, o.retries, join(path, 'retries'), METRIC_DEFAULTS.retries, 0, MAX_RETRIES),
  };
}

/** The headers mapping itself (any names; each checked by the caller). */
function headerMap(p: Problems, v: unknown, path: string): Record<string, unknown> {
  if (v == null) return {};
  if (!isObj(v)) return expected(p, path, 'a mapping of header name to value', v, {});
  return v;
}

/** A mapping keyed by the experiment's version names; null (after reporting) when it is not a mapping. */
function byVersion(p: Problems, v: unknown, path: string, versions: readonly string[], what: string): Record<string, unknown> | null {
  if (!isObj(v)) return expected(p, path, what, v, null);
  for (const key of Object.keys(v)) {
    if (!versions.includes(key)) p.add(join(path, key), `unknown version (the experiment's versions: ${versions.join(', ') || 'none valid'})`);
  }
  return v;
}

/** `params: { v1: { id: a }, v2: { id: b } }`: per-version values for {{params.NAME}}. */
function readParams(p: Problems, v: unknown, path: string, versions: readonly string[]): HttpQuerySpec['params'] {
  if (v == null) return {};
  const o = byVersion(p, v, path, versions, 'a mapping of version name to { NAME: value }');
  if (!o) return {};
  const out: Record<string, Record<string, string>> = {};
  for (const version of versions) {
    if (o[version] == null) continue;
    const at = join(path, version);
    const values = o[version];
    if (!isObj(values)) {
      expected(p, at, 'a mapping of param name to value', values, null);
      continue;
    }
    const mine: Record<string, string> = {};
    for (const [name, x] of Object.entries(values)) {
      const xAt = join(at, name);
      if (!PARAM_NAME.test(name)) p.add(xAt, 'a param name is letters, digits, "_" and "-", starting with a letter or "_"');
      else if (typeof x === 'string') mine[name] = x;
      else if (typeof x === 'number' && Number.isFinite(x)) mine[name] = String(x);
      else expectedText(p, xAt, 'a string', x, null);
    }
    out[version] = mine;
  }
  return out;
}

/**
 * A template field: a string whose variables are known. `{{params.X}}` needs
 * X under params for every version (else one version's query could not be
 * rendered); `{{env.NAME}}` is read at query time, so it is not checked here.
 */
function readTemplate(p: Problems, v: unknown, path: string, params: HttpQuerySpec['params'], versions: readonly string[]): string | null {
  if (typeof v !== 'string') return expectedText(p, path, 'a string (a template)', v, null);
  const scalars: readonly string[] = TEMPLATE_ROOTS.filter((r) => r !== 'params');
  const known = `${scalars.map((r) => `{{${r}}}`).join(', ')}, {{params.NAME}}, {{env.NAME}}`;
  for (const name of new Set(variablesOf(v))) {
    const parts = name.split('.');
    if (parts[0] === 'env') {
      if (parts.length !== 2) p.add(path, `{{${name}}}: an environment variable is {{env.NAME}}`);
    } else if (parts[0] === 'params') {
      if (parts.length !== 2) p.add(path, `{{${name}}}: a param is {{params.NAME}}`);
      else {
        const missing = versions.filter((ver) => params[ver]?.[parts[1]!] === undefined);
        if (missing.length > 0) p.add(path, `{{${name}}}: no ${parts[1]} under params for ${missing.join(', ')} (every version needs one)`);
      }
    } else if (!scalars.includes(name)) {
      p.add(path, `unknown template variable {{${name}}} (known: ${known})`);
    }
  }
  return v;
}

function readPositive(p: Problems, v: unknown, path: string, fallback: number, max: number): number {
  if (v == null) return fallback;
  if (typeof v === 'number' && Number.isFinite(v) && v > 0 && v <= max) return v;
  return expected(p, path, `a number > 0 and <= ${max}`, v, fallback);
}
