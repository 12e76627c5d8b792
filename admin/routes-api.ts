/**
 * Admin endpoints over routes: routes, weights and per-version stats
 * (docs/contract.md). One implementation for every mode, against a
 * RoutesPort: the in-process proxy's (`proxyRoutes`, below) or the Redis-mode
 * control plane's (control-routes-api.ts), which has no proxy in its process.
 */
import type { FastifyInstance } from 'fastify';
import { SluiceError } from '../common/errors.js';
import type { ProxyServer } from '../proxy/proxy-server.js';
import type { RouteState } from '../proxy/routing-table.js';
import { LatencySketch } from '../common/sketch.js';
import type { VersionSnapshot } from '../common/snapshots.js';

/**
 * A route as `GET /routes/NAME` answers it: the contract's fields, then
 * what a process that holds the route's config adds (`match`, `sticky`,
 * `rules`, `mirror`; the control plane in Redis mode holds none).
 */
export interface RouteDescription {
  readonly name: string;
  readonly generation: number;
  readonly weights: Readonly<Record<string, number>>;
  /** `url` includes the version's base path. */
  readonly versions: ReadonlyArray<{ readonly name: string; readonly url: string }>;
  readonly [detail: string]: unknown;
}

/** One route's counters for `/stats`. */
export interface RouteCounters {
  readonly route: string;
  readonly versions: Readonly<Record<string, VersionSnapshot>>;
  /** Redis mode: the replicas whose counts are summed. */
  readonly replicas?: readonly string[];
}

/** What the routes endpoints need of a mode. */
export interface RoutesPort {
  routes(): Promise<RouteDescription[]>;
  /** Null when there is no such route. */
  route(name: string): Promise<RouteDescription | null>;
  /** Validates and applies weights for a route that exists; resolves with the route as it now is. */
  setWeights(name: string, weights: unknown, source: string): Promise<RouteDescription>;
  counters(): Promise<RouteCounters[]>;
  /** Extra top-level `/stats` fields (the proxy's upstream pools). */
  statsExtras?(): Record<string, unknown>;
}

function describeRoute(s: RouteState): RouteDescription {
  return {
    name: s.route.name,
    generation: s.generation,
    weights: s.weights,
    versions: s.route.versions.map((v) => ({ name: v.name, url: v.url + v.basePath })),
    match: { host: s.route.config.host, pathPrefix: s.route.pathPrefix },
    sticky: s.route.sticky,
    rules: s.route.config.rules.length,
    mirror: s.route.mirrors.map((m) => ({ version: m.version.name, percent: m.percent, compare: m.compare, inFlight: m.gate.inFlight })),
  };
}

/** The port over the proxy in this process (all-in-one mode, and each proxy's own admin API in Redis mode). */
export function proxyRoutes(proxy: ProxyServer): RoutesPort {
  return {
    routes: async () => proxy.table.states.map(describeRoute),
    route: async (name) => {
      const s = proxy.table.get(name);
      return s ? describeRoute(s) : null;
    },
    setWeights: async (name, weights, source) => describeRoute(proxy.setWeights(name, weights, source)),
    counters: async () =>
      proxy.table.states.map((st) => ({
        route: st.route.name,
        versions: Object.fromEntries(st.route.versions.map((v) => [v.name, v.stats.snapshot()])),
      })),
    statsExtras: () => ({ upstreamPools: proxy.upstreams.poolStats(), upstreamSessions: proxy.upstreams.h2Stats() }),
  };
}

/** The /stats view of one version: the contract's fields, plus the detail behind them. */
export function describeVersionStats(s: VersionSnapshot, full: boolean) {
  const sketch = LatencySketch.fromSnapshot(s.latencySketch);
  const q = (p: number) => (s.requests > 0 ? round(sketch.quantile(p)) : null);
  const mismatch = s.mirror.mismatch ?? 0;
  return {
    requests: s.requests,
    errors: s.errors,
    errorRate: s.requests > 0 ? s.errors / s.requests : null,
    keyless: s.keyless,
    latencyMs: {
      mean: s.requests > 0 ? round(s.latencySumMs / s.requests) : null,
      p50: q(0.5),
      p90: q(0.9),
      p95: q(0.95),
      p99: q(0.99),
    },
    rewards: s.rewards,
    rewardSum: s.rewardSum,
    // Snapshots from replicas older than conversion counting carry none.
    conversions: s.conversions ?? 0,
    statusCounts: s.statusCounts,
    upstreamErrors: s.upstreamErrors,
    clientErrors: s.clientErrors ?? {},
    mirror: {
      ok: s.mirror.ok ?? 0,
      error: s.mirror.error ?? 0,
      dropped: s.mirror.dropped ?? 0,
      mismatch,
      compared: s.mirrorCompared,
      mismatchRate: s.mirrorCompared > 0 ? mismatch / s.mirrorCompared : null,
    },
    ...(full ? { snapshot: s } : {}),
  };
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/** `guard` may refuse a hand-made weight change (an experiment owns the route's weights; a Redis-mode proxy owns none). */
export function registerRoutesApi(app: FastifyInstance, port: RoutesPort, guard?: (route: string) => Promise<void>): void {
  const describe = async (name: string) => {
    const route = await port.route(name);
    if (route === null) throw new SluiceError('SLUICE_UNKNOWN_ROUTE', `no route named "${name}"`);
    return route;
  };
  app.get('/routes', async () => ({ routes: await port.routes() }));
  app.get<{ Params: { name: string } }>('/routes/:name', async (request) => describe(request.params.name));
  app.put<{ Params: { name: string }; Body: unknown }>('/routes/:name/weights', async (request) => {
    const name = request.params.name;
    await describe(name);
    await guard?.(name);
    const body = request.body as Record<string, unknown> | null;
    // Both `{ "v1": 90, "v2": 10 }` and `{ "weights": { … } }` are accepted.
    const weights = body !== null && typeof body === 'object' && typeof body.weights === 'object' ? body.weights : body;
    return port.setWeights(name, weights, 'admin-api');
  });
  app.get<{ Querystring: { full?: string } }>('/stats', async (request) => {
    const full = request.query.full === '1' || request.query.full === 'true';
    const routes: Record<string, { versions: Record<string, ReturnType<typeof describeVersionStats>>; replicas?: readonly string[] }> = {};
    for (const c of await port.counters()) {
      const versions: Record<string, ReturnType<typeof describeVersionStats>> = {};
      for (const [v, snap] of Object.entries(c.versions)) versions[v] = describeVersionStats(snap, full);
      routes[c.route] = c.replicas === undefined ? { versions } : { versions, replicas: c.replicas };
    }
    return { routes, ...port.statsExtras?.() };
  });
}
