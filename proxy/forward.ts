/**
 * Forwarding one request to the chosen version: an undici dispatch handler
 * that writes the upstream's answer straight into the client's
 * ServerResponse. No intermediate stream, no buffering: chunks go out as they
 * come in, and backpressure from the client pauses the upstream.
 *
 * We use undici's original handler callbacks (onConnect/onHeaders/onData/…)
 * because undici 7 runs them natively: the newer controller API is wrapped
 * around them and parses every header into an object we do not need.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import { clientResponseHeaders } from './headers.js';
import type { MirrorPlan } from './mirror.js';
import type { Version } from './routing-table.js';
import { STATUS_CLIENT_CLOSED } from './stats.js';
import { classifyUpstreamError, upstreamErrorBody } from './upstream-errors.js';

/** Process-wide settings every forward needs; built once. */
export interface ForwardSettings {
  readonly versionHeader: string | null;
  /** Set once SIGTERM arrives: responses then close their connection, so keep-alive clients let go. */
  draining: boolean;
  onUpstreamError(err: Error, route: string, version: string, reason: string): void;
  onFinish?(handler: ForwardHandler, latencyMs: number): void;
}

const kHandler = Symbol('sluice.forwardHandler');
type TrackedResponse = ServerResponse & { [kHandler]?: ForwardHandler };

/** Shared listener: `this` is the response, so no closure is made per request. */
function onClientClose(this: TrackedResponse): void {
  this[kHandler]?.clientClosed();
}

export class ForwardHandler implements Dispatcher.DispatchHandler {
  #abortUpstream: ((err?: Error) => void) | null = null;
  #resumeUpstream: (() => void) | null = null;
  #finished = false;
  status = 0;
  readonly rewardOut = { reward: Number.NaN };

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly route: string,
    readonly version: Version,
    readonly startMs: number,
    readonly settings: ForwardSettings,
    /** Set when this request is mirrored: compared shadows need the primary's status and body. */
    readonly mirrors: MirrorPlan | null,
  ) {
    (res as TrackedResponse)[kHandler] = this;
    res.on('close', onClientClose);
  }

  onConnect(abort: (err?: Error) => void): void {
    if (this.#finished) abort();
    else this.#abortUpstream = abort;
  }

  onHeaders(status: number, rawHeaders: Buffer[], resume: () => void): boolean {
    if (this.#finished) return false;
    if (status < 200) return true; // 1xx: informational, the final answer follows
    this.status = status;
    this.#resumeUpstream = resume;
    const headers = clientResponseHeaders(rawHeaders, this.settings.versionHeader, this.version.name, this.rewardOut);
    if (this.rewardOut.reward === this.rewardOut.reward) this.version.stats.recordReward(this.rewardOut.reward);
    if (this.mirrors !== null) for (const c of this.mirrors.comparisons) c?.primaryHeaders(status);
    if (this.settings.draining) this.res.shouldKeepAlive = false;
    try {
      this.res.writeHead(status, headers);
    } catch (err) {
      // An upstream header Node refuses to write (invalid characters): the upstream broke the protocol.
      this.#abortUpstream?.(err as Error);
      return false;
    }
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.#finished) return false;
    if (this.mirrors !== null) for (const c of this.mirrors.comparisons) c?.primaryData(chunk);
    const ok = this.res.write(chunk);
    if (!ok) this.res.once('drain', this.#resumeUpstream!);
    return ok;
  }

  onComplete(): void {
    if (this.#finished) return;
    this.res.end();
    if (this.mirrors !== null) for (const c of this.mirrors.comparisons) c?.primaryEnd();
    this.#finish(this.status, false);
  }

  onError(err: Error): void {
    if (this.#finished) return; // our own abort after the client left
    if (this.req.destroyed && !this.req.complete) {
      // The client gave up mid-upload; undici reports the body stream's error.
      this.clientClosed();
      return;
    }
    const f = classifyUpstreamError(err);
    const { stats, name } = this.version;
    stats.recordUpstreamError(f.reasonIndex);
    this.settings.onUpstreamError(err, this.route, name, f.reason);
    if (this.mirrors !== null) for (const c of this.mirrors.comparisons) c?.primaryFailed();
    const res = this.res;
    if (res.headersSent) {
      // Too late for a status: cut the connection so the client sees a broken response, not a short one.
      res.destroy();
      this.#finish(this.status, true);
      return;
    }
    const body = upstreamErrorBody(f, this.route, name, err.message);
    const headers: string[] = ['content-type', 'application/json; charset=utf-8', 'content-length', String(Buffer.byteLength(body))];
    if (this.settings.versionHeader !== null) headers.push(this.settings.versionHeader, name);
    if (this.settings.draining) res.shouldKeepAlive = false;
    res.writeHead(f.status, headers);
    res.end(body);
    this.#finish(f.status, true);
  }

  clientClosed(): void {
    if (this.#finished) return;
    // Finished first: undici's abort calls onError synchronously, which must see
    // this request as done (not count a 502 and an upstream error on top of the 499).
    this.#finish(STATUS_CLIENT_CLOSED, false);
    this.#abortUpstream?.();
    if (this.mirrors !== null) for (const c of this.mirrors.comparisons) c?.primaryFailed();
  }

  #finish(status: number, failed: boolean): void {
    this.#finished = true;
    const latencyMs = performance.now() - this.startMs;
    this.version.stats.record(status, latencyMs, failed);
    this.settings.onFinish?.(this, latencyMs);
  }
}
