/**
 * The routing table: everything the request path needs, compiled once and
 * never mutated. A weight change builds a new table that shares the routes'
 * long-lived parts (pools, counters, compiled rules) and is swapped in with a
 * single assignment, so a request in flight keeps the version it was given
 * and a new request always sees a whole table, old or new.
 */
import type { Pool } from 'undici';
import type { MirrorConfig, RouteConfig, StickyConfig, TimeoutsConfig, UpstreamProtocol } from '../config/types.js';
import type { ExposureLog, ExposureRegistry } from './exposures.js';
import { compileRule, type RulePredicate } from './match.js';
import { prefixKey, underPrefix } from './path.js';
import { initialSlots, reassignSlots } from '../common/slots.js';
import type { GenerationCounts, RouteCounters, StatsRegistry, VersionStats } from './stats.js';
import type { Upstreams } from './upstreams.js';
import type { H2Upstream } from './h2-upstreams.js';

export interface Version {
  readonly name: string;
  readonly index: number;
  readonly url: string;
  readonly basePath: string;
  readonly pool: Pool;
  readonly protocol: UpstreamProtocol;
  /** HTTP/2 sessions for streams that arrive over HTTP/2; null for http1 versions. */
  readonly h2: H2Upstream | null;
  readonly stats: VersionStats;
}

/** Mutable on purpose: shadow requests in flight for this mirror, shared by every table. */
export interface MirrorGate {
  inFlight: number;
}

export interface Mirror extends Omit<MirrorConfig, 'version'> {
  readonly version: Version;
  /** Pool of the shadow's own, so a hung shadow never holds primary connections. */
  readonly pool: Pool;
  readonly h2: H2Upstream | null;
  readonly gate: MirrorGate;
  /** proxy.trustForwarded, for the shadow's forwarding headers. */
  readonly trustForwarded: boolean;
}

export interface Rule {
  readonly test: RulePredicate;
  readonly version: Version;
}

/** The parts of a route that do not change with its weights. */
export interface CompiledRoute {
  readonly name: string;
  readonly config: RouteConfig;
  readonly host: string | null;
  /** For `*.example.com`: `.example.com`. */
  readonly hostSuffix: string | null;
  readonly pathPrefix: string;
  /** `pathPrefix` without its trailing slash ('' for the root), compared on segment boundaries. */
  readonly prefixKey: string;
  readonly versions: readonly Version[];
  readonly byName: ReadonlyMap<string, Version>;
  readonly rules: readonly Rule[];
  readonly sticky: StickyConfig | null;
  readonly mirrors: readonly Mirror[];
  readonly timeouts: TimeoutsConfig;
  /** Bit i: a gRPC call ending with status i is the version's error. */
  readonly grpcErrors: number;
  /** A gRPC deadline shorter than this is not charged to the version when it expires. */
  readonly grpcMinDeadlineMs: number;
  /** proxy.trustForwarded: keep the client's X-Forwarded-Proto/-Host and Forwarded (headers.ts). */
  readonly trustForwarded: boolean;
  /** Per-generation counts for the sample-ratio check; outlives tables, like the versions' stats. */
  readonly counters: RouteCounters;
  /** Which version served each sticky key (rewards by key are credited with it); null without `sticky`. */
  readonly exposures: ExposureLog | null;
}

/** A route with its weights: what one table holds per route. */
export interface RouteState {
  readonly route: CompiledRoute;
  readonly generation: number;
  readonly weights: Readonly<Record<string, number>>;
  /** Slot → version index; see common/slots.ts. */
  readonly slots: Uint8Array;
  /** What the request path counts under this generation (stats.ts GenerationCounts). */
  readonly counts: GenerationCounts;
}

/** A route state; every one is built here so that its generation's counts come with it. */
export function routeState(route: CompiledRoute, generation: number, weights: Readonly<Record<string, number>>, slots: Uint8Array): RouteState {
  return { route, generation, weights, slots, counts: route.counters.forGeneration(generation, route.versions.length) };
}

