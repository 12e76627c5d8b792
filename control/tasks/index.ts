/**
 * `runTask`, which runs one task (of any kind in kinds.ts) and turns whatever
 * happens into a TaskRun: the timeout (an AbortController combined with the
 * caller's signal), the duration, the error with its code. It never rejects,
 * and nothing it returns holds a secret the spec's templates or token refer to.
 * The phases (`if`, `onError`, background load) are ../task-phases.ts's.
 */
import { type ErrorDetail, SluiceError } from '../../common/errors.js';
import { maskSecrets, secretsOf } from '../metrics/template.js';
import type { ExperimentDoc, TaskSpec } from '../spec-types.js';
import { TaskError, TaskTimeout } from './common.js';
import { EXEC_DISABLED_MESSAGE } from './exec.js';
import { taskKind } from './kinds.js';
import type { TaskPhase, TaskRun } from '../status.js';
import type { TaskContext } from './types.js';

/**
 * How long past its timeout a task may take to stop (exec's SIGTERM grace and
 * output drain fit in it); after that the run is reported as timed out even
 * if the task has not returned.
 */
export const STOP_GRACE_MS = 10_000;

export type TaskRunContext = Omit<TaskContext, 'signal'> & { readonly signal?: AbortSignal };

export async function runTask(phase: TaskPhase, spec: TaskSpec, ctx: TaskRunContext, now: () => Date = () => new Date()): Promise<TaskRun> {
  const startedAt = now().toISOString();
  const t0 = performance.now();
  const ac = new AbortController();
  const timeoutMs = spec.timeoutSeconds * 1000;
  const timer = setTimeout(() => ac.abort(new TaskTimeout(spec.timeoutSeconds)), timeoutMs);
  const outer = ctx.signal;
  const onOuter = (): void => ac.abort(outer?.reason ?? new Error('the experiment ended'));
  if (outer?.aborted) onOuter();
  else outer?.addEventListener('abort', onOuter, { once: true });
  let hardTimer: NodeJS.Timeout | undefined;

  let output: Readonly<Record<string, unknown>> | null = null;
  let error: { code: string; message: string } | null = null;
  try {
    const hardStop = new Promise<never>((_, reject) => {
      hardTimer = setTimeout(() => reject(new SluiceError('SLUICE_TASK_TIMEOUT', `did not stop within ${spec.timeoutSeconds} s (timeoutSeconds)`)), timeoutMs + STOP_GRACE_MS);
    });
    output = await Promise.race([taskKind(spec.task).run(spec, { ...ctx, signal: ac.signal }), hardStop]);
  } catch (err) {
    error = runError(err, ac.signal);
    if (err instanceof TaskError) output = err.output;
  } finally {
    clearTimeout(timer);
    clearTimeout(hardTimer);
    outer?.removeEventListener('abort', onOuter);
  }

  const secrets = secretsOfTask(spec, ctx);
  return {
    phase,
    name: spec.name,
    task: spec.task,
    iteration: ctx.status.iteration,
    state: error === null ? 'succeeded' : 'failed',
    startedAt,
    durationMs: Math.round(performance.now() - t0),
    onError: spec.onError,
    error: error === null ? null : { code: error.code, message: maskSecrets(error.message, secrets) },
    output: output === null ? null : (maskDeep(output, secrets) as Record<string, unknown>),
  };
}

/** A SluiceError keeps its code (a timeout always reads as one); anything else is SLUICE_TASK_FAILED. */
function runError(err: unknown, signal: AbortSignal): { code: string; message: string } {
  const timeout = signal.reason instanceof TaskTimeout ? signal.reason : null;
  if (timeout !== null && !(err instanceof SluiceError && err.code === 'SLUICE_TASK_TIMEOUT')) {
    return { code: 'SLUICE_TASK_TIMEOUT', message: timeout.message };
  }
  if (err instanceof SluiceError) return { code: err.code, message: err.message };
  return { code: 'SLUICE_TASK_FAILED', message: err instanceof Error ? err.message : String(err) };
}

/** Every secret a task may have handled: the values of {{env.NAME}} in its templates, the GitHub token, the pin token. */
function secretsOfTask(spec: TaskSpec, ctx: TaskRunContext): string[] {
  const { values, templates } = taskKind(spec.task).secrets(spec, ctx);
  const out = [...values];
  for (const t of templates) out.push(...secretsOf(t, ctx.env));
  // Longest first: a secret that contains another is masked whole.
  return [...new Set(out.filter((s) => s !== ''))].sort((a, b) => b.length - a.length);
}

function maskDeep(v: unknown, secrets: readonly string[]): unknown {
  if (secrets.length === 0) return v;
  if (typeof v === 'string') return maskSecrets(v, secrets);
  if (Array.isArray(v)) return v.map((x) => maskDeep(x, secrets));
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, maskDeep(x, secrets)]));
  return v;
}

/**
 * Where an experiment asks for exec tasks, for a control plane that does not
 * allow them: the apply is refused up front, listing each one, rather than
 * failing at its finish after the whole run.
 */
export function execTaskPaths(doc: ExperimentDoc): ErrorDetail[] {
  const out: ErrorDetail[] = [];
  for (const phase of ['start', 'loop', 'finish'] as const) {
    doc.spec.tasks[phase].forEach((t, i) => {
      if (t.task === 'exec') out.push({ path: `spec.tasks.${phase}[${i}]`, message: 'exec tasks are disabled on this control plane (--allow-exec or SLUICE_ALLOW_EXEC=1 enables them)' });
    });
  }
  return out;
}

/** Refuses an experiment with exec tasks unless `allowed` (SLUICE_EXEC_DISABLED, 403, every such task listed). */
export function refuseExecUnlessAllowed(doc: ExperimentDoc, allowed: boolean): void {
  if (allowed) return;
  const paths = execTaskPaths(doc);
  if (paths.length > 0) throw new SluiceError('SLUICE_EXEC_DISABLED', EXEC_DISABLED_MESSAGE, paths);
}
