/**
 * An HTTP/2 stream forwarded to an http1 version through its undici pool,
 * the same pool HTTP/1.1 clients use: a browser on h2 reaching an app that
 * speaks HTTP/1.1 is the everyday ingress case.
 */
import { constants as h2 } from 'node:http2';
import { PassThrough } from 'node:stream';
import type { Dispatcher } from 'undici';
import { clientResponseHeaders, headerObject, isHopByHop } from './headers.js';
import { StaleRetry } from './stale-retry.js';
import type { StreamCall } from './stream-call.js';
import { classifyUpstreamError } from './upstream-errors.js';

class StreamToH1 implements Dispatcher.DispatchHandler {
  #resume: (() => void) | null = null;
  #responded = false;
  readonly #stale = new StaleRetry();
  /** Armed while the client takes nothing and the upstream waits (proxy.sendTimeout). */
  #stalled: NodeJS.Timeout | undefined = undefined;

  constructor(
    private readonly call: StreamCall,
    private readonly opts: Dispatcher.DispatchOptions,
  ) {}

  onConnect(abort: (err?: Error) => void): void {
    if (this.call.finished) return abort();
    this.call.cancelUpstream = abort;
    this.#stale.attempt();
  }

  onHeaders(status: number, rawHeaders: Buffer[], resume: () => void): boolean {
    const call = this.call;
    if (call.finished) return false;
    if (status < 200) return true;
    this.#responded = true;
    call.clearHeaderDeadline();
    this.#resume = resume;
    const flat = clientResponseHeaders(rawHeaders, call.settings.versionHeader, call.version.name, call.rewardOut);
    const headers = headerObject(flat, status);
    // A 204 MUST NOT carry Content-Length (RFC 9110 §8.6).
    if (status === 204) delete headers['content-length'];
    // HEAD, 204 and 304 have no body: node:http2 ends such a response at its headers (no trailers follow).
    const end = status === 204 || status === 304 || this.opts.method === 'HEAD';
    call.respond(status, headers, null, end);
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
    // Made only here, on backpressure: the common case allocates nothing for it.
    down.once('drain', () => {
      clearTimeout(this.#stalled);
      this.#resume?.();
    });
    // proxy.sendTimeout, as on HTTP/1.1: a client that takes nothing for that long loses its stream (499),
    // so that it cannot hold the upstream connection for ever.
    const ms = call.settings.slow.options.sendTimeoutMs;
    if (ms > 0) this.#stalled = setTimeout(() => call.stream.close(h2.NGHTTP2_CANCEL), ms);
    return false;
  }

  onComplete(trailers: string[] | null): void {
    clearTimeout(this.#stalled);
    const call = this.call;
    if (call.finished) return;
    call.upstreamEnded();
    if (trailers !== null && trailers.length > 0) {
      const t: Record<string, string> = {};
      for (let i = 0; i < trailers.length; i += 2) {
        const name = String(trailers[i]).toLowerCase();
        // Connection-specific trailers (Keep-Alive…) mean nothing past the hop, and HTTP/2 refuses them.
        if (!isHopByHop(name)) t[name] = String(trailers[i + 1]);
      }
      call.setTrailers(t);
    }
    call.endBody();
  }

  onError(err: Error): void {
    clearTimeout(this.#stalled);
    const call = this.call;
    if (call.finished) return;
    // The stale keep-alive retry, as for HTTP/1.1 clients (stale-retry.ts).
    if (this.#stale.retry(err, this.opts, this.#responded, call.version.pool, call.version.stats, (client, again) => dispatch(client, again, this))) return;
    call.failed(err, classifyUpstreamError(err), -1);
  }
}

function dispatch(to: Dispatcher, opts: Dispatcher.DispatchOptions, handler: StreamToH1): void {
  try {
    to.dispatch(opts, handler);
  } catch (err) {
    handler.onError(err as Error);
  }
}

/**
 * undici destroys a body stream once it has sent it (or given up on it): given
 * the client's HTTP/2 stream itself, that reset the stream before the response
 * could go out. It gets a pipe of its own; an upload the upstream stopped
 * taking is read to its end and dropped, so the client's stream can finish.
 */
function uploadOf(stream: NodeJS.ReadableStream, idleMs: number, onIdle: () => void): PassThrough {
  const body = new PassThrough();
  stream.pipe(body, { end: false });
  // A client that reset its stream ends its body early: the upstream must see a broken upload, not a whole one.
  stream.once('end', () => {
    // As in stream-to-h2.ts (onUploadEnd): an end with the client's stream already closed is a reset, not END_STREAM.
    const s = stream as { closed?: boolean; aborted?: boolean; destroyed?: boolean };
    if (s.closed === true || s.aborted === true || s.destroyed === true) body.destroy(new Error('the client reset its stream mid-upload'));
    else body.end();
  });
  // proxy.clientBodyTimeout between chunks, as on HTTP/1.1: a stalled upload must not hold the connection.
  if (idleMs > 0) {
    const timer = setTimeout(onIdle, idleMs);
    const refresh = (): void => void timer.refresh();
    stream.on('data', refresh);
    stream.once('end', () => clearTimeout(timer));
    body.once('close', () => {
      clearTimeout(timer);
      stream.off('data', refresh);
    });
  }
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
  const upload = body === null || Buffer.isBuffer(body) ? body : uploadOf(body, call.settings.slow.options.clientBodyTimeoutMs, () => call.bodyTimedOut());
  const opts: Dispatcher.DispatchOptions = { path, method: method as Dispatcher.HttpMethod, headers, body: upload };
  dispatch(call.version.pool, opts, new StreamToH1(call, opts));
}