export function compileRoute(config: RouteConfig, upstreams: Upstreams, stats: StatsRegistry, trustForwarded = false, exposures: ExposureRegistry | null = null): CompiledRoute {
  const versions = config.versions.map(
    (v, index): Version => ({
      name: v.name,
      index,
      url: v.url,
      basePath: v.basePath,
      pool: upstreams.get(v, 'primary', config.timeouts),
      protocol: v.protocol,
      h2: upstreams.h2(v, 'primary', config.timeouts.connectMs),
      stats: stats.get(config.name, v.name),
    }),
  );
  const byName = new Map(versions.map((v) => [v.name, v]));
  const host = config.host;
  return {
    name: config.name,
    config,
    host: host !== null && !host.startsWith('*.') ? host : null,
    hostSuffix: host !== null && host.startsWith('*.') ? host.slice(1) : null,
    pathPrefix: config.pathPrefix,
    prefixKey: prefixKey(config.pathPrefix),
    versions,
    byName,
    rules: config.rules.map((r) => ({ test: compileRule(r), version: byName.get(r.version)! })),
    sticky: config.sticky,
    mirrors: config.mirror.map((m) => {
      const version = byName.get(m.version)!;
      return {
        ...m,
        version,
        pool: upstreams.get(config.versions[version.index]!, 'shadow', { connectMs: config.timeouts.connectMs, requestMs: m.timeoutMs }),
        h2: upstreams.h2(config.versions[version.index]!, 'shadow', config.timeouts.connectMs),
        gate: { inFlight: 0 },
        trustForwarded,
      };
    }),
    timeouts: config.timeouts,
    grpcErrors: config.grpc.errorCodes,
    grpcMinDeadlineMs: config.grpc.minDeadlineMs,
    trustForwarded,
    counters: stats.route(config.name),
    exposures: config.sticky === null || exposures === null ? null : exposures.route(config.name),
  };
}

export function initialState(route: CompiledRoute): RouteState {
  const weights = route.config.weights;
  return routeState(route, 1, weights, initialSlots(route.versions.map((v) => weights[v.name] ?? 0)));
}

/** The same route with new weights (already validated), moving as few sticky keys as possible. */
export function withWeights(state: RouteState, weights: Readonly<Record<string, number>>, generation?: number): RouteState {
  return routeState(
    state.route,
    generation ?? state.generation + 1,
    Object.freeze({ ...weights }),
    reassignSlots(
      state.slots,
      state.route.versions.map((v) => weights[v.name] ?? 0),
    ),
  );
}

export class RoutingTable {
  readonly #states: readonly RouteState[];
  readonly #byName: ReadonlyMap<string, RouteState>;
  readonly #matchesHost: boolean;

  constructor(states: readonly RouteState[]) {
    this.#states = states;
    this.#byName = new Map(states.map((s) => [s.route.name, s]));
    this.#matchesHost = states.some((s) => s.route.host !== null || s.route.hostSuffix !== null);
  }

  get states(): readonly RouteState[] {
    return this.#states;
  }

  get(name: string): RouteState | undefined {
    return this.#byName.get(name);
  }

  /**
   * First route whose host and path prefix match; `hostHeader` may carry a
   * port. `url` must be normalised (path.ts) for the prefix test to mean anything.
   */
  match(hostHeader: string | undefined, url: string): RouteState | null {
    const host = this.#matchesHost ? normaliseHost(hostHeader) : '';
    const states = this.#states;
    for (let i = 0; i < states.length; i++) {
      const s = states[i]!;
      const r = s.route;
      if (r.host !== null && r.host !== host) continue;
      // Longer than the suffix: `*.example.org` needs a label before `.example.org`.
      if (r.hostSuffix !== null && (host.length <= r.hostSuffix.length || !host.endsWith(r.hostSuffix))) continue;
      if (underPrefix(url, r.prefixKey)) return s;
    }
    return null;
  }

  /** A table with one route's state replaced. */
  with(state: RouteState): RoutingTable {
    return new RoutingTable(this.#states.map((s) => (s.route.name === state.route.name ? state : s)));
  }
}

function normaliseHost(h: string | undefined): string {
  if (h === undefined) return '';
  let end = h.length;
  if (h.charCodeAt(0) === 91 /* [ */) {
    end = h.indexOf(']') + 1;
  } else {
    const colon = h.lastIndexOf(':');
    if (colon !== -1) end = colon;
  }
  // `a.example.org.` (fully qualified) names the same host as `a.example.org`.
  if (end > 0 && h.charCodeAt(end - 1) === 46 /* . */) end--;
  return h.slice(0, end).toLowerCase();
}
