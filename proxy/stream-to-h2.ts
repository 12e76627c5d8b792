/**
 * An HTTP/2 stream forwarded to an h2/h2c version as an HTTP/2 stream of its
 * own (node:http2, h2-upstreams.ts): both bodies piped, so flow control
 * carries backpressure end to end in both directions at once (bidirectional
 * gRPC), trailers passed on, the upstream's RST_STREAM code turned into the
 * call's status.
 */
import { constants as h2, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import { GRPC_UNAVAILABLE } from '../common/grpc-status.js';
import { grpcStatusOfReset } from './grpc.js';
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

export function forwardToH2(call: StreamCall, headers: Record<string, string | string[]>, hasBody: boolean): void {
  const version = call.version;
  let up: ClientHttp2Stream;
  try {
    up = version.h2!.request(headers, !hasBody);
  } catch (err) {
    return call.failed(err as Error, failureOf(err as Error), -1);
  }
  const down = call.stream;
  call.cancelUpstream = () => {
    if (!up.destroyed) up.close(h2.NGHTTP2_CANCEL);
  };
  if (hasBody) down.pipe(up);
  up.on('response', (h: IncomingHttpHeaders, flags: number) => {
    if (call.finished) return;
    call.clearHeaderDeadline();
    const status = Number(h[':status']);
    const out = clientHeadersOfStream(h, call.settings.versionHeader, version.name, call.rewardOut);
    const end = (flags & h2.NGHTTP2_FLAG_END_STREAM) !== 0;
    if (call.respond(status, out, h, end) && !end) {
      const mirrors = call.mirrors;
      if (mirrors !== null) up.on('data', (chunk: Buffer) => mirrors.responseData(chunk));
      up.pipe(down);
    }
  });
  up.on('trailers', (t: IncomingHttpHeaders) => call.setTrailers(t));
  up.once('end', () => call.upstreamEnded());
  // Errors also close the stream; 'close' below judges with the RST code at hand.
  up.on('error', () => {});
  up.once('close', () => {
    if (call.finished) return;
    const rst = up.rstCode ?? h2.NGHTTP2_NO_ERROR;
    const cause = up.errored;
    // The connection failed (refused, timed out, went away): the failure's own status, UNAVAILABLE.
    if (cause !== null && (cause as { code?: string }).code !== 'ERR_HTTP2_STREAM_ERROR') return call.failed(cause, failureOf(cause), -1);
    if (call.responded && rst === h2.NGHTTP2_NO_ERROR) return; // ended cleanly: the client side finishes (wantTrailers)
    const err = new Error(`upstream stream closed (RST_STREAM ${rst})`);
    call.failed(err, RESET, rst === h2.NGHTTP2_NO_ERROR ? GRPC_UNAVAILABLE : grpcStatusOfReset(rst));
  });
}
