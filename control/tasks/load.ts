/**
 * `load`: synthetic traffic for versions that get too little of it, sent
 * through Sluice's own listener (or `url`).
 *
 * Open loop: request i is due at start + i/rate, whether or not earlier ones
 * have been answered, so a slow version cannot slow the load down and hide
 * its latency (the coordinated-omission trap of closed-loop tools). At most
 * `concurrency` requests are in flight; a request that comes due while all of
 * them are busy is not sent and counts as `dropped` — never sent late in a
 * burst, so the rate stays what was asked and the shortfall is visible.
 *
 * With `versions`, `qps` (and `requests`) apply to each listed version, the
 * requests interleaved round-robin, each pinned to its version with
 * `x-sluice-pin: <pin token>:<version>` (the proxy honours it only with the
 * right token, so outside clients cannot pin themselves).
 *
 * Stopping: when the experiment ends (its signal aborts) the load stops and
 * the task succeeds with what it sent so far and `stopped: true`; when
 * `timeoutSeconds` passes first it is SLUICE_TASK_TIMEOUT, with the same
 * counts in the run's output.
 */
import { readFile } from 'node:fs/promises';
import { Pool } from 'undici';
import { SluiceError } from '../../common/errors.js';
import { PIN_HEADER, pinValue } from '../../common/pin.js';
import type { Obj } from '../../common/validation.js';
import { expected, join, osReason, readInt } from '../../common/validation.js';
import { LatencySketch } from '../../common/sketch.js';
import type { TaskSpecBase } from './base.js';
import { renderTask, sleep, TaskError, timedOut, transportReason, untilAborted, within } from './common.js';
import { taskTemplateVars } from './summary.js';
import { MAX_CONCURRENCY, MAX_QPS, MAX_TASK_SECONDS, readHeaders, readOptText, readPath, readPositive, readUrl, readVersionList } from './fields.js';
import type { TaskFields, TaskImpl, TaskReadContext } from './types.js';

export interface LoadTaskSpec extends TaskSpecBase {
  readonly task: 'load';
  /** Where to send: default Sluice's own proxy listener (all-in-one mode). */
  readonly url: string | null;
  /** Path and query of each request. */
  readonly path: string;
  readonly qps: number;
  /** Exactly one of durationSeconds and requests is set. */
  readonly durationSeconds: number | null;
  readonly requests: number | null;
  readonly concurrency: number;
  readonly method: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string | null;
  readonly bodyFile: string | null;
  /** Empty: through the route (split by its weights); else qps for each listed version, pinned. */
  readonly versions: readonly string[];
}

declare module './base.js' {
  interface TaskSpecs {
    load: LoadTaskSpec;
  }
}

/** A request unanswered this long is an error (and frees its slot). */
const REQUEST_TIMEOUT_MS = 30_000;
/** After a stop, how long in-flight requests may still finish (and count) before the pool is destroyed. */
const STOP_GRACE_MS = 1_000;

interface Lane {
  readonly version: string | null;
  readonly headers: Readonly<Record<string, string>>;
  sent: number;
  errors: number;
  dropped: number;
}

/** The kind's defaults (docs/tasks.md). */
const DEFAULTS = { timeoutSeconds: 600, path: '/', concurrency: 16, method: 'GET' } as const;
const METHOD = /^[A-Z]+$/;

