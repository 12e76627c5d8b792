/**
 * gRPC bytes for the benchmarks, without a protobuf library: the Echo service's
 * Say messages (test/fixtures/echo.proto) are one or two string fields, and a
 * gRPC message is a 5-byte prefix (compressed flag 0, 4-byte big-endian length)
 * then the protobuf bytes. Plus a one-shot h2c client call, for sanity checks
 * and the upstream's request counter.
 */
import http2 from 'node:http2';
import { pollFor200 } from './net.js';

export const SAY_PATH = '/sluice.test.Echo/Say';

/** Protobuf field `n` of wire type 2 (length-delimited), for a string under 128 bytes. */
function stringField(n: number, text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length > 127) throw new Error('bench: strings over 127 bytes need a varint length');
  return Buffer.concat([Buffer.from([(n << 3) | 2, bytes.length]), bytes]);
}

/** A length-prefixed gRPC message (uncompressed). */
export function grpcFrame(message: Buffer): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt8(0, 0);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

/** SayRequest { text } as one gRPC message: 0x00, length, 0x0a, len, text. */
export function sayRequest(text: string): Buffer {
  return grpcFrame(stringField(1, text));
}

/** SayReply { version, text } as one gRPC message. */
export function sayReply(version: string, text: string): Buffer {
  return grpcFrame(Buffer.concat([stringField(1, version), stringField(2, text)]));
}

/** The request body every gRPC case sends (h2load's `-d` file): SayRequest { text: "hello sluice" }, 19 bytes. */
export const BENCH_SAY_TEXT = 'hello sluice';

export interface H2CallResult {
  status: number;
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders | null;
  body: Buffer;
  rstCode: number | null;
}

/**
 * One request on a fresh h2c session (prior knowledge), closed afterwards.
 * Resolves with the status, headers, trailers and body; rejects on a
 * connection error or after `timeoutMs`.
 */
export function h2Call(
  origin: string,
  headers: http2.OutgoingHttpHeaders,
  body: Buffer | null,
  timeoutMs = 3000,
): Promise<H2CallResult> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(origin);
    let settled = false;
    const done = (err: Error | null, r?: H2CallResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      session.destroy();
      if (err) reject(err);
      else resolve(r!);
    };
    const timer = setTimeout(() => done(new Error(`h2 ${String(headers[':path'])}: timeout after ${timeoutMs} ms`)), timeoutMs);
    session.on('error', (err) => done(err));
    const stream = session.request(headers, { endStream: body === null });
    let status = 0;
    let respHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders | null = null;
    const chunks: Buffer[] = [];
    stream.on('response', (h) => {
      status = Number(h[':status']);
      respHeaders = h;
    });
    stream.on('trailers', (t) => (trailers = t));
    stream.on('data', (d: Buffer) => chunks.push(d));
    stream.on('error', () => {}); // judged on close
    stream.on('close', () =>
      done(null, {
        status, headers: respHeaders, trailers, body: Buffer.concat(chunks),
        rstCode: stream.rstCode === undefined || stream.rstCode === http2.constants.NGHTTP2_NO_ERROR ? null : stream.rstCode,
      }),
    );
    if (body !== null) stream.end(body);
  });
}

/** One unary Say call (the benchmark's request) on a fresh h2c session. */
export function callSay(origin: string, extraHeaders: http2.OutgoingHttpHeaders = {}, timeoutMs = 3000): Promise<H2CallResult> {
  return h2Call(
    origin,
    { ':method': 'POST', ':path': SAY_PATH, 'content-type': 'application/grpc', te: 'trailers', ...extraHeaders },
    sayRequest(BENCH_SAY_TEXT),
    timeoutMs,
  );
}

/** Null when `r` is a well-formed OK answer to Say (200, application/grpc, one message, grpc-status 0 in trailers), else why not. */
export function checkSayAnswer(r: H2CallResult): string | null {
  if (r.rstCode !== null) return `stream reset (code ${r.rstCode})`;
  if (r.status !== 200) return `:status ${r.status}`;
  if (!String(r.headers['content-type'] ?? '').startsWith('application/grpc')) return `content-type ${String(r.headers['content-type'])}`;
  const grpcStatus = r.trailers?.['grpc-status'] ?? r.headers['grpc-status'];
  if (grpcStatus !== '0') return `grpc-status ${String(grpcStatus)} (${String(r.trailers?.['grpc-message'] ?? r.headers['grpc-message'] ?? '')})`;
  if (r.trailers === null) return 'no trailers';
  if (r.body.length < 5 || r.body.readUInt32BE(1) !== r.body.length - 5) return `body is not one gRPC message (${r.body.length} bytes)`;
  return null;
}

/** Poll the gRPC upstream's `GET /__bench/count` over h2c until it answers 200, `isDead()` turns true, or `timeoutMs` passes. */
export function waitForGrpc(origin: string, timeoutMs: number, isDead: () => boolean): Promise<string | null> {
  return pollFor200(async () => (await h2Call(origin, { ':method': 'GET', ':path': '/__bench/count' }, null, 1000)).status, timeoutMs, isDead);
}
