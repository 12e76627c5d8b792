/**
 * What the `rest` and `prometheus` sources share: rendering a request from
 * templates (with its masked twin), and sending it with a deadline, retries
 * and a cap on the answer's size, every failure mapped to a SLUICE_METRIC_*
 * code. Error messages name the request by its masked URL only.
 */
import { Agent, request } from 'undici';
import { SluiceError } from '../../common/errors.js';
import type { HttpQuerySpec } from '../spec-types.js';
import type { Json } from './jsonpath.js';
import { excerpt, isMetricCode, metricError } from './reading.js';
import { maskSecrets, render, secretsOf, type TemplateVars, variablesOf } from './template.js';
import type { QueryContext, RenderedRequest } from './types.js';

/** Answers larger than this are refused (SLUICE_METRIC_HTTP): a metric is one number, not a data dump. */
export const MAX_RESPONSE_BYTES = 1024 * 1024;
/** Backoff before retry k (0-based): 200 ms · 2^k, at most 2 s. */
export const BACKOFF_BASE_MS = 200;
export const BACKOFF_MAX_MS = 2000;
/** How much of an answer `sluice metrics test` and error messages show. */
export const RESPONSE_EXCERPT_CHARS = 500;

/** The template roots every metric template may use (besides env.NAME). */
export const TEMPLATE_ROOTS = ['version', 'route', 'experiment', 'elapsedSeconds', 'interval', 'iteration', 'params'] as const;

/** A request ready to send, with its masked twin for everything that is shown. */
export interface HttpQuery {
  readonly method: 'GET' | 'POST';
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string | null;
  readonly shown: RenderedRequest;
  /** Values of the {{env.NAME}} variables used: masked wherever text from outside (answers, errors) is shown. */
  readonly secrets: readonly string[];
  readonly timeoutMs: number;
  readonly retries: number;
}

export interface HttpAnswer {
  readonly status: number;
  readonly text: string;
  readonly attempts: number;
}

// ---------------------------------------------------------------- rendering

/** `{{interval}}`: the interval as a Prometheus duration in whole seconds (rounded up), e.g. "10s". */
export function intervalText(seconds: number): string {
  return `${Math.max(1, Math.ceil(seconds))}s`;
}

/** The variables of a query for one version. */
export function templateVars(ctx: QueryContext, params: HttpQuerySpec['params']): TemplateVars {
  return {
    version: ctx.version,
    route: ctx.route,
    experiment: ctx.experiment,
    elapsedSeconds: Math.max(0, Math.ceil(ctx.elapsedSeconds)),
    interval: intervalText(ctx.intervalSeconds),
    iteration: ctx.iteration,
    params: { ...(params[ctx.version] ?? {}) },
  };
}

/**
 * Renders a request. `url` and `body` are given already rendered (the
 * sources build them differently); headers are rendered here. Throws
 * SLUICE_METRIC_TEMPLATE when a template cannot be rendered or the URL is not
 * an http(s) URL.
 */
