/**
 * The experiment state machine, as pure transitions over ExperimentStatus
 * (status.ts):
 *   Pending → Running ⇄ Paused → Completed | Failed | Aborted
 * `iterate` is one analysis step: assess → decide → weights, recorded in the
 * history. The scheduler (scheduler.ts) only feeds it measurements
 * (measurements.ts) and carries out the weights it returns.
 */
import { seededRandom } from '../common/random.js';
import type { Measurements } from './analysis-types.js';
import { assess } from './assess.js';
import { decide } from './decide.js';
import { allTo, nextWeights } from './next-weights.js';
import { generationField, openPeriod, withGenerationTotals, type PeriodRecord } from './periods.js';
import type { ReplicaGenerations } from './ports.js';
import type { ExperimentDoc } from './spec-types.js';
import { checkSrm, EMPTY_SRM_STATE, type SrmSample } from './srm.js';
import type { ExperimentState, ExperimentStatus, IterationRecord, TaskRun, VersionStatus } from './status.js';

export const FINAL_STATES: ReadonlySet<ExperimentState> = new Set(['Completed', 'Failed', 'Aborted']);

/** Task runs kept in a status: the newest, so a long loop cannot grow a record without bound. */
export const MAX_TASK_RUNS = 200;

export function pendingStatus(doc: ExperimentDoc, now: string): ExperimentStatus {
  return {
    state: 'Pending',
    iteration: 0,
    winner: null,
    reason: 'waiting to start',
    weights: doc.spec.weights.initial,
    versions: {},
    srm: null,
    srmFlagged: 0,
    srmState: EMPTY_SRM_STATE,
    generation: null,
    periods: [],
    sequential: null,
    history: [],
    tasks: [],
    ending: null,
    createdAt: now,
    startedAt: null,
    finishedAt: null,
  };
}

export function start(s: ExperimentStatus, now: string): ExperimentStatus {
  return { ...s, state: 'Running', reason: 'running', startedAt: now };
}

/** The RNG of one iteration: a function of the experiment's seed and the iteration, so a resumed run decides as an uninterrupted one. */
export function iterationRng(seed: number, iteration: number): () => number {
  return seededRandom((Math.imul(seed, 0x9e3779b1) ^ Math.imul(iteration, 0x85ebca6b)) >>> 0);
}

/**
 * The routing generation the scheduler has just written for the weights in
 * `s`: it carries the next iteration's traffic, so it opens that period.
 */
export function withGeneration(s: ExperimentStatus, generation: number): ExperimentStatus {
  return { ...s, generation, periods: openPeriod(s.periods ?? [], generation, s.iteration + 1, s.weights) };
}

/** What one iteration reads. */
export interface IterationInput {
  /** Cumulative per version since the experiment started (objectives, display, design effect). */
  readonly measurements: Measurements;
  /** Per replica, its counts per recent routing generation (AggregateSource.generations). */
  readonly generations: readonly ReplicaGenerations[];
}

