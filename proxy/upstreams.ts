/**
 * One undici Pool per (version origin, role). Pools live as long as the
 * process: routing tables are rebuilt on every weight change and only point
 * at them. Shadow traffic gets pools of its own so that a hung shadow can
 * never take the connections a primary request needs.
 */
import type { Socket } from 'node:net';
import { buildConnector, Client, Pool, type Dispatcher } from 'undici';
import type { ProxyOptions, TimeoutsConfig, VersionConfig } from '../config/types.js';
import { H2Upstream } from './h2-upstreams.js';
import { tlsKey, upstreamTlsOptions } from './upstream-tls.js';

export type PoolRole = 'primary' | 'shadow';

/**
 * undici's Client builds a request inside dispatch(); when it refuses one (two
 * Host headers, say) it calls the handler's onError and returns false, which
 * its Pool reads as "this connection is busy" — and, nothing being queued on
 * it, never uses that connection again. connectionsPerVersion such requests,
 * from any client, left a version unserved for good (test/smuggling-corpus).
 * A refused request left the connection as idle as it was. `stats` allocates,
 * so it is read only when dispatch said false.
 */
class PooledClient extends Client {
  override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    return super.dispatch(opts, handler) || this.stats.size === 0;
  }
}

function pooledClient(origin: URL, opts: object): Dispatcher {
  return new PooledClient(origin, opts as Client.Options);
}

/** A version's pool that can also open a connection of its own, with the same settings, for a retry. */
export class UpstreamPool extends Pool {
  readonly #origin: string;
  readonly #options: Pool.Options;

  constructor(origin: string, options: Pool.Options) {
    super(origin, { ...options, factory: pooledClient });
    this.#origin = origin;
    this.#options = options;
  }

  /** A new connection, never an idle one that may have gone stale; the caller closes it. */
  freshClient(): Client {
    return new Client(this.#origin, this.#options);
  }
}

type WritableSocket = Socket & { _writeGeneric(writev: boolean, data: unknown, encoding: string, cb: (err?: Error | null) => void): void };

/**
 * An upstream may answer before it has read the whole request (413 to a large
 * upload, then close). Our next body write then fails with EPIPE/ECONNRESET,
 * and Node would destroy the socket — and the answer still unread in its
 * receive buffer — before undici parses it: the client got a 502 instead of
 * the 413. So a write error only stops the writing; the rest of the body is
 * dropped and reading goes on, so undici sees the answer, or the close (and
 * its error) if there was none. Once per connection, not per request.
 */
function keepReadingAfterWriteError(socket: Socket): void {
  const s = socket as WritableSocket;
  const write = s._writeGeneric;
  let broken = false;
  s._writeGeneric = function (writev, data, encoding, cb) {
    if (broken) return cb();
    write.call(this, writev, data, encoding, (err) => {
      const code = (err as { code?: string } | null | undefined)?.code;
      if (code === 'EPIPE' || code === 'ECONNRESET') {
        broken = true;
        return cb();
      }
      cb(err);
    });
  };
}

function connector(connectMs: number, tls: object): buildConnector.connector {
  const connect = buildConnector({ timeout: connectMs, ...tls });
  return (options, callback) =>
    connect(options, (...args) => {
      if (args[0] === null && args[1]) keepReadingAfterWriteError(args[1]);
      callback(...args);
    });
}

/** What a pool connects to: the origin, and how (protocol, TLS settings). */
export type UpstreamTarget = Pick<VersionConfig, 'url' | 'protocol' | 'tls'>;

export class Upstreams {
  readonly #pools = new Map<string, UpstreamPool>();
  readonly #h2 = new Map<string, H2Upstream>();

  constructor(private readonly options: ProxyOptions) {}

  /**
   * The undici pool for a version: requests that arrive over HTTP/1.1, and
   * HTTP/2 requests to http1 versions. h2 and h2c versions get undici's
   * HTTP/2 client here (allowH2, useH2c), one connection carrying many streams.
   */
  get(target: UpstreamTarget, role: PoolRole, timeouts: TimeoutsConfig): UpstreamPool {
    const key = `${role} ${target.url} ${target.protocol} ${timeouts.connectMs} ${timeouts.requestMs} ${tlsKey(target.tls)}`;
    let pool = this.#pools.get(key);
    if (!pool) {
      const h2 = target.protocol !== 'http1';
      const tls = target.url.startsWith('https:') ? upstreamTlsOptions(target.tls) : {};
      pool = new UpstreamPool(target.url, {
        connections: this.options.connectionsPerVersion,
        // HTTP/1.1: one slow response must not hold up others on the same connection. HTTP/2 multiplexes.
        pipelining: h2 ? 100 : 1,
        keepAliveTimeout: this.options.upstreamKeepAliveMs,
        keepAliveMaxTimeout: this.options.upstreamKeepAliveMs,
        headersTimeout: timeouts.requestMs,
        bodyTimeout: timeouts.requestMs,
        // Our connector is a function, so undici hands it no options of its own: h2c must be asked for here.
        connect: connector(timeouts.connectMs, h2 ? { ...tls, allowH2: true, useH2c: target.protocol === 'h2c' } : tls),
        ...(h2 ? { allowH2: true, useH2c: target.protocol === 'h2c' } : {}),
      } as Pool.Options);
      this.#pools.set(key, pool);
    }
    return pool;
  }

  /** The node:http2 sessions of an h2/h2c version, for streams that arrive over HTTP/2 (h2-upstreams.ts); null for http1. */
  h2(target: UpstreamTarget, role: PoolRole, connectMs: number): H2Upstream | null {
    if (target.protocol === 'http1') return null;
    const key = `${role} ${target.url} ${target.protocol} ${connectMs} ${tlsKey(target.tls)}`;
    let up = this.#h2.get(key);
    if (!up) {
      const tls = target.protocol === 'h2' ? upstreamTlsOptions(target.tls) : null;
      up = new H2Upstream(target.url, target.protocol, tls, connectMs, this.options.upstreamKeepAliveMs);
      this.#h2.set(key, up);
    }
    return up;
  }

  /** Sockets held by every pool: connected, and in use, for leak checks and /stats. */
  poolStats(): Array<{ origin: string; role: string; connected: number; running: number; pending: number }> {
    return [...this.#pools.entries()].map(([key, p]) => {
      const [role, origin] = key.split(' ');
      return { origin: origin!, role: role!, connected: p.stats.connected, running: p.stats.running, pending: p.stats.pending };
    });
  }

  /** HTTP/2 sessions held per version and the streams open on them, for /stats and leak checks. */
  h2Stats(): Array<{ origin: string; role: string; sessions: number; streams: number }> {
    return [...this.#h2.entries()].map(([key, u]) => {
      const [role, origin] = key.split(' ');
      return { origin: origin!, role: role!, ...u.stats() };
    });
  }

  async close(): Promise<void> {
    await Promise.all([
      ...[...this.#pools.values()].map((p) => p.close().catch(() => p.destroy())),
      ...[...this.#h2.values()].map((u) => u.close()),
    ]);
    this.#pools.clear();
    this.#h2.clear();
  }
}