export function buildQuery(
  spec: HttpQuerySpec,
  ctx: QueryContext,
  parts: { url: { text: string; masked: string }; body: { text: string; masked: string } | null; extraHeaders?: Record<string, string> },
  templates: readonly string[],
): HttpQuery {
  const vars = templateVars(ctx, spec.params);
  const headers: Record<string, string> = { ...parts.extraHeaders };
  const shownHeaders: Record<string, string> = { ...parts.extraHeaders };
  for (const [name, template] of Object.entries(spec.headers)) {
    const r = render(template, vars, ctx.env);
    headers[name] = r.text;
    shownHeaders[name] = r.masked;
  }
  const secrets = [...new Set([...templates, ...Object.values(spec.headers)].flatMap((t) => secretsOf(t, ctx.env)))];
  let parsed: URL;
  try {
    parsed = new URL(parts.url.text);
  } catch {
    throw metricError('SLUICE_METRIC_TEMPLATE', `the rendered url ${JSON.stringify(parts.url.masked)} is not a valid URL`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw metricError('SLUICE_METRIC_TEMPLATE', `the rendered url ${JSON.stringify(parts.url.masked)} is not an http: or https: URL`);
  }
  return {
    method: spec.method,
    url: parts.url.text,
    headers,
    body: parts.body?.text ?? null,
    shown: { method: spec.method, url: parts.url.masked, headers: shownHeaders, body: parts.body?.masked ?? null },
    secrets,
    timeoutMs: Math.round(spec.timeoutSeconds * 1000),
    retries: spec.retries,
  };
}

/**
 * A template (jq, JSONPath) rendered once per version for a syntax check
 * before anything runs: the versions' own names and params, with stand-ins
 * for what only a run knows (elapsedSeconds 0, iteration 1, env values "x").
 * A stand-in such as "x" for every variable would not do: `.[{{iteration}}]`
 * needs a number, `.data.{{version}}` a name. Unrenderable ones (unknown
 * variables, reported already) are left out.
 */
export function checkRenderings(
  template: string,
  versions: readonly string[],
  params: HttpQuerySpec['params'],
  known: { route: string; experiment: string; intervalSeconds: number },
): string[] {
  const env = Object.fromEntries(variablesOf(template).filter((n) => n.startsWith('env.')).map((n) => [n.slice(4), 'x']));
  const out = new Set<string>();
  for (const version of versions) {
    const ctx: QueryContext = { ...known, version, elapsedSeconds: 0, iteration: 1, seed: 0, env };
    try {
      out.add(render(template, templateVars(ctx, params), env).text);
    } catch {
      // reported by validation
    }
  }
  return [...out];
}

/** Renders one template with the query variables. */
export function renderTemplate(template: string, ctx: QueryContext, params: HttpQuerySpec['params']): { text: string; masked: string } {
  return render(template, templateVars(ctx, params), ctx.env);
}

// ---------------------------------------------------------------- sending

// Its own pool: metric queries never share connections (or limits) with the proxy's upstream traffic.
const agent = new Agent({ keepAliveTimeout: 4000, connections: 16 });

/**
 * Sends a query; retries failed connections, timeouts, 5xx and 429 with
 * backoff. Returns the last answer whatever its status (the caller decides
 * what a non-2xx means: Prometheus puts its reason in the body). Throws
 * SLUICE_METRIC_TIMEOUT, _UNREACHABLE or _HTTP (answer too large).
 */
export async function send(q: HttpQuery): Promise<HttpAnswer> {
  let attempt = 0;
  for (;;) {
    attempt++;
    const last = attempt > q.retries;
    try {
      const answer = await sendOnce(q, attempt);
      if (!retryable(answer.status) || last) return answer;
    } catch (err) {
      const failure = classify(err, q, attempt);
      if (last || !failure.retry) throw failure.error;
    }
    await new Promise((r) => setTimeout(r, Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (attempt - 1))));
  }
}

/** `GET http://host/path` (masked): how messages name the request. */
export function requestLabel(q: HttpQuery): string {
  return `${q.method} ${q.shown.url}`;
}

/** "after 3 attempts" when there were retries. */
export function attemptsText(n: number): string {
  return n > 1 ? ` after ${n} attempts` : '';
}

/** A masked start of an answer, for messages and `sluice metrics test`. */
export function answerExcerpt(text: string, secrets: readonly string[], max = RESPONSE_EXCERPT_CHARS): string {
  return excerpt(maskSecrets(text, secrets), max);
}

/** Throws SLUICE_METRIC_HTTP for a non-2xx answer, quoting the start of its body. */
export function requireOk(a: HttpAnswer, q: HttpQuery): void {
  if (a.status >= 200 && a.status < 300) return;
  const body = a.text.trim() === '' ? '' : `: ${answerExcerpt(a.text.replace(/\s+/g, ' '), q.secrets, 200)}`;
  throw metricError('SLUICE_METRIC_HTTP', `${requestLabel(q)} answered ${a.status}${attemptsText(a.attempts)}${body}`);
}

