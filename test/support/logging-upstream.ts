/**
 * A raw `net` upstream that logs every byte it receives and reads it with a
 * strict HTTP/1.1 request parser, so a test sees exactly what a proxy sent and
 * where each message ends. Anything but a well-framed request (a bad request
 * line, obs-fold, two framing headers, a chunk size that is not hex, bytes
 * left over when the connection closes) is recorded as a framing problem:
 * on the proxy→upstream hop that is a desync.
 *
 * Each request is answered 200 with what was received echoed in headers
 * (method, target, body length and SHA-1, connection and position on it), so a
 * client can tell which request a response answers.
 */
import { createHash } from 'node:crypto';
import net, { type AddressInfo } from 'node:net';

export interface LoggedRequest {
  readonly method: string;
  readonly target: string;
  /** Lower-case names, in order, repeated names kept. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  readonly body: Buffer;
  readonly framing: 'none' | 'length' | 'chunked';
  readonly conn: number;
  readonly onConn: number;
}

export interface FramingProblem {
  readonly conn: number;
  readonly problem: string;
  /** The first bytes from where parsing stopped (latin1, escaped). */
  readonly at: string;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\/[\x21-\xff]*) HTTP\/1\.1$/;
// Field values: visible characters, obs-text, spaces and tabs inside; no CTLs.
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const MAX_HEAD = 64 * 1024;

type Step = { kind: 'need' } | { kind: 'bad'; problem: string } | { kind: 'req'; used: number; req: Omit<LoggedRequest, 'conn' | 'onConn'> };

function crlfLine(buf: Buffer, from: number): number {
  return buf.indexOf('\r\n', from);
}

/** Reads one request at the start of `buf` (latin1), strictly. */
export function parseOne(buf: Buffer): Step {
  const headEnd = buf.indexOf('\r\n\r\n');
  if (headEnd < 0) return buf.length > MAX_HEAD ? { kind: 'bad', problem: 'head longer than 64 KiB' } : { kind: 'need' };
  const text = buf.subarray(0, headEnd).toString('latin1');
  if (/(^|[^\r])\n|\r(?!\n)/.test(text)) return { kind: 'bad', problem: 'bare CR or LF in the head' };
  const lines = text.split('\r\n');
  const m = REQUEST_LINE.exec(lines[0]!);
  if (!m) return { kind: 'bad', problem: `bad request line ${JSON.stringify(lines[0]!.slice(0, 200))}` };
  const headers: Array<[string, string]> = [];
  for (const line of lines.slice(1)) {
    if (line.startsWith(' ') || line.startsWith('\t')) return { kind: 'bad', problem: 'obs-fold' };
    const colon = line.indexOf(':');
    const name = colon < 0 ? '' : line.slice(0, colon);
    if (!TOKEN.test(name)) return { kind: 'bad', problem: `bad header name ${JSON.stringify(line.slice(0, 100))}` };
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (!FIELD_VALUE.test(value)) return { kind: 'bad', problem: `bad value for ${name}` };
    headers.push([name.toLowerCase(), value]);
  }
  const cls = headers.filter(([n]) => n === 'content-length');
  const tes = headers.filter(([n]) => n === 'transfer-encoding');
  if (cls.length > 1) return { kind: 'bad', problem: 'more than one Content-Length' };
  if (tes.length > 1) return { kind: 'bad', problem: 'more than one Transfer-Encoding' };
  if (cls.length === 1 && tes.length === 1) return { kind: 'bad', problem: 'both Content-Length and Transfer-Encoding' };
  const base = { method: m[1]!, target: m[2]!, headers };
  let pos = headEnd + 4;
  if (tes.length === 1) {
    if (tes[0]![1].toLowerCase() !== 'chunked') return { kind: 'bad', problem: `Transfer-Encoding ${JSON.stringify(tes[0]![1])}` };
    const parts: Buffer[] = [];
    for (;;) {
      const eol = crlfLine(buf, pos);
      if (eol < 0) return buf.length - pos > 32 ? { kind: 'bad', problem: 'chunk size line too long' } : { kind: 'need' };
      const sizeText = buf.subarray(pos, eol).toString('latin1');
      if (!/^[0-9a-fA-F]{1,8}$/.test(sizeText)) return { kind: 'bad', problem: `chunk size ${JSON.stringify(sizeText)}` };
      const size = parseInt(sizeText, 16);
      pos = eol + 2;
      if (size === 0) {
        // Trailer fields, then the empty line.
        for (;;) {
          const end = crlfLine(buf, pos);
          if (end < 0) return { kind: 'need' };
          if (end === pos) {
            pos += 2;
            return { kind: 'req', used: pos, req: { ...base, body: Buffer.concat(parts), framing: 'chunked' } };
          }
          const trailer = buf.subarray(pos, end).toString('latin1');
          const c = trailer.indexOf(':');
          if (c < 0 || !TOKEN.test(trailer.slice(0, c))) return { kind: 'bad', problem: `bad trailer ${JSON.stringify(trailer.slice(0, 100))}` };
          pos = end + 2;
        }
      }
      if (buf.length < pos + size + 2) return { kind: 'need' };
      parts.push(buf.subarray(pos, pos + size));
      if (buf[pos + size] !== 13 || buf[pos + size + 1] !== 10) return { kind: 'bad', problem: 'chunk not followed by CRLF' };
      pos += size + 2;
    }
  }
  if (cls.length === 1) {
    const v = cls[0]![1];
    if (!/^\d{1,15}$/.test(v)) return { kind: 'bad', problem: `Content-Length ${JSON.stringify(v)}` };
    const n = Number(v);
    if (buf.length < pos + n) return { kind: 'need' };
    return { kind: 'req', used: pos + n, req: { ...base, body: buf.subarray(pos, pos + n), framing: 'length' } };
  }
  return { kind: 'req', used: pos, req: { ...base, body: Buffer.alloc(0), framing: 'none' } };
}

