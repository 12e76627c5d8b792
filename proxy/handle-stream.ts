/**
 * The request path for HTTP/2 streams (h2 by ALPN, h2c by prior knowledge),
 * start to end: the same choice as handle-request.ts — route (authority,
 * path prefix) → rule → sticky key → weighted slot — made per stream, not per
 * connection; then an h2/h2c version gets the stream over HTTP/2
 * (stream-to-h2.ts) and an http1 version through its undici pool
 * (stream-to-h1.ts). StreamCall (stream-call.ts) answers and counts.
 */
import { constants as h2, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { SluiceError } from '../common/errors.js';
import { GRPC_UNIMPLEMENTED } from '../common/grpc-status.js';
import { PinMatcher } from '../common/pin.js';
import { bucketOf, choose, originForm, MAX_RAW_HEADERS, type Chosen, type TrafficContext } from './handle-request.js';
import { grpcErrorHeaders, grpcStatusOfHttp, grpcTimeoutMs, isGrpc } from './grpc.js';
import { planStreamMirrors } from './stream-mirror.js';
import { upstreamHeadersOfStream } from './headers.js';
import { normalisePath } from './path.js';
import { StreamCall } from './stream-call.js';
import { forwardToH1 } from './stream-to-h1.js';
import { forwardToH2 } from './stream-to-h2.js';

const INDEX_MASK = 0xff;
/** Reused for every stream (see handle-request.ts CHOSEN). */
const CHOSEN: Chosen = { exposure: null };

function ignore(): void {}

/** Sluice's own refusal of a stream: JSON as on HTTP/1.1, or a gRPC status for a gRPC call. */
export function refuseStream(stream: ServerHttp2Stream, grpc: boolean, err: SluiceError): void {
  if (stream.destroyed || stream.closed) return;
  try {
    if (grpc) {
      const code = err.code === 'SLUICE_ROUTE_NOT_FOUND' ? GRPC_UNIMPLEMENTED : grpcStatusOfHttp(err.status);
      stream.respond(grpcErrorHeaders(code, `sluice: ${err.message}`), { endStream: true });
      return;
    }
    const body = JSON.stringify(err.toJSON());
    stream.respond({ ':status': err.status, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
    stream.end(body);
  } catch {
    // reset by the client meanwhile
  }
}

export function createStreamHandler(ctx: TrafficContext) {
  const settings = ctx.forward;
  const pinMatcher = ctx.pinPrefix === null ? null : new PinMatcher(ctx.pinPrefix);
  return function handleStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number, rawHeaders: string[]): void {
    const startMs = performance.now();
    // Resets and aborts are judged on 'close' (StreamCall.clientGone); an unhandled 'error' would end the process.
    stream.on('error', ignore);
    const grpc = isGrpc(headers['content-type']);
    const method = headers[':method']!;
    // Extended CONNECT (RFC 8441) is not offered; plain CONNECT would make Sluice a tunnel to anywhere.
    if (method === 'CONNECT') return refuseStream(stream, grpc, new SluiceError('SLUICE_METHOD_NOT_IMPLEMENTED', 'CONNECT is not forwarded: Sluice is a reverse proxy'));
    if (rawHeaders.length > MAX_RAW_HEADERS) return refuseStream(stream, grpc, new SluiceError('SLUICE_TOO_MANY_HEADERS'));
    const target = originForm(headers[':path'] ?? '');
    if (target === null) return refuseStream(stream, grpc, new SluiceError('SLUICE_BAD_REQUEST', 'request target must be a path'));
    const url = normalisePath(target);
    if (url === null) return refuseStream(stream, grpc, new SluiceError('SLUICE_PATH_INVALID'));
    const authority = headers[':authority'] ?? headers.host;
    const state = ctx.table().match(authority, url);
    if (state === null) return refuseStream(stream, grpc, new SluiceError('SLUICE_ROUTE_NOT_FOUND', `no route matches ${url}`));

    const picked = choose(state, headers, url, pinMatcher, CHOSEN);
    const version = state.route.versions[picked & INDEX_MASK]!;
    const call = new StreamCall(stream, state.route, version, grpc, startMs, settings);
    call.counts = state.counts;
    call.method = method;
    call.url = url;
    call.bucket = bucketOf(picked);
    const exposure = CHOSEN.exposure;
    if (exposure !== null) {
      call.exposure = exposure;
      call.exposureSeq = exposure.seq;
    }
    const hasBody = (flags & h2.NGHTTP2_FLAG_END_STREAM) === 0;
    // gRPC: the client's deadline is the call's; nothing else bounds it, as a stream may idle for as long as
    // it likes. Others: the route's request timeout bounds the wait for response headers once the request
    // is all sent, as on HTTP/1.1 — a slow upload is the client's time, not the version's.
    if (grpc) {
      const deadline = grpcTimeoutMs(headers['grpc-timeout']);
      if (deadline >= 0) call.deadline(deadline);
    } else if (!hasBody) call.deadline(state.route.timeouts.requestMs);
    else call.deadlineAfterBody(state.route.timeouts.requestMs);

    const socket = stream.session?.socket;
    const remote = socket?.remoteAddress ?? '';
    const encrypted = (socket as { encrypted?: boolean } | undefined)?.encrypted === true;
    const toH2 = version.h2 !== null;
    const upHeaders = upstreamHeadersOfStream(headers, authority, remote, encrypted, {
      trustForwarded: state.route.trustForwarded, keepBody: hasBody, h2: toH2, hostSuffix: '',
    });
    const path = version.basePath + url;
    if (state.route.mirrors.length > 0) {
      const shadowHeaders = toH2
        ? upstreamHeadersOfStream(headers, authority, remote, encrypted, { trustForwarded: state.route.trustForwarded, keepBody: hasBody, h2: false, hostSuffix: '' })
        : upHeaders;
      const mirrors = planStreamMirrors(state.route.mirrors, shadowHeaders, method, url, grpc, Number(headers['content-length'] ?? 0));
      if (mirrors !== null) {
        call.mirrors = mirrors;
        if (!hasBody) mirrors.requestEnd();
        else {
          stream.on('data', (chunk: Buffer) => mirrors.requestData(chunk));
          stream.once('end', () => mirrors.requestEnd());
        }
      }
    }
    if (toH2) {
      upHeaders[':method'] = method;
      upHeaders[':path'] = path;
      upHeaders[':scheme'] = version.protocol === 'h2' ? 'https' : 'http';
      forwardToH2(call, upHeaders, hasBody);
    } else if (!hasBody || method === 'GET' || method === 'HEAD') {
      forwardToH1(call, method, path, upHeaders, null);
    } else {
      // As on HTTP/1.1 (slow-clients.ts): a body of known, bounded size is read whole first, so a slow
      // upload holds no upstream connection; a larger one streams, paced by HTTP/2 flow control.
      const length = Number(headers['content-length'] ?? -1);
      // Within requestBuffer and the process-wide budget (bufferMemory, shared with HTTP/1.1); else it streams.
      if (!(length >= 0 && length <= settings.slow.options.requestBufferBytes) || !settings.slow.reserve(length)) {
        return forwardToH1(call, method, path, upHeaders, stream);
      }
      // Held until the stream closes: the body lives as long as the request may be sent (or retried).
      stream.once('close', () => settings.slow.release(length));
      readBody(call, length, settings.slow.options.clientBodyTimeoutMs, (body) => forwardToH1(call, method, path, upHeaders, body));
    }
  };
}

/** Reads a stream's body of `length` bytes whole; a pause longer than `idleMs` ends the call with 408. */
function readBody(call: StreamCall, length: number, idleMs: number, done: (body: Buffer) => void): void {
  const stream = call.stream;
  const chunks: Buffer[] = [];
  let size = 0;
  let timer: NodeJS.Timeout | null = null;
  const arm = (): void => {
    if (idleMs <= 0) return;
    if (timer !== null) timer.refresh();
    else timer = setTimeout(() => call.bodyTimedOut(), idleMs);
  };
  arm();
  stream.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size <= length) chunks.push(chunk);
    arm();
  });
  stream.once('end', () => {
    if (timer !== null) clearTimeout(timer);
    if (!call.finished) done(Buffer.concat(chunks, Math.min(size, length)));
  });
  stream.once('close', () => {
    if (timer !== null) clearTimeout(timer);
  });
}