/** The answer as JSON, or SLUICE_METRIC_NOT_JSON. */
export function parseJson(a: HttpAnswer, q: HttpQuery): Json {
  try {
    return JSON.parse(a.text) as Json;
  } catch {
    const shown = a.text.trim() === '' ? 'an empty body' : JSON.stringify(answerExcerpt(a.text, q.secrets, 80));
    throw metricError('SLUICE_METRIC_NOT_JSON', `${requestLabel(q)} answered ${a.status} with ${shown}, not JSON`);
  }
}

function retryable(status: number): boolean {
  return status >= 500 || status === 429;
}

async function sendOnce(q: HttpQuery, attempt: number): Promise<HttpAnswer> {
  // One deadline for connecting, the headers and the whole body.
  const signal = AbortSignal.timeout(q.timeoutMs);
  const res = await request(q.url, {
    dispatcher: agent,
    method: q.method,
    headers: q.headers,
    body: q.body ?? undefined,
    signal,
    headersTimeout: q.timeoutMs,
    bodyTimeout: q.timeoutMs,
  });
  const declared = Number(res.headers['content-length'] ?? 0);
  if (declared > MAX_RESPONSE_BYTES) {
    res.body.destroy();
    throw tooLarge(q);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > MAX_RESPONSE_BYTES) {
      res.body.destroy();
      throw tooLarge(q);
    }
    chunks.push(buf);
  }
  return { status: res.statusCode, text: Buffer.concat(chunks).toString('utf8'), attempts: attempt };
}

function tooLarge(q: HttpQuery): SluiceError {
  return metricError('SLUICE_METRIC_HTTP', `${requestLabel(q)} answered with more than ${MAX_RESPONSE_BYTES / 1024 / 1024} MiB`);
}

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT']);
const REASONS: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  UND_ERR_SOCKET: 'connection closed',
  EPIPE: 'connection closed',
};

/** Maps a failure of one attempt by its code (not by class: undici's classes are not a stable contract). */
function classify(err: unknown, q: HttpQuery, attempt: number): { error: SluiceError; retry: boolean } {
  if (err instanceof SluiceError && isMetricCode(err.code)) return { error: err, retry: false };
  const code = errorCode(err);
  const aborted = err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError');
  if (aborted || TIMEOUT_CODES.has(code)) {
    const what = `${requestLabel(q)} did not answer within ${q.timeoutMs / 1000} s${attemptsText(attempt)}`;
    return { error: metricError('SLUICE_METRIC_TIMEOUT', what), retry: true };
  }
  if (code === 'UND_ERR_INVALID_ARG' || code === 'ERR_INVALID_URL' || code === 'ERR_INVALID_CHAR') {
    // A rendered header or URL undici refuses (a newline from an env value, say): retrying cannot help.
    return { error: metricError('SLUICE_METRIC_TEMPLATE', `${requestLabel(q)} cannot be sent: the rendered request is invalid (${code})`), retry: false };
  }
  const reason = REASONS[code] ?? (code !== '' ? code : err instanceof Error ? err.message : String(err));
  return { error: metricError('SLUICE_METRIC_UNREACHABLE', `${requestLabel(q)}: ${reason}${code !== '' && REASONS[code] ? ` (${code})` : ''}${attemptsText(attempt)}`), retry: true };
}

function errorCode(err: unknown): string {
  if (err === null || typeof err !== 'object') return '';
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') return code;
  // Happy-eyeballs connects fail with an AggregateError of the per-address errors.
  if (err instanceof AggregateError) return errorCode(err.errors[0]);
  const cause = (err as { cause?: unknown }).cause;
  return cause === undefined ? '' : errorCode(cause);
}
