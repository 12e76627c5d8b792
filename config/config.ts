/**
 * Loads `sluice.yaml` into the frozen `SluiceConfig`. Validation happens once,
 * here, and reports every problem at once: a user fixing a config should not
 * have to run Sluice ten times to find ten mistakes.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { SluiceError } from '../common/errors.js';
import type { ErrorDetail } from '../common/errors.js';
import { parseYaml } from '../common/yaml.js';
import type {
  AdminConfig,
  ListenAddress,
  MirrorConfig,
  ProxyOptions,
  RewardsConfig,
  RouteConfig,
  RuleConfig,
  RuleMatch,
  SluiceConfig,
  StickyConfig,
  StoreConfig,
  TimeoutsConfig,
  ValueMatch,
  VersionConfig,
} from './types.js';
import { parseDuration, parseSize } from './duration.js';
import { compileRuleRegex } from '../proxy/match.js';
import { DEFAULT_EXPOSURE_KEYS, DEFAULT_EXPOSURE_RETENTION_MS, DEFAULT_MAX_REWARD } from './types.js';
import { normalisePath, prefixKey } from '../proxy/path.js';
import {
  Problems, deepFreeze, describe, expected, expectedText, httpUrl, index, isObj, join, mapping, namedList, optList, optMapping,
  osReason, plural, readBool, readEnum, readInt, readName, typeOf, type Obj,
} from '../common/validation.js';

export type LoadOptions = {
  env?: NodeJS.ProcessEnv;
  overrides?: { listen?: string; adminListen?: string; token?: string; redis?: string; logLevel?: string };
};

type Overrides = NonNullable<LoadOptions['overrides']>;

const DEFAULT_NAME = 'sluice.yaml';
const DEFAULT_LISTEN = '0.0.0.0:8080';
const DEFAULT_ADMIN_LISTEN = '127.0.0.1:9901';
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
const TOKEN_RE = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/i; // RFC 9110 token: header, cookie and method names
const HOST_RE = /^(\*\.)?[a-z0-9_]([-a-z0-9_]*[a-z0-9])?(\.[a-z0-9_]([-a-z0-9_]*[a-z0-9])?)*$/;
const REDIS_RE = /^(redis|rediss|sentinel):\/\//;
const MIB = 1_048_576;

/** The settings that CLI flags and `SLUICE_*` variables may override, in one place. */
const OVERRIDABLE = [
  { key: 'listen', section: null, field: 'listen', env: 'SLUICE_LISTEN', flag: '--listen' },
  { key: 'adminListen', section: 'admin', field: 'listen', env: 'SLUICE_ADMIN_LISTEN', flag: '--admin-listen' },
  { key: 'token', section: 'admin', field: 'token', env: 'SLUICE_TOKEN', flag: '--token' },
  { key: 'redis', section: 'store', field: 'redis', env: 'SLUICE_REDIS_URL', flag: '--redis' },
  { key: 'logLevel', section: null, field: 'logLevel', env: 'SLUICE_LOG_LEVEL', flag: '--log-level' },
] as const;

// ---------------------------------------------------------------- entry points

/** Reads, parses and validates a config file. */
export function loadConfig(file: string, opts: LoadOptions = {}): SluiceConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new SluiceError('SLUICE_CONFIG_READ', `cannot read ${file}: ${osReason(err)}`);
  }
  return parseNamed(text, opts, file);
}

/** Parses YAML (or JSON) text and validates it. */
export function parseConfig(text: string, opts: LoadOptions = {}): SluiceConfig {
  return parseNamed(text, opts, DEFAULT_NAME);
}

/**
 * Validates an already-parsed document: `${VAR}` substitution, overrides,
 * defaults, every check. Throws one SLUICE_CONFIG_INVALID listing all problems.
 */
export function validateConfig(raw: unknown, opts: LoadOptions = {}): SluiceConfig {
  return validateNamed(raw, opts, DEFAULT_NAME);
}

/**
 * Checks a weight table against a route's versions. Shared with the admin API
 * (`PUT /routes/NAME/weights`) so both accept exactly the same input.
 * Only `versions` is read, which lets the config validator call it mid-build.
 */
