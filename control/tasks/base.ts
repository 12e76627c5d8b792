/**
 * What every task kind's spec shares, and the registry of the kinds' spec
 * types. A kind's file declares its spec type (extending TaskSpecBase) and
 * adds it to TaskSpecs under its name (`declare module './base.js'`); kinds.ts
 * registers its implementation by one line, and the TASKS table's type
 * requires exactly one entry per kind in TaskSpecs. TaskKind and TaskSpec are
 * derived from TaskSpecs. Imports nothing: spec-types.ts and the kind files
 * import it (spec-types.ts cannot import the table, whose kinds import
 * ExperimentDoc from it).
 */

export const TASK_CONDITIONS = ['success', 'failure', 'always'] as const;
export type TaskCondition = (typeof TASK_CONDITIONS)[number];

export interface TaskSpecBase {
  /** Shown in status; default `<phase>-<index>-<task>`, e.g. finish-0-notify. */
  readonly name: string;
  /** finish tasks: success = Completed, failure = Failed or Aborted; always elsewhere. */
  readonly if: TaskCondition;
  /** fail: a failed task fails the experiment; continue: it is recorded and the experiment goes on. */
  readonly onError: 'fail' | 'continue';
  /** loop tasks: run every this many iterations (1 = each). */
  readonly every: number;
  readonly timeoutSeconds: number;
}

/** Each kind's spec by kind name; every kind's file adds its own entry. */
export interface TaskSpecs {}

export type TaskKind = keyof TaskSpecs & string;
export type TaskSpec = TaskSpecs[TaskKind];
