/**
 * `source: rest` — any JSON-over-HTTP backend. url, headers, body (and the
 * jq/jsonPath expression) are templates over the query variables; the answer
 * must be 2xx JSON, and the expression must select exactly one number.
 */
import type { ErrorDetail } from '../../common/errors.js';
import type { Problems } from '../../common/validation.js';
import { join } from '../../common/validation.js';
import type { HttpQuerySpec, MetricSpecBase } from './base.js';
import type { ExperimentDoc } from '../spec-types.js';
import { extractNumber, jqCompileProblem, jsonPathProblem } from './extract.js';
import { HTTP_KEYS, readHttp, readTemplate } from './fields.js';
import { answerExcerpt, buildQuery, checkRenderings, type HttpQuery, parseJson, renderTemplate, requireOk, send } from './http-query.js';
import { failedReading, okReading } from './reading.js';
import { secretsOf } from './template.js';
import type { MetricQueryResult, MetricSourceImpl, QueryContext } from './types.js';

export interface RestMetricSpec extends MetricSpecBase, HttpQuerySpec {
  readonly source: 'rest';
  /** Exactly one of jq and jsonPath is set. */
  readonly jq: string | null;
  readonly jsonPath: string | null;
}

declare module './base.js' {
  interface MetricSpecs {
    rest: RestMetricSpec;
  }
}

export const restSource: MetricSourceImpl<RestMetricSpec> = {
  keys: [...HTTP_KEYS, 'body', 'jq', 'jsonPath'],
  read: (c, o, path, base) => ({ ...base, source: 'rest', ...readRest(c.p, o, path, c.versions) }),
  check: checkJq,
  async query(spec: RestMetricSpec, ctx: QueryContext): Promise<MetricQueryResult> {
    let q: HttpQuery;
    try {
      q = render(spec, ctx);
    } catch (err) {
      return { reading: failedReading(err, templateSecrets(spec, ctx)), request: null, response: null };
    }
    let response: string | null = null;
    try {
      const answer = await send(q);
      response = answerExcerpt(answer.text, q.secrets);
      requireOk(answer, q);
      const doc = parseJson(answer, q);
      const extractor = spec.jq !== null ? { jq: renderTemplate(spec.jq, ctx, spec.params).text } : { jsonPath: renderTemplate(spec.jsonPath ?? '$', ctx, spec.params).text };
      return { reading: okReading(await extractNumber(doc, extractor)), request: q.shown, response };
    } catch (err) {
      return { reading: failedReading(err, q.secrets), request: q.shown, response };
    }
  },
};

function render(spec: RestMetricSpec, ctx: QueryContext): HttpQuery {
  const url = renderTemplate(spec.url, ctx, spec.params);
  const body = spec.body === null ? null : renderTemplate(spec.body, ctx, spec.params);
  const templates = [spec.url, ...(spec.body === null ? [] : [spec.body])];
  // A JSON-looking body gets a JSON content type unless the spec says otherwise.
  const jsonBody = body !== null && /^\s*[[{]/.test(body.text) && !Object.keys(spec.headers).some((h) => h.toLowerCase() === 'content-type');
  return buildQuery(spec, ctx, { url, body, extraHeaders: jsonBody ? { 'content-type': 'application/json' } : {} }, templates);
}

/** Secrets known before rendering succeeded (to mask a template error that quotes one). */
function templateSecrets(spec: RestMetricSpec, ctx: QueryContext): string[] {
  return [spec.url, spec.body ?? '', ...Object.values(spec.headers)].flatMap((t) => secretsOf(t, ctx.env));
}

// ---------------------------------------------------------------- reading and checking the spec

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

/**
 * Compiles the jq expression as rendered for every version (apply-time
 * validation: jq loads asynchronously; a JSONPath is checked when the spec is
 * read). Problems are at `<path>.jq`.
 */
async function checkJq(m: RestMetricSpec, doc: ExperimentDoc, path: string): Promise<ErrorDetail[]> {
  if (m.jq === null) return [];
  const known = { route: doc.spec.route, experiment: doc.name, intervalSeconds: doc.spec.duration.intervalSeconds };
  const versions = doc.spec.versions.map((v) => v.name);
  const problems = new Set<string>();
  for (const expr of checkRenderings(m.jq, versions, m.params, known)) {
    // Only a compile error is the spec's fault; jq itself failing to load shows up in every reading instead.
    const problem = await jqCompileProblem(expr).catch(() => null);
    if (problem !== null) problems.add(problem);
  }
  return [...problems].map((problem) => ({ path: `${path}.jq`, message: `jq does not compile: ${problem}` }));
}
