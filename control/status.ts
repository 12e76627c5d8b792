/**
 * What an experiment's stored status is made of: its state, per-version
 * figures, the iteration history, task runs and the pending ending. Types
 * only; the transitions over them are in lifecycle.ts, the task runs are
 * made by tasks/ and task-phases.ts. Type imports only, none of them back
 * to lifecycle, ports or tasks: all three depend on it without a circle.
 */
import type { ObjectiveAssessment, SequentialSummary, SrmCheck, Verdict, VersionComparison } from './analysis-types.js';
import type { PeriodRecord } from './periods.js';
import type { TaskKind } from './spec-types.js';
import type { SrmState } from './srm.js';

export type ExperimentState = 'Pending' | 'Running' | 'Paused' | 'Completed' | 'Failed' | 'Aborted';

export interface VersionStatus {
  readonly samples: number;
  readonly metrics: Readonly<Record<string, number | null>>;
  readonly verdict: Verdict;
  readonly pFeasible: number | null;
  readonly pBest: number | null;
  readonly expectedLoss: number | null;
  readonly objectives: readonly ObjectiveAssessment[];
  /** Custom metrics that could not be read this iteration: code and message (secrets masked). */
  readonly metricErrors: Readonly<Record<string, { readonly code: string; readonly message: string }>>;
  /** The reward as the winner test sees it: stratified estimate, always-valid interval, lift (null without a reward). */
  readonly comparison?: VersionComparison | null;
}

export interface IterationRecord {
  readonly iteration: number;
  readonly at: string;
  /** Weights in force while this iteration's traffic was measured. */
  readonly weightsMeasured: Readonly<Record<string, number>>;
  /** Weights decided by this iteration (in force for the next one). */
  readonly weights: Readonly<Record<string, number>>;
  readonly versions: Readonly<Record<string, VersionStatus>>;
  readonly winner: string | null;
  readonly reason: string;
  readonly srm: SrmCheck | null;
  /** Loop and finish task runs that followed this iteration. */
  readonly tasks?: readonly TaskRun[];
}

/** The final state an experiment reaches once its finish tasks have run. */
export interface Ending {
  readonly state: 'Completed' | 'Failed' | 'Aborted';
  readonly reason: string;
  readonly finishedAt: string;
}

export type TaskPhase = 'start' | 'loop' | 'finish';

/** One run of one task, as kept in the experiment's status and history. */
export interface TaskRun {
  readonly phase: TaskPhase;
  readonly name: string;
  readonly task: TaskKind;
  /** Iterations completed when the task started. */
  readonly iteration: number;
  readonly state: 'running' | 'succeeded' | 'failed' | 'skipped';
  readonly startedAt: string;
  readonly durationMs: number | null;
  readonly onError: 'fail' | 'continue';
  readonly error: { readonly code: string; readonly message: string } | null;
  /** Kind-specific result (load: requests, errors, achievedQps; exec: exitCode, stdout, stderr; notify: status). */
  readonly output: Readonly<Record<string, unknown>> | null;
}

export interface ExperimentStatus {
  readonly state: ExperimentState;
  /** Iterations completed. */
  readonly iteration: number;
  readonly winner: string | null;
  readonly reason: string;
  readonly weights: Readonly<Record<string, number>>;
  readonly versions: Readonly<Record<string, VersionStatus>>;
  /** The last iteration's sample-ratio check, and how many iterations were flagged. */
  readonly srm: SrmCheck | null;
  readonly srmFlagged: number;
  /** The running sequential sample-ratio test (srm.ts). */
  readonly srmState?: SrmState;
  /** The routing generation of the weights in force (null before the first is written). */
  readonly generation?: number | null;
  /** Traffic per routing generation since the start (periods.ts): what versions are compared within. */
  readonly periods?: readonly PeriodRecord[];
  /** The winner test's experiment-wide figures (design effect, level each pair is tested at). */
  readonly sequential?: SequentialSummary | null;
  readonly history: readonly IterationRecord[];
  /** Every task run (start, loop, finish), oldest first; a running one is replaced by its result. */
  readonly tasks: readonly TaskRun[];
  /**
   * Set while finish tasks run: the state the experiment will then be in.
   * `state` keeps its previous value until then, so a Completed experiment
   * is one whose finish tasks have run (docs/contract.md).
   */
  readonly ending: Ending | null;
  readonly createdAt: string;
  readonly startedAt: string | null;
  readonly finishedAt: string | null;
}
