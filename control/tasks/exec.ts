/**
 * `exec`: runs a command (argv, no shell unless `shell: true`) for promotion
 * steps Sluice does not do itself — kubectl, helm, git. The outcome is in
 * SLUICE_* environment variables; the output is captured (the last 64 KiB of
 * each stream) into the run.
 *
 * The command runs in a process group of its own (detached), so a timeout or
 * the end of the experiment kills everything it started, not just its first
 * process: `sh -c 'sleep 30 & wait'` leaves no sleep behind. SIGTERM first,
 * SIGKILL to whatever is left after KILL_GRACE_MS.
 *
 * Off unless the operator allows it (`--allow-exec`, SLUICE_ALLOW_EXEC=1): the
 * right to apply an experiment is not the right to run commands. The command
 * never sees Sluice's secrets (env.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as delay } from 'node:timers/promises';
import { SluiceError } from '../../common/errors.js';
import type { Obj } from '../../common/validation.js';
import { expected, expectedText, index, isObj, join, readBool } from '../../common/validation.js';
import type { TaskSpecBase } from './base.js';
import type { ExperimentDoc } from '../spec-types.js';
import type { ExperimentStatus } from '../status.js';
import { renderTask, stopError, TaskError, transportReason, within } from './common.js';
import { execEnvironment } from './env.js';
import { experimentSummary, taskTemplateVars } from './summary.js';
import { ENV_NAME, readOptText, readTemplate } from './fields.js';
import type { TaskFields, TaskImpl, TaskReadContext } from './types.js';

export interface ExecTaskSpec extends TaskSpecBase {
  readonly task: 'exec';
  /** argv; run without a shell unless `shell` is true (then command[0] is the script). */
  readonly command: readonly string[];
  readonly shell: boolean;
  readonly env: Readonly<Record<string, string>>;
  readonly cwd: string | null;
}

declare module './base.js' {
  interface TaskSpecs {
    exec: ExecTaskSpec;
  }
}

export const EXEC_DISABLED_MESSAGE =
  'exec tasks are disabled: they run commands in the control plane for whoever may apply an experiment; the operator enables them with --allow-exec or SLUICE_ALLOW_EXEC=1';

export const CAPTURE_BYTES = 64 * 1024;
export const KILL_GRACE_MS = 2_000;
/** After the command exits, how long its output pipes may stay open (held by something it left running). */
const DRAIN_MS = 1_000;
const HINT_CHARS = 500;

/** The kind's defaults (docs/tasks.md). */
const DEFAULTS = { timeoutSeconds: 300, shell: false } as const;

