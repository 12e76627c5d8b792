/**
 * Shadow traffic (dark launch). A shadow copy is fire-and-forget: it is sent
 * on its own pool, after the primary has been dispatched, with a deadline and
 * a cap on copies in flight, and nothing it does reaches the client. Over the
 * cap, or with a body over the limit, the copy is not sent and counts as
 * `dropped`.
 *
 * With `compare`, the shadow's status and body hash are compared with the
 * primary's once both have finished; a difference counts as `mismatch`. The
 * primary's side reaches the comparison through a handler wrapped around its
 * forward handler (compareWith), so forward.ts knows nothing of mirrors.
 * Outcomes are counted on the shadow version's VersionStats (recordMirror).
 */
import { createHash, type Hash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';
import type { Dispatcher } from 'undici';
import { upstreamRequestHeaders } from './headers.js';
import type { Mirror } from './routing-table.js';
import { MIRROR_DROPPED, MIRROR_ERROR, MIRROR_MISMATCH, MIRROR_OK } from './stats.js';

const SHADOW_HOST_SUFFIX = '-shadow';

/** Both halves of a compared pair: whichever finishes last judges. */
export class MirrorComparison {
  #primaryStatus = 0;
  #primaryHash: Hash | null = createHash('sha1');
  #primaryDigest: string | null = null;
  #shadow: { status: number; digest: string } | null = null;
  #shadowFailed = false;

  constructor(private readonly mirror: Mirror) {}

  primaryHeaders(status: number): void {
    this.#primaryStatus = status;
  }

  primaryData(chunk: Buffer): void {
    this.#primaryHash?.update(chunk);
  }

  primaryEnd(): void {
    if (this.#primaryHash === null) return;
    this.#primaryDigest = this.#primaryHash.digest('hex');
    this.#primaryHash = null;
    this.#judge();
  }

  /** The primary failed or the client left: there is nothing to compare against. */
  primaryFailed(): void {
    this.#primaryHash = null;
    if (this.#shadow !== null && !this.#shadowFailed) this.#count(MIRROR_OK, false);
  }

  shadowEnd(status: number, digest: string): void {
    this.#shadow = { status, digest };
    if (this.#primaryHash === null && this.#primaryDigest === null) this.#count(MIRROR_OK, false);
    else this.#judge();
  }

  /** The shadow was never sent (dropped): stop hashing, count nothing more. */
  cancel(): void {
    this.#primaryHash = null;
    this.#shadowFailed = true;
  }

  shadowFailed(): void {
    this.#shadowFailed = true;
    this.#count(MIRROR_ERROR, false);
  }

  #judge(): void {
    if (this.#primaryDigest === null || this.#shadow === null || this.#shadowFailed) return;
    const same = this.#shadow.status === this.#primaryStatus && this.#shadow.digest === this.#primaryDigest;
    this.#count(same ? MIRROR_OK : MIRROR_MISMATCH, true);
  }

  #count(outcome: number, compared: boolean): void {
    this.mirror.version.stats.recordMirror(outcome, compared);
  }
}

/** The forward handler's part this module needs: whether its request has ended, and where undici is pointed. */
interface Primary extends Dispatcher.DispatchHandler {
  readonly finished: boolean;
  front: Dispatcher.DispatchHandler;
}

/**
 * A decorator around the primary's forward handler (undici's
 * decorator-handler pattern): it feeds the primary's status and body to the
 * comparisons, then passes each callback on unchanged. Only requests with a
 * compared mirror get one; the rest reach the forward handler directly.
 */
class ComparingHandler implements Dispatcher.DispatchHandler {
  #settled = false;

  constructor(
    private readonly primary: Primary,
    private readonly comparisons: readonly MirrorComparison[],
  ) {}

  onConnect(abort: (err?: Error) => void): void {
    this.primary.onConnect!(abort);
  }

  onHeaders(status: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    if (status >= 200 && !this.#settled) for (const c of this.comparisons) c.primaryHeaders(status);
    const more = this.primary.onHeaders!(status, rawHeaders, resume, statusText);
    // A 204 or 304 ends at its headers: the primary completed itself.
    if ((status === 204 || status === 304) && this.primary.finished) this.#end();
    return more;
  }

  onData(chunk: Buffer): boolean {
    if (!this.#settled) for (const c of this.comparisons) c.primaryData(chunk);
    return this.primary.onData!(chunk);
  }

  onComplete(trailers: string[] | null): void {
    if (!this.primary.finished) this.#end();
    this.primary.onComplete!(trailers);
  }

  onError(err: Error): void {
    this.primary.onError!(err);
    // Not finished: the primary retried, through this handler again.
    if (this.primary.finished && !this.#settled) {
      this.#settled = true;
      for (const c of this.comparisons) c.primaryFailed();
    }
  }

  #end(): void {
    if (this.#settled) return;
    this.#settled = true;
    for (const c of this.comparisons) c.primaryEnd();
  }
}

/** Puts the plan's comparisons in front of the primary's handler, when the plan compares at all. */
export function compareWith(primary: Primary, plan: MirrorPlan): void {
  if (plan.compared.length > 0) primary.front = new ComparingHandler(primary, plan.compared);
}

/** undici reports HTTP/1.1 headers and trailers as [name, value, …] buffers, HTTP/2 trailers as an object. */
function grpcStatusIn(h: unknown): number {
  if (h == null) return -1;
  if (Array.isArray(h)) {
    for (let i = 0; i < h.length; i += 2) if (String(h[i]).toLowerCase() === 'grpc-status') return Number(String(h[i + 1]));
    return -1;
  }
  const v = (h as Record<string, unknown>)['grpc-status'];
  return v === undefined ? -1 : Number(v);
}

/**
 * One shadow exchange. `grpc`: the outcome compared is the call's
 * grpc-status (from a trailers-only answer's headers, else its trailers),
 * not the HTTP status, which is 200 for almost every gRPC answer.
 */
export class ShadowHandler implements Dispatcher.DispatchHandler {
  #abort: ((err?: Error) => void) | null = null;
  #done = false;
  #status = 0;
  readonly #hash: Hash | null;
  readonly #timer: NodeJS.Timeout;

  constructor(
    private readonly mirror: Mirror,
    private readonly comparison: MirrorComparison | null,
    private readonly grpc = false,
  ) {
    this.#hash = comparison !== null ? createHash('sha1') : null;
    // undici's timeouts bound each wait; this bounds the whole exchange, trickling bodies included.
    this.#timer = setTimeout(() => this.#fail(), mirror.timeoutMs);
    this.#timer.unref();
  }

  onConnect(abort: (err?: Error) => void): void {
    if (this.#done) abort();
    else this.#abort = abort;
  }

  onHeaders(status: number, rawHeaders: Buffer[]): boolean {
    if (status < 200) return true;
    this.#status = status;
    if (this.grpc) {
      const inHeaders = grpcStatusIn(rawHeaders);
      this.#status = inHeaders >= 0 ? inHeaders : status === 200 ? -1 : status;
    }
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.#hash?.update(chunk);
    return true;
  }

  onComplete(trailers?: unknown): void {
    if (this.#end()) return;
    // No grpc-status anywhere: UNKNOWN, as a gRPC client would read it.
    if (this.grpc && this.#status < 0) this.#status = Math.max(grpcStatusIn(trailers), 2);
    if (this.comparison !== null) this.comparison.shadowEnd(this.#status, this.#hash!.digest('hex'));
    else this.mirror.version.stats.recordMirror(MIRROR_OK);
  }

  onError(): void {
    if (this.#end()) return;
    this.#count();
  }

  #fail(): void {
    if (this.#end()) return;
    this.#abort?.();
    this.#count();
  }

  #count(): void {
    if (this.comparison !== null) this.comparison.shadowFailed();
    else this.mirror.version.stats.recordMirror(MIRROR_ERROR);
  }

  /** True when this exchange had already ended. */
  #end(): boolean {
    if (this.#done) return true;
    this.#done = true;
    clearTimeout(this.#timer);
    this.mirror.gate.inFlight--;
    return false;
  }
}

/** Sends one shadow copy now, or counts it as dropped when the mirror is at its cap. */
export function sendShadow(
  mirror: Mirror,
  req: IncomingMessage,
  path: string,
  body: Buffer | null,
  comparison: MirrorComparison | null,
): void {
  if (mirror.gate.inFlight >= mirror.maxConcurrent) {
    countDropped(mirror);
    comparison?.cancel();
    return;
  }
  mirror.gate.inFlight++;
  const handler = new ShadowHandler(mirror, comparison);
  try {
    mirror.pool.dispatch(
      {
        origin: mirror.version.url,
        path: mirror.version.basePath + path,
        method: req.method as Dispatcher.HttpMethod,
        headers: upstreamRequestHeaders(req, body !== null, SHADOW_HOST_SUFFIX, mirror.trustForwarded),
        body,
      },
      handler,
    );
  } catch {
    handler.onError();
  }
}

export function countDropped(mirror: Mirror): void {
  mirror.version.stats.recordMirror(MIRROR_DROPPED);
}

/** The shadow copies one request will get; made only when some mirror fires. */
export interface MirrorPlan {
  readonly mirrors: Mirror[];
  readonly comparisons: Array<MirrorComparison | null>;
  /** The non-null `comparisons`: what the primary's handler feeds (compareWith). */
  readonly compared: MirrorComparison[];
  /** When the request has a body: the stream the primary reads instead of the request. */
  readonly tee: BodyTee | null;
}

/**
 * Draws which of the route's mirrors copy this request. Returns null (no
 * allocation) when none does, which is the common case.
 */
export function planMirrors(all: readonly Mirror[], req: IncomingMessage, method: string, path: string, hasBody: boolean): MirrorPlan | null {
  let plan: { mirrors: Mirror[]; comparisons: Array<MirrorComparison | null>; compared: MirrorComparison[]; tee: BodyTee | null } | null = null;
  for (let i = 0; i < all.length; i++) {
    const m = all[i]!;
    if (!m.methods.has(method) || Math.random() * 100 >= m.percent) continue;
    if (hasBody && Number(req.headers['content-length'] ?? 0) > m.maxBodyBytes) {
      countDropped(m);
      continue;
    }
    plan ??= { mirrors: [], comparisons: [], compared: [], tee: null };
    plan.mirrors.push(m);
    const c = m.compare ? new MirrorComparison(m) : null;
    plan.comparisons.push(c);
    if (c !== null) plan.compared.push(c);
  }
  if (plan !== null && hasBody) {
    const p = plan;
    const limit = Math.min(...p.mirrors.map((m) => m.maxBodyBytes));
    p.tee = new BodyTee(limit, (body) => fireShadows(p, req, path, body, true));
  }
  return plan;
}

/**
 * Sends the planned copies. `body` null with `hadBody` means the body went
 * over the limit while streaming: those copies are dropped.
 */
export function fireShadows(plan: MirrorPlan, req: IncomingMessage, path: string, body: Buffer | null, hadBody: boolean): void {
  for (let i = 0; i < plan.mirrors.length; i++) {
    const m = plan.mirrors[i]!;
    const c = plan.comparisons[i] ?? null;
    if (hadBody && (body === null || body.length > m.maxBodyBytes)) {
      countDropped(m);
      c?.cancel();
    } else {
      sendShadow(m, req, path, body, c);
    }
  }
}

/**
 * Passes the primary's request body through untouched while keeping a copy,
 * up to `limit` bytes, for the shadow. `onEnd` gets the copy, or null when the
 * body went over the limit.
 */
export class BodyTee extends Transform {
  #chunks: Buffer[] | null = [];
  #size = 0;

  constructor(
    private readonly limit: number,
    private readonly onEnd: (body: Buffer | null) => void,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.#chunks !== null) {
      this.#size += chunk.length;
      if (this.#size > this.limit) this.#chunks = null;
      else this.#chunks.push(chunk);
    }
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    this.onEnd(this.#chunks === null ? null : Buffer.concat(this.#chunks, this.#size));
    cb();
  }
}
