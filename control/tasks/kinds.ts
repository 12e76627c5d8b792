/**
 * The task kinds: one line per kind. Each kind's file owns its keys, its
 * reader, its secrets and its run (types.ts, TaskImpl); adding a kind is its
 * file, its spec type in spec-types.ts (TASK_KINDS, TaskSpec) and a line here.
 */
import type { TaskKind, TaskSpec } from '../spec-types.js';
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

/** The kind `kind`, typed so that it accepts that kind's spec (for a spec: `taskKind(spec.task)`). */
export function taskKind<K extends TaskKind>(kind: K): TaskImpl<TaskSpecOf<K>> {
  return TASKS[kind];
}
