/**
 * What the task kinds share: telling a timeout from "the experiment ended",
 * abortable waits, templates whose errors carry task codes, and one HTTP call
 * for notify and github that never puts a secret into an error message.
 */
import { Agent, request } from 'undici';
import { SluiceError } from '../../common/errors.js';
import { render, type Rendered, type TemplateVars } from '../metrics/template.js';

/**
 * The abort reason runTask uses when `timeoutSeconds` passes. Any other reason
 * means the task was stopped from outside (the experiment ended).
 */
export class TaskTimeout extends Error {
  constructor(readonly seconds: number) {
    super(`did not finish within ${seconds} s (timeoutSeconds)`);
    this.name = 'TaskTimeout';
  }
}

export function timedOut(signal: AbortSignal): boolean {
  return signal.aborted && signal.reason instanceof TaskTimeout;
}

/** The error a task throws when its signal aborted while it was `doing` something. */
export function stopError(signal: AbortSignal, doing: string): SluiceError {
  const r: unknown = signal.reason;
  if (r instanceof TaskTimeout) return new SluiceError('SLUICE_TASK_TIMEOUT', `${r.message} while ${doing}`);
  const why = r instanceof Error ? r.message : typeof r === 'string' ? r : 'the experiment ended';
  return new SluiceError('SLUICE_TASK_FAILED', `stopped while ${doing}: ${why}`);
}

/** Waits `ms`; resolves false at once when the signal aborts (never rejects, so callers decide what an abort means). */
export function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(false);
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Waits for `p`, at most `ms` (never rejects). */
export function within(p: Promise<unknown>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    p.then(
      () => {
        clearTimeout(timer);
        resolve();
      },
      () => {
        clearTimeout(timer);
        resolve();
      },
    );
  });
}

/** Waits for `p` or the signal's abort, whichever comes first (never rejects; leaves no listener behind). */
export function untilAborted(p: Promise<unknown>, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      signal.removeEventListener('abort', done);
      resolve();
    };
    signal.addEventListener('abort', done, { once: true });
    p.then(done, done);
  });
}

/** Renders a task template; an unset {{env.NAME}} is the task's failure (SLUICE_TASK_FAILED), not a metric's. */
export function renderTask(template: string, vars: TemplateVars, env: Readonly<Record<string, string | undefined>>, what: string): Rendered {
  try {
    return render(template, vars, env);
  } catch (err) {
    if (err instanceof SluiceError) throw new SluiceError('SLUICE_TASK_FAILED', `${what}: ${err.message}`);
    throw err;
  }
}

/** A URL from a rendered template, checked now that its variables are filled in; errors show the masked text. */
export function parseRenderedUrl(r: Rendered, what: string): URL {
  let u: URL;
  try {
    u = new URL(r.text);
  } catch {
    throw new SluiceError('SLUICE_TASK_FAILED', `${what} is not a valid URL: ${r.masked}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new SluiceError('SLUICE_TASK_FAILED', `${what} must be http: or https:, got ${r.masked}`);
  return u;
}

/** "connect ECONNREFUSED 127.0.0.1:9 (ECONNREFUSED)": the reason of a transport failure, with its code. */
export function transportReason(err: unknown): string {
  const e = err as { message?: unknown; code?: unknown; cause?: { message?: unknown; code?: unknown } };
  const msg = typeof e?.message === 'string' && e.message !== '' ? e.message : String(err);
  const cause = typeof e?.cause?.message === 'string' && !msg.includes(e.cause.message) ? `: ${e.cause.message}` : '';
  const code = typeof e?.code === 'string' ? e.code : typeof e?.cause?.code === 'string' ? e.cause.code : null;
  return `${msg}${cause}${code !== null && !msg.includes(code) ? ` (${code})` : ''}`;
}

export interface HttpCall {
  readonly method: string;
  readonly url: URL;
  /** The URL as errors and logs show it (secrets masked). */
  readonly shown: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string | null;
  readonly signal: AbortSignal;
  readonly dispatcher: Agent;
}

export interface HttpAnswer {
  readonly status: number;
  /** The start of the body (16 KiB at most); the rest is read and dropped. */
  readonly text: string;
}

const KEEP_BODY_BYTES = 16 * 1024;

/**
 * One request. A transport failure is SLUICE_TASK_HTTP naming the shown URL;
 * an abort is the task's stop error. Any status resolves: callers judge it.
 */
export async function httpCall(c: HttpCall): Promise<HttpAnswer> {
  const doing = `${c.method} ${c.shown}`;
  try {
    const res = await request(c.url, { method: c.method, headers: c.headers, body: c.body, signal: c.signal, dispatcher: c.dispatcher });
    const kept: Buffer[] = [];
    let size = 0;
    // Read to the end even past the kept part: an unread body holds the connection.
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      if (size < KEEP_BODY_BYTES) kept.push(chunk.subarray(0, KEEP_BODY_BYTES - size));
      size += chunk.length;
    }
    return { status: res.statusCode, text: Buffer.concat(kept).toString('utf8') };
  } catch (err) {
    if (c.signal.aborted) throw stopError(c.signal, doing);
    throw new SluiceError('SLUICE_TASK_HTTP', `${doing}: ${transportReason(err)}`);
  }
}

/** A connection pool for one task run, closed whatever happens: nothing lingers after the task. */
export async function withAgent<T>(fn: (agent: Agent) => Promise<T>): Promise<T> {
  const agent = new Agent({ connect: { timeout: 10_000 } });
  try {
    return await fn(agent);
  } finally {
    await agent.destroy().catch(() => undefined);
  }
}

/** The first line of an error body, short: what GitHub or a webhook said, for the error message. */
export function bodyHint(text: string): string {
  let said = text;
  try {
    const j: unknown = JSON.parse(text);
    if (j !== null && typeof j === 'object' && 'message' in j && typeof j.message === 'string') said = j.message;
  } catch {
    // not JSON: the raw text it is
  }
  const line = said.trim().split('\n')[0] ?? '';
  return line === '' ? '' : `: ${line.length > 200 ? `${line.slice(0, 200)}…` : line}`;
}

/**
 * A task failure that still has something to show (exec's captured output,
 * load's counts so far): runTask keeps `output` in the run beside the error.
 */
export class TaskError extends SluiceError {
  constructor(
    code: 'SLUICE_TASK_FAILED' | 'SLUICE_TASK_TIMEOUT' | 'SLUICE_TASK_HTTP',
    message: string,
    readonly output: Readonly<Record<string, unknown>>,
  ) {
    super(code, message);
  }
}
