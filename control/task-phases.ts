/**
 * The task phases of an experiment (docs/tasks.md): start tasks run while
 * the experiment is Pending, before its initial weights are set; loop tasks
 * after every `every`-th iteration; finish tasks once the outcome is decided,
 * while the status carries `ending` — the experiment shows its final state
 * only after they ran. `load` tasks in start and loop run in the background
 * until they end or the experiment does (its lifetime, here). Tasks run
 * outside the per-experiment queue (API calls are not held up by a long
 * task); each run is recorded through it. The loop (scheduler.ts) starts a
 * phase and lends it its queue, its record I/O and its transitions (PhaseLoop).
 */
import type { Logger } from '../common/logger.js';
import { FINAL_STATES, withTaskRun } from './lifecycle.js';
import { allTo } from './next-weights.js';
import type { ExperimentRecord, ExperimentStore, TrafficRouter } from './ports.js';
import type { ExperimentDoc, TaskSpec } from './spec-types.js';
import type { ExperimentStatus, TaskPhase, TaskRun } from './status.js';
import { runTask } from './tasks/index.js';
import type { TaskContext } from './tasks/types.js';

/** The scheduler's options the phases read (SchedulerOptions has them all). */
export interface TaskPhaseOptions {
  readonly store: ExperimentStore;
  readonly router: TrafficRouter;
  readonly log: Logger;
  readonly proxyUrl?: () => string | null;
  readonly pinToken?: string | null;
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly allowExec?: boolean;
}

/** What the phases use of the loop. */
export interface PhaseLoop {
  now(): Date;
  /** Runs `fn` in the experiment's queue: never interleaves with an iteration or an API call. */
  serial<T>(name: string, fn: () => Promise<T>): Promise<T>;
  /** The stored record (SLUICE_EXPERIMENT_NOT_FOUND when there is none). */
  get(name: string): Promise<ExperimentRecord>;
  save(r: ExperimentRecord): Promise<void>;
  /** Pending → Running, once the start tasks have run. */
  begin(record: ExperimentRecord): Promise<ExperimentRecord>;
  /** To a final state (or to `ending`, finish tasks to run). */
  end(r: ExperimentRecord, decided: ExperimentStatus): Promise<ExperimentRecord>;
  /** The next iteration's timer, once the loop tasks have run. */
  schedule(doc: ExperimentDoc): void;
}

export class TaskPhases {
  /** Per experiment: aborted when it ends (or the scheduler stops), which stops its background tasks. */
  readonly #lifetimes = new Map<string, AbortController>();

  constructor(
    private readonly opts: TaskPhaseOptions,
    private readonly loop: PhaseLoop,
  ) {}

