/**
 * One undici Pool per (version origin, role). Pools live as long as the
 * process: routing tables are rebuilt on every weight change and only point
 * at them. Shadow traffic gets pools of its own so that a hung shadow can
 * never take the connections a primary request needs.
 */
import type { Socket } from 'node:net';
import { buildConnector, Client, Pool, type Dispatcher } from 'undici';
import type { ProxyOptions, TimeoutsConfig } from '../config/types.js';

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

function connector(connectMs: number): buildConnector.connector {
  const connect = buildConnector({ timeout: connectMs });
  return (options, callback) =>
    connect(options, (...args) => {
      if (args[0] === null && args[1]) keepReadingAfterWriteError(args[1]);
      callback(...args);
    });
}

export class Upstreams {
  readonly #pools = new Map<string, UpstreamPool>();

  constructor(private readonly options: ProxyOptions) {}

  get(origin: string, role: PoolRole, timeouts: TimeoutsConfig): UpstreamPool {
    const key = `${role} ${origin} ${timeouts.connectMs} ${timeouts.requestMs}`;
    let pool = this.#pools.get(key);
    if (!pool) {
      pool = new UpstreamPool(origin, {
        connections: this.options.connectionsPerVersion,
        pipelining: 1, // one slow response must not hold up others on the same connection
        keepAliveTimeout: this.options.upstreamKeepAliveMs,
        keepAliveMaxTimeout: this.options.upstreamKeepAliveMs,
        headersTimeout: timeouts.requestMs,
        bodyTimeout: timeouts.requestMs,
        connect: connector(timeouts.connectMs),
      });
      this.#pools.set(key, pool);
    }
    return pool;
  }

  /** Sockets held by every pool: connected, and in use, for leak checks and /stats. */
  poolStats(): Array<{ origin: string; role: string; connected: number; running: number; pending: number }> {
    return [...this.#pools.entries()].map(([key, p]) => {
      const [role, origin] = key.split(' ');
      return { origin: origin!, role: role!, connected: p.stats.connected, running: p.stats.running, pending: p.stats.pending };
    });
  }

  async close(): Promise<void> {
    await Promise.all([...this.#pools.values()].map((p) => p.close().catch(() => p.destroy())));
    this.#pools.clear();
  }
}
