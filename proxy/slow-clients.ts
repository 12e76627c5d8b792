/**
 * Slow clients must not hold a version's upstream connections (issue 11,
 * item 3). A pooled upstream connection is the scarce thing: whoever holds it
 * while waiting on a client — an upload that trickles, a response nobody
 * reads — takes it from everyone else. As nginx's proxy buffering does:
 *
 * - a body with a Content-Length up to `requestBuffer` is read whole before
 *   the request is dispatched; larger or chunked bodies stream, with an idle
 *   timeout between chunks (`clientBodyTimeout`);
 * - a response the client takes more slowly than the upstream sends is kept
 *   reading into memory up to `responseBuffer`, so the upstream connection goes
 *   back to the pool as soon as the upstream is done; beyond that it streams
 *   with backpressure as before;
 * - a client that stops reading is cut after `sendTimeout` without progress;
 * - past `connectionsPerVersion + queueLimit` requests in flight on a pool,
 *   new ones are shed with 503 SLUICE_OVERLOADED instead of queueing without
 *   bound.
 *
 * All buffered bytes come out of one process-wide budget (`bufferMemory`):
 * when it is spent, requests and responses stream as if buffering were off,
 * so memory stays bounded whatever the clients do.
 *
 * A fast client pays nothing here: a response is buffered only when a write
 * to the client has already reported backpressure, and the bytes stay in the
 * response's own write queue (no copy).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { SluiceError } from '../common/errors.js';
import type { ProxyOptions } from '../config/types.js';
import type { Version } from './routing-table.js';

/** The proxy options this module reads (their meaning: config/types.ts ProxyOptions). */
export type SlowClientOptions = Pick<
  ProxyOptions,
  'requestBufferBytes' | 'responseBufferBytes' | 'bufferMemoryBytes' | 'clientBodyTimeoutMs' | 'sendTimeoutMs' | 'queueLimit' | 'connectionsPerVersion' | 'keepAliveTimeoutMs'
>;

/** Bytes one request holds of the budget; released when its response closes. */
export class BufferHold {
  request = 0;
  response = 0;
  /** The send timeout is armed on this socket. */
  socket: Socket | null = null;
}

/** Requests dispatched to one pool and not yet finished. Shared by every version on that pool. */
export interface PoolGate {
  inFlight: number;
}

/** Where a handler keeps what this module gave it; fields of ForwardHandler. */
export interface SlowClientState {
  hold: BufferHold | null;
  gate: PoolGate | null;
}

const kGate = Symbol('sluice.poolGate');
type Gated = { [kGate]?: PoolGate };

/** Retry-After for a shed request: a second lets a queue of upstream requests move on. */
const RETRY_AFTER = '1';

export class SlowClients {
  #used = 0;
  readonly #maxInFlight: number;

  constructor(readonly options: SlowClientOptions) {
    this.#maxInFlight = options.connectionsPerVersion + options.queueLimit;
  }

  /** Budget bytes in use (for /stats and tests). */
  get bufferedBytes(): number {
    return this.#used;
  }

