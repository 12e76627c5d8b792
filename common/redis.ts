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
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new SluiceError('SLUICE_CONFIG_INVALID', `invalid Redis URL`, [{ path: 'store.redis', message: 'expected redis://, rediss:// or sentinel:// URL' }]);
  }
  const password = u.password ? decodeURIComponent(u.password) : undefined;
  const username = u.username ? decodeURIComponent(u.username) : undefined;
  const db = u.pathname.length > 1 && u.protocol !== 'sentinel:' ? Number(u.pathname.slice(1)) : 0;
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
    case 'sentinel:': {
      // URL parsing keeps only the first host: read the authority by hand.
      const authority = url.slice('sentinel://'.length).split('/')[0]!;
      const hosts = authority.includes('@') ? authority.slice(authority.lastIndexOf('@') + 1) : authority;
      const name = decodeURIComponent(u.pathname.slice(1));
      if (!name) {
        throw new SluiceError('SLUICE_CONFIG_INVALID', 'invalid Redis URL', [{ path: 'store.redis', message: 'sentinel:// needs the master name as its path' }]);
      }
      return {
        ...common,
        name,
        sentinels: hosts.split(',').map((h) => {
          const [host, port] = h.split(':');
          return { host: host!, port: port ? Number(port) : 26379 };
        }),
        ...(password ? { password, sentinelPassword: password } : {}),
      };
    }
    default:
      throw new SluiceError('SLUICE_CONFIG_INVALID', 'invalid Redis URL', [{ path: 'store.redis', message: `unsupported scheme ${u.protocol}` }]);
  }
}

export function createRedis(url: string, opts: RedisClientOptions = {}): Redis {
  const client = new Redis(redisOptions(url, opts));
  // Errors surface through failed commands and the store's health; an unhandled 'error' event would crash.
  client.on('error', () => {});
  return client;
}
