/**
 * A proxy replica's side of the shared routing state (Redis mode). The
 * control-plane leader writes each route's state under `{prefix}route:{name}`
 * (see common/redis-keys.ts) with a generation that only grows, and publishes
 * the route name on `{prefix}routes:changed`. A replica:
 *
 * - **seeds** at start: for each route of its own config it stores its state
 *   when the key is absent (every replica runs the same config, so whichever
 *   writes first writes what the others would have: no leader needed), and
 *   adds the name to `{prefix}routes`;
 * - **listens**: a message on the channel makes it fetch that route and apply
 *   it — the fast path;
 * - **polls** every route every `pollMs`, because pub/sub messages sent while
 *   its subscriber connection is down are lost for good;
 * - **applies only newer generations** (the proxy ignores older ones too), so
 *   messages and polls may arrive in any order, twice, or late;
 * - **repairs**: a route whose key is gone (Redis restarted empty, failed
 *   over to a replica that had not received it) or holds an *older*
 *   generation than the one this replica serves is written back with the
 *   replica's state — atomically, in one Lua script that writes only if the
 *   stored generation is still older — so a Redis that lost data does not
 *   send the replicas back in time;
 * - **never stops serving**: Redis errors are logged (rate-limited), the
 *   replica keeps its last routing state, and timers never throw.
 *
 * Nothing here is on the request path: the proxy reads its in-memory table,
 * and a new state is swapped in with one assignment.
 */
import type { Redis } from 'ioredis';
import { RateLimitedLog, type Logger } from '../common/logger.js';
import type { RedisKeys } from '../common/redis-keys.js';
import type { ProxyServer } from './proxy-server.js';
import type { RouteState } from './routing-table.js';
import { parseRouteState, type StoredRouteState } from '../common/route-state.js';

/** A replica's current state of a route in the stored form. */
export function toStoredState(state: RouteState, source: string): StoredRouteState {
  return {
    generation: state.generation,
    weights: state.weights,
    slots: Array.from(state.slots),
    versions: state.route.versions.map((v) => ({ name: v.name, url: v.url + v.basePath })),
    source,
    at: Date.now(),
  };
}

/**
 * Stores ARGV[1] (a state of generation ARGV[2]) under KEYS[1] unless the
 * stored state is at least as new; adds the route name ARGV[3] to the set
 * KEYS[2]. Returns the stored JSON when it was kept; otherwise stores it,
 * publishes the name on channel ARGV[4] and returns 0 when the key was absent,
 * 1 when it held an older (or unreadable) state.
 */
const SEED = `
redis.call('SADD', KEYS[2], ARGV[3])
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, st = pcall(cjson.decode, cur)
  if ok and type(st) == 'table' and type(st.generation) == 'number' and st.generation >= tonumber(ARGV[2]) then
    return cur
  end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[4], ARGV[3])
if cur then return 1 end
return 0
`;

export interface RouteSyncOptions {
  readonly proxy: ProxyServer;
  /** For commands (GET, MGET, EVAL). From common/redis.ts createRedis. */
  readonly redis: Redis;
  /** A second connection, used only for SUBSCRIBE. */
  readonly subscriber: Redis;
  readonly keys: RedisKeys;
  readonly log: Logger;
  /** Milliseconds between two polls of every route (default 1000). */
  readonly pollMs?: number;
}

export class RouteSync {
  readonly #proxy: ProxyServer;
  readonly #redis: Redis;
  readonly #sub: Redis;
  readonly #keys: RedisKeys;
  readonly #log: Logger;
  readonly #pollMs: number;
  readonly #lastAppliedAt = new Map<string, number>();
  readonly #errors = new RateLimitedLog(5000);
  #timer: NodeJS.Timeout | null = null;
  #running = false;
  #subscribed = false;
  #up: boolean | null = null;
  #polling: Promise<void> | null = null;
  #polls = 0;

  constructor(opts: RouteSyncOptions) {
    this.#proxy = opts.proxy;
    this.#redis = opts.redis;
    this.#sub = opts.subscriber;
    this.#keys = opts.keys;
    this.#log = opts.log;
    this.#pollMs = opts.pollMs ?? 1000;
  }