/** One iteration: assess → decide → weights, with the periods and the SRM test brought up to date. */
export function iterate(doc: ExperimentDoc, s: ExperimentStatus, input: IterationInput, now: string): ExperimentStatus {
  const spec = doc.spec;
  const iteration = s.iteration + 1;
  const rng = iterationRng(spec.seed, iteration);
  const periods = withGenerationTotals(s.periods ?? [], input.generations);
  const inForce = s.generation == null ? undefined : periods.find((p) => p.generation === s.generation);
  const srmRun = checkSrm(s.srmState ?? EMPTY_SRM_STATE, inForce === undefined ? null : srmSample(input.generations, inForce));
  const srm = srmRun.check;
  const a = { ...assess(spec, input.measurements, rng, periods), srm };
  const previousPFeasible = Object.fromEntries(Object.entries(s.versions).map(([v, st]) => [v, st.pFeasible]));
  const decision = decide(spec, a, { iteration, weights: s.weights, previousPFeasible });
  const weights = nextWeights(spec, a, decision, s.weights, iteration, rng);
  const versions: Record<string, VersionStatus> = {};
  for (const v of a.versions) {
    versions[v.name] = {
      samples: v.samples,
      metrics: v.metrics,
      verdict: v.verdict,
      pFeasible: v.pFeasible,
      pBest: v.pBest,
      expectedLoss: v.expectedLoss,
      objectives: v.objectives,
      metricErrors: v.metricErrors,
      comparison: v.comparison,
    };
  }
  const srmNote = srm?.flagged ? `; sample ratio mismatch (p = ${srm.pValue.toExponential(2)}): routing does not follow the weights` : '';
  const reason = decision.reason + srmNote + metricErrorNote(a.versions);
  const record: IterationRecord = { iteration, at: now, weightsMeasured: s.weights, weights, versions, winner: decision.winner, reason, srm };
  return {
    ...s,
    state: decision.end?.state ?? s.state,
    iteration,
    winner: decision.winner,
    reason,
    weights,
    versions,
    srm,
    srmFlagged: s.srmFlagged + (srm?.flagged ? 1 : 0),
    srmState: srmRun.state,
    periods,
    sequential: a.sequential ?? null,
    history: [...s.history, record],
    finishedAt: decision.end !== null ? now : null,
  };
}

/** The sample-ratio check's sample: the period in force's keyless requests (all replicas) and new sticky keys (per replica). */
function srmSample(replicas: readonly ReplicaGenerations[], period: PeriodRecord): SrmSample {
  const keyless: Record<string, number> = {};
  for (const counts of Object.values(generationField(replicas, period.generation, 'keyless'))) {
    for (const [v, n] of Object.entries(counts)) keyless[v] = (keyless[v] ?? 0) + n;
  }
  return { keyless, newKeys: generationField(replicas, period.generation, 'newKeys'), weights: period.weights };
}

/** Failed metric reads, named in the reason: a version judged on no data must say so. */
function metricErrorNote(versions: readonly { name: string; metricErrors: Readonly<Record<string, { code: string }>> }[]): string {
  const failed = versions.flatMap((v) => Object.entries(v.metricErrors).map(([metric, e]) => `${metric} for ${v.name} (${e.code})`));
  return failed.length === 0 ? '' : `; cannot read ${failed.join(', ')}`;
}

/** Records a task run: replaces the same task's running entry, else appends (keeping the newest MAX_TASK_RUNS). */
export function withTaskRun(s: ExperimentStatus, run: TaskRun): ExperimentStatus {
  const tasks = s.tasks ?? [];
  const i = tasks.findIndex((t) => t.state === 'running' && t.phase === run.phase && t.name === run.name && t.iteration === run.iteration);
  const next = i >= 0 ? tasks.map((t, k) => (k === i ? run : t)) : [...tasks, run];
  const history =
    run.phase === 'start' || run.state === 'running'
      ? s.history
      : s.history.map((h) => (h.iteration === run.iteration ? { ...h, tasks: [...(h.tasks ?? []).filter((t) => !(t.name === run.name && t.phase === run.phase)), run] } : h));
  return { ...s, tasks: next.slice(-MAX_TASK_RUNS), history };
}

export function pause(s: ExperimentStatus): ExperimentStatus {
  return { ...s, state: 'Paused', reason: 'paused: weights frozen' };
}

export function resume(s: ExperimentStatus): ExperimentStatus {
  return { ...s, state: 'Running', reason: 'resumed' };
}

export function abort(doc: ExperimentDoc, s: ExperimentStatus, now: string): ExperimentStatus {
  const baseline = doc.spec.versions[0]!.name;
  return { ...s, state: 'Aborted', winner: null, reason: `aborted; traffic back to ${baseline}`, weights: allTo(doc.spec, baseline), finishedAt: now };
}

export function promote(doc: ExperimentDoc, s: ExperimentStatus, version: string, now: string): ExperimentStatus {
  return { ...s, state: 'Completed', winner: version, reason: `promoted ${version} by hand`, weights: allTo(doc.spec, version), finishedAt: now };
}
