/**
 * Admin endpoints of the control plane: experiments and reward events.
 */
import type { FastifyInstance } from 'fastify';
import { SluiceError } from '../common/errors.js';
import type { ExperimentRecord, TrafficRouter } from '../control/ports.js';
import type { Scheduler } from '../control/scheduler.js';
import { parseExperiment, validateExperiment } from '../control/spec.js';

export function describeExperiment(r: ExperimentRecord) {
  return { kind: 'Experiment', name: r.doc.name, spec: r.doc.spec, status: r.status };
}

function summary(r: ExperimentRecord) {
  const s = r.status;
  return { name: r.doc.name, route: r.doc.spec.route, testingPattern: r.doc.spec.testingPattern, state: s.state, iteration: s.iteration, maxIterations: r.doc.spec.duration.maxIterations, winner: s.winner, weights: s.weights, reason: s.reason };
}

interface RewardEvent {
  version?: unknown;
  key?: unknown;
  value?: unknown;
  /** Optional: an event posted again with the same id (a retry) is counted once. */
  id?: unknown;
}

const MAX_REWARD_ID = 128;

export function registerExperimentsApi(app: FastifyInstance, scheduler: Scheduler, router: TrafficRouter): void {
  app.get('/experiments', async () => ({ experiments: (await scheduler.list()).map(summary) }));

  app.put<{ Params: { name: string }; Body: unknown }>('/experiments/:name', async (request, reply) => {
    const doc = typeof request.body === 'string' ? parseExperiment(request.body) : validateExperiment(request.body);
    if (doc.name !== request.params.name) {
      throw new SluiceError('SLUICE_EXPERIMENT_INVALID', 'experiment is invalid', [
        { path: 'name', message: `"${doc.name}" differs from the name in the URL ("${request.params.name}")` },
      ]);
    }
    const r = await scheduler.apply(doc);
    return reply.status(201).send(describeExperiment(r));
  });

  app.get<{ Params: { name: string } }>('/experiments/:name', async (request) => describeExperiment(await scheduler.get(request.params.name)));

  app.delete<{ Params: { name: string } }>('/experiments/:name', async (request, reply) => {
    await scheduler.delete(request.params.name);
    return reply.status(204).send();
  });

  for (const action of ['pause', 'resume', 'abort'] as const) {
    app.post<{ Params: { name: string } }>(`/experiments/:name/${action}`, async (request) =>
      describeExperiment(await scheduler[action](request.params.name)),
    );
  }

  app.post<{ Params: { name: string }; Body: { version?: unknown } | null }>('/experiments/:name/promote', async (request) => {
    const version = request.body?.version;
    if (typeof version !== 'string' || version === '') {
      throw new SluiceError('SLUICE_BAD_REQUEST', 'body must be { "version": "<name>" }', [{ path: 'version', message: 'required string' }]);
    }
    return describeExperiment(await scheduler.promote(request.params.name, version));
  });

  // One event `{ version | key, value }` or a list of them; attributed to the experiment's route.
  app.post<{ Params: { name: string }; Body: RewardEvent | RewardEvent[] }>('/experiments/:name/rewards', async (request, reply) => {
    const r = await scheduler.get(request.params.name);
    const route = r.doc.spec.route;
    const events = Array.isArray(request.body) ? request.body : [request.body];
    const names = new Set(r.doc.spec.versions.map((v) => v.name));
    const errors: Array<{ path: string; message: string }> = [];
    const resolved: Array<[string, number, string | null]> = [];
    events.forEach((e, i) => {
      const at = Array.isArray(request.body) ? `[${i}]` : '';
      const value = e?.value ?? 1;
      if (typeof value !== 'number' || !Number.isFinite(value)) errors.push({ path: `${at}value`.replace(/^\./, ''), message: 'must be a finite number' });
      let version: string | null = null;
      if (typeof e?.version === 'string') version = e.version;
      else if (typeof e?.key === 'string') version = router.versionOfKey(route, e.key);
      else errors.push({ path: `${at}version`, message: 'give "version" or "key"' });
      const id = e?.id ?? null;
      if (id !== null && (typeof id !== 'string' || id === '' || id.length > MAX_REWARD_ID)) {
        errors.push({ path: `${at}id`, message: `must be a string of 1..${MAX_REWARD_ID} characters` });
      }
      if (version !== null && !names.has(version)) errors.push({ path: `${at}version`, message: `experiment has no version "${version}"` });
      else if (version !== null && typeof value === 'number') resolved.push([version, value, typeof id === 'string' ? id : null]);
    });
    if (errors.length > 0) throw new SluiceError('SLUICE_BAD_REQUEST', 'reward events are invalid', errors);
    let accepted = 0;
    for (const [version, value, id] of resolved) if (await router.recordReward(route, version, value, id)) accepted++;
    return reply.status(202).send({ accepted, duplicates: resolved.length - accepted });
  });
}