function escape(b: Buffer): string {
  return JSON.stringify(b.subarray(0, 160).toString('latin1'));
}

export class LoggingUpstream {
  readonly requests: LoggedRequest[] = [];
  readonly problems: FramingProblem[] = [];
  /** Connections that closed in the middle of a request body (the proxy gave up on it): not a desync. */
  readonly truncated: Array<{ conn: number; bytes: number }> = [];
  /** Every byte received, per connection in accept order. */
  readonly log: Buffer[][] = [];
  readonly #sockets = new Set<net.Socket>();
  #wakers = new Set<() => void>();

  private constructor(
    readonly server: net.Server,
    readonly url: string,
  ) {}

  static async start(): Promise<LoggingUpstream> {
    let up: LoggingUpstream | null = null;
    const server = net.createServer((socket) => up!.#accept(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    up = new LoggingUpstream(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    return up;
  }

  #accept(socket: net.Socket): void {
    const conn = this.log.length;
    const chunks: Buffer[] = [];
    this.log.push(chunks);
    this.#sockets.add(socket);
    let buf: Buffer = Buffer.alloc(0);
    let onConn = 0;
    let broken = false;
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      if (broken) return;
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      for (;;) {
        const step = parseOne(buf);
        if (step.kind === 'need') break;
        if (step.kind === 'bad') {
          broken = true;
          this.problems.push({ conn, problem: step.problem, at: escape(buf) });
          this.#wake();
          socket.destroy();
          return;
        }
        const req: LoggedRequest = { ...step.req, body: Buffer.from(step.req.body), conn, onConn: onConn++ };
        buf = buf.subarray(step.used);
        this.requests.push(req);
        this.#answer(socket, req);
        this.#wake();
      }
    });
    socket.on('close', () => {
      this.#sockets.delete(socket);
      if (!broken && buf.length > 0) {
        // A complete head whose body never finished is a request the proxy abandoned; anything else
        // (a partial head, stray bytes) is a prefix of a request nobody framed.
        const headEnd = buf.indexOf('\r\n\r\n');
        if (headEnd >= 0 && parseOne(buf.subarray(0, headEnd + 4)).kind !== 'bad') this.truncated.push({ conn, bytes: buf.length });
        else this.problems.push({ conn, problem: `${buf.length} bytes left over at close`, at: escape(buf) });
      }
      this.#wake();
    });
  }

  #answer(socket: net.Socket, req: LoggedRequest): void {
    const sha = createHash('sha1').update(req.body).digest('hex');
    const body = `${req.method} ${req.target}`;
    const head = [
      'HTTP/1.1 200 OK',
      `x-echo-method: ${req.method}`,
      `x-echo-target: ${req.target}`,
      `x-echo-body-length: ${req.body.length}`,
      `x-echo-body-sha1: ${sha}`,
      `x-echo-framing: ${req.framing}`,
      `x-echo-conn: ${req.conn}.${req.onConn}`,
      'content-type: text/plain',
      `content-length: ${Buffer.byteLength(body, 'latin1')}`,
    ].join('\r\n');
    socket.write(Buffer.from(`${head}\r\n\r\n${req.method === 'HEAD' ? '' : body}`, 'latin1'));
  }

  #wake(): void {
    for (const w of this.#wakers) w();
  }

  /** Resolves once `check` holds (re-checked whenever something arrives), or throws after `timeoutMs`. */
  async until(what: string, check: () => boolean, timeoutMs = 5_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!check()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.#wakers.delete(done);
          resolve();
        };
        const timer = setTimeout(done, Math.min(left, 100));
        this.#wakers.add(done);
      });
    }
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