export const loadTask: TaskImpl<LoadTaskSpec> = {
  keys: ['url', 'path', 'qps', 'durationSeconds', 'requests', 'concurrency', 'method', 'headers', 'body', 'bodyFile', 'versions'],
  timeoutSeconds: DEFAULTS.timeoutSeconds,
  read: (c, o, path, base) => ({ ...base, task: 'load', ...readLoad(c, o, path) }),
  secrets: (spec, ctx) => ({ values: ctx.pinToken !== null ? [ctx.pinToken] : [], templates: Object.values(spec.headers) }),
  async run(spec, ctx) {
    const base = spec.url ?? ctx.proxyUrl;
    if (base === null) {
      throw new SluiceError('SLUICE_TASK_FAILED', 'load has no target: set url, or run the experiment where Sluice\'s own proxy listener is known (all-in-one mode)');
    }
    if (spec.versions.length > 0 && ctx.pinToken === null) {
      throw new SluiceError('SLUICE_TASK_FAILED', `per-version load needs the pin token: this control plane cannot pin requests to ${spec.versions.join(', ')} (leave versions out to load the route as split by its weights)`);
    }
    const target = new URL(base);
    const path = `${target.pathname.replace(/\/+$/, '')}${spec.path}`;
    const body = await requestBody(spec);
    const vars = taskTemplateVars(ctx.doc, ctx.status);
    const headers: Record<string, string> = {};
    for (const [name, template] of Object.entries(spec.headers)) headers[name] = renderTask(template, vars, ctx.env, `headers.${name}`).text;
    const lanes: Lane[] = (spec.versions.length > 0 ? spec.versions : [null]).map((version) => ({
      version,
      headers: version === null ? headers : { ...headers, [PIN_HEADER]: pinValue(ctx.pinToken!, version) },
      sent: 0,
      errors: 0,
      dropped: 0,
    }));
    const rate = spec.qps * lanes.length;
    // Both modes come down to a number of slots; durationSeconds is validated to be set when requests is not.
    const perLane = spec.requests ?? Math.max(1, Math.round((spec.durationSeconds ?? 0) * spec.qps));
    const total = perLane * lanes.length;
    ctx.log.info({ task: spec.name, target: `${target.origin}${path}`, qps: rate, requests: total }, 'load started');

    const pool = new Pool(target.origin, {
      connections: spec.concurrency,
      pipelining: 1,
      headersTimeout: REQUEST_TIMEOUT_MS,
      bodyTimeout: REQUEST_TIMEOUT_MS,
      connect: { timeout: 10_000 },
    });
    const latency = new LatencySketch();
    const statuses: Record<string, number> = {};
    let firstError: string | null = null;
    let inFlight = 0;
    let counting = true; // off once a stopped run gives up on what is still in flight
    const pending = new Set<Promise<void>>();

    /** One request; never rejects (everything it learns goes into the counters). */
    const send = async (lane: Lane): Promise<void> => {
      const sentAt = performance.now();
      try {
        const res = await pool.request({ path, method: spec.method, headers: lane.headers, body });
        // Read every body to its end: an unread one holds its connection.
        for await (const chunk of res.body as AsyncIterable<Buffer>) void chunk;
        if (!counting) return;
        latency.add(performance.now() - sentAt);
        statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
        if (res.statusCode >= 400) lane.errors++;
      } catch (err) {
        if (!counting) return;
        lane.errors++;
        firstError ??= transportReason(err);
      } finally {
        inFlight--;
      }
    };
    const fire = (lane: Lane): void => {
      inFlight++;
      lane.sent++;
      const done = send(lane);
      pending.add(done);
      void done.then(() => pending.delete(done));
    };

    const intervalMs = 1000 / rate;
    const t0 = performance.now();
    let next = 0;
    try {
      while (next < total) {
        const now = performance.now();
        // Every request due by now: one timer tick may cover several at high rates.
        while (next < total && t0 + next * intervalMs <= now) {
          const lane = lanes[next % lanes.length]!;
          if (inFlight < spec.concurrency) fire(lane);
          else lane.dropped++;
          next++;
        }
        if (next >= total) break;
        if (!(await sleep(t0 + next * intervalMs - performance.now(), ctx.signal))) break;
      }
      const all = Promise.all([...pending]);
      if (!ctx.signal.aborted) await untilAborted(all, ctx.signal);
      if (ctx.signal.aborted) await within(all, STOP_GRACE_MS);
    } finally {
      counting = false;
      await pool.destroy().catch(() => undefined);
    }

    const elapsed = (performance.now() - t0) / 1000;
    const stopped = ctx.signal.aborted;
    const sum = (f: (l: Lane) => number): number => lanes.reduce((a, l) => a + f(l), 0);
    const output: Record<string, unknown> = {
      target: `${target.origin}${path}`,
      requestedQps: rate,
      requests: sum((l) => l.sent),
      errors: sum((l) => l.errors),
      dropped: sum((l) => l.dropped),
      unsent: total - next,
      achievedQps: round(sum((l) => l.sent) / elapsed),
      durationSeconds: round(elapsed),
      latencyMsP50: latency.count > 0 ? round(latency.quantile(0.5)) : null,
      latencyMsP99: latency.count > 0 ? round(latency.quantile(0.99)) : null,
      statuses,
      firstError,
      stopped,
      ...(spec.versions.length > 0
        ? { perVersion: Object.fromEntries(lanes.map((l) => [l.version, { requests: l.sent, errors: l.errors, dropped: l.dropped, achievedQps: round(l.sent / elapsed) }])) }
        : {}),
    };
    ctx.log.info({ task: spec.name, ...output }, stopped ? 'load stopped' : 'load finished');
    if (stopped && timedOut(ctx.signal)) {
      throw new TaskError('SLUICE_TASK_TIMEOUT', `load did not finish within ${spec.timeoutSeconds} s (timeoutSeconds): ${String(output.requests)} of ${total} requests sent`, output);
    }
    return output;
  },
};

