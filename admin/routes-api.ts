/**
 * Admin endpoints over the data plane: routes, weights and per-version stats.
 */
import type { FastifyInstance } from 'fastify';
import type { ProxyServer } from '../proxy/proxy-server.js';
import type { RouteState } from '../proxy/routing-table.js';
import { LatencySketch } from '../proxy/sketch.js';
import type { VersionSnapshot } from '../proxy/stats.js';

export function describeRoute(s: RouteState) {
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

/** `guard` may refuse a hand-made weight change (an experiment owns the route's weights). */
export function registerRoutesApi(app: FastifyInstance, proxy: ProxyServer, guard?: (route: string) => Promise<void>): void {
  app.get('/routes', async () => ({ routes: proxy.table.states.map(describeRoute) }));
  app.get<{ Params: { name: string } }>('/routes/:name', async (request) => describeRoute(proxy.route(request.params.name)));
  app.put<{ Params: { name: string }; Body: unknown }>('/routes/:name/weights', async (request) => {
    const body = request.body as Record<string, unknown> | null;
    // Both `{ "v1": 90, "v2": 10 }` and `{ "weights": { … } }` are accepted.
    const weights = body !== null && typeof body === 'object' && typeof body.weights === 'object' ? body.weights : body;
    proxy.route(request.params.name);
    await guard?.(request.params.name);
    return describeRoute(proxy.setWeights(request.params.name, weights, 'admin-api'));
  });
  app.get<{ Querystring: { full?: string } }>('/stats', async (request) => {
    const full = request.query.full === '1' || request.query.full === 'true';
    const routes: Record<string, { versions: Record<string, ReturnType<typeof describeVersionStats>> }> = {};
    for (const st of proxy.table.states) {
      const versions: Record<string, ReturnType<typeof describeVersionStats>> = {};
      for (const v of st.route.versions) versions[v.name] = describeVersionStats(v.stats.snapshot(), full);
      routes[st.route.name] = { versions };
    }
    return { routes, upstreamPools: proxy.upstreams.poolStats() };
  });
}
