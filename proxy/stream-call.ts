/**
 * One request that arrived as an HTTP/2 stream, from its version being chosen
 * to its outcome being counted: answering the client (headers, data,
 * trailers), Sluice's own errors (as gRPC statuses for gRPC calls), the
 * deadline, the client going away, and what the version is charged with.
 * The upstream side is stream-to-h2.ts or stream-to-h1.ts.
 */
import { constants as h2, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { ERRORS, type ErrorCode } from '../common/errors.js';
import { GRPC_CANCELLED, GRPC_DEADLINE_EXCEEDED, GRPC_INTERNAL, GRPC_UNAVAILABLE } from '../common/grpc-status.js';
import { creditReward, type ForwardSettings, type RewardTarget } from './forward.js';
import { REWARD_HEADER, rewardValue } from './headers.js';
import type { Exposure } from './exposures.js';
import { encodeGrpcMessage, grpcErrorHeaders, grpcOutcome } from './grpc.js';
import type { CompiledRoute, Version } from './routing-table.js';
import type { BufferHold, PoolGate, SlowClientState } from './slow-clients.js';
import type { StreamMirrors } from './stream-mirror.js';
import { CLIENT_INVALID_REQUEST, CLIENT_SHORT_DEADLINE, CLIENT_SLOW_READER, REASON_INDEX, STATUS_CLIENT_CLOSED, type GenerationCounts } from './stats.js';
import { upstreamErrorBody, type UpstreamFailure } from './upstream-errors.js';

export type ResponseHeaders = Record<string, string | string[] | number>;

/** An empty trailers block: Node then ends the stream with an empty DATA frame. Never written to. */
const EMPTY_TRAILERS: ResponseHeaders = Object.freeze({}) as ResponseHeaders;

const kCall = Symbol('sluice.streamCall');
type TrackedStream = ServerHttp2Stream & { [kCall]: StreamCall };

// Shared listeners (`this` is the client's stream): no closures per call.
function onClientClose(this: TrackedStream): void {
  this[kCall].clientGone();
}

function onWantTrailers(this: TrackedStream): void {
  this[kCall].sendTrailers();
}

function onBodyEnd(this: TrackedStream): void {
  this[kCall].bodyEnded();
}

/** Retry-After of a shed call: a second lets the version's queue move on (as slow-clients.ts's). */
const RETRY_AFTER: Readonly<Record<string, string>> = Object.freeze({ 'retry-after': '1' });

const TIMEOUT_FAILURE: UpstreamFailure = Object.freeze({ reason: 'timeout', reasonIndex: REASON_INDEX.timeout, code: 'SLUICE_UPSTREAM_TIMEOUT', status: 504 });

export class StreamCall implements RewardTarget, SlowClientState {
  /** The HTTP status sent to the client (0: nothing yet). */
  status = 0;
  #finished = false;
  #responded = false;
  /** The gRPC status Sluice put in the trailers itself (deadline, upstream failure); -1: the upstream's. */
  #ownStatus = -1;
  #upstreamHeaders: IncomingHttpHeaders | null = null;
  #trailers: IncomingHttpHeaders | null = null;
  #timer: NodeJS.Timeout | null = null;
  /** Stops the upstream side (cancels its stream or request); called with `this` the call. */
  cancelUpstream: ((this: StreamCall) => void) | null = null;
  /** The HTTP/2 upstream stream (stream-to-h2.ts); null for http1 versions. */
  upstream: ClientHttp2Stream | null = null;
  readonly rewardOut = { reward: Number.NaN };
  bucket = -1;
  counts: GenerationCounts | null = null;
  exposure: Exposure | null = null;
  exposureSeq = 0;
  hold: BufferHold | null = null;
  gate: PoolGate | null = null;
  /** For the access log. */
  method = '';
  url = '';
  /** Shadow copies of this call (stream-mirror.ts); null when no mirror fired. */
  mirrors: StreamMirrors | null = null;

  constructor(
    readonly stream: ServerHttp2Stream,
    readonly route: CompiledRoute,
    readonly version: Version,
    readonly grpc: boolean,
    readonly startMs: number,
    readonly settings: ForwardSettings,
  ) {
    (stream as TrackedStream)[kCall] = this;
    stream.once('close', onClientClose);
  }

  get finished(): boolean {
    return this.#finished;
  }

  get responded(): boolean {
    return this.#responded;
  }

  /** Ends the call at `ms` from now unless it ended before: the gRPC deadline, or the wait for response headers. */
  deadline(ms: number): void {
    this.#timer = setTimeout(() => this.#timedOut(), ms);
    if (this.grpc) {
      this.#deadlineAt = this.startMs + ms - Math.max(5, ms / 10);
      this.#chargeDeadline = ms >= this.route.grpcMinDeadlineMs;
    }
  }

  #chargeDeadline = true;
  /** When the upstream finished its side (0: not yet): the version's latency ends there, whatever the client's reading speed. */
  #upstreamDoneMs = 0;

  /**
   * The upstream has sent all it will: from here on only the client's
   * reading is left, which is no measure of the version and cannot time it out.
   */
  upstreamEnded(): void {
    if (this.#upstreamDoneMs !== 0) return;
    this.#upstreamDoneMs = performance.now();
    this.#deadlineAt = Number.POSITIVE_INFINITY;
    this.#clearTimer();
  }

  /**
   * When a gRPC call counts as having reached its deadline: a client cancels
   * its call at its deadline, in the same instant Sluice's timer would fire,
   * and whichever is seen first the version did not answer in time.
   */
  #deadlineAt = Number.POSITIVE_INFINITY;

  /** Response headers arrived: a header wait (not a gRPC deadline, which covers the whole call) ends. */
  clearHeaderDeadline(): void {
    if (!this.grpc) this.#clearTimer();
  }

  /**
   * The wait for response headers (`ms`) starts once the client's body is all
   * here: a slow upload is the client's time, not the version's.
   */
  deadlineAfterBody(ms: number): void {
    this.#afterBodyMs = ms;
    this.stream.once('end', onBodyEnd);
  }

  #afterBodyMs = 0;

  /** The client's body ended (onBodyEnd). */
  bodyEnded(): void {
    if (!this.#finished && !this.#responded) this.deadline(this.#afterBodyMs);
  }

  /**
   * Sends the upstream's response headers. `end`: they end the response
   * (trailers-only gRPC answer, or no body). Otherwise the stream waits for
   * trailers, which `complete` sends once the body is through.
   */
  respond(status: number, headers: ResponseHeaders, upstream: IncomingHttpHeaders | null, end: boolean): boolean {
    if (this.#finished) return false;
    const reward = this.rewardOut.reward;
    if (reward === reward) {
      creditReward(this, reward, this.settings.maxReward);
      this.rewardOut.reward = Number.NaN;
    }
    this.status = status;
    this.#upstreamHeaders = upstream;
    headers[':status'] = status;
    try {
      this.stream.respond(headers as OutgoingHttpHeaders, end ? { endStream: true } : { waitForTrailers: true });
    } catch {
      // The client reset the stream meanwhile (its 'close' is on its way), or the upstream sent a header HTTP/2 forbids.
      if (this.stream.destroyed || this.stream.closed) return false;
      this.failed(new Error('response headers refused'), { reason: 'protocol', reasonIndex: REASON_INDEX.protocol, code: 'SLUICE_UPSTREAM_ERROR', status: 502 }, -1);
      return false;
    }
    this.#responded = true;
    if (end) this.#finish(false);
    else this.stream.once('wantTrailers', onWantTrailers);
    return true;
  }

  /** The upstream's trailers (gRPC's status lives there); sent once the body is through. */
  setTrailers(trailers: IncomingHttpHeaders): void {
    this.#trailers = trailers;
  }

  /** The body is through: end the client's stream, which then asks for the trailers. */
  endBody(): void {
    if (!this.stream.writableEnded) this.stream.end();
  }

  /** The client's stream asks for its trailers (wantTrailers): the body is through. */
  sendTrailers(): void {
    const own = this.#ownStatus;
    let out: ResponseHeaders = EMPTY_TRAILERS;
    if (own >= 0) out = { 'grpc-status': String(own), 'grpc-message': this.#ownMessage };
    else if (this.#trailers !== null) {
      // Node's trailers object holds no pseudo-headers: passed on as it is, less the reward (which is Sluice's).
      out = this.#trailers as ResponseHeaders;
      const reward = out[REWARD_HEADER];
      if (reward !== undefined) {
        creditReward(this, rewardValue(String(Array.isArray(reward) ? reward[0] : reward)), this.settings.maxReward);
        delete out[REWARD_HEADER];
      }
    }
    try {
      this.stream.sendTrailers(out as OutgoingHttpHeaders);
    } catch {
      // The client reset the stream as we finished, or a trailer HTTP/2 refuses: either way, no stream left waiting.
      if (!this.stream.destroyed) this.stream.close(h2.NGHTTP2_INTERNAL_ERROR);
    }
    if (own < 0) this.#finish(false);
  }

  #ownMessage = '';

  /**
   * The upstream failed (connect, reset, timeout). Before the response
   * headers the client gets Sluice's error — a gRPC status for a gRPC call —;
   * after them a gRPC call gets it in its trailers and anything else a reset
   * stream. `grpcCode` -1: the failure's usual code.
   */
  failed(err: Error, f: UpstreamFailure, grpcCode: number, what: string = ERRORS[f.code].message): void {
    if (this.#finished) return;
    const { stats, name } = this.version;
    stats.recordUpstreamError(f.reasonIndex);
    this.settings.onUpstreamError(err, this.route.name, name, f.reason);
    // Stopped after the call is counted: undici's abort calls back synchronously, which must find it finished.
    const cancel = this.cancelUpstream;
    this.cancelUpstream = null;
    const message = `sluice: version ${name} of route ${this.route.name}: ${what}`;
    if (this.grpc) {
      const code = grpcCode >= 0 ? grpcCode : f.reason === 'timeout' ? GRPC_DEADLINE_EXCEEDED : GRPC_UNAVAILABLE;
      this.#ownStatus = code;
      this.#ownMessage = encodeGrpcMessage(message);
      if (!this.#responded) this.#sendOwn(grpcErrorHeaders(code, message, this.#versionHeaders()), true);
      else this.endBody(); // → wantTrailers → our status
      this.status = this.status || 200;
      this.#finish(true);
      cancel?.call(this);
      return;
    }
    if (!this.#responded) {
      const body = upstreamErrorBody(f, this.route.name, name);
      this.status = f.status;
      this.#sendOwn({ ':status': f.status, 'content-type': 'application/json; charset=utf-8', ...this.#versionHeaders() }, false, body);
    } else if (!this.stream.destroyed) {
      // Too late for a status: reset the stream so the client sees a broken response, not a short one.
      this.stream.close(h2.NGHTTP2_INTERNAL_ERROR);
    }
    this.#finish(true);
    cancel?.call(this);
  }

  /** The client stopped sending its body (proxy.clientBodyTimeout): 408, nothing charged to the version. */
  bodyTimedOut(): void {
    if (this.#finished) return;
    this.status = 408;
    this.#answer(GRPC_CANCELLED, 'SLUICE_REQUEST_TIMEOUT', 'the request body did not arrive in time');
    this.#settle(-1);
    // Once the answer is out, RST_STREAM(NO_ERROR) tells the client to stop sending (RFC 9113 §8.1).
    const stream = this.stream;
    if (stream.writableFinished) stream.close(h2.NGHTTP2_NO_ERROR);
    else stream.once('finish', () => stream.close(h2.NGHTTP2_NO_ERROR));
  }

  /** Sheds the call (the version's queue is full): 503, or UNAVAILABLE. */
  shed(): void {
    this.status = this.grpc ? 200 : 503;
    this.#answer(GRPC_UNAVAILABLE, 'SLUICE_OVERLOADED', `version ${this.version.name} of route ${this.route.name} has too many requests waiting for a connection`, RETRY_AFTER);
    // Shedding is the version's capacity showing: counted, as on HTTP/1.1 (slow-clients.ts shed).
    this.version.stats.record(503, performance.now() - this.startMs, false);
    if (this.grpc) this.version.stats.recordGrpc(GRPC_UNAVAILABLE);
    this.#settle(GRPC_UNAVAILABLE);
  }

  /**
   * The request cannot be forwarded as the client sent it (a header the
   * upstream client refuses): 400, or INTERNAL for gRPC, counted as the
   * client's error, never the version's.
   */
  refused(err: Error): void {
    if (this.#finished) return;
    this.status = 400;
    this.#answer(GRPC_INTERNAL, 'SLUICE_REQUEST_UNFORWARDABLE', `the request cannot be forwarded as sent: ${err.message}`);
    this.version.stats.recordClientError(CLIENT_INVALID_REQUEST);
    this.#settle(-1);
  }

  /** Sluice's own answer, with `this.status`: a trailers-only gRPC status, or a JSON error body. */
  #answer(grpcCode: number, code: ErrorCode, message: string, extra?: Readonly<Record<string, string>>): void {
    if (this.grpc) return this.#sendOwn(grpcErrorHeaders(grpcCode, `sluice: ${message}`, this.#versionHeaders()), true);
    const headers = { ':status': this.status, 'content-type': 'application/json; charset=utf-8', ...extra, ...this.#versionHeaders() };
    this.#sendOwn(headers, false, JSON.stringify({ error: { code, message } }));
  }

  /**
   * Ends a call Sluice answered itself without judging the version by it:
   * timers cleared, the pool's slot freed, shadow comparisons told (with
   * `compared` as the primary's outcome). Whoever calls it counts what counts.
   */
  #settle(compared: number): void {
    this.#finished = true;
    this.#clearTimer();
    this.settings.slow.leave(this);
    if (this.mirrors !== null) this.#primaryDone(compared, false);
  }

  #clearTimer(): void {
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
  }

  #versionHeaders(): Record<string, string> {
    const h = this.settings.versionHeader;
    return h === null ? {} : { [h]: this.version.name };
  }

  #sendOwn(headers: ResponseHeaders, end: boolean, body?: string): void {
    if (this.stream.destroyed || this.stream.closed || this.stream.headersSent) return;
    try {
      this.stream.respond(headers as OutgoingHttpHeaders, { endStream: end });
      if (!end) this.stream.end(body);
      this.#responded = true;
    } catch {
      // the client reset the stream meanwhile
    }
  }

  #timedOut(): void {
    this.#timer = null;
    if (this.#finished) return;
    if (this.grpc && !this.#chargeDeadline) return this.#clientDeadline(CLIENT_SHORT_DEADLINE);
    // The client is not reading what the version already sent: the deadline passed on the client's side.
    if (this.grpc && this.#responded && this.stream.writableNeedDrain) return this.#clientDeadline(CLIENT_SLOW_READER);
    this.failed(new Error(this.grpc ? 'grpc-timeout reached' : 'no response headers in time'), TIMEOUT_FAILURE, GRPC_DEADLINE_EXCEEDED);
  }

  /**
   * A deadline that is the client's doing ran out — shorter than
   * grpc.minDeadline, or passed while the client would not read: DEADLINE_EXCEEDED
   * for the client, nothing charged to the version.
   */
  #clientDeadline(reason: number): void {
    const cancel = this.cancelUpstream;
    this.cancelUpstream = null;
    this.#ownStatus = GRPC_DEADLINE_EXCEEDED;
    this.#ownMessage = reason === CLIENT_SHORT_DEADLINE
      ? 'sluice: deadline exceeded (shorter than the route\'s grpc.minDeadline: not counted against the version)'
      : 'sluice: deadline exceeded while the client was not reading (not counted against the version)';
    if (!this.#responded) this.#sendOwn(grpcErrorHeaders(GRPC_DEADLINE_EXCEEDED, this.#ownMessage, this.#versionHeaders()), true);
    else this.endBody();
    this.status = this.status || 200;
    this.version.stats.recordClientError(reason);
    this.version.stats.recordGrpc(GRPC_DEADLINE_EXCEEDED);
    this.#settle(GRPC_DEADLINE_EXCEEDED);
    cancel?.call(this);
  }

  /** The client's stream closed: after a normal end that is nothing; before it, the client left (499, CANCELLED). */
  clientGone(): void {
    if (this.#finished) return;
    if (performance.now() >= this.#deadlineAt) return this.#timedOut();
    this.status = STATUS_CLIENT_CLOSED;
    this.#finish(false, GRPC_CANCELLED);
    this.cancelUpstream?.();
  }

  /**
   * Counts the call. A gRPC call is the version's error when its status is in
   * the route's grpc.errorCodes or Sluice failed it (`failed`); other calls
   * when the status is 5xx or the stream broke.
   */
  #finish(failed: boolean, grpcCode = -1): void {
    this.#finished = true;
    this.#clearTimer();
    this.settings.slow.leave(this);
    const latencyMs = (this.#upstreamDoneMs !== 0 ? this.#upstreamDoneMs : performance.now()) - this.startMs;
    const stats = this.version.stats;
    const ok = !failed && grpcCode < 0;
    if (!this.grpc) {
      stats.record(this.status, latencyMs, failed);
      if (this.mirrors !== null) this.#primaryDone(this.status, ok);
      this.settings.onStreamFinish?.(this, latencyMs, -1);
      return;
    }
    const code = grpcCode >= 0 ? grpcCode : this.#ownStatus >= 0 ? this.#ownStatus : grpcOutcome(this.status, this.#upstreamHeaders, this.#trailers);
    const judged = failed || (this.route.grpcErrors & (1 << code)) !== 0;
    stats.record(this.status, latencyMs, judged);
    stats.recordGrpc(code);
    if (this.mirrors !== null) this.#primaryDone(code, ok);
    this.settings.onStreamFinish?.(this, latencyMs, code);
  }

  #primaryDone(compared: number, ok: boolean): void {
    const m = this.mirrors!;
    this.mirrors = null;
    m.responseStatus(compared);
    m.primaryDone(ok);
  }
}

