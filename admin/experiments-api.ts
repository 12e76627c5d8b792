/**
 * Admin endpoints of the control plane: experiments and reward events.
 */
import type { FastifyInstance } from 'fastify';
import { SluiceError } from '../common/errors.js';
import type { ExperimentRecord, RewardEvent as PortRewardEvent, TrafficRouter } from '../control/ports.js';
import type { Scheduler } from '../control/scheduler.js';
import { parseExperiment, validateExperiment } from '../control/spec.js';
import { registerGateApi } from './gate.js';

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
  // Every event is checked before any is recorded: a 400 records nothing.
  app.post<{ Params: { name: string }; Body: RewardEvent | RewardEvent[] }>('/experiments/:name/rewards', async (request, reply) => {
    const at = Date.now();
    const r = await scheduler.get(request.params.name);
    const route = r.doc.spec.route;
    const list = Array.isArray(request.body);
    const events = list ? (request.body as RewardEvent[]) : [request.body as RewardEvent];
    const names = new Set(r.doc.spec.versions.map((v) => v.name));
    const max = router.maxRewardValue;
    const errors: Array<{ path: string; message: string }> = [];
    const checked: PortRewardEvent[] = [];
    events.forEach((e, i) => {
      const path = (field: string) => (list ? `[${i}].${field}` : field);
      const before = errors.length;
      // Absent means a conversion of 1 (documented); null is a value that is not a number.
      const value = e?.value === undefined ? 1 : e.value;
      if (typeof value !== 'number' || !Number.isFinite(value)) errors.push({ path: path('value'), message: 'must be a finite number' });
      else if (Math.abs(value) > max) errors.push({ path: path('value'), message: `must be within ±${max} (rewards.maxValue), got ${value}` });
      const id = e?.id ?? null;
      if (id !== null && (typeof id !== 'string' || id === '' || id.length > MAX_REWARD_ID)) {
        errors.push({ path: path('id'), message: `must be a string of 1..${MAX_REWARD_ID} characters` });
      }
      const ok = errors.length === before && typeof value === 'number';
      const idOk = typeof id === 'string' ? id : null;
      if (typeof e?.version === 'string') {
        if (!names.has(e.version)) errors.push({ path: path('version'), message: `experiment has no version "${e.version}"` });
        else if (ok) checked.push({ version: e.version, value, id: idOk });
      } else if (typeof e?.key === 'string' && e.key !== '') {
        if (ok) checked.push({ key: e.key, value, id: idOk });
      } else errors.push({ path: path('version'), message: 'give "version" or a non-empty "key"' });
    });
    if (errors.length > 0) throw new SluiceError('SLUICE_BAD_REQUEST', 'reward events are invalid', errors);
    // unattributed: keys never seen by a proxy, or forgotten (rewards.exposureRetention): credited to no version.
    return reply.status(202).send(await router.recordRewards(route, checked, at));
  });

  // The experiment's verdict for Argo Rollouts and Flagger (admin/gate.ts, docs/gates.md).
  registerGateApi(app, scheduler);
}
