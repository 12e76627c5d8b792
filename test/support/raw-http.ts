/**
 * Raw HTTP/1.1 over `net` for tests where the defect is at the socket level:
 * a client written to byte for byte, and an upstream that answers however a
 * test tells it to (early, wrongly framed, or by closing).
 */
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';

// ---------------------------------------------------------------- a raw HTTP/1.1 client

export interface RawResponse {
  readonly status: number;
  /** Lower-case names, in order, repeated names kept. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  readonly body: Buffer;
}

export function header(r: Pick<RawResponse, 'headers'>, name: string): string | undefined {
  const all = r.headers.filter(([n]) => n === name).map(([, v]) => v);
  return all.length === 0 ? undefined : all.join(', ');
}

/**
 * One client connection written to byte for byte. Responses are parsed as
 * they come (Content-Length, chunked, or up to the close), in order, so a
 * desynchronised connection shows up as a wrong or missing response.
 */
export class RawClient {
  readonly socket: net.Socket;
  #buf = Buffer.alloc(0);
  #ended = false;
  #wake: (() => void) | null = null;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (c: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, c]);
      this.#wake?.();
    });
    const end = () => {
      this.#ended = true;
      this.#wake?.();
    };
    socket.on('end', end);
    socket.on('close', end);
    socket.on('error', end);
  }

  static async connect(url: string): Promise<RawClient> {
    const { hostname, port } = new URL(url);
    const socket = net.connect({ host: hostname, port: Number(port) });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new RawClient(socket);
  }

  get ended(): boolean {
    return this.#ended;
  }

  write(data: string | Buffer): Promise<void> {
    return new Promise((resolve, reject) => this.socket.write(data, (err) => (err ? reject(err) : resolve())));
  }

  close(): void {
    this.socket.destroy();
  }

  /** Resolves when the server has closed the connection. */
  async closed(timeoutMs: number): Promise<void> {
    await this.#until(() => this.#ended, timeoutMs, 'the server to close the connection');
  }

  /** The next response; `head` when it answers a HEAD (no body follows). */
  async response(opts: { head?: boolean; timeoutMs?: number } = {}): Promise<RawResponse> {
    const timeoutMs = opts.timeoutMs ?? 5_000;
    const headEnd = await this.#until(() => {
      const i = this.#buf.indexOf('\r\n\r\n');
      return i >= 0 ? i : null;
    }, timeoutMs, 'response headers');
    const lines = this.#buf.subarray(0, headEnd).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]!);
    assert.ok(m, `not an HTTP response: ${JSON.stringify(lines[0])}`);
    const status = Number(m[1]);
    const headers = lines.slice(1).map((l): [string, string] => {
      const colon = l.indexOf(':');
      return [l.slice(0, colon).trim().toLowerCase(), l.slice(colon + 1).trim()];
    });
    this.#buf = this.#buf.subarray(headEnd + 4);
    const res = { status, headers };
    if (status < 200) return this.response(opts); // 1xx: the final answer follows
    if (opts.head || status === 204 || status === 304) return { ...res, body: Buffer.alloc(0) };
    const te = header(res, 'transfer-encoding');
    const cl = header(res, 'content-length');
    if (te !== undefined && /chunked/i.test(te)) return { ...res, body: await this.#chunked(timeoutMs) };
    if (cl !== undefined) {
      const n = Number(cl);
      await this.#until(() => this.#buf.length >= n || null, timeoutMs, `${n} body bytes`);
      const body = this.#buf.subarray(0, n);
      this.#buf = this.#buf.subarray(n);
      return { ...res, body };
    }
    await this.#until(() => this.#ended || null, timeoutMs, 'a close-delimited body');
    const body = this.#buf;
    this.#buf = Buffer.alloc(0);
    return { ...res, body };
  }

  async #chunked(timeoutMs: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    for (;;) {
      const lineEnd = await this.#until(() => {
        const i = this.#buf.indexOf('\r\n');
        return i >= 0 ? i : null;
      }, timeoutMs, 'a chunk size');
      const size = parseInt(this.#buf.subarray(0, lineEnd).toString('latin1'), 16);
      assert.ok(Number.isFinite(size), 'bad chunk size');
      if (size === 0) {
        // Last chunk, then (no trailers expected) the final CRLF.
        await this.#until(() => this.#buf.indexOf('\r\n\r\n', lineEnd) === lineEnd || null, timeoutMs, 'the end of a chunked body');
        this.#buf = this.#buf.subarray(lineEnd + 4);
        return Buffer.concat(parts);
      }
      await this.#until(() => this.#buf.length >= lineEnd + 2 + size + 2 || null, timeoutMs, 'a chunk');
      parts.push(this.#buf.subarray(lineEnd + 2, lineEnd + 2 + size));
      this.#buf = this.#buf.subarray(lineEnd + 2 + size + 2);
    }
  }

  /** Waits (woken by socket events, with a deadline) until `check` returns neither null nor false. */
  async #until<T>(check: () => T | null | false, timeoutMs: number, what: string): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = check();
      if (v !== null && v !== false) return v;
      // 'data' always comes before 'end': once ended, nothing more will arrive.
      if (this.#ended) throw new Error(`connection closed while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = null;
    }
  }
}