  /** Takes a slot on the pool's gate; null when the pool has as many requests as it may queue. */
  admit(pool: object): PoolGate | null {
    const g = pool as Gated;
    const gate = g[kGate] ?? (g[kGate] = { inFlight: 0 });
    if (gate.inFlight >= this.#maxInFlight) return null;
    gate.inFlight++;
    return gate;
  }

  /** The request is done with its upstream connection (answered, failed or abandoned). */
  leave(state: SlowClientState): void {
    const gate = state.gate;
    if (gate !== null) {
      gate.inFlight--;
      state.gate = null;
    }
  }

  /**
   * Reserves room to read this body whole: its Content-Length when it is
   * within requestBuffer and the budget; -1 when it should stream instead
   * (chunked, too large, or the budget is spent).
   */
  reserveBody(req: IncomingMessage): number {
    const h = req.headers;
    const cl = h['content-length'];
    if (cl === undefined || h['transfer-encoding'] !== undefined) return -1;
    const n = Number(cl);
    if (!(n <= this.options.requestBufferBytes) || this.#used + n > this.options.bufferMemoryBytes) return -1;
    this.#used += n;
    return n;
  }

  /**
   * Reserves `n` bytes of the budget for a body read whole (HTTP/2 requests,
   * handle-stream.ts): false when it would go past bufferMemory (the body
   * then streams). Give it back with `release`.
   */
  reserve(n: number): boolean {
    if (this.#used + n > this.options.bufferMemoryBytes) return false;
    this.#used += n;
    return true;
  }

  release(n: number): void {
    this.#used -= n;
  }

  /**
   * Reads a body whose room was reserved, then calls `done` with it. A client
   * that pauses longer than clientBodyTimeout between chunks gets 408; one that
   * leaves gets nothing. Either way nothing was dispatched: no version is
   * charged for it.
   */
  readBody(req: IncomingMessage, res: ServerResponse, reserved: number, done: (body: Buffer, hold: BufferHold) => void): void {
    const hold = new BufferHold();
    hold.request = reserved;
    res.once('close', () => this.#release(hold));
    const chunks: Buffer[] = [];
    let size = 0;
    const socket = req.socket;
    const timeoutMs = this.options.clientBodyTimeoutMs;
    const onData = (c: Buffer): void => {
      chunks.push(c);
      size += c.length;
    };
    const stop = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('timeout', onTimeout);
      res.off('close', stop);
      if (timeoutMs > 0 && !socket.destroyed) socket.setTimeout(0);
    };
    const onEnd = (): void => {
      stop();
      // One chunk (a small body that came with its headers) is passed on as is, without a copy.
      done(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size), hold);
    };
    const onTimeout = (): void => {
      stop();
      if (res.headersSent) return void socket.destroy();
      // The rest of the body will not come in time: do not read another request from this connection.
      res.shouldKeepAlive = false;
      writeError(res, new SluiceError('SLUICE_REQUEST_TIMEOUT', `the request body stalled for more than ${timeoutMs} ms`), null);
    };
    req.on('data', onData);
    req.once('end', onEnd);
    // Node emits 'timeout' on an incomplete request when its socket idles; with a listener it leaves the socket to us.
    req.once('timeout', onTimeout);
    res.once('close', stop);
    if (timeoutMs > 0) socket.setTimeout(timeoutMs);
  }

  /**
   * A body too large to buffer streams to the upstream while the client sends
   * it: a client that pauses longer than clientBodyTimeout is cut (Node
   * destroys an idle socket nobody listens for), which aborts the upstream
   * request and frees its connection.
   */
  watchUpload(req: IncomingMessage): void {
    if (this.options.clientBodyTimeoutMs <= 0) return;
    req.socket.setTimeout(this.options.clientBodyTimeoutMs);
    req.once('end', clearUploadTimeout);
  }

  /**
   * Called when a write to the client reports backpressure. True: keep reading
   * the upstream, the response waits in memory for the client (within
   * responseBuffer and the budget). False: pause the upstream until the client
   * drains. Either way the client now has sendTimeout to make progress.
   */
  absorb(res: ServerResponse, state: SlowClientState): boolean {
    let hold = state.hold;
    if (hold === null) {
      hold = state.hold = new BufferHold();
      res.once('close', () => this.#release(hold!));
    }
    if (hold.socket === null && this.options.sendTimeoutMs > 0 && res.socket !== null) {
      // Node resets a socket's idle timer whenever a write completes: this is "no progress for sendTimeout".
      hold.socket = res.socket;
      hold.socket.setTimeout(this.options.sendTimeoutMs);
      // Once the client has caught up, a quiet upstream (server-sent events, long polls) must not trip it.
      res.once('drain', () => disarm(res, hold!));
    }
    const queued = res.writableLength;
    if (queued > this.options.responseBufferBytes) return false;
    const more = queued - hold.response;
    if (more > 0) {
      if (this.#used + more > this.options.bufferMemoryBytes) return false;
      this.#used += more;
      hold.response = queued;
    }
    return true;
  }

  /** Answers 503 SLUICE_OVERLOADED for a version whose pool is full, and counts it as the version's. */
  shed(res: ServerResponse, route: string, version: Version, versionHeader: string | null, startMs: number): void {
    const err = new SluiceError('SLUICE_OVERLOADED', `version ${version.name} of route ${route} has too many requests waiting for a connection`);
    writeError(res, err, versionHeader === null ? null : [versionHeader, version.name]);
    // Shedding is the version's capacity showing: slow clients cannot fill its queue, slow answers can.
    version.stats.record(503, performance.now() - startMs, false);
  }

  #release(hold: BufferHold): void {
    this.#used -= hold.request + hold.response;
    hold.request = hold.response = 0;
    const s = hold.socket;
    // With keep-alive on, Node has already replaced our timeout with its keep-alive one.
    if (s !== null && this.options.keepAliveTimeoutMs === 0 && !s.destroyed) s.setTimeout(0);
    hold.socket = null;
  }
}

function disarm(res: ServerResponse, hold: BufferHold): void {
  const s = hold.socket;
  hold.socket = null;
  // After 'finish' the socket carries Node's keep-alive timeout, not ours: leave it.
  if (s !== null && !s.destroyed && !res.writableFinished) s.setTimeout(0);
}

function clearUploadTimeout(this: IncomingMessage): void {
  if (!this.socket.destroyed) this.socket.setTimeout(0);
}

function writeError(res: ServerResponse, err: SluiceError, extra: readonly [string, string] | null): void {
  const body = JSON.stringify(err.toJSON());
  const headers = ['content-type', 'application/json; charset=utf-8', 'content-length', String(Buffer.byteLength(body))];
  if (err.status === 503) headers.push('retry-after', RETRY_AFTER);
  if (extra !== null) headers.push(extra[0], extra[1]);
  res.writeHead(err.status, headers);
  res.end(body);
}
