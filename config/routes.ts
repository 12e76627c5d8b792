/**
 * The route schema of `sluice.yaml`: routes, their versions, weights, rules,
 * sticky keys, mirrors and timeouts; and `validateWeights`, which the admin
 * API and the control plane share with the loader.
 */
import type { ErrorDetail } from '../common/errors.js';
import {
  Problems, describe, expected, expectedText, httpUrl, index, isObj, join, mapping, namedList, optList, optMapping,
  readBool, readEnum, readInt, readName,
} from '../common/validation.js';
import { DEFAULT_GRPC_ERROR_MASK, DEFAULT_GRPC_MIN_DEADLINE_MS, GRPC_CODES, grpcCodeMask, type GrpcCodeName } from '../common/grpc-status.js';
import { readPemFile } from './pem-files.js';
import { compileRuleRegex } from '../proxy/match.js';
import { normalisePath, prefixKey } from '../proxy/path.js';
import { HOST_RE, MIB, TOKEN_RE, readDuration, readSize } from './fields.js';
import {
  UPSTREAM_PROTOCOLS,
  type GrpcRouteConfig, type MirrorConfig, type RouteConfig, type RuleConfig, type RuleMatch, type StickyConfig, type TimeoutsConfig,
  type UpstreamTlsConfig, type ValueMatch, type VersionConfig,
} from './types.js';

/**
 * Checks a weight table against a route's versions. Shared with the admin API
 * (`PUT /routes/NAME/weights`) so both accept exactly the same input.
 * Only `versions` is read, which lets the config validator call it mid-build.
 */
export function validateWeights(
  route: { readonly versions: ReadonlyArray<{ readonly name: string }> },
  weights: unknown,
  path = 'weights',
): { weights: Record<string, number> } | { errors: ErrorDetail[] } {
  if (!isObj(weights)) {
    return { errors: [{ path, message: `expected a mapping of version name to percent, got ${describe(weights)}` }] };
  }
  const names = [...new Set(route.versions.map((v) => v.name))];
  const out: Record<string, number> = Object.fromEntries(names.map((n) => [n, 0]));
  const errors: ErrorDetail[] = [];
  for (const [name, w] of Object.entries(weights)) {
    const at = join(path, name);
    if (!names.includes(name)) errors.push({ path: at, message: `unknown version (known: ${names.join(', ')})` });
    else if (typeof w !== 'number' || !Number.isInteger(w) || w < 0 || w > 100)
      errors.push({ path: at, message: `expected an integer 0..100, got ${describe(w)}` });
    else out[name] = w;
  }
  // A sum over a table that already has bad entries would only add noise.
  if (errors.length > 0) return { errors };
  const sum = Object.values(out).reduce((a, b) => a + b, 0);
  if (sum !== 100) return { errors: [{ path, message: `must sum to 100, got ${sum}` }] };
  return { weights: out };
}

// ---------------------------------------------------------------- routes

const EMPTY_MATCH: RuleMatch = { headers: [], cookies: [], query: [] };

/**
 * Stand-ins for list items that are not mappings: the item is reported once
 * rather than once more per missing field. They never escape (validation throws).
 */
const PLACEHOLDER = {
  route: {
    name: '', host: null, pathPrefix: '/', versions: [], weights: {}, rules: [], sticky: null, mirror: [],
    timeouts: { connectMs: 0, requestMs: 0 }, grpc: { errorCodes: DEFAULT_GRPC_ERROR_MASK, minDeadlineMs: DEFAULT_GRPC_MIN_DEADLINE_MS },
  } satisfies RouteConfig,
  version: { name: '', url: '', basePath: '', protocol: 'http1', tls: null } satisfies VersionConfig,
  rule: { match: EMPTY_MATCH, version: '' } satisfies RuleConfig,
  mirror: {
    version: '', percent: 0, compare: false, methods: new Set<string>(), maxBodyBytes: 0, timeoutMs: 0, maxConcurrent: 1,
  } satisfies MirrorConfig,
};

