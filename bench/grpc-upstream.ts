/**
 * Benchmark gRPC upstream: a bare node:http2 server in cleartext (h2c, prior
 * knowledge) that answers the Echo service's unary Say with a fixed response —
 * HEADERS (200, application/grpc), one DATA frame with one SayReply message,
 * trailers `grpc-status: 0` — once the request has ended. No protobuf parsing,
 * no grpc-js: it must not be what limits the gRPC cases.
 *
 *   node --import tsx bench/grpc-upstream.ts <port> [name]
 *
 * Other paths, for bench/h2-clients.ts's correctness table:
 *   POST /sluice.test.Echo/TrailersOnly   one HEADERS frame with END_STREAM: 200, grpc-status 5 (NOT_FOUND)
 *   POST /sluice.test.Echo/Reset?code=N   RST_STREAM with code N (default 11, ENHANCE_YOUR_CALM) before any header
 *   POST /sluice.test.Echo/Idle?ms=N      response headers at once, then nothing for N ms, then the reply and trailers
 *   POST /sluice.test.Echo/PingPong       response headers at once, every request DATA chunk echoed as it arrives, trailers at the request's end
 *   GET  /__bench/count                   JSON { name, requests }: Say calls answered so far
 */
import http2, { constants as h2 } from 'node:http2';
import { SAY_PATH, sayReply } from './lib/grpc.js';

const port = Number(process.argv[2] ?? process.env['PORT'] ?? 0);
const name = process.argv[3] ?? 'v1';
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`grpc-upstream: bad port ${process.argv[2] ?? ''}`);
  process.exit(2);
}

const REPLY = sayReply(name, 'hello from the bench upstream');
const HEADERS = { ':status': 200, 'content-type': 'application/grpc' };
const TRAILERS = { 'grpc-status': '0' };

let served = 0;

function answer(stream: http2.ServerHttp2Stream): void {
  if (stream.destroyed || stream.closed) return;
  served++;
  stream.respond(HEADERS, { waitForTrailers: true });
  stream.once('wantTrailers', () => stream.sendTrailers(TRAILERS));
  stream.end(REPLY);
}

const server = http2.createServer({
  // Node's default allows 2^32-1 streams per session; say so explicitly (RFC 9113 recommends ≥ 100).
  settings: { maxConcurrentStreams: 1000 },
});

server.on('stream', (stream, headers) => {
  stream.on('error', () => {}); // a client that resets is not our problem
  const path = headers[':path'] ?? '';
  if (path === SAY_PATH) {
    // Answer once the request is in, as a gRPC server does for a unary call.
    if (stream.readableEnded) answer(stream);
    else {
      stream.once('end', () => answer(stream));
      stream.resume();
    }
    return;
  }
  const q = path.indexOf('?');
  if (path === '/sluice.test.Echo/PingPong') {
    stream.respond(HEADERS, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers(TRAILERS));
    stream.on('data', (chunk: Buffer) => stream.write(chunk));
    stream.once('end', () => stream.end());
    return;
  }
  stream.resume();
  const base = q < 0 ? path : path.slice(0, q);
  const params = new URLSearchParams(q < 0 ? '' : path.slice(q + 1));
  switch (base) {
    case '/__bench/count': {
      const body = JSON.stringify({ name, requests: served });
      stream.respond({ ':status': 200, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      stream.end(body);
      return;
    }
    case '/sluice.test.Echo/TrailersOnly':
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '5', 'grpc-message': 'no such greeting' }, { endStream: true });
      return;
    case '/sluice.test.Echo/Reset':
      stream.close(Number(params.get('code') ?? h2.NGHTTP2_ENHANCE_YOUR_CALM));
      return;
    case '/sluice.test.Echo/Idle': {
      const ms = Number(params.get('ms') ?? 2000);
      stream.respond(HEADERS, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers(TRAILERS));
      const timer = setTimeout(() => {
        if (!stream.destroyed && !stream.closed) stream.end(REPLY);
      }, ms);
      stream.once('close', () => clearTimeout(timer));
      return;
    }
    default:
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '12', 'grpc-message': `unknown method ${base}` }, { endStream: true });
  }
});

server.on('sessionError', () => {});

server.listen(port, '127.0.0.1', () => {
  const addr = server.address();
  const p = typeof addr === 'object' && addr ? addr.port : port;
  console.log(`grpc upstream ${name} (h2c) listening on 127.0.0.1:${p}`);
});

const stop = (): void => {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