export const execTask: TaskImpl<ExecTaskSpec> = {
  keys: ['command', 'shell', 'env', 'cwd'],
  timeoutSeconds: DEFAULTS.timeoutSeconds,
  read: (c, o, path, base) => ({ ...base, task: 'exec', ...readExec(c, o, path) }),
  secrets: (spec) => ({ values: [], templates: [...spec.command] }),
  async run(spec, ctx) {
    // Checked here too, not only at apply: in Redis mode the leader that runs it may not be the replica that accepted it.
    if (ctx.allowExec !== true) throw new SluiceError('SLUICE_EXEC_DISABLED', EXEC_DISABLED_MESSAGE);
    const vars = taskTemplateVars(ctx.doc, ctx.status);
    const args = spec.command.map((a, i) => renderTask(a, vars, ctx.env, `command[${i}]`));
    const shown = args.map((a) => a.masked).join(' ');
    if (ctx.signal.aborted) throw stopError(ctx.signal, `starting ${shown}`);
    const env = execEnvironment(ctx.env, [ctx.pinToken]);
    Object.assign(env, spec.env, sluiceEnv(ctx.doc, ctx.status, spec.name));

    const [file, ...rest] = args.map((a) => a.text);
    const child = spawn(file!, rest, {
      shell: spec.shell,
      env,
      cwd: spec.cwd ?? undefined,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const stdout = new Tail(CAPTURE_BYTES);
    const stderr = new Tail(CAPTURE_BYTES);
    child.stdout!.on('data', (c: Buffer) => stdout.push(c));
    child.stderr!.on('data', (c: Buffer) => stderr.push(c));
    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
    const started = performance.now();
    ctx.log.info({ task: spec.name, command: shown, pid: child.pid }, 'exec started');

    const end = await outcome(child, ctx.signal);
    if (end.kind === 'spawn-error') {
      throw new TaskError('SLUICE_TASK_FAILED', `cannot run ${args[0]!.masked}${spec.cwd !== null ? ` in ${spec.cwd}` : ''}: ${transportReason(end.error)}`, {});
    }
    let exit = end;
    let killed: string | null = null;
    if (end.kind === 'aborted') {
      killed = await killGroup(child);
      exit = await end.exited;
    }
    await within(closed, DRAIN_MS);
    child.stdout!.destroy();
    child.stderr!.destroy();

    const output = {
      exitCode: exit.kind === 'exit' ? exit.code : null,
      signal: exit.kind === 'exit' ? exit.signal : null,
      durationMs: Math.round(performance.now() - started),
      stdout: stdout.text(),
      stderr: stderr.text(),
      ...(stdout.truncated || stderr.truncated ? { truncated: { stdout: stdout.truncated, stderr: stderr.truncated } } : {}),
    };
    if (killed !== null) {
      const stop = stopError(ctx.signal, `running ${shown}`);
      throw new TaskError(stop.code === 'SLUICE_TASK_TIMEOUT' ? 'SLUICE_TASK_TIMEOUT' : 'SLUICE_TASK_FAILED', `${stop.message}; process group killed (${killed})`, output);
    }
    if (output.exitCode !== 0) {
      const how = output.exitCode !== null ? `exited with code ${output.exitCode}` : `was killed by ${output.signal ?? 'a signal'}`;
      throw new TaskError('SLUICE_TASK_FAILED', `${shown} ${how}${hint(output.stderr)}`, output);
    }
    return output;
  },
};

/** What the command is told, beside the inherited environment and `env` (these win: they are the contract). */
export function sluiceEnv(doc: ExperimentDoc, status: ExperimentStatus, task: string): Record<string, string> {
  return {
    SLUICE_EXPERIMENT: doc.name,
    SLUICE_ROUTE: doc.spec.route,
    SLUICE_TASK: task,
    SLUICE_STATE: status.state,
    SLUICE_WINNER: status.winner ?? '',
    SLUICE_BASELINE: doc.spec.versions[0]?.name ?? '',
    SLUICE_ITERATION: String(status.iteration),
    SLUICE_REASON: status.reason,
    SLUICE_WEIGHTS: JSON.stringify(status.weights),
    SLUICE_SUMMARY: JSON.stringify(experimentSummary(doc, status)),
  };
}

type Exit = { readonly kind: 'exit'; readonly code: number | null; readonly signal: NodeJS.Signals | null };
type Outcome =
  | Exit
  | { readonly kind: 'spawn-error'; readonly error: Error }
  | { readonly kind: 'aborted'; readonly exited: Promise<Exit> };

/** How the wait ended: the command exited, could not start, or the signal aborted first. */
function outcome(child: ChildProcess, signal: AbortSignal): Promise<Outcome> {
  const exited = new Promise<Exit>((resolve) => child.once('exit', (code, sig) => resolve({ kind: 'exit', code, signal: sig })));
  return new Promise((resolve) => {
    const onAbort = (): void => resolve({ kind: 'aborted', exited });
    // 'error' without a pid: it never started (ENOENT, EACCES, a bad cwd). Later ones are kill failures: ignored.
    child.once('error', (error) => {
      if (child.pid === undefined) resolve({ kind: 'spawn-error', error });
    });
    void exited.then((e) => {
      signal.removeEventListener('abort', onAbort);
      resolve(e);
    });
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** SIGTERM to the group, SIGKILL to what is left after the grace; says which it took (null: nothing was left to kill). */
async function killGroup(child: ChildProcess): Promise<string | null> {
  const pgid = child.pid!;
  if (!signalGroup(pgid, 'SIGTERM')) return null;
  const deadline = Date.now() + KILL_GRACE_MS;
  while (Date.now() < deadline) {
    if (!signalGroup(pgid, 0)) return 'SIGTERM';
    await delay(50);
  }
  signalGroup(pgid, 'SIGKILL');
  return `SIGTERM, then SIGKILL after ${KILL_GRACE_MS / 1000} s`;
}

/** kill(-pgid): false once no process of the group is left (ESRCH). */
function signalGroup(pgid: number, sig: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, sig);
    return true;
  } catch {
    return false;
  }
}

/** The last `limit` bytes of a stream. */
class Tail {
  #chunks: Buffer[] = [];
  #size = 0;
  truncated = false;

  constructor(private readonly limit: number) {}

  push(c: Buffer): void {
    this.#chunks.push(c);
    this.#size += c.length;
    // Compact now and then rather than per chunk: a chatty command stays cheap.
    if (this.#size > 2 * this.limit) this.#compact();
  }

  text(): string {
    this.#compact();
    return Buffer.concat(this.#chunks).toString('utf8');
  }

  #compact(): void {
    if (this.#size <= this.limit) return;
    const all = Buffer.concat(this.#chunks);
    this.#chunks = [all.subarray(all.length - this.limit)];
    this.#size = this.limit;
    this.truncated = true;
  }
}

function hint(stderr: string): string {
  const t = stderr.trim();
  if (t === '') return '';
  return `: ${t.length > HINT_CHARS ? `…${t.slice(-HINT_CHARS)}` : t}`;
}

// ---------------------------------------------------------------- reading the spec

function readExec(c: TaskReadContext, o: Obj, path: string): TaskFields<ExecTaskSpec> {
  const { p } = c;
  const cmdPath = join(path, 'command');
  const command: string[] = [];
  const what = 'a non-empty list of strings (argv), such as [kubectl, apply, -f, promote.yaml]';
  if (o.command == null) p.add(cmdPath, `required: ${what}`);
  else if (!Array.isArray(o.command) || o.command.length === 0) expected(p, cmdPath, what, o.command, null);
  else {
    o.command.forEach((arg, i) => {
      const at = index(cmdPath, i);
      const s = readTemplate(c, arg, at, 'a string');
      if (s !== null && i === 0 && s.trim() === '') p.add(at, 'the command must not be empty');
      if (s !== null) command.push(s);
    });
  }
  const env: Record<string, string> = {};
  const envPath = join(path, 'env');
  if (o.env != null) {
    if (!isObj(o.env)) expected(p, envPath, 'a mapping of environment variable name to value', o.env, null);
    else {
      for (const [k, v] of Object.entries(o.env)) {
        const at = join(envPath, k);
        if (!ENV_NAME.test(k)) p.add(at, 'not an environment variable name (letters, digits and _, not starting with a digit)');
        else if (k.startsWith('SLUICE_')) p.add(at, 'SLUICE_* variables are set by Sluice (see docs/tasks.md)');
        if (typeof v !== 'string') expectedText(p, at, 'a string', v, null);
        else env[k] = v;
      }
    }
  }
  const cwd = readOptText(p, o.cwd, join(path, 'cwd'), 'a directory path');
  if (cwd === '') p.add(join(path, 'cwd'), 'must not be empty (leave it out to use the working directory of Sluice)');
  return { command, shell: readBool(p, o.shell, join(path, 'shell'), DEFAULTS.shell), env, cwd: cwd === '' ? null : cwd };
}
