/**
 * All-in-one mode: the control plane's ports implemented over the proxy in
 * the same process — measurements straight from its counters, weights
 * straight into its routing table.
 */
import { slotOfKey } from '../proxy/slots.js';
import type { ProxyServer } from '../proxy/proxy-server.js';
import type { VersionSnapshot } from '../proxy/stats.js';
import { REWARD_ID_TTL_MS, type AggregateSource, type TrafficRouter } from './ports.js';

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

  async setWeights(route: string, weights: Readonly<Record<string, number>>, source: string): Promise<void> {
    this.proxy.setWeights(route, weights, source);
  }

  async addVersion(route: string, name: string, url: string): Promise<void> {
    this.proxy.addVersion(route, name, url);
  }

  versionOfKey(route: string, key: string): string | null {
    const s = this.proxy.table.get(route);
    if (!s) return null;
    return s.route.versions[s.slots[slotOfKey(key)]!]?.name ?? null;
  }

  async recordReward(route: string, version: string, value: number, id: string | null = null): Promise<boolean> {
    const v = this.proxy.table.get(route)?.route.byName.get(version);
    if (v === undefined) return false;
    if (id !== null && !this.#ids.admit(`${route}\u0000${id}`)) return false;
    v.stats.recordReward(value);
    return true;
  }
}
