/**
 * What the tests share: real upstream servers on loopback, a Sluice started
 * in-process with the same wiring as the CLI, waiting on conditions with a
 * deadline, and finding external binaries.
 */
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import { Pool } from 'undici';
import { runSluice, type RunningSluice, type RunOptions } from '../../cli/run-sluice.js';
import { silentLogger } from '../../common/logger.js';
import { validateConfig } from '../../config/config.js';

export interface Upstream {
  readonly url: string;
  readonly port: number;
  readonly server: http.Server;
  /** Requests received, in order. */
  readonly seen: Array<{ method: string; url: string; headers: http.IncomingHttpHeaders; body: Buffer }>;
  close(): Promise<void>;
}

export type UpstreamHandler = (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => void;

/** A real HTTP server on 127.0.0.1 that records what it receives; answers with `name` by default. */
export async function startUpstream(name: string, handler?: UpstreamHandler, opts: { record?: boolean } = {}): Promise<Upstream> {
  const seen: Upstream['seen'] = [];
  const record = opts.record ?? true;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (record) seen.push({ method: req.method!, url: req.url!, headers: req.headers, body });
      if (handler) return handler(req, res, body);
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(name);
    });
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    server,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A loopback port nobody listens on right now (bind port 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** An upstream URL that refuses connections: a port that was free a moment ago. */
export async function refusingUrl(): Promise<string> {
  return `http://127.0.0.1:${await freePort()}`;
}

/** Starts Sluice in-process on ephemeral loopback ports with a config object (as it would be in sluice.yaml). */
export async function startSluice(config: Record<string, unknown>, opts: RunOptions = {}): Promise<RunningSluice> {
  const full = { listen: '127.0.0.1:0', admin: { listen: '127.0.0.1:0' }, ...config };
  return runSluice(validateConfig(full, { env: {} }), silentLogger(), opts);
}

/** Polls `check` until it returns a truthy value or the deadline passes (then throws with `what`). */
type Falsy = null | undefined | false | 0 | '';

export async function waitFor<T>(what: string, check: () => T | Falsy | Promise<T | Falsy>, timeoutMs = 10_000, everyMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as T;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * The path of an external binary, or — on a user's machine — a skip with
 * what to install. Under CI a missing binary fails the test: CI must have it.
 */
export function requireBinary(t: TestContext, name: string, debianPackage: string): string | null {
  try {
    return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim();
  } catch {
    if (process.env.CI) throw new Error(`${name} is required in CI (Debian package ${debianPackage})`);
    t.skip(`${name} not found: install the Debian package ${debianPackage} to run this test`);
    return null;
  }
}

/** A GET through Sluice, body read as text. */
export async function get(
  pool: Pool,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const r = await pool.request({ path, method: 'GET', headers });
  return { status: r.statusCode, headers: r.headers, body: await r.body.text() };
}

/** Runs `n` tasks with at most `concurrency` at once. */
export async function inParallel<T>(n: number, concurrency: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const results = new Array<T>(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, concurrency) }, async () => {
      while (next < n) {
        const i = next++;
        results[i] = await task(i);
      }
    }),
  );
  return results;
}

export { Pool };