// ---------------------------------------------------------------- the client side, read as strictly

export interface WireResponse {
  readonly status: number;
  /** Lower-case names, in order. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  readonly body: Buffer;
}

export function headerOf(r: Pick<WireResponse, 'headers'>, name: string): string | undefined {
  const all = r.headers.filter(([n]) => n === name).map(([, v]) => v);
  return all.length === 0 ? undefined : all.join(', ');
}

type ResStep = { kind: 'need' } | { kind: 'bad'; problem: string } | { kind: 'res'; used: number; res: WireResponse };

/** One response at the start of `buf`; `closed`: no more bytes will come (a close-delimited body ends here). */
export function parseResponse(buf: Buffer, head: boolean, closed: boolean): ResStep {
  const headEnd = buf.indexOf('\r\n\r\n');
  if (headEnd < 0) return { kind: 'need' };
  const lines = buf.subarray(0, headEnd).toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0]!);
  if (!m) return { kind: 'bad', problem: `bad status line ${JSON.stringify(lines[0]!.slice(0, 100))}` };
  const status = Number(m[1]);
  const headers: Array<[string, string]> = [];
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0 || !TOKEN.test(line.slice(0, colon))) return { kind: 'bad', problem: `bad header line ${JSON.stringify(line.slice(0, 100))}` };
    headers.push([line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()]);
  }
  let pos = headEnd + 4;
  if (status < 200 || status === 204 || status === 304 || head) return { kind: 'res', used: pos, res: { status, headers, body: Buffer.alloc(0) } };
  const te = headerOf({ headers }, 'transfer-encoding');
  const cl = headerOf({ headers }, 'content-length');
  if (te !== undefined && cl !== undefined) return { kind: 'bad', problem: 'response with Content-Length and Transfer-Encoding' };
  if (te !== undefined) {
    if (te.toLowerCase() !== 'chunked') return { kind: 'bad', problem: `response Transfer-Encoding ${te}` };
    const parts: Buffer[] = [];
    for (;;) {
      const eol = buf.indexOf('\r\n', pos);
      if (eol < 0) return { kind: 'need' };
      const sizeText = buf.subarray(pos, eol).toString('latin1');
      if (!/^[0-9a-fA-F]{1,8}$/.test(sizeText)) return { kind: 'bad', problem: `response chunk size ${JSON.stringify(sizeText)}` };
      const size = parseInt(sizeText, 16);
      pos = eol + 2;
      if (size === 0) {
        for (;;) {
          const end = buf.indexOf('\r\n', pos);
          if (end < 0) return { kind: 'need' };
          const empty = end === pos;
          pos = end + 2;
          if (empty) return { kind: 'res', used: pos, res: { status, headers, body: Buffer.concat(parts) } };
        }
      }
      if (buf.length < pos + size + 2) return { kind: 'need' };
      parts.push(buf.subarray(pos, pos + size));
      if (buf[pos + size] !== 13 || buf[pos + size + 1] !== 10) return { kind: 'bad', problem: 'response chunk not followed by CRLF' };
      pos += size + 2;
    }
  }
  if (cl !== undefined) {
    if (!/^\d{1,15}$/.test(cl)) return { kind: 'bad', problem: `response Content-Length ${cl}` };
    const n = Number(cl);
    if (buf.length < pos + n) return { kind: 'need' };
    return { kind: 'res', used: pos + n, res: { status, headers, body: buf.subarray(pos, pos + n) } };
  }
  if (!closed) return { kind: 'need' };
  return { kind: 'res', used: buf.length, res: { status, headers, body: buf.subarray(pos) } };
}

