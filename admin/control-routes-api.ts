/**
 * The routes port (routes-api.ts) of the control plane in Redis mode, where
 * no proxy runs in the process: routing states come from Redis (RedisRouter's
 * cache, refreshed on each read), and counters are the sum over every proxy
 * replica.
 */
import type { RedisAggregates } from '../control/redis-aggregates.js';
import type { RedisRouter } from '../control/redis-router.js';
import type { RouteDescription, RoutesPort } from './routes-api.js';

export function redisRoutes(router: RedisRouter, aggregates: RedisAggregates): RoutesPort {
  const describe = (name: string): RouteDescription | null => {
    const s = router.state(name);
    return s === null ? null : { name, generation: s.generation, weights: s.weights, versions: s.versions };
  };
  const names = async () => {
    await router.refresh();
    return router.names();
  };
  return {
    routes: async () => (await names()).map((name) => describe(name)!),
    route: async (name) => {
      await router.refresh();
      return describe(name);
    },
    setWeights: async (name, weights, source) => {
      await router.setWeights(name, weights as Record<string, number>, source);
      return describe(name)!;
    },
    counters: async () => {
      const all = [];
      for (const route of await names()) all.push({ route, versions: await aggregates.versions(route), replicas: await aggregates.replicas(route) });
      return all;
    },
  };
}
