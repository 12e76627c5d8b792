/**
 * All-in-one mode: the control plane's ports implemented over the proxy in
 * the same process — measurements straight from its counters, weights
 * straight into its routing table.
 */
import { slotOfKey } from '../proxy/slots.js';
import type { ProxyServer } from '../proxy/proxy-server.js';
import type { VersionSnapshot } from '../proxy/stats.js';
import type { AggregateSource, TrafficRouter } from './ports.js';

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

  async recordReward(route: string, version: string, value: number): Promise<void> {
    const v = this.proxy.table.get(route)?.route.byName.get(version);
    v?.stats.recordReward(value);
  }
}
