/**
 * Redis mode: the control plane's TrafficRouter without a proxy in its
 * process. Routing decisions are written as the shared routing state that
 * every proxy replica follows (proxy/route-sync.ts; key layout in
 * common/redis-keys.ts):
 *
 *   {prefix}route:{name}     JSON { generation, weights, slots, versions, source, at }
 *   {prefix}routes           set of route names
 *   {prefix}routes:changed   channel: the route name, published after each write
 *
 * Every write is fenced (common/redis-fence.ts): it lands only while the
 * leader's epoch is still the one in Redis, so a former leader that wakes up
 * after a failover cannot overwrite its successor. A control replica that is
 * not the leader (`epoch()` returns null) cannot write at all.
 *
 * `route()` and `versionOfKey()` are synchronous (the scheduler calls them
 * in its loop), so they read a local cache: `refresh()` fills it from Redis
 * — call it at start; every write refreshes first. The cache never goes back
 * in generation: a Redis that lost data (restarted empty) does not make the
 * router forget the newest state it has seen, and the next write is numbered
 * above both.
 *
 * recordReward adds to `{prefix}rewards:{route}` (fields
 * `{version}:count|sum|sumsq`, HINCRBYFLOAT), which RedisAggregates adds to
 * the replicas' counts. It is not fenced (a reward is an event, not a
 * decision). An event with an id is counted once: the id is remembered
 * (`{prefix}reward-id:{route}:{id}`, 24 h) in the same script that counts it.
 */
import type { Redis } from 'ioredis';
import { SluiceError } from '../common/errors.js';
import { fencedExec } from '../common/redis-fence.js';
import type { RedisKeys } from '../common/redis-keys.js';
import { validateWeights } from '../proxy/config.js';
import { parseRouteState, type StoredRouteState } from '../proxy/route-sync.js';
import { reassignSlots, slotOfKey } from '../proxy/slots.js';
import { REWARD_ID_TTL_MS, type RouteView, type TrafficRouter } from './ports.js';

/** KEYS: rewards hash, id key ('' = no id). ARGV: version, value, value², id ttl ms. Returns 1 when counted, 0 for a repeated id. */
const RECORD_REWARD = `
if KEYS[2] ~= '' and not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[4]) then return 0 end
redis.call('HINCRBYFLOAT', KEYS[1], ARGV[1] .. ':count', 1)
redis.call('HINCRBYFLOAT', KEYS[1], ARGV[1] .. ':sum', ARGV[2])
redis.call('HINCRBYFLOAT', KEYS[1], ARGV[1] .. ':sumsq', ARGV[3])
return 1
`;