  /** Whether the last exchange with Redis succeeded (false before the first one). */
  get up(): boolean {
    return this.#up === true;
  }

  /** The generation this replica serves for a route (null: no such route). */
  generation(route: string): number | null {
    return this.#proxy.table.get(route)?.generation ?? null;
  }

  /** How many polls of every route have ended (by the timer or `poll()`), whatever they found or failed on. */
  get polls(): number {
    return this.#polls;
  }

  /** When this replica last applied a state of the route read from Redis (ms since the epoch), or null. */
  lastAppliedAt(route: string): number | null {
    return this.#lastAppliedAt.get(route) ?? null;
  }

  /**
   * Connects (when the clients have not yet), subscribes, seeds and applies
   * once, then polls every `pollMs`. Resolves even when Redis is away: the
   * replica serves its configured routes and catches up when Redis returns.
   */
  async start(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    this.#sub.on('message', this.#onMessage);
    this.#sub.on('ready', this.#onSubscriberReady);
    this.#sub.on('close', this.#onSubscriberClose);
    await Promise.all([connectIfIdle(this.#redis), connectIfIdle(this.#sub)]);
    await this.#subscribe();
    await this.poll();
    this.#schedule();
  }

  /** Stops polling and listening. The Redis clients belong to the caller and stay open. */
  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#sub.off('message', this.#onMessage);
    this.#sub.off('ready', this.#onSubscriberReady);
    this.#sub.off('close', this.#onSubscriberClose);
    if (this.#subscribed) {
      this.#subscribed = false;
      await this.#sub.unsubscribe(this.#keys.routesChanged()).catch(() => {});
    }
    await this.#polling;
  }

  /** One poll of every route: seed or repair what is missing or older, apply what is newer. Never throws. */
  poll(): Promise<void> {
    this.#polling ??= (async () => {
      if (!this.#subscribed) await this.#subscribe();
      await this.#sync(this.#proxy.table.states.map((s) => s.route.name));
    })().finally(() => {
      this.#polls++;
      this.#polling = null;
    });
    return this.#polling;
  }

  #schedule(): void {
    this.#timer = setTimeout(() => {
      void this.poll().finally(() => {
        if (this.#running) this.#schedule();
      });
    }, this.#pollMs);
    this.#timer.unref();
  }

  readonly #onMessage = (channel: string, route: string): void => {
    if (!this.#running || channel !== this.#keys.routesChanged() || !this.#proxy.table.get(route)) return;
    void this.#sync([route]);
  };

  // ioredis re-subscribes by itself after a reconnect; subscribing again is harmless and also covers a
  // client that was closed and connected again by hand, or a first SUBSCRIBE that failed.
  readonly #onSubscriberReady = (): void => {
    if (this.#running) void this.#subscribe();
  };

