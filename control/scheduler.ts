/**
 * The experiment loop: per experiment one timer and one queue, the state
 * transitions (apply, pause, resume, abort, promote, delete, the end) and
 * the tick. It does I/O only: read the proxies' counters and the custom
 * metric sources, make the measurements (measurements.ts), call the pure
 * `iterate` (lifecycle.ts), write the weights it returns, save the record.
 * An iteration never overlaps the next. The start, loop and finish tasks
 * and their lifetimes are task-phases.ts's: the loop starts a phase and
 * lends it its queue and transitions.
 */
import { SluiceError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import {
  abort, FINAL_STATES, iterate, pause, pendingStatus, promote, resume, start, withGeneration, withTaskRun,
} from './lifecycle.js';
import { measurementsSince, pick, withCustom } from './measurements.js';
import { checkMetricQueries, readAllMetrics } from './metrics/index.js';
import type { MetricReading } from './metrics/types.js';
import type { AggregateSource, ExperimentRecord, ExperimentStore, TrafficRouter } from './ports.js';
import type { ExperimentDoc } from './spec-types.js';
import type { Ending, ExperimentStatus } from './status.js';
import { finishTasksFor, skippedFinishTasks, TaskPhases } from './task-phases.js';
import { refuseExecUnlessAllowed } from './tasks/index.js';

export interface SchedulerOptions {
  readonly store: ExperimentStore;
  readonly aggregates: AggregateSource;
  readonly router: TrafficRouter;
  readonly log: Logger;
  readonly now?: () => Date;
  /** Called after every state change (metrics, the demo's live view). */
  readonly onChange?: (record: ExperimentRecord) => void;
  readonly onDelete?: (name: string) => void;
  /** Sluice's own proxy listener and pin token, for `load` tasks (all-in-one mode); absent in a control-only process. */
  readonly proxyUrl?: () => string | null;
  readonly pinToken?: string | null;
  /** Where {{env.NAME}} and tokens come from; default process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** The operator's opt-in to exec tasks (--allow-exec, SLUICE_ALLOW_EXEC=1): without it they are refused. */
  readonly allowExec?: boolean;
  /** Reads the custom metrics of an iteration; default: the sources in control/metrics. */
  readonly readMetrics?: typeof readAllMetrics;
}

const ACTIVE: ReadonlySet<string> = new Set(['Pending', 'Running', 'Paused']);

export class Scheduler {
  readonly #timers = new Map<string, NodeJS.Timeout>();
  /** Serialises every change to one experiment: API calls and iterations never interleave. */
  readonly #queues = new Map<string, Promise<unknown>>();
  /** Start, loop and finish tasks, and the lifetimes that stop their background work. */
  readonly #phases: TaskPhases;
  #stopped = false;

  constructor(private readonly opts: SchedulerOptions) {
    this.#phases = new TaskPhases(opts, {
      now: () => this.#nowDate(),
      serial: <T>(name: string, fn: () => Promise<T>) => this.#serial(name, fn),
      get: (name) => this.get(name),
      save: (r) => this.#save(r),
      begin: (r) => this.#begin(r),
      end: (r, decided) => this.#end(r, decided),
      schedule: (doc) => this.#schedule(doc),
    });
  }

  #nowDate(): Date {
    return this.opts.now?.() ?? new Date();
  }

  #now(): string {
    return this.#nowDate().toISOString();
  }

  #serial<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#queues.get(name) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    this.#queues.set(name, next.catch(() => undefined));
    return next;
  }

  async get(name: string): Promise<ExperimentRecord> {
    const r = await this.opts.store.get(name);
    if (r === null) throw new SluiceError('SLUICE_EXPERIMENT_NOT_FOUND', `no experiment named "${name}"`);
    return r;
  }

  list(): Promise<ExperimentRecord[]> {
    return this.opts.store.list();
  }

  /** Creates and starts an experiment. Refused (409) while another is active on the same route. */
  apply(doc: ExperimentDoc): Promise<ExperimentRecord> {
    return this.#serial(doc.name, async () => {
      refuseExecUnlessAllowed(doc, this.opts.allowExec === true);
      const spec = doc.spec;
      const existing = await this.opts.store.get(doc.name);
      if (existing !== null && ACTIVE.has(existing.status.state)) {
        throw new SluiceError('SLUICE_EXPERIMENT_CONFLICT', `experiment "${doc.name}" is ${existing.status.state}: abort or delete it before applying it again`);
      }
      for (const other of await this.opts.store.list()) {
        if (other.doc.name !== doc.name && other.doc.spec.route === spec.route && ACTIVE.has(other.status.state)) {
          throw new SluiceError('SLUICE_EXPERIMENT_CONFLICT', `experiment "${other.doc.name}" is ${other.status.state} on route "${spec.route}"`);
        }
      }
      await this.#checkRoute(doc);
      const queryProblems = await checkMetricQueries(doc);
      if (queryProblems.length > 0) throw new SluiceError('SLUICE_EXPERIMENT_INVALID', 'experiment is invalid', queryProblems);
      const record: ExperimentRecord = { doc, status: pendingStatus(doc, this.#now()), start: null };
      await this.#save(record);
      for (const v of spec.versions) if (v.url !== null) await this.opts.router.addVersion(spec.route, v.name, v.url);
      if (spec.tasks.start.length === 0) return this.#begin(record);
      const pending = { ...record, status: { ...record.status, reason: 'running start tasks' } };
      await this.#save(pending);
      this.#phases.startTasks(doc.name);
      return pending;
    });
  }

  /** Pending → Running: initial weights, counters at the start, the first timer. */
  async #begin(record: ExperimentRecord): Promise<ExperimentRecord> {
    const { doc } = record;
    const spec = doc.spec;
    const generation = await this.opts.router.setWeights(spec.route, this.#routeWeights(doc, spec.weights.initial), `experiment ${doc.name}`);
    const counters = await this.opts.aggregates.versions(spec.route);
    const next: ExperimentRecord = {
      ...record,
      status: withGeneration(start(record.status, this.#now()), generation),
      start: pick(counters, spec.versions.map((v) => v.name)),
    };
    await this.#save(next);
    this.opts.log.info({ experiment: doc.name, route: spec.route, weights: spec.weights.initial }, 'experiment started');
    this.#schedule(doc);
    return next;
  }

  async #checkRoute(doc: ExperimentDoc): Promise<void> {
    const route = this.opts.router.route(doc.spec.route);
    if (route === null) {
      throw new SluiceError('SLUICE_EXPERIMENT_INVALID', 'experiment is invalid', [{ path: 'spec.route', message: `no route named "${doc.spec.route}"` }]);
    }
    const missing = doc.spec.versions.filter((v) => v.url === null && !route.versions.includes(v.name));
    if (missing.length > 0) {
      throw new SluiceError(
        'SLUICE_EXPERIMENT_INVALID',
        'experiment is invalid',
        missing.map((v) => ({ path: `spec.versions[${doc.spec.versions.indexOf(v)}]`, message: `route "${doc.spec.route}" has no version "${v.name}" (give it a url to add it)` })),
      );
    }
  }

  /** The experiment's weights over the route's versions: versions outside the experiment get 0. */
  #routeWeights(doc: ExperimentDoc, weights: Readonly<Record<string, number>>): Record<string, number> {
    const route = this.opts.router.route(doc.spec.route);
    const out: Record<string, number> = {};
    for (const v of route?.versions ?? []) out[v] = 0;
    return Object.assign(out, weights);
  }

  #schedule(doc: ExperimentDoc): void {
    if (this.#stopped) return;
    clearTimeout(this.#timers.get(doc.name));
    const t = setTimeout(() => {
      this.#timers.delete(doc.name);
      this.#serial(doc.name, () => this.#tick(doc.name)).catch((err: unknown) => {
        this.opts.log.error({ err, experiment: doc.name }, 'iteration failed; retrying next interval');
        this.#schedule(doc);
      });
    }, doc.spec.duration.intervalSeconds * 1000);
    this.#timers.set(doc.name, t);
  }

  async #tick(name: string): Promise<void> {
    const record = await this.opts.store.get(name);
    if (record === null || record.status.state !== 'Running' || record.start === null || record.status.ending) return;
    const { doc } = record;
    const names = doc.spec.versions.map((v) => v.name);
    const counters = await this.opts.aggregates.versions(doc.spec.route);
    const measurements = withCustom(measurementsSince(record.start, counters, names), names, await this.#readMetrics(record));
    // Read after the custom metrics, however slow they were: each count sits in the routing
    // generation that served it, so the time between reading and writing weights biases nothing.
    const generations = await this.opts.aggregates.generations(doc.spec.route);
    const decided = iterate(doc, record.status, { measurements, generations }, this.#now());
    const generation = await this.opts.router.setWeights(doc.spec.route, this.#routeWeights(doc, decided.weights), `experiment ${name} iteration ${decided.iteration}`);
    const status = FINAL_STATES.has(decided.state) ? decided : withGeneration(decided, generation);
    this.opts.log.info({ experiment: name, iteration: status.iteration, state: status.state, weights: status.weights, winner: status.winner, reason: status.reason }, 'iteration');
    if (FINAL_STATES.has(status.state)) {
      // The weights are written: #end must not write them again.
      await this.#end({ ...record, status: { ...record.status, weights: status.weights } }, status);
      return;
    }
    await this.#save({ ...record, status });
    const due = doc.spec.tasks.loop.filter((t) => status.iteration % t.every === 0);
    if (due.length > 0) this.#phases.loopTasks(name, due, status.iteration);
    else this.#schedule(doc);
  }

  #env(): Readonly<Record<string, string | undefined>> {
    return this.opts.env ?? process.env;
  }

  /** The custom metrics of the iteration about to be decided (none: no request is made). */
  async #readMetrics(record: ExperimentRecord): Promise<Record<string, Record<string, MetricReading>> | null> {
    const { doc, status } = record;
    if (doc.spec.metrics.length === 0) return null;
    const started = Date.parse(status.startedAt ?? status.createdAt);
    const read = this.opts.readMetrics ?? readAllMetrics;
    return read(doc, {
      experiment: doc.name,
      route: doc.spec.route,
      elapsedSeconds: Math.max(0, Math.round((this.#nowDate().getTime() - started) / 1000)),
      intervalSeconds: doc.spec.duration.intervalSeconds,
      iteration: status.iteration + 1,
      seed: doc.spec.seed,
      env: this.#env(),
    });
  }

  /**
   * An experiment reaches a final state. Without finish tasks it is saved as
   * is; with them the status keeps its state and carries `ending` until
   * they ran (#runFinishTasks). Weights change here, at once: the decision
   * (or an abort) must not wait for a notification to be delivered.
   */
  async #end(r: ExperimentRecord, decided: ExperimentStatus): Promise<ExperimentRecord> {
    // Finish tasks whose `if` does not hold are recorded as skipped: describe shows why they did not run.
    const final = skippedFinishTasks(r.doc, decided.state, decided.iteration, this.#now()).reduce(withTaskRun, decided);
    await this.#writeWeights(r, final);
    this.#phases.endLifetime(r.doc.name);
    clearTimeout(this.#timers.get(r.doc.name));
    this.#timers.delete(r.doc.name);
    const finish = finishTasksFor(r.doc, final.state);
    if (finish.length === 0) {
      const next = { ...r, status: final };
      await this.#save(next);
      this.opts.log.info({ experiment: r.doc.name, state: final.state, reason: final.reason }, 'experiment ended');
      return next;
    }
    const ending: Ending = { state: final.state as Ending['state'], reason: final.reason, finishedAt: final.finishedAt ?? this.#now() };
    const next = {
      ...r,
      status: { ...final, state: r.status.state, reason: `finishing (${final.state}): running finish tasks`, ending, finishedAt: null },
    };
    await this.#save(next);
    this.#phases.finishTasks(r.doc.name);
    return next;
  }

  pause(name: string): Promise<ExperimentRecord> {
    return this.#transition(name, ['Running'], (r) => pause(r.status));
  }

  resume(name: string): Promise<ExperimentRecord> {
    return this.#transition(name, ['Paused'], (r) => resume(r.status), true);
  }

  abort(name: string): Promise<ExperimentRecord> {
    return this.#transition(name, ['Pending', 'Running', 'Paused'], (r) => abort(r.doc, r.status, this.#now()));
  }

  promote(name: string, version: string): Promise<ExperimentRecord> {
    return this.#transition(name, ['Running', 'Paused', 'Completed', 'Failed'], (r) => {
      if (!r.doc.spec.versions.some((v) => v.name === version)) {
        throw new SluiceError('SLUICE_BAD_REQUEST', `experiment "${name}" has no version "${version}"`, [
          { path: 'version', message: `not one of ${r.doc.spec.versions.map((v) => v.name).join(', ')}` },
        ]);
      }
      return promote(r.doc, r.status, version, this.#now());
    });
  }

  async delete(name: string): Promise<void> {
    await this.#serial(name, async () => {
      const r = await this.get(name);
      // Deleting skips finish tasks: the record they would report into is going away.
      if (ACTIVE.has(r.status.state)) await this.#apply(r, { ...abort(r.doc, r.status, this.#now()), ending: null });
      this.#phases.endLifetime(name);
      clearTimeout(this.#timers.get(name));
      this.#timers.delete(name);
      await this.opts.store.delete(name);
      this.opts.onDelete?.(name);
    });
  }

  #transition(name: string, from: readonly string[], to: (r: ExperimentRecord) => ExperimentStatus, reschedule = false): Promise<ExperimentRecord> {
    return this.#serial(name, async () => {
      const r = await this.get(name);
      if (r.status.ending) {
        throw new SluiceError('SLUICE_EXPERIMENT_STATE', `experiment "${name}" is finishing (${r.status.ending.state}): its finish tasks are running`);
      }
      if (!from.includes(r.status.state)) {
        throw new SluiceError('SLUICE_EXPERIMENT_STATE', `experiment "${name}" is ${r.status.state}`);
      }
      const status = to(r);
      if (FINAL_STATES.has(status.state) && !FINAL_STATES.has(r.status.state)) return this.#end(r, status);
      const next = await this.#apply(r, status);
      if (reschedule) this.#schedule(r.doc);
      return next;
    });
  }

  /** Saves a new status, and writes its weights when they changed. */
  async #apply(r: ExperimentRecord, status: ExperimentStatus): Promise<ExperimentRecord> {
    await this.#writeWeights(r, status);
    const next = { ...r, status };
    await this.#save(next);
    this.opts.log.info({ experiment: r.doc.name, state: status.state, reason: status.reason }, 'experiment state changed');
    return next;
  }

  /** Writes `status`'s weights to the route when they differ from the record's. */
  async #writeWeights(r: ExperimentRecord, status: ExperimentStatus): Promise<void> {
    if (JSON.stringify(status.weights) === JSON.stringify(r.status.weights)) return;
    await this.opts.router.setWeights(r.doc.spec.route, this.#routeWeights(r.doc, status.weights), `experiment ${r.doc.name} ${status.state}`);
  }

  async #save(r: ExperimentRecord): Promise<void> {
    await this.opts.store.put(r);
    this.opts.onChange?.(r);
  }

  /** The active experiment on a route, if any (hand-set weights would be overwritten by it). */
  async activeOn(route: string): Promise<ExperimentRecord | null> {
    return (await this.opts.store.list()).find((r) => r.doc.spec.route === route && ACTIVE.has(r.status.state)) ?? null;
  }

  /** Refuses a hand-made weight change on a route an experiment owns (409). */
  async refuseWhileActive(route: string): Promise<void> {
    const active = await this.activeOn(route);
    if (active !== null) {
      throw new SluiceError('SLUICE_EXPERIMENT_CONFLICT', `experiment "${active.doc.name}" is ${active.status.state} on route "${route}": pause, abort or promote it instead`);
    }
  }

  /**
   * Resumes timers for experiments left Running in the store: after a
   * restart, or when this replica becomes the leader. An experiment resumes
   * at its next iteration: the iteration counter lives in the stored status.
   */
  async resumeAll(): Promise<void> {
    this.#stopped = false;
    for (const r of await this.opts.store.list()) {
      const name = r.doc.name;
      // Tasks interrupted by a restart or a failover are run again (those that had succeeded are not).
      if (r.status.ending) this.#phases.finishTasks(name);
      else if (r.status.state === 'Pending') this.#phases.startTasks(name);
      else if (r.status.state === 'Running') this.#schedule(r.doc);
    }
  }

  /** Clears every timer (shutdown, or this replica lost leadership); resumeAll() starts them again. */
  stop(): void {
    this.#stopped = true;
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
    this.#phases.stop();
  }
}
