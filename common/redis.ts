/**
 * The one place Sluice makes Redis clients. Every client is built so that
 * Redis being slow or away can never pile up memory or hang a caller:
 * no offline queue (commands fail at once while disconnected), a timeout on
 * every command, and endless reconnection with capped backoff.
 *
 * URL forms: redis://[user:pass@]host:port[/db], rediss:// (TLS), and
 * sentinel://[pass@]host:port,host:port/mastername (Redis Sentinel).
 */
import { Redis, type RedisOptions } from 'ioredis';
import { SluiceError } from './errors.js';

export interface RedisClientOptions {
  /** Milliseconds before a command fails (default 1000). */
  readonly commandTimeoutMs?: number;
  /** Name shown by CLIENT LIST, for operators. */
  readonly connectionName?: string;
}

export function redisOptions(url: string, opts: RedisClientOptions = {}): RedisOptions {
  const common: RedisOptions = {
    enableOfflineQueue: false,
    commandTimeout: opts.commandTimeoutMs ?? 1000,
    maxRetriesPerRequest: 0,
    connectTimeout: 2000,
    retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 6), 2000),
    lazyConnect: true,
    ...(opts.connectionName ? { connectionName: opts.connectionName } : {}),
  };
  // Sentinel URLs are not WHATWG URLs: `new URL` rejects several host:port
  // pairs in one authority, so they are read by hand, first.
  if (url.startsWith('sentinel://')) return { ...common, ...sentinelOptions(url) };
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new SluiceError('SLUICE_CONFIG_INVALID', `invalid Redis URL`, [{ path: 'store.redis', message: 'expected redis://, rediss:// or sentinel:// URL' }]);
  }
  const password = u.password ? decodeURIComponent(u.password) : undefined;
  const username = u.username ? decodeURIComponent(u.username) : undefined;
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0;
  switch (u.protocol) {
    case 'redis:':
    case 'rediss:':
      return {
        ...common,
        host: u.hostname,
        port: u.port ? Number(u.port) : 6379,
        db,
        ...(password ? { password } : {}),
        ...(username ? { username } : {}),
        ...(u.protocol === 'rediss:' ? { tls: { servername: u.hostname } } : {}),
      };
    default:
      throw new SluiceError('SLUICE_CONFIG_INVALID', 'invalid Redis URL', [{ path: 'store.redis', message: `unsupported scheme ${u.protocol}` }]);
  }
}

/**
 * sentinel://[password@]host:port,host:port/mastername — also `user:password@`
 * (an ACL user on the master). The password is used for the sentinels too.
 */
function sentinelOptions(url: string): RedisOptions {
  const invalid = (message: string) => new SluiceError('SLUICE_CONFIG_INVALID', 'invalid Redis URL', [{ path: 'store.redis', message }]);
  const rest = url.slice('sentinel://'.length);
  const slash = rest.indexOf('/');
  const authority = slash === -1 ? rest : rest.slice(0, slash);
  const name = slash === -1 ? '' : safeDecode(rest.slice(slash + 1).split(/[?#]/)[0]!);
  if (!name) throw invalid('sentinel:// needs the master name as its path');
  const at = authority.lastIndexOf('@');
  const userinfo = at === -1 ? '' : authority.slice(0, at);
  const hosts = at === -1 ? authority : authority.slice(at + 1);
  // `password@` as documented; `user:password@` and `:password@` as in redis:// URLs.
  const colon = userinfo.indexOf(':');
  const username = colon === -1 ? '' : safeDecode(userinfo.slice(0, colon));
  const password = safeDecode(colon === -1 ? userinfo : userinfo.slice(colon + 1));
  const sentinels = hosts.split(',').map((h) => {
    const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(h.trim());
    const port = m?.[2] ? Number(m[2]) : 26379;
    if (!m || port < 1 || port > 65535) throw invalid(`sentinel:// host ${JSON.stringify(h)}: expected host or host:port`);
    return { host: m[1]!.replace(/^\[(.*)\]$/, '$1'), port };
  });
  return {
    name,
    sentinels,
    // Follow a failover at once. Without this a client stays connected to the
    // former master, which keeps accepting writes until the sentinels demote it
    // (about 10 s after the promotion) — writes that its resync then discards.
    // With it, every client subscribes to +switch-master and reconnects.
    failoverDetector: true,
    sentinelReconnectStrategy: () => 2000,
    // A master demoted by other means answers writes with READONLY: reconnect, which asks the sentinels again.
    reconnectOnError: (err) => (err.message.startsWith('READONLY') ? 1 : false),
    ...(password ? { password, sentinelPassword: password } : {}),
    ...(username ? { username } : {}),
  };
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

export function createRedis(url: string, opts: RedisClientOptions = {}): Redis {
  const client = new Redis(redisOptions(url, opts));
  // Errors surface through failed commands and the store's health; an unhandled 'error' event would crash.
  client.on('error', () => {});
  return client;
}
