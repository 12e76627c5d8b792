import http from 'node:http';
import https from 'node:https';
import net from 'node:net';

/** `n` distinct free TCP ports on 127.0.0.1 (bind port 0, held together so they differ, then released). */
export async function freePorts(n: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < n; i++) {
      const srv = net.createServer();
      servers.push(srv);
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(0, '127.0.0.1', () => resolve());
      });
      const addr = srv.address();
      if (!addr || typeof addr === 'string') throw new Error('no port assigned');
      ports.push(addr.port);
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}

export interface HttpResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One GET on a fresh connection (no agent), with a timeout; an https: URL is checked against `ca` (PEM). */
export function httpGet(url: string, opts: { timeoutMs?: number; headers?: Record<string, string>; ca?: string } = {}): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const get = url.startsWith('https:') ? https.get : http.get;
    const req = get(url, { agent: false, headers: opts.headers, timeout: opts.timeoutMs ?? 2000, ...(opts.ca ? { ca: opts.ca } : {}) }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout after ${opts.timeoutMs ?? 2000} ms`)));
    req.on('error', reject);
  });
}

/**
 * Poll `url` until it answers 200, `isDead()` turns true, or `timeoutMs` passes.
 * Resolves null when ready, else a reason.
 */
export function waitFor200(url: string, timeoutMs: number, isDead: () => boolean): Promise<string | null> {
  return pollFor200(async () => (await httpGet(url, { timeoutMs: 1000 })).status, timeoutMs, isDead);
}

/** Asks `status()` every 100 ms until it is 200, `isDead()` turns true, or `timeoutMs` passes; null when ready, else a reason. */
export async function pollFor200(status: () => Promise<number>, timeoutMs: number, isDead: () => boolean): Promise<string | null> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (isDead()) return 'the process exited';
    try {
      const s = await status();
      if (s === 200) return null;
      last = `HTTP ${s}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return `not ready within ${Math.round(timeoutMs / 1000)} s (last: ${last})`;
}

/**
 * One inline command to a Redis server on 127.0.0.1:`port` (e.g. `PING`, `DBSIZE`) on a fresh
 * connection; resolves the first reply line (`+PONG`, `:3`, `-ERR …`). Enough for the bench's
 * readiness check and a look at what the proxy wrote, without a Redis client.
 */
export function redisInline(port: number, command: string, timeoutMs = 1000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    const done = (err: Error | null, line?: string): void => {
      sock.destroy();
      if (err) reject(err);
      else resolve(line!);
    };
    sock.setTimeout(timeoutMs, () => done(new Error(`redis ${command}: timeout after ${timeoutMs} ms`)));
    sock.on('error', (err) => done(err));
    sock.on('connect', () => sock.write(`${command}\r\n`));
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      buf += d;
      const eol = buf.indexOf('\r\n');
      if (eol >= 0) done(null, buf.slice(0, eol));
    });
    sock.on('end', () => done(new Error(`redis ${command}: connection closed without a reply`)));
  });
}

/** Poll until Redis on `port` answers PING with +PONG, `isDead()` turns true, or `timeoutMs` passes. Null when ready. */
export async function waitForRedis(port: number, timeoutMs: number, isDead: () => boolean): Promise<string | null> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (isDead()) return 'the process exited';
    try {
      const r = await redisInline(port, 'PING');
      if (r === '+PONG') return null;
      last = r;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return `not ready within ${Math.round(timeoutMs / 1000)} s (last: ${last})`;
}

/** Poll until something accepts TCP connections on 127.0.0.1:`port`, `isDead()` turns true, or `timeoutMs` passes. Null when ready. */
export async function waitForPort(port: number, timeoutMs: number, isDead: () => boolean): Promise<string | null> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (isDead()) return 'the process exited';
    const ok = await new Promise<boolean>((resolve) => {
      const sock = net.connect({ host: '127.0.0.1', port });
      sock.once('connect', () => {
        sock.destroy();
        resolve(true);
      });
      sock.once('error', (err) => {
        last = err.message;
        resolve(false);
      });
    });
    if (ok) return null;
    await new Promise((r) => setTimeout(r, 100));
  }
  return `not ready within ${Math.round(timeoutMs / 1000)} s (last: ${last})`;
}
