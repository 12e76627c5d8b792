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
import { SluiceError } from '../common/errors.js';
import type { Exposure } from './exposures.js';
import { clientResponseHeaders } from './headers.js';
import type { Version } from './routing-table.js';
import { CLIENT_INVALID_REQUEST, STATUS_CLIENT_CLOSED, type GenerationCounts } from './stats.js';
import { classifyUpstreamError, upstreamErrorBody } from './upstream-errors.js';
import type { BufferHold, PoolGate, SlowClients } from './slow-clients.js';
import { StaleRetry } from './stale-retry.js';

/** Process-wide settings every forward needs; built once. */
export interface ForwardSettings {
  readonly versionHeader: string | null;
  /** Set once SIGTERM arrives: responses then close their connection, so keep-alive clients let go. */
  draining: boolean;
  onUpstreamError(err: Error, route: string, version: string, reason: string): void;
  /** rewards.maxValue: a larger absolute `x-sluice-reward` is refused. */
  readonly maxReward: number;
  onFinish?(handler: ForwardHandler, latencyMs: number): void;
  /** The same for requests that arrived as HTTP/2 streams; `grpcStatus` -1 for non-gRPC ones. */
  onStreamFinish?(call: { route: { name: string }; version: { name: string }; method: string; url: string; status: number }, latencyMs: number, grpcStatus: number): void;
  /** Buffering for slow clients and the per-pool request bound (slow-clients.ts). */
  readonly slow: SlowClients;
}

const kHandler = Symbol('sluice.forwardHandler');
type TrackedResponse = ServerResponse & { [kHandler]?: ForwardHandler };

/** Shared listener: `this` is the response, so no closure is made per request. */
function onClientClose(this: TrackedResponse): void {
  this[kHandler]?.clientClosed();
}

function withoutContentLength(headers: string[]): void {
  for (let i = headers.length - 2; i >= 0; i -= 2) {
    if (headers[i]!.length === 14 && headers[i]!.toLowerCase() === 'content-length') headers.splice(i, 2);
  }
}

/** Where a response's reward goes: the version, the generation that chose it, the key's bucket and exposure. */
export interface RewardTarget {
  readonly version: Version;
  readonly counts: GenerationCounts | null;
  readonly bucket: number;
  readonly exposure: Exposure | null;
  readonly exposureSeq: number;
}

/**
 * Counts one `x-sluice-reward` a response carried. One response, one request:
 * a positive value converts it once. Beyond the bound (or not a number:
 * ±Infinity, see clientResponseHeaders) it is no reward: its square would
 * overflow the sums.
 */
export function creditReward(t: RewardTarget, reward: number, maxReward: number): void {
  if (reward <= maxReward && reward >= -maxReward) {
    const conversion = reward > 0 && (t.exposure === null || t.exposure.convert(t.exposureSeq));
    t.version.stats.recordReward(reward, conversion, t.bucket);
    t.counts?.recordReward(t.version.index, reward, conversion);
  } else t.version.stats.rejectReward();
}

const UNFORWARDABLE_HEADERS = ['content-type', 'application/json; charset=utf-8'];

