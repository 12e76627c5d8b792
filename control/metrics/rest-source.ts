/**
 * `source: rest` — any JSON-over-HTTP backend. url, headers, body (and the
 * jq/jsonPath expression) are templates over the query variables; the answer
 * must be 2xx JSON, and the expression must select exactly one number.
 */
import type { RestMetricSpec } from '../spec-types.js';
import { extractNumber } from './extract.js';
import { answerExcerpt, buildQuery, type HttpQuery, parseJson, renderTemplate, requireOk, send } from './http-query.js';
import { failedReading, okReading } from './reading.js';
import { secretsOf } from './template.js';
import type { MetricQueryResult, MetricSourceImpl, QueryContext } from './types.js';

export const restSource: MetricSourceImpl<RestMetricSpec> = {
  async read(spec: RestMetricSpec, ctx: QueryContext): Promise<MetricQueryResult> {
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