/** `GET path HTTP/1.1` with the given header lines (CRLFs added). */
export function requestBytes(requestLine: string, headerLines: string[], body = ''): string {
  return `${requestLine}\r\n${headerLines.map((l) => `${l}\r\n`).join('')}\r\n${body}`;
}


// ---------------------------------------------------------------- a raw upstream

export interface RawRequest {
  readonly method: string;
  readonly target: string;
  /** Lower-case names, in order. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  /** Which connection (0, 1, …, in accept order) and which request on it (0 = the first). */
  readonly conn: number;
  readonly onConn: number;
  /** The request body, when the upstream was asked to read bodies (Content-Length only). */
  readonly body: Buffer;
}

/** What a raw upstream does with one request: write bytes, close, or nothing, on `socket`. */
export type RawHandler = (req: RawRequest, socket: net.Socket) => void;

/**
 * An upstream on 127.0.0.1 that parses request heads itself and lets the test
 * answer on the socket as it likes. `readBodies: false` answers right after the
 * head, before any of the body has been read (an early answer).
 */
export class RawUpstream {
  readonly requests: RawRequest[] = [];
  readonly sockets = new Set<net.Socket>();
  connections = 0;

  private constructor(
    readonly server: net.Server,
    readonly url: string,
  ) {}

  static async start(handler: RawHandler, opts: { readBodies?: boolean } = {}): Promise<RawUpstream> {
    const readBodies = opts.readBodies ?? true;
    let up: RawUpstream | null = null;
    const server = net.createServer((socket) => {
      const u = up!;
      const conn = u.connections++;
      let onConn = 0;
      let buf = Buffer.alloc(0);
      let bodyLeft = 0;
      let pending: Omit<RawRequest, 'body'> | null = null;
      const bodyParts: Buffer[] = [];
      u.sockets.add(socket);
      socket.on('close', () => u.sockets.delete(socket));
      socket.on('error', () => {});
      const deliver = (r: Omit<RawRequest, 'body'>, body: Buffer) => {
        const req = { ...r, body };
        u.requests.push(req);
        handler(req, socket);
      };
      socket.on('data', (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        for (;;) {
          if (pending !== null) {
            const take = Math.min(bodyLeft, buf.length);
            bodyParts.push(buf.subarray(0, take));
            buf = buf.subarray(take);
            bodyLeft -= take;
            if (bodyLeft > 0) return;
            const r = pending;
            pending = null;
            deliver(r, Buffer.concat(bodyParts.splice(0)));
            continue;
          }
          const end = buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
          buf = buf.subarray(end + 4);
          const [method, target] = lines[0]!.split(' ');
          const headers = lines.slice(1).map((l): [string, string] => {
            const colon = l.indexOf(':');
            return [l.slice(0, colon).trim().toLowerCase(), l.slice(colon + 1).trim()];
          });
          const r = { method: method!, target: target!, headers, conn, onConn: onConn++ };
          const cl = Number(header({ headers }, 'content-length') ?? 0);
          if (!readBodies || cl === 0) {
            deliver(r, Buffer.alloc(0));
            if (!readBodies) return; // the rest is body we do not read
            continue;
          }
          pending = r;
          bodyLeft = cl;
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    up = new RawUpstream(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    return up;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A complete response with a Content-Length body. */
export function responseBytes(status: string, headerLines: string[], body = ''): string {
  return `HTTP/1.1 ${status}\r\n${[...headerLines, `Content-Length: ${Buffer.byteLength(body)}`].map((l) => `${l}\r\n`).join('')}\r\n${body}`;
}
