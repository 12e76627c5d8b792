/**
 * Validation of `spec.tasks` (start, loop, finish lists; per-kind fields).
 * Like the rest of control/spec.ts, every problem is collected by path
 * (`spec.tasks.finish[0].url`) and nothing throws. The rules and defaults are
 * documented in docs/tasks.md; TASK_DEFAULTS holds those every kind shares,
 * and each kind's file (registered in kinds.ts) its keys, reader and defaults.
 *
 * Some defaults depend on the experiment and are resolved when the task runs:
 * a github task's `branch` (null = `sluice/<experiment>`) and `title` (null =
 * a generated one).
 */
import type { Obj, Problems } from '../../common/validation.js';
import { expected, index, isObj, join, mapping, optMapping, readEnum, readInt, readName } from '../../common/validation.js';
import { TASK_CONDITIONS } from './base.js';
import { TASK_BASE_KEYS, TASK_ON_ERROR, TASK_PHASES } from '../spec-shape.js';
import type { TaskCondition, TaskKind, TaskSpec } from './base.js';
import type { TasksSpec } from '../spec-types.js';
import { readSeconds } from './fields.js';
import { TASK_KINDS, taskKind } from './kinds.js';
import type { TaskPhase } from '../status.js';
import type { TaskBase, TaskReadContext } from './types.js';

/** The defaults every kind shares; a kind's own (its timeoutSeconds among them) are in its file. */
export const TASK_DEFAULTS = {
  onError: 'fail',
  /** `if` of finish tasks; start and loop tasks always run. */
  finishIf: 'success',
  every: 1,
} as const;

const MAX_NAME = 63;

const PHASES: readonly TaskPhase[] = TASK_PHASES;
const BASE_KEYS = TASK_BASE_KEYS;
const ON_ERROR = TASK_ON_ERROR;

/** Reads `spec.tasks`; every problem is added to `p` by path. */
export function readTaskSpecs(p: Problems, raw: unknown, path: string, versions: readonly string[]): TasksSpec {
  const o = optMapping(p, raw, path, PHASES);
  const c: TaskReadContext = { p, versions };
  const out: Record<TaskPhase, TaskSpec[]> = { start: [], loop: [], finish: [] };
  // Names are unique across phases: status and history key task runs by name.
  const seen = new Map<string, string>();
  for (const phase of PHASES) {
    const listPath = join(path, phase);
    const list = o[phase];
    if (list == null) continue;
    if (!Array.isArray(list)) {
      expected(p, listPath, 'a list of tasks such as [{ task: notify, url: ... }]', list, null);
      continue;
    }
    list.forEach((item, i) => {
      const at = index(listPath, i);
      const spec = readTask(c, item, at, phase, i);
      if (spec === null) return;
      const first = seen.get(spec.name);
      if (first !== undefined) p.add(isObj(item) && item.name != null ? join(at, 'name') : at, `duplicate task name ${JSON.stringify(spec.name)} (also ${first})`);
      else seen.set(spec.name, at);
      out[phase].push(spec);
    });
  }
  return out;
}

function readTask(c: TaskReadContext, raw: unknown, path: string, phase: TaskPhase, i: number): TaskSpec | null {
  const { p } = c;
  if (!isObj(raw)) return expected(p, path, 'a task mapping such as { task: notify, url: ... }', raw, null);
  const kind = readKind(p, raw, path);
  if (kind === null) return null;
  const def = taskKind(kind);
  const o = mapping(p, raw, path, [...BASE_KEYS, ...def.keys]) ?? raw; // a mapping: checked above; this reports unknown keys
  return def.read(c, o, path, readBase(c, o, path, phase, i, kind));
}

function readKind(p: Problems, o: Obj, path: string): TaskKind | null {
  const at = join(path, 'task');
  const what = `one of ${TASK_KINDS.join(', ')}`;
  if (o.task == null) {
    // `- notify: {...}` is the shape other tools use; say how to write it here.
    const guess = Object.keys(o).find((k): k is TaskKind => (TASK_KINDS as readonly string[]).includes(k));
    const hint = guess === undefined ? '' : ` (write \`task: ${guess}\` and its fields beside it, not a "${guess}" key)`;
    return p.reject(at, `required: ${what}${hint}`, null);
  }
  return readEnum(p, o.task, at, TASK_KINDS, null);
}

function readBase(c: TaskReadContext, o: Obj, path: string, phase: TaskPhase, i: number, kind: TaskKind): TaskBase {
  const { p } = c;
  const name = o.name == null ? `${phase}-${i}-${kind}` : readName(p, o.name, join(path, 'name'), MAX_NAME);
  let cond: TaskCondition = phase === 'finish' ? TASK_DEFAULTS.finishIf : 'always';
  if (o.if != null) {
    if (phase !== 'finish') p.add(join(path, 'if'), `if applies to finish tasks only (${phase} tasks always run)`);
    else cond = readEnum(p, o.if, join(path, 'if'), TASK_CONDITIONS, cond);
  }
  let every: number = TASK_DEFAULTS.every;
  if (o.every != null) {
    if (phase !== 'loop') p.add(join(path, 'every'), `every applies to loop tasks only (${phase} tasks run once)`);
    else every = readInt(p, o.every, join(path, 'every'), every, 1, 1_000_000);
  }
  return {
    name,
    if: cond,
    onError: readEnum(p, o.onError, join(path, 'onError'), ON_ERROR, TASK_DEFAULTS.onError),
    every,
    timeoutSeconds: readSeconds(p, o.timeoutSeconds, join(path, 'timeoutSeconds'), taskKind(kind).timeoutSeconds),
  };
}