export function validateWeights(
  route: Pick<RouteConfig, 'versions'>,
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

function parseNamed(text: string, opts: LoadOptions, name: string): SluiceConfig {
  const refs = protectRefs(text);
  return validateNamed(refs.restore(parseYaml(refs.text, 'SLUICE_CONFIG_INVALID', `${name} is not valid YAML`)), opts, name);
}

// ---------------------------------------------------------------- ${VAR} protection while parsing

const REF_TEXT_RE = /\$\{[^}\n"']*\}/g;
const PRIVATE_USE_RE = /[\uE000-\uF8FF]/;
const PLACEHOLDER_RE = /([\uE000-\uF8FE])\uF8FF*/g;
const MAX_REFS = 0xf8fe - 0xe000 + 1;

/**
 * `{ token: ${T} }` is not valid YAML: inside a flow collection "{" and "}" are
 * indicators. docs/contract.md writes references that way, so each `${...}` is swapped
 * for a same-length run of private-use characters (plain text to YAML, and error
 * columns stay true), then swapped back in the parsed strings.
 */
function protectRefs(text: string): { text: string; restore: (v: unknown) => unknown } {
  const refs = text.match(REF_TEXT_RE) ?? [];
  // Text that already uses private-use characters is left alone rather than risk a mix-up.
  if (refs.length === 0 || refs.length > MAX_REFS || PRIVATE_USE_RE.test(text)) return { text, restore: (v) => v };
  let i = 0;
  const protectedText = text.replace(REF_TEXT_RE, (ref) => String.fromCharCode(0xe000 + i++) + '\uF8FF'.repeat(ref.length - 1));
  const unswap = (s: string): string => s.replace(PLACEHOLDER_RE, (_, c: string) => refs[c.charCodeAt(0) - 0xe000] ?? c);
  const restore = (v: unknown): unknown => {
    if (typeof v === 'string') return unswap(v);
    if (Array.isArray(v)) return v.map(restore);
    if (isObj(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [unswap(k), restore(x)]));
    return v;
  };
  return { text: protectedText, restore };
}

function validateNamed(raw: unknown, opts: LoadOptions, name: string): SluiceConfig {
  const env = opts.env ?? process.env;
  const p = new EnvProblems();
  const doc = applyOverrides(p, substituteAll(p, raw, env, ''), opts.overrides ?? {}, env);
  const config = readConfig(p, doc);
  if (p.list.length > 0) {
    throw new SluiceError('SLUICE_CONFIG_INVALID', `${name} has ${plural(p.list.length, 'problem')}`, p.list);
  }
  return deepFreeze(config);
}

// ---------------------------------------------------------------- problem collection

class EnvProblems extends Problems {
  /** Paths whose value came from a `${VAR}`: numbers and booleans may arrive there as strings. */
  readonly substituted = new Set<string>();
  /** Where an overridden value came from, appended to its errors so users look in the right place. */
  readonly sources = new Map<string, string>();
  /** A failed substitution already explains the field; follow-on type errors would only mislead. */
  private readonly envFailed = new Set<string>();

  override add(path: string, message: string): void {
    if (this.envFailed.has(path)) return;
    const source = this.sources.get(path);
    this.list.push({ path, message: source ? `${message} (from ${source})` : message });
  }

  addEnv(path: string, message: string): void {
    this.list.push({ path, message });
    this.envFailed.add(path);
  }

  /** An overridden field never uses the file's value, so its substitution errors are moot. */
  forgetEnv(path: string): void {
    if (!this.envFailed.delete(path)) return;
    this.list = this.list.filter((d) => d.path !== path);
  }

  /** Coerces `"42"`/`"true"` from a substitution; elsewhere the type the user wrote stands. */
  override scalar(v: unknown, path: string): unknown {
    if (typeof v !== 'string' || !this.substituted.has(path)) return v;
    if (/^-?\d+(\.\d+)?$/.test(v)) return Number(v);
    if (v === 'true' || v === 'false') return v === 'true';
    return v;
  }
}

// ---------------------------------------------------------------- ${VAR} substitution

const REF_RE = /\$\$\{|\$\{([^}]*)\}|\$\{/g;
const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

// Substitution runs on parsed scalars, never on raw text, so a variable's value
// cannot inject YAML structure.
function substituteAll(p: EnvProblems, v: unknown, env: NodeJS.ProcessEnv, path: string): unknown {
  if (typeof v === 'string') return v.includes('${') ? substitute(p, v, env, path) : v;
  if (Array.isArray(v)) return v.map((x, i) => substituteAll(p, x, env, index(path, i)));
  if (isObj(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, substituteAll(p, x, env, join(path, k))]));
  return v;
}

function substitute(p: EnvProblems, text: string, env: NodeJS.ProcessEnv, path: string): string {
  p.substituted.add(path);
  return text.replace(REF_RE, (whole: string, body: string | undefined) => {
    if (whole === '$${') return '${';
    if (body === undefined) {
      p.addEnv(path, 'unterminated ${ (write $${ for a literal ${)');
      return whole;
    }
    const sep = body.indexOf(':-');
    const name = sep < 0 ? body : body.slice(0, sep);
    if (!ENV_NAME_RE.test(name)) {
      p.addEnv(path, `invalid reference \${${body}} (expected \${NAME} or \${NAME:-default})`);
      return whole;
    }
    const value = env[name];
    if (sep >= 0) return value ? value : body.slice(sep + 2);
    if (value !== undefined) return value;
    p.addEnv(path, `environment variable ${name} is not set (write \${${name}:-} to make it optional)`);
    return '';
  });
}

// ---------------------------------------------------------------- overrides

function applyOverrides(p: EnvProblems, doc: unknown, overrides: Overrides, env: NodeJS.ProcessEnv): unknown {
  if (!isObj(doc) && doc != null) return doc; // reported as a type error later
  const out: Obj = { ...(doc ?? {}) };
  for (const o of OVERRIDABLE) {
    const flagValue = overrides[o.key];
    // An empty variable counts as unset: `SLUICE_TOKEN=` in a compose file should not wipe the file's value.
    const envValue = env[o.env] === '' ? undefined : env[o.env];
    const value = flagValue ?? envValue;
    if (value === undefined) continue;
    const path = o.section ? `${o.section}.${o.field}` : o.field;
    if (!setField(out, o.section, o.field, value)) continue;
    p.forgetEnv(path);
    p.sources.set(path, flagValue !== undefined ? o.flag : o.env);
  }
  return out;
}

function setField(doc: Obj, section: string | null, field: string, value: string): boolean {
  if (section === null) {
    doc[field] = value;
    return true;
  }
  const current = doc[section];
  if (current != null && !isObj(current)) return false;
  doc[section] = { ...(current ?? {}), [field]: value };
  return true;
}

// ---------------------------------------------------------------- top level

function readConfig(p: Problems, doc: unknown): SluiceConfig {
  // An empty file parses to null; treating it as {} yields the useful "routes: required".
  const top = doc == null ? {} : mapping(p, doc, '', ['listen', 'admin', 'store', 'logLevel', 'proxy', 'rewards', 'routes']);
  // Not a mapping at all: one problem is the whole story, so defaults are built on a scratch list.
  if (!top) return readConfig(new EnvProblems(), {});
  const listen = readListen(p, top.listen, 'listen', DEFAULT_LISTEN);
  const admin = readAdmin(p, top.admin);
  checkPortClash(p, listen, admin.listen);
  return {
    listen,
    admin,
    store: readStore(p, top.store),
    proxy: readProxy(p, top.proxy),
    rewards: readRewards(p, top.rewards),
    routes: readRoutes(p, top.routes),
    logLevel: readEnum(p, top.logLevel, 'logLevel', LOG_LEVELS, 'info'),
  };
}

function readAdmin(p: Problems, v: unknown): AdminConfig {
  const o = optMapping(p, v, 'admin', ['listen', 'token']);
  const listen = readListen(p, o.listen, 'admin.listen', DEFAULT_ADMIN_LISTEN);
  const token = readToken(p, o.token, 'admin.token');
  const absent = o.token == null || o.token === ''; // an invalid token was reported already
  if (absent && !isLoopback(listen.host)) {
    p.add('admin.token', `an admin listener on ${listen.host} needs a token`);
  }
  return { listen, token };
}

function readToken(p: Problems, v: unknown, path: string): string | null {
  if (v == null || v === '') return null;
  // Never echo the value: it is a secret and errors end up in logs.
  if (typeof v !== 'string') return p.reject(path, `expected a string, got ${typeOf(v)} (quote it)`, null);
  if (/\s/.test(v)) return p.reject(path, 'must not contain whitespace (it is sent as a Bearer token)', null);
  return v;
}

function readStore(p: Problems, v: unknown): StoreConfig {
  const o = optMapping(p, v, 'store', ['redis']);
  const redis = o.redis;
  if (redis == null || redis === '') return { redis: null };
  if (typeof redis === 'string' && REDIS_RE.test(redis)) return { redis };
  // The URL may hold a password, so the message names only its scheme.
  const scheme = typeof redis === 'string' ? /^[a-z][a-z0-9+.-]*:/i.exec(redis)?.[0] : undefined;
  const got = scheme ? `scheme ${scheme}` : typeOf(redis);
  return p.reject('store.redis', `expected a URL starting with redis://, rediss:// or sentinel://, got ${got}`, { redis: null });
}

function readProxy(p: Problems, v: unknown): ProxyOptions {
  const o = optMapping(p, v, 'proxy', [
    'versionHeader', 'connectionsPerVersion', 'upstreamKeepAlive', 'headersTimeout',
    'requestTimeout', 'keepAliveTimeout', 'drainTimeout', 'accessLog', 'trustForwarded', 'maxUpgradesPerVersion',
    'requestBuffer', 'responseBuffer', 'bufferMemory', 'clientBodyTimeout', 'sendTimeout', 'queueLimit',
  ]);
  const at = (k: string): string => `proxy.${k}`;
  const options: ProxyOptions = {
    versionHeader: readVersionHeader(p, o.versionHeader, at('versionHeader')),
    connectionsPerVersion: readInt(p, o.connectionsPerVersion, at('connectionsPerVersion'), 128, 1),
    upstreamKeepAliveMs: readDuration(p, o.upstreamKeepAlive, at('upstreamKeepAlive'), 4_000),
    // 0 is allowed on the client-side timeouts: Node reads it as "disabled".
    headersTimeoutMs: readDuration(p, o.headersTimeout, at('headersTimeout'), 10_000, true),
    requestTimeoutMs: readDuration(p, o.requestTimeout, at('requestTimeout'), 60_000, true),
    keepAliveTimeoutMs: readDuration(p, o.keepAliveTimeout, at('keepAliveTimeout'), 65_000, true),
    drainTimeoutMs: readDuration(p, o.drainTimeout, at('drainTimeout'), 30_000, true),
    accessLog: readBool(p, o.accessLog, at('accessLog'), false),
    trustForwarded: readBool(p, o.trustForwarded, at('trustForwarded'), false),
    maxUpgradesPerVersion: readInt(p, o.maxUpgradesPerVersion, at('maxUpgradesPerVersion'), 10_000, 0),
    // Slow clients (slow-clients.ts). nginx buffers 8-16 KiB in memory and the rest on disk; with no disk,
    // 1 MiB covers most API bodies and pages while the shared budget bounds the worst case.
    requestBufferBytes: readSize(p, o.requestBuffer, at('requestBuffer'), MIB),
    responseBufferBytes: readSize(p, o.responseBuffer, at('responseBuffer'), MIB),
    bufferMemoryBytes: readSize(p, o.bufferMemory, at('bufferMemory'), 256 * MIB),
    clientBodyTimeoutMs: readDuration(p, o.clientBodyTimeout, at('clientBodyTimeout'), 10_000, true),
    sendTimeoutMs: readDuration(p, o.sendTimeout, at('sendTimeout'), 30_000, true),
    queueLimit: readInt(p, o.queueLimit, at('queueLimit'), 1024, 0),
  };
  const { headersTimeoutMs: h, requestTimeoutMs: r } = options;
  // Node's http.createServer throws on this combination; better to say so at load.
  if (h > 0 && r > 0 && h > r) p.add(at('headersTimeout'), `must not exceed proxy.requestTimeout (${r}ms), got ${h}ms`);
  return options;
}

function readRewards(p: Problems, v: unknown): RewardsConfig {
  const o = optMapping(p, v, 'rewards', ['maxValue', 'exposureKeys', 'exposureRetention']);
  let maxValue = DEFAULT_MAX_REWARD;
  const raw = p.scalar(o.maxValue, 'rewards.maxValue');
  if (raw != null) {
    // Squares are summed: above ~1e150 they overflow to Infinity and every statistic with them.
    if (typeof raw === 'number' && raw > 0 && raw <= 1e15) maxValue = raw;
    else expected(p, 'rewards.maxValue', 'a number > 0 and <= 1e15', raw, undefined);
  }
  return {
    maxValue,
    exposureKeys: readInt(p, o.exposureKeys, 'rewards.exposureKeys', DEFAULT_EXPOSURE_KEYS, 1, 10_000_000),
    exposureRetentionMs: readDuration(p, o.exposureRetention, 'rewards.exposureRetention', DEFAULT_EXPOSURE_RETENTION_MS),
  };
}

function readVersionHeader(p: Problems, v: unknown, path: string): string | null {
  if (v === undefined) return 'x-sluice-version';
  if (v === false || v === null) return null;
  if (typeof v === 'string' && TOKEN_RE.test(v)) return v.toLowerCase();
  return expected(p, path, 'a header name or false', v, 'x-sluice-version');
}

// ---------------------------------------------------------------- listen addresses

function readListen(p: Problems, v: unknown, path: string, fallback: string): ListenAddress {
  const defaults = parseListenOk(fallback);
  if (v == null) return defaults;
  if (typeof v !== 'string') return expected(p, path, '"host:port", "[ipv6]:port" or ":port"', v, defaults);
  const parsed = parseListen(v);
  return typeof parsed === 'string' ? p.reject(path, parsed, defaults) : parsed;
}

/** The address, or why it is not one. */
export function parseListen(s: string): ListenAddress | string {
  const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):(\d{1,5})$/.exec(s);
  if (!m) return `expected "host:port", "[ipv6]:port" or ":port", got ${JSON.stringify(s)}`;
  const port = Number(m[3]);
  if (port > 65535) return `port must be 0..65535, got ${port}`;
  if (m[1] !== undefined) return isIP(m[1]) === 6 ? { host: m[1], port } : `${JSON.stringify(m[1])} is not an IPv6 address`;
  const host = m[2] ?? '';
  if (host === '') return { host: '0.0.0.0', port };
  return isIP(host) === 4 || HOST_RE.test(host.toLowerCase()) ? { host, port } : `invalid host ${JSON.stringify(host)}`;
}

function parseListenOk(s: string): ListenAddress {
  const parsed = parseListen(s);
  if (typeof parsed === 'string') throw new Error(`bad built-in default: ${parsed}`);
  return parsed;
}

export function isLoopback(host: string): boolean {
  const h = host.toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  return /^::ffff:127\./.test(h);
}

function checkPortClash(p: Problems, a: ListenAddress, b: ListenAddress): void {
  const wildcard = (h: string): boolean => h === '0.0.0.0' || h === '::';
  if (a.port === 0 || a.port !== b.port) return;
  if (a.host === b.host || wildcard(a.host) || wildcard(b.host)) {
    p.add('admin.listen', `port ${b.port} is already used by listen`);
  }
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
    timeouts: { connectMs: 0, requestMs: 0 },
  } satisfies RouteConfig,
  version: { name: '', url: '', basePath: '' } satisfies VersionConfig,
  rule: { match: EMPTY_MATCH, version: '' } satisfies RuleConfig,
  mirror: {
    version: '', percent: 0, compare: false, methods: new Set<string>(), maxBodyBytes: 0, timeoutMs: 0, maxConcurrent: 1,
  } satisfies MirrorConfig,
};

