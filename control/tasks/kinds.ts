/**
 * The task kinds: one line per kind. Each kind's file owns its spec type
 * (added to TaskSpecs, base.ts), its keys, its reader, its secrets and its run
 * (types.ts, TaskImpl); adding a kind is its file and a line here. TaskKind
 * and TaskSpec derive from TaskSpecs, TASK_KINDS from this table; the table's
 * type requires one entry per kind in TaskSpecs, and no other.
 */
import type { TaskKind, TaskSpec } from './base.js';
import { execTask } from './exec.js';
import { githubTask } from './github.js';
import { loadTask } from './load.js';
import { notifyTask } from './notify.js';
import { readinessTask } from './readiness.js';
import type { TaskImpl } from './types.js';

/** The spec of kind K. */
export type TaskSpecOf<K extends TaskKind> = Extract<TaskSpec, { task: K }>;

export const TASKS: { readonly [K in TaskKind]: TaskImpl<TaskSpecOf<K>> } = {
  readiness: readinessTask,
  load: loadTask,
  notify: notifyTask,
  github: githubTask,
  exec: execTask,
};

/** The kinds' names, in the table's order. */
export const TASK_KINDS: readonly TaskKind[] = Object.freeze(Object.keys(TASKS) as TaskKind[]);

/** The kind `kind`, typed so that it accepts that kind's spec (for a spec: `taskKind(spec.task)`). */
export function taskKind<K extends TaskKind>(kind: K): TaskImpl<TaskSpecOf<K>> {
  return TASKS[kind];
}