/**
 * One client connection written to byte for byte whose responses are read
 * strictly and in order: a malformed response or bytes left over after the
 * last one is a desync on the client side.
 */
export class WireClient {
  readonly socket: net.Socket;
  readonly responses: WireResponse[] = [];
  /** Interim (1xx) responses seen. */
  interim = 0;
  problem: string | null = null;
  #buf: Buffer = Buffer.alloc(0);
  #closed = false;
  #wake: (() => void) | null = null;
  /** The methods of the requests written, in order, so a HEAD's response is read without a body. */
  readonly methods: string[] = [];

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (c: Buffer) => {
      this.#buf = this.#buf.length === 0 ? c : Buffer.concat([this.#buf, c]);
      this.#parse();
    });
    const end = () => {
      if (this.#closed) return;
      this.#closed = true;
      this.#parse();
    };
    socket.on('end', end);
    socket.on('close', end);
    socket.on('error', end);
  }

  static async connect(url: string): Promise<WireClient> {
    const { hostname, port } = new URL(url);
    const socket = net.connect({ host: hostname, port: Number(port) });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new WireClient(socket);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Bytes received that are not (yet) part of a whole response. */
  get leftover(): number {
    return this.#buf.length;
  }

  write(data: string | Buffer, ...methods: string[]): Promise<void> {
    this.methods.push(...methods);
    if (this.#closed) return Promise.resolve();
    return new Promise((resolve) => this.socket.write(data, () => resolve()));
  }

  close(): void {
    this.socket.destroy();
  }

  #parse(): void {
    while (this.problem === null && this.#buf.length > 0) {
      const i = this.responses.length;
      const step = parseResponse(this.#buf, this.methods[i] === 'HEAD', this.#closed);
      if (step.kind === 'need') break;
      if (step.kind === 'bad') {
        this.problem = step.problem;
        break;
      }
      this.#buf = this.#buf.subarray(step.used);
      if (step.res.status < 200 && step.res.status !== 101) this.interim++;
      else this.responses.push(step.res);
    }
    this.#wake?.();
  }

  /** Waits until `check` holds or the connection is closed (and fully read), up to `timeoutMs`; false on timeout. */
  async until(check: (c: WireClient) => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (check(this)) return true;
      if (this.#closed || this.problem !== null) return check(this);
      const left = deadline - Date.now();
      if (left <= 0) return false;
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
