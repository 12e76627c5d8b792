/**
 * An HTTP/2 stream forwarded to an h2/h2c version as an HTTP/2 stream of its
 * own (node:http2, h2-upstreams.ts): both bodies piped, so flow control
 * carries backpressure end to end in both directions at once (bidirectional
 * gRPC), trailers passed on, the upstream's RST_STREAM code turned into the
 * call's status.
 */
import { constants as h2, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import type { Duplex } from 'node:stream';
import { GRPC_UNAVAILABLE } from '../common/grpc-status.js';
import { grpcStatusOfReset } from './grpc.js';
import { kSession } from './h2-upstreams.js';
import { clientHeadersOfStream } from './headers.js';
import type { StreamCall } from './stream-call.js';
import { REASON_INDEX } from './stats.js';
import { classifyUpstreamError, type UpstreamFailure } from './upstream-errors.js';

const RESET: UpstreamFailure = Object.freeze({ reason: 'reset', reasonIndex: REASON_INDEX.reset, code: 'SLUICE_UPSTREAM_RESET', status: 502 });

/**
 * Session-level failures node:http2 reports on each stream: the connection
 * went, as a reset would — unless the stream was cancelled because its
 * session never came up (a refused certificate, a refused connection): then
 * that cause, as HTTP/1.1 clients would be told.
 */
function failureOf(err: Error): UpstreamFailure {
  const code = (err as { code?: string }).code ?? '';
  const cause = (err as { cause?: unknown }).cause;
  if (code === 'ERR_HTTP2_STREAM_CANCEL' && cause instanceof Error) return failureOf(cause);
  if (code.startsWith('ERR_HTTP2_')) return RESET;
  return classifyUpstreamError(err);
}

const kCall = Symbol('sluice.streamCall');
type Upstream = ClientHttp2Stream & { [kCall]: StreamCall };

/**
 * Moves one stream's body into the other with backpressure: what pipe()
 * does, less its bookkeeping (a dozen listeners added and removed per call,
 * measurable at gRPC rates). Teardown is the call's: either side closing
 * ends it (StreamCall.clientGone, onClose below), which stops both.
 */
const kTarget = Symbol('sluice.relayTarget');
const kSource = Symbol('sluice.relaySource');
type RelaySource = Duplex & { [kTarget]: Duplex };
type RelayTarget = Duplex & { [kSource]: Duplex };

function relay(from: Duplex, to: Duplex, onEnd: (this: RelaySource) => void): void {
  (from as RelaySource)[kTarget] = to;
  (to as RelayTarget)[kSource] = from;
  from.on('data', onRelayData);
  from.once('end', onEnd);
}

function onRelayData(this: RelaySource, chunk: Buffer): void {
  const to = this[kTarget];
  if (!to.write(chunk)) {
    this.pause();
    to.once('drain', onRelayDrain);
  }
}

function onRelayDrain(this: RelayTarget): void {
  this[kSource].resume();
}

function onRelayEnd(this: RelaySource): void {
  const to = this[kTarget];
  if (!to.writableEnded && !to.destroyed) to.end();
}

/**
 * The client's request body ended. A client that reset its stream (even with
 * NO_ERROR) ends it too, early — node:http2 pushes the end of the body then,
 * and the stream is already closed: the upstream must not take such a body as
 * whole, so its stream is cancelled instead. (A body ended by END_STREAM
 * leaves the client's stream open: our answer is still to come.)
 */
function onUploadEnd(this: RelaySource): void {
  const to = this[kTarget] as Duplex & { close(code: number): void };
  if (to.writableEnded || to.destroyed) return;
  const from = this as Duplex & { closed?: boolean; aborted?: boolean };
  if (from.closed === true || from.aborted === true || from.destroyed) to.close(h2.NGHTTP2_CANCEL);
  else to.end();
}

// Listeners shared by every stream (`this` is the upstream stream, its call hangs off it): no closures per call.

function onResponse(this: Upstream, h: IncomingHttpHeaders, flags: number): void {
  const call = this[kCall];
  if (call.finished) return;
  call.clearHeaderDeadline();
  const status = Number(h[':status']);
  const out = clientHeadersOfStream(h, call.settings.versionHeader, call.version.name, call.rewardOut);
  const end = (flags & h2.NGHTTP2_FLAG_END_STREAM) !== 0;
  if (call.respond(status, out, h, end) && !end) {
    if (call.mirrors !== null) this.on('data', onMirroredData);
    relay(this, call.stream, onRelayEnd);
  }
}

function onMirroredData(this: Upstream, chunk: Buffer): void {
  this[kCall].mirrors?.responseData(chunk);
}

function onTrailers(this: Upstream, t: IncomingHttpHeaders): void {
  this[kCall].setTrailers(t);
}

function onEnd(this: Upstream): void {
  this[kCall].upstreamEnded();
}

// Errors also close the stream; onClose judges with the RST code at hand.
function ignore(): void {}

function onClose(this: Upstream): void {
  const call = this[kCall];
  if (call.finished) return;
  const rst = this.rstCode ?? h2.NGHTTP2_NO_ERROR;
  const cause = this.errored;
  // The connection failed (refused, timed out, went away): the failure's own status, UNAVAILABLE.
  if (cause !== null && (cause as { code?: string }).code !== 'ERR_HTTP2_STREAM_ERROR') return call.failed(cause, failureOf(cause), -1);
  if (call.responded && rst === h2.NGHTTP2_NO_ERROR) return; // ended cleanly: the client side finishes (wantTrailers)
  // The connection itself went (the upstream crashed): Node closes its streams with CANCEL on our side,
  // which is no choice of the upstream's: UNAVAILABLE, which clients may retry.
  const session = (this as Upstream & { [kSession]?: { destroyed: boolean; closed: boolean } })[kSession];
  if (session !== undefined && (session.destroyed || session.closed)) {
    return call.failed(new Error(`upstream connection lost (stream closed with ${rst})`), RESET, GRPC_UNAVAILABLE);
  }
  const err = new Error(`upstream stream reset (RST_STREAM ${rst})`);
  call.failed(err, RESET, rst === h2.NGHTTP2_NO_ERROR ? GRPC_UNAVAILABLE : grpcStatusOfReset(rst), `reset the stream (RST_STREAM code ${rst})`);
}

function cancel(this: StreamCall): void {
  const up = this.upstream;
  if (up !== null && !up.destroyed) up.close(h2.NGHTTP2_CANCEL);
}

export function forwardToH2(call: StreamCall, headers: Record<string, string | string[]>, hasBody: boolean): void {
  let up: Upstream;
  try {
    up = call.version.h2!.request(headers, !hasBody) as Upstream;
  } catch (err) {
    // node:http2 refusing the headers (a name or value it will not send) is the client's request, not the version.
    const code = (err as { code?: string }).code ?? '';
    if (code.startsWith('ERR_HTTP2_INVALID') || code.startsWith('ERR_INVALID_')) return call.refused(err as Error);
    return call.failed(err as Error, failureOf(err as Error), -1);
  }
  up[kCall] = call;
  call.upstream = up;
  call.cancelUpstream = cancel;
  if (hasBody) relay(call.stream, up, onUploadEnd);
  up.on('response', onResponse);
  up.on('trailers', onTrailers);
  up.once('end', onEnd);
  up.on('error', ignore);
  up.once('close', onClose);
}
