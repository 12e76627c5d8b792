/**
 * All-in-one mode: the control plane's ports implemented over the proxy in
 * the same process — measurements straight from its counters, weights
 * straight into its routing table.
 */
import { hashKey } from '../common/slots.js';
import type { ProxyServer } from '../proxy/proxy-server.js';
import { BUCKET_MASK, type VersionSnapshot } from '../common/snapshots.js';
import { REWARD_ID_TTL_MS, type AggregateSource, type ReplicaGenerations, type RewardEvent, type RewardTally, type TrafficRouter } from './ports.js';

/** Reward ids kept in memory at most: a bound on memory whatever clients send (oldest forgotten first). */
const MAX_REMEMBERED_IDS = 100_000;

/** Ids seen within `ttlMs`, at most `capacity` of them; insertion order is age order. */
export class RecentIds {
  readonly #seen = new Map<string, number>();

  constructor(
    private readonly ttlMs: number,
    private readonly capacity: number,
  ) {}

  /** True the first time an id is seen (within the ttl and capacity); false for a repeat. */
  admit(id: string, now = Date.now()): boolean {
    const at = this.#seen.get(id);
    if (at !== undefined && now - at < this.ttlMs) return false;
    this.#seen.delete(id);
    // Oldest first: drop the expired, and make room for one more.
    for (const [old, when] of this.#seen) {
      if (now - when < this.ttlMs && this.#seen.size < this.capacity) break;
      this.#seen.delete(old);
    }
    this.#seen.set(id, now);
    return true;
  }
}

export class InProcessAggregates implements AggregateSource {
  constructor(private readonly proxy: ProxyServer) {}

  async versions(route: string): Promise<Record<string, VersionSnapshot>> {
    const state = this.proxy.table.get(route);
    const out: Record<string, VersionSnapshot> = {};
    for (const v of state?.route.versions ?? []) out[v.name] = v.stats.snapshot();
    return out;
  }

  async generations(route: string): Promise<ReplicaGenerations[]> {
    const state = this.proxy.table.get(route);
    if (!state) return [];
    return [{ replica: 'local', generations: state.route.counters.snapshot(state.route.versions.map((v) => v.name)) }];
  }
}

export class InProcessRouter implements TrafficRouter {
  readonly #ids = new RecentIds(REWARD_ID_TTL_MS, MAX_REMEMBERED_IDS);

  constructor(private readonly proxy: ProxyServer) {}

  route(route: string) {
    const s = this.proxy.table.get(route);
    if (!s) return null;
    return {
      versions: s.route.versions.map((v) => v.name),
      weights: s.weights,
      urls: Object.fromEntries(s.route.versions.map((v) => [v.name, v.url])),
    };
  }

  async setWeights(route: string, weights: Readonly<Record<string, number>>, source: string): Promise<number> {
    return this.proxy.setWeights(route, weights, source).generation;
  }

  async addVersion(route: string, name: string, url: string): Promise<void> {
    this.proxy.addVersion(route, name, url);
  }

  get maxRewardValue(): number {
    return this.proxy.config.rewards.maxValue;
  }

  async recordRewards(route: string, events: readonly RewardEvent[], at: number): Promise<RewardTally> {
    const tally: RewardTally = { accepted: 0, duplicates: 0, unattributed: 0 };
    const state = this.proxy.table.get(route);
    for (const e of events) {
      const id = e.id ?? null;
      if (state === undefined) {
        tally.unattributed++;
        continue;
      }
      if (e.key === undefined) {
        const v = state.route.byName.get(e.version);
        if (v === undefined) tally.unattributed++;
        else if (id !== null && !this.#ids.admit(`${route}\u0000${id}`)) tally.duplicates++;
        else {
          v.stats.recordReward(e.value);
          tally.accepted++;
        }
        continue;
      }
      const credit = state.route.exposures?.attribute(e.key, at) ?? null;
      // Versions are only ever appended to a route, so an index stays the same version.
      const v = credit === null ? undefined : state.route.versions[credit.version];
      if (credit === null || v === undefined) {
        tally.unattributed++;
        continue;
      }
      if (id !== null && !this.#ids.admit(`${route}\u0000${id}`)) {
        tally.duplicates++;
        continue;
      }
      const x = credit.exposure;
      // The latest request converts once (its flag); an earlier one is not tracked any more.
      const conversion = e.value > 0 && (!credit.latest || x.convert(x.seq));
      v.stats.recordReward(e.value, conversion, hashKey(e.key) & BUCKET_MASK);
      const generation = credit.latest ? x.generation : x.prevGeneration;
      state.route.counters.get(generation)?.recordReward(credit.version, e.value, conversion);
      tally.accepted++;
    }
    return tally;
  }
}