  #now(): string {
    return this.loop.now().toISOString();
  }

  /** Runs the start tasks in the background; the experiment begins after them (or fails). */
  startTasks(name: string): void {
    this.#background(name, 'start tasks', () => this.#runStartTasks(name));
  }

  /** Runs the loop tasks due after `iteration` in the background; the next iteration is scheduled after them. */
  loopTasks(name: string, due: readonly TaskSpec[], iteration: number): void {
    this.#background(name, 'loop tasks', () => this.#runLoopTasks(name, due, iteration));
  }

  /** Runs the finish tasks of an experiment that carries `ending` in the background; it ends after them. */
  finishTasks(name: string): void {
    this.#background(name, 'finish tasks', () => this.#runFinishTasks(name));
  }

  /** Stops every background task (shutdown, or this replica lost leadership). */
  stop(): void {
    for (const c of this.#lifetimes.values()) c.abort();
    this.#lifetimes.clear();
  }

  /** Runs work outside the experiment's queue; a failure is logged, never thrown into a timer. */
  #background(name: string, what: string, fn: () => Promise<void>): void {
    fn().catch((err: unknown) => this.opts.log.error({ err, experiment: name }, `${what} failed`));
  }

  #lifetime(name: string): AbortController {
    let c = this.#lifetimes.get(name);
    if (c === undefined || c.signal.aborted) {
      c = new AbortController();
      this.#lifetimes.set(name, c);
    }
    return c;
  }

  /** The experiment ended (or was deleted): its background tasks stop. */
  endLifetime(name: string): void {
    this.#lifetimes.get(name)?.abort();
    this.#lifetimes.delete(name);
  }

  #env(): Readonly<Record<string, string | undefined>> {
    return this.opts.env ?? process.env;
  }

  #taskContext(record: ExperimentRecord, status: ExperimentStatus): Omit<TaskContext, 'signal'> {
    return {
      doc: record.doc,
      status,
      versionUrls: this.opts.router.route(record.doc.spec.route)?.urls ?? {},
      proxyUrl: this.opts.proxyUrl?.() ?? null,
      pinToken: this.opts.pinToken ?? null,
      env: this.#env(),
      allowExec: this.opts.allowExec === true,
      log: this.opts.log,
    };
  }

  /**
   * Runs one task and records it. `load` in start and loop phases runs in
   * the background (recorded as running, then with its result); null is
   * returned for it. Otherwise the finished run.
   */
  async #task(name: string, phase: TaskPhase, spec: TaskSpec, status: ExperimentStatus): Promise<TaskRun | null> {
    const record = await this.loop.get(name);
    const ctx = { ...this.#taskContext(record, status), signal: this.#lifetime(name).signal };
    const now = () => this.loop.now();
    if (spec.task === 'load' && phase !== 'finish') {
      const running: TaskRun = {
        phase, name: spec.name, task: spec.task, iteration: status.iteration, state: 'running',
        startedAt: this.#now(), durationMs: null, onError: spec.onError, error: null, output: null,
      };
      await this.#record(name, running);
      this.#background(name, `task ${spec.name}`, async () => {
        const run = await runTask(phase, spec, ctx, now);
        await this.#record(name, { ...run, iteration: status.iteration });
        // A load stopped because the experiment ended succeeds; one that failed on its own fails the experiment.
        if (run.state === 'failed' && spec.onError === 'fail') await this.#failActive(name, `${phase} task ${spec.name} failed: ${run.error?.code} ${run.error?.message}`);
      });
      return null;
    }
    const run = await runTask(phase, spec, ctx, now);
    await this.#record(name, run);
    this.opts.log[run.state === 'failed' ? 'warn' : 'info'](
      { experiment: name, task: run.name, phase, state: run.state, durationMs: run.durationMs, error: run.error },
      'task ran',
    );
    return run;
  }

  /** Saves a task run into the stored status (through the queue: never interleaves with an iteration). */
  #record(name: string, run: TaskRun): Promise<void> {
    return this.loop.serial(name, async () => {
      const r = await this.opts.store.get(name);
      if (r !== null) await this.loop.save({ ...r, status: withTaskRun(r.status, run) });
    });
  }

  async #runStartTasks(name: string): Promise<void> {
    const initial = await this.loop.get(name);
    const done = new Set(initial.status.tasks.filter((t) => t.phase === 'start' && t.state === 'succeeded').map((t) => t.name));
    for (const spec of initial.doc.spec.tasks.start) {
      if (done.has(spec.name)) continue; // resumed after a restart: what succeeded is not repeated
      const current = await this.loop.get(name);
      if (current.status.state !== 'Pending') return; // aborted meanwhile
      const run = await this.#task(name, 'start', spec, current.status);
      if (run?.state === 'failed' && spec.onError === 'fail') {
        await this.loop.serial(name, async () => {
          const r = await this.loop.get(name);
          if (r.status.state !== 'Pending') return;
          const reason = `start task ${spec.name} failed: ${run.error?.code} ${run.error?.message}`;
          await this.loop.end(r, { ...r.status, state: 'Failed', reason, finishedAt: this.#now() });
        });
        return;
      }
    }
    await this.loop.serial(name, async () => {
      const r = await this.loop.get(name);
      if (r.status.state === 'Pending' && !r.status.ending) await this.loop.begin(r);
    });
  }

  /** Fails an experiment that is still going (a task with onError: fail failed): traffic back to the baseline. */
  #failActive(name: string, why: string): Promise<void> {
    return this.loop.serial(name, async () => {
      const cur = await this.loop.get(name);
      if (FINAL_STATES.has(cur.status.state) || cur.status.ending) return;
      if (cur.status.state === 'Pending') {
        // Nothing was shifted yet: the route keeps its weights.
        await this.loop.end(cur, { ...cur.status, state: 'Failed', winner: null, reason: why, finishedAt: this.#now() });
        return;
      }
      const baseline = cur.doc.spec.versions[0]!.name;
      const reason = `${why}; traffic back to ${baseline}`;
      await this.loop.end(cur, { ...cur.status, state: 'Failed', winner: null, reason, weights: allTo(cur.doc.spec, baseline), finishedAt: this.#now() });
    });
  }

  async #runLoopTasks(name: string, due: readonly TaskSpec[], iteration: number): Promise<void> {
    try {
      for (const spec of due) {
        const r = await this.loop.get(name);
        if (r.status.state !== 'Running' || r.status.ending) return;
        const run = await this.#task(name, 'loop', spec, r.status);
        if (run?.state === 'failed' && spec.onError === 'fail') {
          await this.#failActive(name, `loop task ${spec.name} failed at iteration ${iteration}: ${run.error?.code} ${run.error?.message}`);
          return;
        }
      }
    } finally {
      const r = await this.opts.store.get(name).catch(() => null);
      if (r !== null && r.status.state === 'Running' && !r.status.ending) this.loop.schedule(r.doc);
    }
  }

  async #runFinishTasks(name: string): Promise<void> {
    const initial = await this.loop.get(name);
    const ending = initial.status.ending;
    if (ending === null) return;
    // What the tasks report on: the outcome they are finishing.
    const outcome: ExperimentStatus = { ...initial.status, state: ending.state, reason: ending.reason, finishedAt: ending.finishedAt, ending: null };
    const done = new Set(initial.status.tasks.filter((t) => t.phase === 'finish' && t.state !== 'running').map((t) => t.name));
    let failure: TaskRun | null = null;
    for (const spec of finishTasksFor(initial.doc, ending.state)) {
      if (done.has(spec.name)) {
        const previous = initial.status.tasks.find((t) => t.phase === 'finish' && t.name === spec.name);
        if (previous?.state === 'failed' && spec.onError === 'fail') failure ??= previous;
        continue;
      }
      const run = await this.#task(name, 'finish', spec, outcome);
      if (run?.state === 'failed' && spec.onError === 'fail') failure ??= run;
    }
    await this.loop.serial(name, async () => {
      const r = await this.loop.get(name);
      if (r.status.ending === null) return;
      const failed = failure !== null && r.status.ending.state === 'Completed';
      const reason = failure === null ? r.status.ending.reason : `${r.status.ending.reason}; finish task ${failure.name} failed: ${failure.error?.code} ${failure.error?.message}`;
      const status: ExperimentStatus = { ...r.status, state: failed ? 'Failed' : r.status.ending.state, reason, finishedAt: r.status.ending.finishedAt, ending: null };
      await this.loop.save({ ...r, status });
      this.opts.log.info({ experiment: name, state: status.state, reason }, 'experiment ended');
    });
  }
}

/** Runs of the finish tasks whose `if` does not match the final state. */
export function skippedFinishTasks(doc: ExperimentDoc, state: string, iteration: number, now: string): TaskRun[] {
  const run = finishTasksFor(doc, state);
  return doc.spec.tasks.finish
    .filter((t) => !run.includes(t))
    .map((t) => ({
      phase: 'finish', name: t.name, task: t.task, iteration, state: 'skipped', startedAt: now, durationMs: null, onError: t.onError,
      error: null, output: { reason: `if: ${t.if}, and the experiment is ${state}` },
    }));
}

/** Finish tasks whose `if` matches the final state: success = Completed, failure = Failed or Aborted. */
export function finishTasksFor(doc: ExperimentDoc, state: string): TaskSpec[] {
  const ok = state === 'Completed';
  return doc.spec.tasks.finish.filter((t) => t.if === 'always' || (t.if === 'success') === ok);
}
