/**
 * Experiment tasks: one interface, one file per kind (readiness.ts, load.ts,
 * notify.ts, github.ts, exec.ts), each registered by one line in kinds.ts.
 * A kind owns its spec type, its keys, its reader, its secrets and its run. A task either
 * returns its output or throws a SluiceError with a SLUICE_TASK_* code;
 * runTask (index.ts) applies the timeout and makes the run (TaskRun, in
 * ../status.ts); the phase runner (../task-phases.ts) records runs and
 * applies `if` and `onError`.
 */
import type { Logger } from '../../common/logger.js';
import type { Obj, Problems } from '../../common/validation.js';
import type { ExperimentDoc, TaskSpec } from '../spec-types.js';
import type { ExperimentStatus } from '../status.js';

export interface TaskContext {
  readonly doc: ExperimentDoc;
  /** The status the task reports on (finish tasks: the final one, with winner and weights). */
  readonly status: ExperimentStatus;
  /** Each version's upstream URL, as the route knows it. */
  readonly versionUrls: Readonly<Record<string, string>>;
  /** Sluice's own proxy listener (all-in-one mode), the default target of `load`; null when not known. */
  readonly proxyUrl: string | null;
  /** Lets `load` pin a request to a version through the proxy (x-sluice-pin); null: pinning unavailable. */
  readonly pinToken: string | null;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Whether the operator allowed exec tasks in this process (--allow-exec, SLUICE_ALLOW_EXEC=1); absent: not allowed. */
  readonly allowExec?: boolean;
  readonly log: Logger;
  /** Aborted on timeout and when the experiment ends: a task stops promptly and throws. */
  readonly signal: AbortSignal;
}

/** The fields every kind shares (read by tasks/validate.ts before the kind's own). */
export type TaskBase = Pick<TaskSpec, 'name' | 'if' | 'onError' | 'every' | 'timeoutSeconds'>;

/** The fields of one kind, without the shared ones and `task`. */
export type TaskFields<S extends TaskSpec> = Omit<S, keyof TaskBase | 'task'>;

/** What a kind's reader sees besides the raw mapping: where problems go, and the experiment's versions. */
export interface TaskReadContext {
  readonly p: Problems;
  readonly versions: readonly string[];
}

/** The secrets a run may have handled: literal values (tokens), and templates whose {{env.NAME}} values are secret. */
export interface TaskSecrets {
  readonly values: readonly string[];
  readonly templates: readonly string[];
}

/** One task kind, registered by one line in kinds.ts. */
export interface TaskImpl<S extends TaskSpec> {
  /** The keys of the kind's own fields (besides task, name, if, onError, every, timeoutSeconds). */
  readonly keys: readonly string[];
  /** Default timeoutSeconds (docs/tasks.md). */
  readonly timeoutSeconds: number;
  /** Reads the kind's fields of `o` (a mapping whose keys are checked) into a spec; every problem goes to `c.p` by path. */
  read(c: TaskReadContext, o: Obj, path: string, base: TaskBase): S;
  /** Every secret a run of `spec` may have handled, masked in its error and output. */
  secrets(spec: S, ctx: Pick<TaskContext, 'env' | 'pinToken'>): TaskSecrets;
  /** Resolves with the task's output; rejects with a SluiceError (SLUICE_TASK_*) when it failed. */
  run(spec: S, ctx: TaskContext): Promise<Record<string, unknown> | null>;
}
