/**
 * The process settings of `sluice.yaml` — listeners, admin, store, proxy
 * options, rewards, log level — and the top-level document that holds them
 * with the routes (routes.ts). Reached through config.ts, which substitutes
 * `${VAR}` references and applies overrides first.
 */
import { isIP } from 'node:net';
import { Problems, expected, mapping, optMapping, readBool, readEnum, readInt, typeOf } from '../common/validation.js';
import { readPemFile } from './pem-files.js';
import { HOST_RE, MIB, TOKEN_RE, readDuration, readSize } from './fields.js';
import { readRoutes } from './routes.js';
import {
  DEFAULT_EXPOSURE_KEYS,
  DEFAULT_EXPOSURE_RETENTION_MS,
  DEFAULT_MAX_REWARD,
  type AdminConfig,
  type DashboardMode,
  type ListenAddress,
  type ListenerTlsConfig,
  type SniCertificate,
  type TrafficListenConfig,
  type ProxyOptions,
  type RewardsConfig,
  type SluiceConfig,
  type StoreConfig,
} from './types.js';

const DEFAULT_LISTEN = '0.0.0.0:8080';
const DEFAULT_ADMIN_LISTEN = '127.0.0.1:9901';
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
const REDIS_RE = /^(redis|rediss|sentinel):\/\//;

// ---------------------------------------------------------------- top level

/** The whole document, after substitution and overrides. */
export function readConfig(p: Problems, doc: unknown): SluiceConfig {
  // An empty file parses to null; treating it as {} yields the useful "routes: required".
  const top = doc == null ? {} : mapping(p, doc, '', ['listen', 'admin', 'store', 'logLevel', 'proxy', 'rewards', 'routes']);
  // Not a mapping at all: one problem is the whole story, so defaults are built on a scratch list.
  if (!top) return readConfig(new Problems(), {});
  const listen = readTrafficListen(p, top.listen);
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
  const o = optMapping(p, v, 'admin', ['listen', 'token', 'dashboard']);
  const listen = readListen(p, o.listen, 'admin.listen', DEFAULT_ADMIN_LISTEN);
  const token = readToken(p, o.token, 'admin.token');
  const absent = o.token == null || o.token === ''; // an invalid token was reported already
  if (absent && !isLoopback(listen.host)) {
    p.add('admin.token', `an admin listener on ${listen.host} needs a token`);
  }
  return { listen, token, dashboard: readEnum(p, o.dashboard, 'admin.dashboard', DASHBOARD_MODES, 'on') };
}

const DASHBOARD_MODES: readonly DashboardMode[] = ['on', 'read-only', 'off'];

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

/** `listen: host:port`, or `{ address, http2, tls }` for TLS or to turn HTTP/2 off. */
function readTrafficListen(p: Problems, v: unknown): TrafficListenConfig {
  if (v == null || typeof v === 'string') return { ...readListen(p, v, 'listen', DEFAULT_LISTEN), http2: true, tls: null };
  const o = mapping(p, v, 'listen', ['address', 'http2', 'tls']);
  if (!o) return { ...parseListenOk(DEFAULT_LISTEN), http2: true, tls: null };
  return {
    ...readListen(p, o.address, 'listen.address', DEFAULT_LISTEN),
    http2: readBool(p, o.http2, 'listen.http2', true),
    tls: o.tls == null ? null : readListenerTls(p, o.tls, 'listen.tls'),
  };
}

const TLS_VERSIONS = ['TLSv1.2', 'TLSv1.3'] as const;
/** Often enough that a rotated secret is served within seconds; a stat per file, so cheap. */
const DEFAULT_TLS_RELOAD_MS = 5_000;

function readListenerTls(p: Problems, v: unknown, path: string): ListenerTlsConfig | null {
  const o = mapping(p, v, path, ['cert', 'key', 'sni', 'minVersion', 'reloadInterval']);
  if (!o) return null;
  const sni: SniCertificate[] = [];
  if (o.sni != null) {
    if (!Array.isArray(o.sni)) expected(p, `${path}.sni`, 'a list of { hosts, cert, key }', o.sni, null);
    else o.sni.forEach((x, i) => {
      const at = `${path}.sni[${i}]`;
      const e = mapping(p, x, at, ['hosts', 'cert', 'key']);
      if (!e) return;
      const hosts = readSniHosts(p, e.hosts, `${at}.hosts`);
      sni.push({ hosts, cert: readPemFile(p, e.cert, `${at}.cert`, 'certificate', true), key: readPemFile(p, e.key, `${at}.key`, 'key', true) });
    });
  }
  return {
    cert: readPemFile(p, o.cert, `${path}.cert`, 'certificate', true),
    key: readPemFile(p, o.key, `${path}.key`, 'key', true),
    sni,
    minVersion: readEnum(p, o.minVersion, `${path}.minVersion`, TLS_VERSIONS, 'TLSv1.2'),
    reloadMs: readDuration(p, o.reloadInterval, `${path}.reloadInterval`, DEFAULT_TLS_RELOAD_MS),
  };
}

const SNI_HOST_RE = /^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/;

function readSniHosts(p: Problems, v: unknown, path: string): string[] {
  if (!Array.isArray(v) || v.length === 0) return expected(p, path, 'a non-empty list of host names', v, []);
  const out: string[] = [];
  v.forEach((h, i) => {
    const host = typeof h === 'string' ? h.toLowerCase() : '';
    if (SNI_HOST_RE.test(host)) out.push(host);
    else expected(p, `${path}[${i}]`, 'a host name (a leading "*." matches one label)', h, null);
  });
  return out;
}

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
