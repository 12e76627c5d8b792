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
 * `route()` is synchronous (the scheduler calls them
 * in its loop), so they read a local cache: `refresh()` fills it from Redis
 * — call it at start; every write refreshes first. The cache never goes back
 * in generation: a Redis that lost data (restarted empty) does not make the
 * router forget the newest state it has seen, and the next write is numbered
 * above both.
 *
 * recordRewards adds to `{prefix}rewards:{route}` (fields
 * `{version}:count|sum|sumsq|conv` and `{version}:b{bucket}:sum|conv`,
 * HINCRBYFLOAT), which RedisAggregates adds to the replicas' counts. It is
 * not fenced (a reward is an event, not a decision). An event by key is
 * credited from the key's exposure (`{prefix}exposure:{route}:{key}`, written
 * by the proxies); an event with an id is counted once: the id is remembered
 * (`{prefix}reward-id:{route}:{id}`, 24 h) in the same script that counts it.
 */
import type { Redis } from 'ioredis';
import { SluiceError } from '../common/errors.js';
import { fencedExec } from '../common/redis-fence.js';
import type { RedisKeys } from '../common/redis-keys.js';
import { validateWeights } from '../config/routes.js';
import { parseRouteState, type StoredRouteState } from '../common/route-state.js';
import { DEFAULT_EXPOSURE_RETENTION_MS, DEFAULT_MAX_REWARD } from '../config/types.js';
import { hashKey, reassignSlots, slotOfKey } from '../common/slots.js';
import { BUCKET_MASK } from '../common/snapshots.js';
import { REWARD_ID_TTL_MS, type RewardEvent, type RewardTally, type RouteView, type TrafficRouter } from './ports.js';

/** The proxies' default stats flush interval (stats-publisher.ts), plus room for the write. */
const DEFAULT_EXPOSURE_WAIT_MS = 1_200;

/**
 * One reward event, attributed and counted in one step.
 * KEYS: rewards hash, id key ('' = no id), exposure key and conversion key ('' = an event by version).
 * ARGV: version ('' = by key), value, value², id ttl ms, posted at (ms), user bucket (-1 = none), exposure retention ms.
 * Returns { 1, version } when counted, { 0, version } for a repeated id, { -1, '' } for a key with no exposure before `at`.
 * The exposure (written by the proxies, stats-publisher.ts) says which version served the key since
 * when, and which served it before: a reward posted before the key moved goes to the one before.
 */
const RECORD_REWARD = `
local version = ARGV[1]
local generation = ARGV[8]
local latest = false
local since = ''
if KEYS[3] ~= '' then
  local raw = redis.call('GET', KEYS[3])
  if not raw then return {-1, ''} end
  local x = cjson.decode(raw)
  if tonumber(ARGV[5]) >= tonumber(x.s) then
    version = x.v
    latest = true
    since = x.s
    if type(x.g) == 'string' then generation = x.g end
  elseif type(x.pv) == 'string' then
    version = x.pv
    if type(x.pg) == 'string' then generation = x.pg end
  else
    return {-1, ''}
  end
end
if KEYS[2] ~= '' and not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[4]) then return {0, version} end
local conv = 0
if tonumber(ARGV[2]) > 0 then
  conv = 1
  -- The control sees exposures, not requests: a key converts once per exposure to a version.
  if latest then
    if redis.call('GET', KEYS[4]) == since then conv = 0 else redis.call('SET', KEYS[4], since, 'PX', ARGV[7]) end
  end
end
redis.call('HINCRBYFLOAT', KEYS[1], version .. ':count', 1)
redis.call('HINCRBYFLOAT', KEYS[1], version .. ':sum', ARGV[2])
redis.call('HINCRBYFLOAT', KEYS[1], version .. ':sumsq', ARGV[3])
if conv == 1 then redis.call('HINCRBYFLOAT', KEYS[1], version .. ':conv', 1) end
-- Per routing generation too: the winner test compares versions within the period that served the user.
if generation ~= '' then
  local g = version .. ':g' .. generation .. ':'
  redis.call('HINCRBYFLOAT', KEYS[1], g .. 'count', 1)
  redis.call('HINCRBYFLOAT', KEYS[1], g .. 'sum', ARGV[2])
  redis.call('HINCRBYFLOAT', KEYS[1], g .. 'sumsq', ARGV[3])
  if conv == 1 then redis.call('HINCRBYFLOAT', KEYS[1], g .. 'conv', 1) end
end
if ARGV[6] ~= '-1' then
  redis.call('HINCRBYFLOAT', KEYS[1], version .. ':b' .. ARGV[6] .. ':sum', ARGV[2])
  if conv == 1 then redis.call('HINCRBYFLOAT', KEYS[1], version .. ':b' .. ARGV[6] .. ':conv', 1) end
end
return {1, version}
`;