async function requestBody(spec: LoadTaskSpec): Promise<string | Buffer | null> {
  if (spec.bodyFile === null) return spec.body;
  try {
    return await readFile(spec.bodyFile);
  } catch (err) {
    throw new SluiceError('SLUICE_TASK_FAILED', `cannot read bodyFile ${spec.bodyFile}: ${osReason(err)}`);
  }
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

// ---------------------------------------------------------------- reading the spec

function readLoad(c: TaskReadContext, o: Obj, path: string): TaskFields<LoadTaskSpec> {
  const { p } = c;
  const url = o.url == null ? null : readUrl(p, o.url, join(path, 'url'), false);
  const versions = readVersionList(c, o.versions, join(path, 'versions'));
  const qpsPath = join(path, 'qps');
  let qps = 1;
  if (o.qps == null) p.add(qpsPath, `required: requests per second${versions.length > 0 ? ' for each listed version' : ''}, > 0 and <= ${MAX_QPS}`);
  else qps = readPositive(p, o.qps, qpsPath, 1, MAX_QPS);
  if (!p.has(qpsPath) && qps * Math.max(versions.length, 1) > MAX_QPS) {
    p.add(qpsPath, `qps applies to each of the ${versions.length} versions: ${qps * versions.length} in total exceeds ${MAX_QPS}`);
  }
  let durationSeconds: number | null = null;
  let requests: number | null = null;
  if (o.durationSeconds != null) durationSeconds = readPositive(p, o.durationSeconds, join(path, 'durationSeconds'), 1, MAX_TASK_SECONDS);
  if (o.requests != null) requests = readInt(p, o.requests, join(path, 'requests'), 1, 1, Number.MAX_SAFE_INTEGER);
  if ((o.durationSeconds == null) === (o.requests == null)) {
    p.add(path, 'needs exactly one of durationSeconds and requests (how long, or how many requests)');
  }
  const methodPath = join(path, 'method');
  let method: string = DEFAULTS.method;
  if (o.method != null) {
    if (typeof o.method === 'string' && METHOD.test(o.method.toUpperCase())) method = o.method.toUpperCase();
    else expected(p, methodPath, 'an HTTP method such as GET or POST', o.method, null);
  }
  const body = readOptText(p, o.body, join(path, 'body'), 'the request body as a string');
  const bodyFile = readOptText(p, o.bodyFile, join(path, 'bodyFile'), 'the path of a file holding the request body');
  if (o.body != null && o.bodyFile != null) p.add(join(path, 'bodyFile'), 'set body or bodyFile, not both');
  if ((o.body != null || o.bodyFile != null) && (method === 'GET' || method === 'HEAD')) {
    p.add(join(path, o.body != null ? 'body' : 'bodyFile'), `a ${method} request carries no body (the proxy does not forward one): set method, e.g. POST`);
  }
  const headers = readHeaders(c, o.headers, join(path, 'headers'));
  if (versions.length > 0 && Object.keys(headers).some((h) => h.toLowerCase() === 'x-sluice-pin')) {
    p.add(join(path, 'headers'), 'x-sluice-pin is set by Sluice for the listed versions');
  }
  return {
    url,
    path: readPath(p, o.path, join(path, 'path'), DEFAULTS.path),
    qps,
    durationSeconds,
    requests,
    concurrency: readInt(p, o.concurrency, join(path, 'concurrency'), DEFAULTS.concurrency, 1, MAX_CONCURRENCY),
    method,
    headers,
    body,
    bodyFile,
    versions,
  };
}