const ROUTE_KEYS = ['name', 'match', 'versions', 'weights', 'rules', 'sticky', 'mirror', 'timeouts', 'grpc'];

export function readRoutes(p: Problems, v: unknown): RouteConfig[] {
  return namedList(p, v, 'routes', 'route', 'at least one route is required', (r, at) => readRoute(p, r, at));
}

function readRoute(p: Problems, v: unknown, path: string): RouteConfig {
  const o = mapping(p, v, path, ROUTE_KEYS);
  if (!o) return PLACEHOLDER.route;
  const name = readName(p, o.name, join(path, 'name'));
  const match = readRouteMatch(p, o.match, join(path, 'match'));
  const versions = readVersions(p, o.versions, join(path, 'versions'));
  const known = [...new Set(versions.map((x) => x.name).filter((n) => n !== ''))];
  return {
    name,
    ...match,
    versions,
    weights: readRouteWeights(p, versions, o.weights, join(path, 'weights')),
    rules: optList(p, o.rules, join(path, 'rules'), 'a list of rules').map(([r, at]) => readRule(p, r, at, known)),
    sticky: readSticky(p, o.sticky, join(path, 'sticky')),
    mirror: optList(p, o.mirror, join(path, 'mirror'), 'a list of mirrors').map(([m, at]) => readMirror(p, m, at, known)),
    timeouts: readTimeouts(p, o.timeouts, join(path, 'timeouts')),
    grpc: readGrpc(p, o.grpc, join(path, 'grpc')),
  };
}

function readGrpc(p: Problems, v: unknown, path: string): GrpcRouteConfig {
  const o = optMapping(p, v, path, ['errorCodes', 'minDeadline']);
  const minDeadlineMs = readDuration(p, o.minDeadline, join(path, 'minDeadline'), DEFAULT_GRPC_MIN_DEADLINE_MS, true);
  if (o.errorCodes == null) return { errorCodes: DEFAULT_GRPC_ERROR_MASK, minDeadlineMs };
  const at = join(path, 'errorCodes');
  if (!Array.isArray(o.errorCodes)) return expected(p, at, 'a list of gRPC status names (UNAVAILABLE) or numbers (14)', o.errorCodes, { errorCodes: DEFAULT_GRPC_ERROR_MASK, minDeadlineMs });
  const names: GrpcCodeName[] = [];
  o.errorCodes.forEach((c, i) => {
    const name = typeof c === 'number' && Number.isInteger(c) ? GRPC_CODES[c] : typeof c === 'string' ? GRPC_CODES.find((n) => n === c.toUpperCase()) : undefined;
    if (name === undefined || name === 'OK') expected(p, index(at, i), `a gRPC status other than OK (${GRPC_CODES.slice(1).join(', ')} or 1..16)`, c, null);
    else names.push(name);
  });
  return { errorCodes: grpcCodeMask(names), minDeadlineMs };
}

function readRouteMatch(p: Problems, v: unknown, path: string): { host: string | null; pathPrefix: string } {
  const o = optMapping(p, v, path, ['host', 'pathPrefix']);
  return {
    host: o.host == null ? null : readHost(p, o.host, join(path, 'host')),
    pathPrefix: o.pathPrefix == null ? '/' : readPathPrefix(p, o.pathPrefix, join(path, 'pathPrefix')),
  };
}

function readHost(p: Problems, v: unknown, path: string): string | null {
  if (typeof v !== 'string') return expected(p, path, 'a host name', v, null);
  const host = v.toLowerCase();
  if (/:\d*$/.test(host)) return p.reject(path, `must not include a port, got ${JSON.stringify(v)}`, null);
  if (!HOST_RE.test(host)) return expected(p, path, 'a host name, optionally starting with "*."', v, null);
  return host;
}