export interface RedisRouterOptions {
  /** rewards.maxValue; the API refuses larger absolute values. */
  readonly maxRewardValue?: number;
  /**
   * How long to wait before looking a key up a second time: a key first
   * served less than one stats flush ago is not in Redis yet.
   */
  readonly exposureWaitMs?: number;
  /** rewards.exposureRetention: how long a key's conversion is remembered. */
  readonly exposureRetentionMs?: number;
}

export class RedisRouter implements TrafficRouter {
  readonly #cache = new Map<string, StoredRouteState>();

  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    /** The leader's fencing token; null when this control replica is not the leader. */
    private readonly epoch: () => number | null,
    private readonly options: RedisRouterOptions = {},
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

  async setWeights(route: string, weights: Readonly<Record<string, number>>, source: string): Promise<number> {
    const epoch = this.#leaderEpoch();
    const prev = await this.#current(route);
    // validateWeights reads only the names.
    const checked = validateWeights({ versions: prev.versions.map((v) => ({ name: v.name, url: v.url, basePath: '' })) }, weights);
    if ('errors' in checked) throw new SluiceError('SLUICE_WEIGHTS_INVALID', `weights for route ${route} are invalid`, checked.errors);
    const slots = reassignSlots(
      Uint8Array.from(prev.slots),
      prev.versions.map((v) => checked.weights[v.name] ?? 0),
    );
    const generation = prev.generation + 1;
    await this.#write(route, epoch, {
      generation,
      weights: checked.weights,
      slots: Array.from(slots),
      versions: prev.versions,
      source,
      at: Date.now(),
    });
    return generation;
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

  /** Where the key's slot points now; diagnostics only: rewards by key go where the key was served (recordRewards). */
  versionOfKey(route: string, key: string): string | null {
    const s = this.#cache.get(route);
    if (!s) return null;
    return s.versions[s.slots[slotOfKey(key)]!]?.name ?? null;
  }

  get maxRewardValue(): number {
    return this.options.maxRewardValue ?? DEFAULT_MAX_REWARD;
  }

  async recordRewards(route: string, events: readonly RewardEvent[], at: number): Promise<RewardTally> {
    const tally: RewardTally = { accepted: 0, duplicates: 0, unattributed: 0 };
    let unknown: RewardEvent[] = [];
    for (const e of events) {
      // Like the in-process router: a reward for a version nobody knows is dropped.
      if (e.key === undefined && !this.#cache.get(route)?.versions.some((v) => v.name === e.version)) tally.unattributed++;
      else if (!(await this.#record(route, e, at, tally))) unknown.push(e);
    }
    if (unknown.length > 0) {
      // Proxies write exposures with their stats, once per flush: a key served just now may not be there yet.
      await new Promise((r) => setTimeout(r, this.options.exposureWaitMs ?? DEFAULT_EXPOSURE_WAIT_MS));
      const again = unknown;
      unknown = [];
      for (const e of again) if (!(await this.#record(route, e, at, tally))) tally.unattributed++;
    }
    return tally;
  }

  /** False when the event's key has no exposure before `at` (yet). */
  async #record(route: string, e: RewardEvent, at: number, tally: RewardTally): Promise<boolean> {
    const byKey = e.key !== undefined;
    try {
      // One script: attribution, the id check and the counts land together or not at all.
      const [status] = (await this.redis.eval(
        RECORD_REWARD,
        4,
        this.keys.rewards(route),
        e.id == null ? '' : this.keys.rewardId(route, e.id),
        byKey ? this.keys.exposure(route, e.key) : '',
        byKey ? this.keys.rewardConversion(route, e.key) : '',
        byKey ? '' : e.version,
        String(e.value),
        String(e.value * e.value),
        String(REWARD_ID_TTL_MS),
        String(at),
        byKey ? String(hashKey(e.key) & BUCKET_MASK) : '-1',
        String(this.options.exposureRetentionMs ?? DEFAULT_EXPOSURE_RETENTION_MS),
        // A reward by version has no exposure: it counts under the generation in force now.
        String(this.#cache.get(route)?.generation ?? ''),
      )) as [number, string];
      if (status === -1) return false;
      if (status === 1) tally.accepted++;
      else tally.duplicates++;
      return true;
    } catch (err) {
      throw new SluiceError('SLUICE_STORE_UNAVAILABLE', `cannot record a reward for route ${route}: ${(err as Error).message}`);
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