export class RedisRouter implements TrafficRouter {
  readonly #cache = new Map<string, StoredRouteState>();

  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    /** The leader's fencing token; null when this control replica is not the leader. */
    private readonly epoch: () => number | null,
  ) {}

  /** Reads every stored route state into the cache. Rejects with SLUICE_STORE_UNAVAILABLE. */
  async refresh(): Promise<void> {
    let names: string[];
    let values: Array<string | null>;
    try {
      if (this.redis.status === 'wait') await this.redis.connect().catch(() => {});
      names = await this.redis.smembers(this.keys.routes());
      values = names.length === 0 ? [] : await this.redis.mget(names.map((n) => this.keys.route(n)));
    } catch (err) {
      throw new SluiceError('SLUICE_STORE_UNAVAILABLE', `cannot read the routing state: ${(err as Error).message}`);
    }
    names.forEach((name, i) => {
      const json = values[i] ?? null;
      const stored = json === null ? null : parseRouteState(json);
      const cached = this.#cache.get(name);
      if (stored !== null && (cached === undefined || stored.generation >= cached.generation)) this.#cache.set(name, stored);
    });
  }

  /** Names of the routes in the cache. */
  names(): string[] {
    return [...this.#cache.keys()].sort();
  }

  /** The generation of the cached state of a route (null: unknown route). */
  generation(route: string): number | null {
    return this.#cache.get(route)?.generation ?? null;
  }

  /** The cached state of a route as stored (null: unknown route). */
  state(route: string): StoredRouteState | null {
    return this.#cache.get(route) ?? null;
  }

  route(route: string): RouteView | null {
    const s = this.#cache.get(route);
    if (!s) return null;
    const versions = s.versions.map((v) => v.name);
    return {
      versions,
      weights: Object.fromEntries(versions.map((n) => [n, s.weights[n] ?? 0])),
      urls: Object.fromEntries(s.versions.map((v) => [v.name, v.url])),
    };
  }

  async setWeights(route: string, weights: Readonly<Record<string, number>>, source: string): Promise<void> {
    const epoch = this.#leaderEpoch();
    const prev = await this.#current(route);
    // validateWeights reads only the names.
    const checked = validateWeights({ versions: prev.versions.map((v) => ({ name: v.name, url: v.url, basePath: '' })) }, weights);
    if ('errors' in checked) throw new SluiceError('SLUICE_WEIGHTS_INVALID', `weights for route ${route} are invalid`, checked.errors);
    const slots = reassignSlots(
      Uint8Array.from(prev.slots),
      prev.versions.map((v) => checked.weights[v.name] ?? 0),
    );
    await this.#write(route, epoch, {
      generation: prev.generation + 1,
      weights: checked.weights,
      slots: Array.from(slots),
      versions: prev.versions,
      source,
      at: Date.now(),
    });
  }

  async addVersion(route: string, name: string, url: string): Promise<void> {
    const epoch = this.#leaderEpoch();
    const prev = await this.#current(route);
    if (prev.versions.some((v) => v.name === name)) return;
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new SluiceError('SLUICE_BAD_REQUEST', `version ${name} of route ${route}: invalid URL ${JSON.stringify(url)}`);
    }
    // Slots are bytes on the replicas.
    if (prev.versions.length >= 255) throw new SluiceError('SLUICE_BAD_REQUEST', `route ${route} has too many versions`);
    await this.#write(route, epoch, {
      generation: prev.generation + 1,
      weights: { ...prev.weights, [name]: 0 },
      slots: prev.slots,
      versions: [...prev.versions, { name, url: parsed.origin + parsed.pathname.replace(/\/+$/, '') }],
      source: 'add-version',
      at: Date.now(),
    });
  }

  versionOfKey(route: string, key: string): string | null {
    const s = this.#cache.get(route);
    if (!s) return null;
    return s.versions[s.slots[slotOfKey(key)]!]?.name ?? null;
  }

  async recordReward(route: string, version: string, value: number, id: string | null = null): Promise<boolean> {
    // Like the in-process router: a reward for a version nobody knows is dropped.
    if (!this.#cache.get(route)?.versions.some((v) => v.name === version)) return false;
    const key = this.keys.rewards(route);
    try {
      // One script: the id check and the counts land together or not at all.
      const counted = await this.redis.eval(
        RECORD_REWARD,
        2,
        key,
        id === null ? '' : this.keys.rewardId(route, id),
        version,
        String(value),
        String(value * value),
        String(REWARD_ID_TTL_MS),
      );
      return counted === 1;
    } catch (err) {
      throw new SluiceError('SLUICE_STORE_UNAVAILABLE', `cannot record a reward for ${route}/${version}: ${(err as Error).message}`);
    }
  }

  #leaderEpoch(): number {
    const epoch = this.epoch();
    if (epoch === null) throw new SluiceError('SLUICE_FENCED', 'this control replica is not the leader');
    return epoch;
  }

  /** The route's state after a refresh, numbered at least as high as anything this router has seen. */
  async #current(route: string): Promise<StoredRouteState> {
    await this.refresh();
    const s = this.#cache.get(route);
    if (!s) throw new SluiceError('SLUICE_UNKNOWN_ROUTE', `no route named "${route}" in the shared routing state`);
    return s;
  }

  async #write(route: string, epoch: number, next: StoredRouteState): Promise<void> {
    await fencedExec(this.redis, this.keys.leaderEpoch(), epoch, [
      ['SET', this.keys.route(route), JSON.stringify(next)],
      ['SADD', this.keys.routes(), route],
      ['PUBLISH', this.keys.routesChanged(), route],
    ]);
    const cached = this.#cache.get(route);
    if (cached === undefined || next.generation > cached.generation) this.#cache.set(route, next);
  }
}