function readPathPrefix(p: Problems, v: unknown, path: string): string {
  if (typeof v !== 'string') return expected(p, path, 'a path starting with "/"', v, '/');
  if (!v.startsWith('/')) return p.reject(path, `must start with "/", got ${JSON.stringify(v)}`, '/');
  if (/[?#\s]/.test(v)) return p.reject(path, `must not contain "?", "#" or whitespace, got ${JSON.stringify(v)}`, '/');
  // Requests are matched after normalisation (path.ts): a prefix in another form could never match.
  const normal = normalisePath(v);
  if (normal === null) return p.reject(path, `is not a valid path (malformed escape or hidden dot segment), got ${JSON.stringify(v)}`, '/');
  if (prefixKey(normal) !== prefixKey(v)) {
    return p.reject(path, `must be written normalised (no ".", ".." or empty segments, no escaped letters or digits): ${JSON.stringify(normal)}, got ${JSON.stringify(v)}`, '/');
  }
  return v;
}

function readVersions(p: Problems, v: unknown, path: string): VersionConfig[] {
  return namedList(p, v, path, 'version', 'at least one version is required', (x, at) => readVersion(p, x, at));
}

function readVersion(p: Problems, v: unknown, path: string): VersionConfig {
  const o = mapping(p, v, path, ['name', 'url', 'protocol', 'tls']);
  if (!o) return PLACEHOLDER.version;
  const name = readName(p, o.name, join(path, 'name'));
  const target = readUpstreamUrl(p, o.url, join(path, 'url'));
  const https = target.url.startsWith('https:');
  const protocol = readEnum(p, o.protocol, join(path, 'protocol'), UPSTREAM_PROTOCOLS, 'http1' as const);
  if (target.url !== '' && protocol === 'h2c' && https) p.add(join(path, 'protocol'), 'h2c is cleartext HTTP/2: use an http: URL, or protocol h2 for HTTP/2 over TLS');
  if (target.url !== '' && protocol === 'h2' && !https) p.add(join(path, 'protocol'), 'h2 is HTTP/2 over TLS: use an https: URL, or protocol h2c for cleartext HTTP/2');
  let tls: UpstreamTlsConfig | null = null;
  if (o.tls != null) {
    if (target.url !== '' && !https) p.add(join(path, 'tls'), 'TLS settings need an https: URL');
    tls = readUpstreamTls(p, o.tls, join(path, 'tls'));
  }
  return { name, ...target, protocol, tls };
}

/** There is deliberately no "insecure" switch: a private CA goes in `ca`. */
function readUpstreamTls(p: Problems, v: unknown, path: string): UpstreamTlsConfig | null {
  const o = mapping(p, v, path, ['ca', 'cert', 'key', 'servername']);
  if (!o) return null;
  const cert = readPemFile(p, o.cert, join(path, 'cert'), 'certificate', false);
  const key = readPemFile(p, o.key, join(path, 'key'), 'key', false);
  if ((cert === '') !== (key === '')) p.add(join(path, cert === '' ? 'cert' : 'key'), 'a client certificate needs both cert and key');
  let servername: string | null = null;
  if (o.servername != null) {
    if (typeof o.servername === 'string' && HOST_RE.test(o.servername.toLowerCase())) servername = o.servername.toLowerCase();
    else expected(p, join(path, 'servername'), 'a host name', o.servername, null);
  }
  const ca = readPemFile(p, o.ca, join(path, 'ca'), 'certificate', false);
  return { ca: ca || null, cert: cert || null, key: key || null, servername };
}

function readUpstreamUrl(p: Problems, v: unknown, path: string): { url: string; basePath: string } {
  const bad = { url: '', basePath: '' };
  if (v == null) return p.reject(path, 'required', bad);
  if (typeof v !== 'string') return expected(p, path, 'an absolute http: or https: URL', v, bad);
  const u = httpUrl(p, v, path, 'an absolute http: or https: URL');
  return u ? { url: u.origin, basePath: u.pathname.replace(/\/+$/, '') } : bad;
}

function readRouteWeights(p: Problems, versions: VersionConfig[], v: unknown, path: string): Record<string, number> {
  const fallback = Object.fromEntries(versions.map((x, i) => [x.name, i === 0 ? 100 : 0]));
  if (v == null) return fallback;
  const weights = isObj(v) ? Object.fromEntries(Object.entries(v).map(([k, w]) => [k, p.scalar(w, join(path, k))])) : v;
  // Versions whose name was invalid were already reported; listing them as "known" would confuse.
  const result = validateWeights({ versions: versions.filter((x) => x.name !== '') }, weights, path);
  if ('weights' in result) return result.weights;
  for (const e of result.errors) p.add(e.path, e.message);
  return fallback;
}

function readVersionRef(p: Problems, v: unknown, path: string, known: readonly string[]): string {
  if (v == null) return p.reject(path, 'required', '');
  if (typeof v !== 'string') return expectedText(p, path, 'a version name', v, '');
  if (!known.includes(v)) return p.reject(path, `unknown version ${JSON.stringify(v)} (known: ${known.join(', ')})`, v);
  return v;
}

function readTimeouts(p: Problems, v: unknown, path: string): TimeoutsConfig {
  const o = optMapping(p, v, path, ['connect', 'request']);
  return {
    connectMs: readDuration(p, o.connect, join(path, 'connect'), 2_000),
    requestMs: readDuration(p, o.request, join(path, 'request'), 30_000),
  };
}

// ---------------------------------------------------------------- rules

const CONDITION_KINDS = ['exact', 'regex', 'present'];

type Conditions = Array<readonly [string, ValueMatch]>;

function readRule(p: Problems, v: unknown, path: string, known: readonly string[]): RuleConfig {
  const o = mapping(p, v, path, ['match', 'version']);
  if (!o) return PLACEHOLDER.rule;
  return {
    match: readRuleMatch(p, o.match, join(path, 'match')),
    version: readVersionRef(p, o.version, join(path, 'version'), known),
  };
}

function readRuleMatch(p: Problems, v: unknown, path: string): RuleMatch {
  const needs = 'needs at least one condition under headers, cookies or query';
  if (v == null) return p.reject(path, needs, EMPTY_MATCH);
  const o = mapping(p, v, path, ['headers', 'cookies', 'query']);
  if (!o) return EMPTY_MATCH;
  const sections = [o.headers, o.cookies, o.query];
  // Only when every section is well-formed, so a type error is not doubled by "needs a condition".
  if (sections.every((s) => s == null || (isObj(s) && Object.keys(s).length === 0))) p.add(path, needs);
  return {
    headers: readConditions(p, o.headers, join(path, 'headers'), 'header'),
    cookies: readConditions(p, o.cookies, join(path, 'cookies'), 'cookie'),
    query: readConditions(p, o.query, join(path, 'query'), 'query'),
  };
}

function readConditions(p: Problems, v: unknown, path: string, kind: 'header' | 'cookie' | 'query'): Conditions {
  if (v == null) return [];
  if (!isObj(v)) return expected(p, path, `a mapping of ${kind} name to condition`, v, []);
  const out: Conditions = [];
  for (const [raw, cond] of Object.entries(v)) {
    const at = join(path, raw);
    const name = kind === 'header' ? raw.toLowerCase() : raw;
    if (kind !== 'query' && !TOKEN_RE.test(name)) p.add(at, `invalid ${kind} name`);
    else if (out.some(([n]) => n === name)) p.add(at, `duplicate ${kind} ${JSON.stringify(name)}${kind === 'header' ? ' (header names are case-insensitive)' : ''}`);
    const match = readValueMatch(p, cond, at);
    if (match) out.push([name, match]);
  }
  return out;
}

function readValueMatch(p: Problems, v: unknown, path: string): ValueMatch | null {
  if (typeof v === 'string') return { kind: 'exact', value: v };
  if (!isObj(v)) return expectedText(p, path, 'a string, { exact }, { regex } or { present }', v, null);
  const o = mapping(p, v, path, CONDITION_KINDS) ?? {};
  const given = CONDITION_KINDS.filter((k) => o[k] !== undefined);
  if (given.length !== 1) {
    return p.reject(path, `expected exactly one of exact, regex or present, got ${given.join(' and ') || 'none'}`, null);
  }
  if (o.regex !== undefined) return readRegex(p, o.regex, join(path, 'regex'));
  if (o.present !== undefined) {
    if (typeof o.present === 'boolean') return { kind: 'present', present: o.present };
    return expected(p, join(path, 'present'), 'true or false', o.present, null);
  }
  if (typeof o.exact === 'string') return { kind: 'exact', value: o.exact };
  return expectedText(p, join(path, 'exact'), 'a string', o.exact, null);
}

function readRegex(p: Problems, v: unknown, path: string): ValueMatch | null {
  if (typeof v !== 'string') return expected(p, path, 'a regular expression string', v, null);
  // Client-controlled values meet this regex: only patterns that match in linear time (match.ts).
  const regex = compileRuleRegex(v);
  return typeof regex === 'string' ? p.reject(path, regex, null) : { kind: 'regex', regex, source: v };
}

// ---------------------------------------------------------------- sticky and mirror

function readSticky(p: Problems, v: unknown, path: string): StickyConfig | null {
  if (v == null) return null;
  const o = mapping(p, v, path, ['header', 'cookie']);
  if (!o) return null;
  const given = (['header', 'cookie'] as const).filter((k) => o[k] !== undefined);
  const kind = given[0];
  if (given.length !== 1 || kind === undefined) return p.reject(path, 'expected exactly one of header or cookie', null);
  const name = o[kind];
  if (typeof name !== 'string' || !TOKEN_RE.test(name)) return expectedText(p, join(path, kind), `a ${kind} name`, name, null);
  return { kind, name: kind === 'header' ? name.toLowerCase() : name };
}

const MIRROR_KEYS = ['version', 'percent', 'compare', 'methods', 'maxBodyBytes', 'timeout', 'maxConcurrent'];
const DEFAULT_MIRROR_METHODS = ['GET', 'HEAD', 'OPTIONS'];

function readMirror(p: Problems, v: unknown, path: string, known: readonly string[]): MirrorConfig {
  const o = mapping(p, v, path, MIRROR_KEYS);
  if (!o) return PLACEHOLDER.mirror;
  const at = (k: string): string => join(path, k);
  return {
    version: readVersionRef(p, o.version, at('version'), known),
    percent: readPercent(p, o.percent, at('percent')),
    compare: readBool(p, o.compare, at('compare'), false),
    methods: readMethods(p, o.methods, at('methods')),
    maxBodyBytes: readSize(p, o.maxBodyBytes, at('maxBodyBytes'), MIB),
    timeoutMs: readDuration(p, o.timeout, at('timeout'), 5_000),
    maxConcurrent: readInt(p, o.maxConcurrent, at('maxConcurrent'), 100, 1),
  };
}

function readPercent(p: Problems, raw: unknown, path: string): number {
  const v = p.scalar(raw, path);
  if (v == null) return p.reject(path, 'required', 0);
  if (typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= 100) return v;
  return expected(p, path, 'a number 0..100', v, 0);
}

function readMethods(p: Problems, v: unknown, path: string): Set<string> {
  if (v == null) return new Set(DEFAULT_MIRROR_METHODS);
  if (!Array.isArray(v) || v.length === 0) return expected(p, path, 'a non-empty list of HTTP methods', v, new Set());
  const methods = new Set<string>();
  v.forEach((m, i) => {
    if (typeof m === 'string' && TOKEN_RE.test(m)) methods.add(m.toUpperCase());
    else expected(p, index(path, i), 'an HTTP method', m, undefined);
  });
  return methods;
}
