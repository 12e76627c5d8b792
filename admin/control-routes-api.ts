/**
 * Routes and stats on the control plane in Redis mode, where no proxy runs
 * in the process: routing states come from Redis (RedisRouter's cache), and
 * /stats is the sum over every proxy replica.
 */
import type { FastifyInstance } from 'fastify';
import { SluiceError } from '../common/errors.js';
import type { RedisAggregates } from '../control/redis-aggregates.js';
import type { RedisRouter } from '../control/redis-router.js';
import type { Scheduler } from '../control/scheduler.js';
import { describeVersionStats } from './routes-api.js';

export function registerControlRoutesApi(app: FastifyInstance, router: RedisRouter, aggregates: RedisAggregates, scheduler: Scheduler): void {
  const describe = (name: string) => {
    const s = router.state(name);
    if (s === null) throw new SluiceError('SLUICE_UNKNOWN_ROUTE', `no route named "${name}"`);
    return { name, generation: s.generation, weights: s.weights, versions: s.versions };
  };
  const names = async () => {
    await router.refresh();
    return router.names();
  };

  app.get('/routes', async () => ({ routes: (await names()).map(describe) }));
  app.get<{ Params: { name: string } }>('/routes/:name', async (request) => {
    await router.refresh();
    return describe(request.params.name);
  });
  app.put<{ Params: { name: string }; Body: unknown }>('/routes/:name/weights', async (request) => {
    const name = request.params.name;
    await router.refresh();
    describe(name);
    await scheduler.refuseWhileActive(name);
    const body = request.body as Record<string, unknown> | null;
    const weights = body !== null && typeof body === 'object' && typeof body.weights === 'object' ? body.weights : body;
    await router.setWeights(name, weights as Record<string, number>, 'admin-api');
    return describe(name);
  });
  app.get<{ Querystring: { full?: string } }>('/stats', async (request) => {
    const full = request.query.full === '1' || request.query.full === 'true';
    const routes: Record<string, { versions: Record<string, ReturnType<typeof describeVersionStats>>; replicas: string[] }> = {};
    for (const name of await names()) {
      const versions: Record<string, ReturnType<typeof describeVersionStats>> = {};
      for (const [v, snap] of Object.entries(await aggregates.versions(name))) versions[v] = describeVersionStats(snap, full);
      routes[name] = { versions, replicas: await aggregates.replicas(name) };
    }
    return { routes };
  });
}