const ROUTE_KEYS = ['name', 'match', 'versions', 'weights', 'rules', 'sticky', 'mirror', 'timeouts'];

function readRoutes(p: Problems, v: unknown): RouteConfig[] {
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
  };
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
  const o = mapping(p, v, path, ['name', 'url']);
  if (!o) return PLACEHOLDER.version;
  const name = readName(p, o.name, join(path, 'name'));
  return { name, ...readUpstreamUrl(p, o.url, join(path, 'url')) };
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

// ---------------------------------------------------------------- scalar readers

function readDuration(p: Problems, raw: unknown, path: string, fallback: number, allowZero = false): number {
  const v = p.scalar(raw, path);
  if (v == null) return fallback;
  const ms = parseDuration(v);
  if (ms !== null && (allowZero || ms > 0)) return ms;
  const what = allowZero ? 'a duration' : 'a duration > 0';
  return expected(p, path, `${what} such as 250ms, 2s, 1.5s, 1m or 1h (a bare number is milliseconds)`, v, fallback);
}

function readSize(p: Problems, raw: unknown, path: string, fallback: number): number {
  const v = p.scalar(raw, path);
  if (v == null) return fallback;
  const bytes = parseSize(v);
  if (bytes !== null) return bytes;
  return expected(p, path, 'a size such as 512B, 64KiB, 1MiB or 1MB (a bare number is bytes)', v, fallback);
}
