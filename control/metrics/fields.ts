/**
 * The field readers the metric sources share: the HTTP query of rest and
 * prometheus (url, method, headers, params, timeout, retries), templates,
 * per-version mappings, positive numbers. Every problem is added by path and
 * nothing throws.
 */
import type { Problems } from '../../common/validation.js';
import { expected, expectedText, isObj, join, readEnum, readInt } from '../../common/validation.js';
import type { HttpQuerySpec } from '../spec-types.js';
import { TEMPLATE_ROOTS } from './http-query.js';
import { variablesOf } from './template.js';

/** The defaults of the HTTP query (docs/metrics.md lists the same); a source's own are in its file. */
export const METRIC_DEFAULTS = {
  method: 'GET',
  timeoutSeconds: 5,
  retries: 2,
} as const;

const MAX_TIMEOUT_SECONDS = 300;
const MAX_RETRIES = 10;
const METHODS = ['GET', 'POST'] as const;
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_-]*$/;
/** Set by Sluice (or by undici from the body): a template for them would only break the request. */
const RESERVED_HEADERS = ['host', 'content-length', 'transfer-encoding', 'connection'];

/** The keys of the HTTP query, shared by rest and prometheus. */
export const HTTP_KEYS = ['url', 'method', 'headers', 'params', 'timeoutSeconds', 'retries'];

export function readHttp(p: Problems, o: Record<string, unknown>, path: string, versions: readonly string[]): HttpQuerySpec {
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
export function byVersion(p: Problems, v: unknown, path: string, versions: readonly string[], what: string): Record<string, unknown> | null {
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
export function readTemplate(p: Problems, v: unknown, path: string, params: HttpQuerySpec['params'], versions: readonly string[]): string | null {
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

export function readPositive(p: Problems, v: unknown, path: string, fallback: number, max: number): number {
  if (v == null) return fallback;
  if (typeof v === 'number' && Number.isFinite(v) && v > 0 && v <= max) return v;
  return expected(p, path, `a number > 0 and <= ${max}`, v, fallback);
}