export class ForwardHandler implements Dispatcher.DispatchHandler {
  #abortUpstream: ((err?: Error) => void) | null = null;
  #resumeUpstream: (() => void) | null = null;
  #finished = false;
  #opts: Dispatcher.DispatchOptions | null = null;
  readonly #stale = new StaleRetry();
  status = 0;
  /** The user bucket of the request's sticky key (-1: none), for rewards the response carries. */
  bucket = -1;
  /** The routing generation that chose the version, where its reward is counted too. */
  counts: GenerationCounts | null = null;
  readonly rewardOut = { reward: Number.NaN };
  /** The sticky key's exposure (exposures.ts) and which of its requests this is: a reward converts a request once. */
  exposure: Exposure | null = null;
  exposureSeq = 0;
  /** Buffer budget this request holds, and its slot on the pool's gate (slow-clients.ts). */
  hold: BufferHold | null = null;
  gate: PoolGate | null = null;
  /**
   * The handler undici is given, on the first attempt and on a retry: this
   * one, or a decorator that passes every callback on to it (a compared
   * mirror's, mirror.ts compareWith).
   */
  front: Dispatcher.DispatchHandler = this;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly route: string,
    readonly version: Version,
    readonly startMs: number,
    readonly settings: ForwardSettings,
  ) {
    (res as TrackedResponse)[kHandler] = this;
    res.on('close', onClientClose);
  }

  /** The request has its answer (or its error) and counts: nothing more comes of it. */
  get finished(): boolean {
    return this.#finished;
  }

  /** Sends the request upstream; `opts` is kept for one retry. */
  start(pool: Dispatcher, opts: Dispatcher.DispatchOptions): void {
    this.#opts = opts;
    try {
      pool.dispatch(opts, this.front);
    } catch (err) {
      this.onError(err as Error);
    }
  }

  onConnect(abort: (err?: Error) => void): void {
    if (this.#finished) return abort();
    this.#abortUpstream = abort;
    this.#stale.attempt();
  }

  onHeaders(status: number, rawHeaders: Buffer[], resume: () => void): boolean {
    if (this.#finished) return false;
    if (status < 200) return true; // 1xx: informational, the final answer follows
    this.status = status;
    this.#resumeUpstream = resume;
    const headers = clientResponseHeaders(rawHeaders, this.settings.versionHeader, this.version.name, this.rewardOut);
    const reward = this.rewardOut.reward;
    if (reward === reward) creditReward(this, reward, this.settings.maxReward);
    if (this.settings.draining) this.res.shouldKeepAlive = false;
    // A 204 MUST NOT carry Content-Length (RFC 9110 §8.6); a 304's may stay: it describes the representation.
    if (status === 204) withoutContentLength(headers);
    try {
      this.res.writeHead(status, headers);
    } catch (err) {
      // An upstream header Node refuses to write (invalid characters): the upstream broke the protocol.
      this.#abortUpstream?.(err as Error);
      return false;
    }
    // 204 and 304 end at their headers, whatever their framing claims. undici would fail a 304 whose
    // Content-Length is not followed by that many bytes (it is not meant to be), and a 204/304 that
    // wrongly sends a body, after our headers went out: the client's connection would be cut for nothing.
    // undici then drops the upstream connection, stray bytes and all.
    if (status === 204 || status === 304) this.onComplete();
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.#finished) return false;
    if (this.res.write(chunk)) return true;
    // The client is slower than the upstream: keep reading into memory (bounded) so the connection is freed sooner.
    if (this.settings.slow.absorb(this.res, this)) return true;
    this.res.once('drain', this.#resumeUpstream!);
    return false;
  }

  onComplete(): void {
    if (this.#finished) return;
    this.res.end();
    this.#finish(this.status, false);
  }

  onError(err: Error): void {
    if (this.#finished) return; // our own abort after the client left
    if (this.req.destroyed && !this.req.complete) {
      // The client gave up mid-upload; undici reports the body stream's error.
      this.clientClosed();
      return;
    }
    const code = (err as { code?: string }).code;
    // undici refuses to build the request (two Host headers, say): the client's framing, not the version's fault.
    if (code === 'UND_ERR_INVALID_ARG') return this.#clientError(err);
    const f = classifyUpstreamError(err);
    const { stats, name } = this.version;
    if (this.#mayRetry(err)) return;
    stats.recordUpstreamError(f.reasonIndex);
    this.settings.onUpstreamError(err, this.route, name, f.reason);
    const res = this.res;
    if (res.headersSent) {
      // Too late for a status: cut the connection so the client sees a broken response, not a short one.
      res.destroy();
      this.#finish(this.status, true);
      return;
    }
    // The message stays in the log (onUpstreamError): it names internal addresses.
    const body = upstreamErrorBody(f, this.route, name);
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
  }

  /** The stale keep-alive retry (stale-retry.ts), through `front` again. */
  #mayRetry(err: Error): boolean {
    const opts = this.#opts;
    return opts !== null && this.#stale.retry(err, opts, this.status !== 0, this.version.pool, this.version.stats, (client, again) => {
      this.#abortUpstream = null;
      this.start(client, again);
    });
  }

  #clientError(err: Error): void {
    this.#finished = true;
    this.version.stats.recordClientError(CLIENT_INVALID_REQUEST);
    this.status = 400;
    const body = JSON.stringify(new SluiceError('SLUICE_REQUEST_UNFORWARDABLE', `the request cannot be forwarded as sent: ${err.message}`).toJSON());
    const res = this.res;
    if (!res.headersSent) {
      res.shouldKeepAlive = false; // its framing is suspect: do not read another request from this connection
      res.writeHead(400, [...UNFORWARDABLE_HEADERS, 'content-length', String(Buffer.byteLength(body))]);
      res.end(body);
    }
    this.settings.slow.leave(this);
    this.settings.onFinish?.(this, performance.now() - this.startMs);
  }

  #finish(status: number, failed: boolean): void {
    this.#finished = true;
    const latencyMs = performance.now() - this.startMs;
    this.version.stats.record(status, latencyMs, failed);
    this.settings.slow.leave(this);
    this.settings.onFinish?.(this, latencyMs);
  }
}
