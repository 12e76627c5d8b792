/**
 * An HTTP/2 stream forwarded to an http1 version through its undici pool,
 * the same pool HTTP/1.1 clients use: a browser on h2 reaching an app that
 * speaks HTTP/1.1 is the everyday ingress case.
 */
import { PassThrough } from 'node:stream';
import type { Dispatcher } from 'undici';
import { clientResponseHeaders, headerObject } from './headers.js';
import type { StreamCall } from './stream-call.js';
import { classifyUpstreamError } from './upstream-errors.js';

class StreamToH1 implements Dispatcher.DispatchHandler {
  #resume: (() => void) | null = null;

  constructor(private readonly call: StreamCall) {}

  onConnect(abort: (err?: Error) => void): void {
    if (this.call.finished) return abort();
    this.call.cancelUpstream = () => abort();
  }

  onHeaders(status: number, rawHeaders: Buffer[], resume: () => void): boolean {
    const call = this.call;
    if (call.finished) return false;
    if (status < 200) return true;
    call.clearHeaderDeadline();
    this.#resume = resume;
    const flat = clientResponseHeaders(rawHeaders, call.settings.versionHeader, call.version.name, call.rewardOut);
    const headers = headerObject(flat, status);
    // A 204 MUST NOT carry Content-Length (RFC 9110 §8.6).
    if (status === 204) delete headers['content-length'];
    call.respond(status, headers, null, false);
    return true;
  }

  onData(chunk: Buffer): boolean {
    const call = this.call;
    if (call.finished) return false;
    const down = call.stream;
    call.mirrors?.responseData(chunk);
    if (down.write(chunk)) return true;
    // A slow reader: the stream keeps what it cannot send yet; up to the response buffer the upstream
    // connection is read on (and freed sooner), beyond it the upstream waits for 'drain'.
    if (down.writableLength <= call.settings.slow.options.responseBufferBytes) return true;
    down.once('drain', this.#resume!);
    return false;
  }

  onComplete(trailers: string[] | null): void {
    const call = this.call;
    if (call.finished) return;
    call.upstreamEnded();
    if (trailers !== null && trailers.length > 0) {
      const t: Record<string, string> = {};
      for (let i = 0; i < trailers.length; i += 2) t[String(trailers[i]).toLowerCase()] = String(trailers[i + 1]);
      call.setTrailers(t);
    }
    call.endBody();
  }

  onError(err: Error): void {
    if (this.call.finished) return;
    this.call.failed(err, classifyUpstreamError(err), -1);
  }
}

/**
 * undici destroys a body stream once it has sent it (or given up on it): given
 * the client's HTTP/2 stream itself, that reset the stream before the response
 * could go out. It gets a pipe of its own; an upload the upstream stopped
 * taking is read to its end and dropped, so the client's stream can finish.
 */
function uploadOf(stream: NodeJS.ReadableStream): PassThrough {
  const body = new PassThrough();
  stream.pipe(body);
  body.once('close', () => {
    stream.unpipe(body);
    stream.resume();
  });
  return body;
}

export function forwardToH1(call: StreamCall, method: string, path: string, headers: Record<string, string | string[]>, body: Buffer | NodeJS.ReadableStream | null): void {
  const gate = call.settings.slow.admit(call.version.pool);
  if (gate === null) return call.shed();
  call.gate = gate;
  const handler = new StreamToH1(call);
  const upload = body === null || Buffer.isBuffer(body) ? body : uploadOf(body);
  try {
    call.version.pool.dispatch({ path, method: method as Dispatcher.HttpMethod, headers, body: upload }, handler);
  } catch (err) {
    handler.onError(err as Error);
  }
}
