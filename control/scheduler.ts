/**
 * The experiment loop. It does I/O only: read measurements, call the pure
 * `iterate`, write the weights it returns, save the record. Each running
 * experiment has one timer; an iteration never overlaps the next.
 */
import { SluiceError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { LatencySketch } from '../proxy/sketch.js';
import type { VersionSnapshot } from '../proxy/stats.js';
import type { Measurements, VersionMeasurement } from './analysis-types.js';
import { abort, FINAL_STATES, iterate, pause, pendingStatus, promote, resume, start, type ExperimentStatus } from './lifecycle.js';
import type { AggregateSource, ExperimentRecord, ExperimentStore, TrafficRouter } from './ports.js';
import type { ExperimentDoc } from './spec-types.js';

export interface SchedulerOptions {
  readonly store: ExperimentStore;
  readonly aggregates: AggregateSource;
  readonly router: TrafficRouter;
  readonly log: Logger;
  readonly now?: () => Date;
  /** Called after every state change (metrics, the demo's live view). */
  readonly onChange?: (record: ExperimentRecord) => void;
  readonly onDelete?: (name: string) => void;
}

const ACTIVE: ReadonlySet<string> = new Set(['Pending', 'Running', 'Paused']);

export class Scheduler {
  readonly #timers = new Map<string, NodeJS.Timeout>();
  /** Serialises every change to one experiment: API calls and iterations never interleave. */
  readonly #queues = new Map<string, Promise<unknown>>();
  #stopped = false;

  constructor(private readonly opts: SchedulerOptions) {}

  #now(): string {
    return (this.opts.now?.() ?? new Date()).toISOString();
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
      let record: ExperimentRecord = { doc, status: pendingStatus(doc, this.#now()), start: null, lastKeyless: {} };
      await this.#save(record);
      for (const v of spec.versions) if (v.url !== null) await this.opts.router.addVersion(spec.route, v.name, v.url);
      await this.opts.router.setWeights(spec.route, this.#routeWeights(doc, spec.weights.initial), `experiment ${doc.name}`);
      const counters = await this.opts.aggregates.versions(spec.route);
      record = {
        ...record,
        status: start(record.status, this.#now()),
        start: pick(counters, spec.versions.map((v) => v.name)),
        lastKeyless: keylessOf(counters),
      };
      await this.#save(record);
      this.opts.log.info({ experiment: doc.name, route: spec.route, weights: spec.weights.initial }, 'experiment started');
      this.#schedule(doc);
      return record;
    });
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
    if (record === null || record.status.state !== 'Running' || record.start === null) return;
    const { doc } = record;
    const names = doc.spec.versions.map((v) => v.name);
    const counters = await this.opts.aggregates.versions(doc.spec.route);
    const measurements = measurementsSince(record.start, counters, names);
    const keyless = keylessOf(counters);
    const keylessDelta = Object.fromEntries(names.map((n) => [n, (keyless[n] ?? 0) - (record.lastKeyless[n] ?? 0)]));
    const status = iterate(doc, record.status, measurements, keylessDelta, this.#now());
    await this.opts.router.setWeights(doc.spec.route, this.#routeWeights(doc, status.weights), `experiment ${name} iteration ${status.iteration}`);
    await this.#save({ ...record, status, lastKeyless: keyless });
    this.opts.log.info({ experiment: name, iteration: status.iteration, state: status.state, weights: status.weights, winner: status.winner, reason: status.reason }, 'iteration');
    if (!FINAL_STATES.has(status.state)) this.#schedule(doc);
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
      if (ACTIVE.has(r.status.state)) {
        await this.#apply(r, abort(r.doc, r.status, this.#now()));
      }
      clearTimeout(this.#timers.get(name));
      this.#timers.delete(name);
      await this.opts.store.delete(name);
      this.opts.onDelete?.(name);
    });
  }

  #transition(name: string, from: readonly string[], to: (r: ExperimentRecord) => ExperimentStatus, reschedule = false): Promise<ExperimentRecord> {
    return this.#serial(name, async () => {
      const r = await this.get(name);
      if (!from.includes(r.status.state)) {
        throw new SluiceError('SLUICE_EXPERIMENT_STATE', `experiment "${name}" is ${r.status.state}`);
      }
      const next = await this.#apply(r, to(r));
      if (FINAL_STATES.has(next.status.state)) {
        clearTimeout(this.#timers.get(name));
        this.#timers.delete(name);
      } else if (reschedule) {
        this.#schedule(r.doc);
      }
      return next;
    });
  }

  /** Saves a new status, and writes its weights when they changed. */
  async #apply(r: ExperimentRecord, status: ExperimentStatus): Promise<ExperimentRecord> {
    if (JSON.stringify(status.weights) !== JSON.stringify(r.status.weights)) {
      await this.opts.router.setWeights(r.doc.spec.route, this.#routeWeights(r.doc, status.weights), `experiment ${r.doc.name} ${status.state}`);
    }
    const next = { ...r, status };
    await this.#save(next);
    this.opts.log.info({ experiment: r.doc.name, state: status.state, reason: status.reason }, 'experiment state changed');
    return next;
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
    for (const r of await this.opts.store.list()) if (r.status.state === 'Running') this.#schedule(r.doc);
  }

  /** Clears every timer (shutdown, or this replica lost leadership); resumeAll() starts them again. */
  stop(): void {
    this.#stopped = true;
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
  }
}

function pick<T>(o: Readonly<Record<string, T>>, names: readonly string[]): Record<string, T> {
  const out: Record<string, T> = {};
  for (const n of names) if (o[n] !== undefined) out[n] = o[n]!;
  return out;
}

function keylessOf(counters: Readonly<Record<string, VersionSnapshot>>): Record<string, number> {
  return Object.fromEntries(Object.entries(counters).map(([v, s]) => [v, s.keyless]));
}

/** Counters now minus counters at the start: what each version did during the experiment. */
export function measurementsSince(
  startCounters: Readonly<Record<string, VersionSnapshot>>,
  now: Readonly<Record<string, VersionSnapshot>>,
  names: readonly string[],
): Measurements {
  const out: Record<string, VersionMeasurement> = {};
  for (const n of names) {
    const a = startCounters[n];
    const b = now[n];
    if (b === undefined) continue;
    const latency = LatencySketch.fromSnapshot(b.latencySketch);
    if (a !== undefined) latency.mergeSnapshot(a.latencySketch, -1);
    const d = (f: (s: VersionSnapshot) => number) => f(b) - (a === undefined ? 0 : f(a));
    out[n] = {
      requests: d((s) => s.requests),
      errors: d((s) => s.errors),
      keyless: d((s) => s.keyless),
      latencySumMs: d((s) => s.latencySumMs),
      latencySumSqMs: d((s) => s.latencySumSqMs),
      latency,
      rewards: d((s) => s.rewards),
      rewardSum: d((s) => s.rewardSum),
      rewardSumSq: d((s) => s.rewardSumSq),
      mirrorCompared: d((s) => s.mirrorCompared),
      mirrorMismatch: d((s) => s.mirror.mismatch ?? 0),
    };
  }
  return out;
}