  readonly #onSubscriberClose = (): void => {
    this.#subscribed = false;
  };

  async #subscribe(): Promise<void> {
    if (this.#sub.status !== 'ready') return;
    try {
      await this.#sub.subscribe(this.#keys.routesChanged());
      this.#subscribed = true;
    } catch (err) {
      this.#failed('subscribe', err);
    }
  }

  /** Reads the routes' states and acts on each. Never throws. */
  async #sync(routes: readonly string[]): Promise<void> {
    if (routes.length === 0) return;
    let values: Array<string | null>;
    try {
      values = await this.#redis.mget(routes.map((r) => this.#keys.route(r)));
    } catch (err) {
      this.#failed('read', err);
      return;
    }
    this.#reachable();
    await Promise.all(
      routes.map(async (route, i) => {
        const json = values[i] ?? null;
        const stored = json === null ? null : parseRouteState(json);
        if (json !== null && stored === null) this.#invalid(route);
        const local = this.#proxy.table.get(route);
        if (!local) return;
        if (stored !== null && stored.generation >= local.generation) {
          this.#apply(route, stored);
          return;
        }
        // Absent (first start, or Redis lost it), unreadable, or older than what this replica serves.
        await this.#seed(route, local);
      }),
    );
  }

  async #seed(route: string, local: RouteState): Promise<void> {
    const state = toStoredState(local, 'seed');
    let kept: string | number;
    try {
      kept = (await this.#redis.eval(
        SEED,
        2,
        this.#keys.route(route),
        this.#keys.routes(),
        JSON.stringify(state),
        String(state.generation),
        route,
        this.#keys.routesChanged(),
      )) as string | number;
    } catch (err) {
      this.#failed('seed', err);
      return;
    }
    this.#reachable();
    if (kept === 0) {
      this.#log.info({ route, generation: state.generation }, 'routing state seeded into the shared store');
      return;
    }
    if (typeof kept === 'number') {
      this.#log.warn({ route, generation: state.generation }, 'shared store held an older routing state than this replica serves (data lost?): wrote this replica’s back');
      return;
    }
    // Someone stored an equal or newer state first.
    const stored = parseRouteState(kept);
    if (stored === null) this.#invalid(route);
    else this.#apply(route, stored);
  }

  /** Applies a stored state when it is newer than the proxy's. */
  #apply(route: string, stored: StoredRouteState): void {
    try {
      let current = this.#proxy.route(route);
      if (stored.generation <= current.generation) {
        if (stored.generation === current.generation && !sameLayout(current, stored)) {
          const held = this.#errors.admit(`diverged/${route}`);
          if (held >= 0) this.#log.warn({ route, generation: stored.generation, suppressed: held }, 'stored routing state differs from this replica at the same generation; the next change repairs it');
        }
        return;
      }
      // Versions added elsewhere (an experiment's candidate) first, so that every slot has a version here.
      for (const v of stored.versions) {
        if (!current.route.byName.has(v.name)) current = this.#proxy.addVersion(route, v.name, v.url);
      }
      // Slots index the stored `versions`; translate to this replica's indices (the same unless orders differ).
      const index = stored.versions.map((v) => current.route.byName.get(v.name)!.index);
      const slots = stored.slots.map((i) => index[i]!);
      const applied = this.#proxy.applyRouteState(route, { generation: stored.generation, weights: stored.weights, slots });
      if (applied) this.#lastAppliedAt.set(route, Date.now());
    } catch (err) {
      const held = this.#errors.admit(`apply/${route}`);
      if (held >= 0) this.#log.warn({ route, generation: stored.generation, err: (err as Error).message, suppressed: held }, 'cannot apply the stored routing state; keeping the current one');
    }
  }

  #invalid(route: string): void {
    const held = this.#errors.admit(`invalid/${route}`);
    if (held >= 0) this.#log.warn({ route, key: this.#keys.route(route), suppressed: held }, 'stored routing state is not valid; replacing it with this replica’s');
  }

  #reachable(): void {
    if (this.#up === false) this.#log.info('routing state store reachable again');
    this.#up = true;
  }

  #failed(what: string, err: unknown): void {
    const wasUp = this.#up;
    this.#up = false;
    const held = this.#errors.admit(`redis/${what}`);
    if (wasUp !== false || held >= 0) {
      this.#log.warn({ op: what, err: (err as Error)?.message, suppressed: Math.max(held, 0) }, 'routing state store unreachable: serving the last routing state');
    }
  }
}

function sameLayout(local: RouteState, stored: StoredRouteState): boolean {
  const names = local.route.versions.map((v) => v.name);
  if (stored.versions.length !== names.length || stored.versions.some((v, i) => v.name !== names[i])) return false;
  if (stored.slots.some((s, i) => s !== local.slots[i])) return false;
  return names.every((n) => (stored.weights[n] ?? 0) === (local.weights[n] ?? 0));
}

async function connectIfIdle(client: Redis): Promise<void> {
  if (client.status !== 'wait') return;
  // Fails when Redis is away; the client keeps reconnecting on its own and the poll catches up.
  await client.connect().catch(() => {});
}
