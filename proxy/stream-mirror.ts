/**
 * Shadow copies of requests that arrived as HTTP/2 streams (mirror.ts does
 * HTTP/1.1's). The request body is kept (up to the mirror's maxBodyBytes) as
 * it streams to the primary; a plain request's copies go out when its body
 * is complete. A gRPC call is copied only once the primary has finished and
 * proved unary — one request message, at most one response message — since
 * replaying half of a stream means nothing to the shadow; streaming calls
 * count as `dropped`. Copies go through the shadow version's own undici pool.
 */
import type { Dispatcher } from 'undici';
import { MirrorComparison, ShadowHandler, countDropped } from './mirror.js';
import type { Mirror } from './routing-table.js';

const SHADOW_HOST_SUFFIX = '-shadow';

/** Counts length-prefixed gRPC messages (1 flag byte, 4 length bytes, the message) across chunk boundaries. */
export class GrpcFrames {
  count = 0;
  #header = 0; // header bytes still to read of the current prefix (0: at a boundary)
  #length = 0;
  #remaining = 0;

  push(chunk: Buffer): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.#remaining > 0) {
        const take = Math.min(this.#remaining, chunk.length - i);
        this.#remaining -= take;
        i += take;
        continue;
      }
      if (this.#header === 0) {
        this.#header = 5;
        this.#length = 0;
        this.count++;
      }
      const b = chunk[i++]!;
      if (this.#header <= 4) this.#length = this.#length * 256 + b;
      if (--this.#header === 0) this.#remaining = this.#length;
    }
  }

  /** At a message boundary: the last message is whole. */
  get complete(): boolean {
    return this.#header === 0 && this.#remaining === 0;
  }
}

/** Where the primary's side of a mirrored stream reports, from the call (stream-call.ts). */
export class StreamMirrors {
  readonly #comparisons: Array<MirrorComparison | null>;
  #chunks: Buffer[] | null = [];
  #size = 0;
  #bodyDone = false;
  readonly #limit: number;
  readonly #request: GrpcFrames | null;
  readonly #response: GrpcFrames | null;

  constructor(
    private readonly mirrors: readonly Mirror[],
    private readonly headers: Record<string, string | string[]>,
    private readonly method: string,
    private readonly url: string,
    private readonly grpc: boolean,
  ) {
    this.#comparisons = mirrors.map((m) => (m.compare ? new MirrorComparison(m) : null));
    this.#limit = Math.min(...mirrors.map((m) => m.maxBodyBytes));
    this.#request = grpc ? new GrpcFrames() : null;
    this.#response = grpc ? new GrpcFrames() : null;
  }

  requestData(chunk: Buffer): void {
    this.#request?.push(chunk);
    if (this.#chunks === null) return;
    this.#size += chunk.length;
    if (this.#size > this.#limit) this.#chunks = null;
    else this.#chunks.push(chunk);
  }

  requestEnd(): void {
    this.#bodyDone = true;
    if (!this.grpc) this.#fire();
  }

  /** The primary's answer, as compared: the HTTP status, or a gRPC call's grpc-status. */
  responseStatus(status: number): void {
    for (const c of this.#comparisons) c?.primaryHeaders(status);
  }

  responseData(chunk: Buffer): void {
    this.#response?.push(chunk);
    for (const c of this.#comparisons) c?.primaryData(chunk);
  }

  /** The primary is over; `ok`: it ended normally (not failed, not abandoned by the client). */
  primaryDone(ok: boolean): void {
    if (this.grpc) {
      const unary = ok && this.#bodyDone && this.#request!.count === 1 && this.#request!.complete && this.#response!.count <= 1;
      if (unary) this.#fire();
      else this.#drop();
    }
    for (const c of this.#comparisons) {
      if (ok) c?.primaryEnd();
      else c?.primaryFailed();
    }
  }

  #drop(): void {
    this.mirrors.forEach((m, i) => {
      countDropped(m);
      this.#comparisons[i]?.cancel();
    });
    this.#chunks = null;
  }

  #fire(): void {
    const body = this.#chunks === null ? null : Buffer.concat(this.#chunks, this.#size);
    this.#chunks = null;
    this.mirrors.forEach((m, i) => {
      const c = this.#comparisons[i] ?? null;
      if (body === null || body.length > m.maxBodyBytes || m.gate.inFlight >= m.maxConcurrent) {
        countDropped(m);
        c?.cancel();
        return;
      }
      m.gate.inFlight++;
      const handler = new ShadowHandler(m, c, this.grpc);
      const headers = { ...this.headers };
      if (typeof headers.host === 'string') headers.host += SHADOW_HOST_SUFFIX;
      try {
        m.pool.dispatch({ path: m.version.basePath + this.url, method: this.method as Dispatcher.HttpMethod, headers, body: body.length > 0 ? body : null }, handler);
      } catch {
        handler.onError();
      }
    });
  }
}

/**
 * Draws which of the route's mirrors copy this stream; null (nothing
 * allocated) when none does.
 */
export function planStreamMirrors(
  all: readonly Mirror[],
  headers: Record<string, string | string[]>,
  method: string,
  url: string,
  grpc: boolean,
  contentLength: number,
): StreamMirrors | null {
  let chosen: Mirror[] | null = null;
  for (const m of all) {
    if (!m.methods.has(method) || Math.random() * 100 >= m.percent) continue;
    if (contentLength > m.maxBodyBytes) {
      countDropped(m);
      continue;
    }
    (chosen ??= []).push(m);
  }
  return chosen === null ? null : new StreamMirrors(chosen, headers, method, url, grpc);
}

