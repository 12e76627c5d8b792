/**
 * One undici Pool per (version origin, role). Pools live as long as the
 * process: routing tables are rebuilt on every weight change and only point
 * at them. Shadow traffic gets pools of its own so that a hung shadow can
 * never take the connections a primary request needs.
 */
import { Pool } from 'undici';
import type { ProxyOptions, TimeoutsConfig } from './config-types.js';

export type PoolRole = 'primary' | 'shadow';

export class Upstreams {
  readonly #pools = new Map<string, Pool>();

  constructor(private readonly options: ProxyOptions) {}

  get(origin: string, role: PoolRole, timeouts: TimeoutsConfig): Pool {
    const key = `${role} ${origin} ${timeouts.connectMs} ${timeouts.requestMs}`;
    let pool = this.#pools.get(key);
    if (!pool) {
      pool = new Pool(origin, {
        connections: this.options.connectionsPerVersion,
        pipelining: 1, // one slow response must not hold up others on the same connection
        keepAliveTimeout: this.options.upstreamKeepAliveMs,
        keepAliveMaxTimeout: this.options.upstreamKeepAliveMs,
        headersTimeout: timeouts.requestMs,
        bodyTimeout: timeouts.requestMs,
        connect: { timeout: timeouts.connectMs },
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
