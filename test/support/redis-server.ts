/**
 * A real `redis-server` (Debian package redis-server) for the tests: one per
 * call, on a free loopback port, in a temporary directory, without
 * persistence — a restart comes back empty, like a Redis that lost its data.
 *
 *   const redis = await startRedis(t);   // null: skipped (binary missing, not CI)
 *   if (!redis) return;
 *   … redis.url …; await redis.kill(); await redis.restart();
 *
 * Missing binary: under CI the test fails (CI must install it, see .ci/run);
 * elsewhere it is skipped with what to install (the rule of requireBinary in
 * helpers.ts). Without a TestContext a missing binary throws.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { freePort, requireBinary } from './helpers.js';

export interface RedisServer {
  /** redis://127.0.0.1:PORT */
  readonly url: string;
  readonly port: number;
  /** The running process' pid (changes with restart). */
  readonly pid: number | undefined;
  /** SIGTERM, then waits for the process to exit. */
  stop(): Promise<void>;
  /** SIGKILL, then waits for the process to exit. */
  kill(): Promise<void>;
  /** Starts again on the same port (empty: nothing is persisted); stops a running one first. */
  restart(): Promise<void>;
}

export interface RedisServerOptions {
  /** Extra redis-server arguments, e.g. ['--maxmemory', '10mb']. */
  readonly args?: readonly string[];
  /** Milliseconds to wait for PING to answer (default 10 000). */
  readonly startTimeoutMs?: number;
}

const BINARY = 'redis-server';
const DEBIAN_PACKAGE = 'redis-server';

/** Every Redis process (server or sentinel) still running, killed if the test process exits without stopping them. */
const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/**
 * A Redis binary (redis-server, redis-sentinel) started in `cwd`, killed if
 * the test process exits while it is still running; `output()` is the last
 * 4000 characters it wrote (stdout and stderr).
 */
export function spawnRedisProcess(bin: string, args: readonly string[], cwd: string): { proc: ChildProcess; output(): string } {
  const proc = spawn(bin, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(proc);
  proc.once('exit', () => running.delete(proc));
  let output = '';
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString('utf8')).slice(-4000);
  };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  return { proc, output: () => output };
}

/**
 * Why the Redis tests cannot run here: false when `redis-server` is on PATH
 * (or under CI, where a missing binary must fail, not skip), otherwise the
 * skip message with the install hint — for `describe(name, { skip })`.
 */
export function redisSkipReason(): string | false {
  if (findBinary() !== null || process.env.CI) return false;
  return `${BINARY} not found: install the Debian package ${DEBIAN_PACKAGE} to run this test`;
}

export function startRedis(t: TestContext, opts?: RedisServerOptions): Promise<RedisServer | null>;
export function startRedis(t?: undefined, opts?: RedisServerOptions): Promise<RedisServer>;
export async function startRedis(t?: TestContext, opts: RedisServerOptions = {}): Promise<RedisServer | null> {
  let binary: string | null;
  if (t) {
    binary = requireBinary(t, BINARY, DEBIAN_PACKAGE);
    if (binary === null) return null;
  } else {
    binary = findBinary();
    if (binary === null) {
      throw new Error(process.env.CI ? `${BINARY} is required in CI (Debian package ${DEBIAN_PACKAGE})` : `${BINARY} not found: install the Debian package ${DEBIAN_PACKAGE}`);
    }
  }
  const bin = binary;
  const dir = mkdtempSync(join(tmpdir(), 'sluice-redis-'));
  const timeoutMs = opts.startTimeoutMs ?? 10_000;
  let child: ChildProcess | null = null;
  let port = 0;
  let generation = 0;

  const launch = async (onPort: number): Promise<ChildProcess> => {
    // A fresh data directory per start: nothing from an earlier run can be loaded.
    const data = join(dir, String(generation++));
    mkdirSync(data);
    const args = [
      '--port', String(onPort),
      '--bind', '127.0.0.1',
      '--save', '',
      '--appendonly', 'no',
      '--dir', data,
      '--daemonize', 'no',
      '--logfile', '',
      ...(opts.args ?? []),
    ];
    const { proc, output } = spawnRedisProcess(bin, args, data);
    const exited = new Promise<string>((resolve) => {
      proc.once('exit', (code, signal) => resolve(`redis-server exited (${signal ?? `code ${code}`}) before answering PING:\n${output()}`));
      proc.once('error', (err) => resolve(`redis-server failed to start: ${err.message}`));
    });
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const outcome = await Promise.race([ping(onPort).then((ok) => (ok ? 'up' : null)), exited]);
      if (outcome === 'up') return proc;
      if (outcome !== null) throw new Error(outcome);
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`redis-server on port ${onPort} did not answer PING within ${timeoutMs} ms:\n${output()}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  // The free port can be taken by someone else between finding and binding it: try a few.
  for (let attempt = 1; ; attempt++) {
    const candidate = await freePort();
    try {
      child = await launch(candidate);
      port = candidate;
      break;
    } catch (err) {
      if (attempt >= 3) {
        rmSync(dir, { recursive: true, force: true });
        throw err;
      }
    }
  }

  const signal = async (sig: NodeJS.Signals): Promise<void> => {
    const proc = child;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill(sig);
    await gone;
  };

  const server: RedisServer = {
    url: `redis://127.0.0.1:${port}`,
    port,
    get pid() {
      return child?.pid;
    },
    stop: () => signal('SIGTERM'),
    kill: () => signal('SIGKILL'),
    restart: async () => {
      await signal('SIGTERM');
      child = await launch(port);
    },
  };
  t?.after(async () => {
    await server.kill();
    rmSync(dir, { recursive: true, force: true });
  });
  return server;
}

function findBinary(): string | null {
  try {
    return execFileSync('sh', ['-c', `command -v ${BINARY}`], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

/** Whether Redis on 127.0.0.1:port answers PING with PONG (false on refusal, error or 500 ms silence). */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let reply = '';
    const finish = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => finish(false));
    socket.once('error', () => finish(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk: Buffer) => {
      reply += chunk.toString('latin1');
      if (reply.includes('\r\n')) finish(reply.startsWith('+PONG'));
    });
    socket.once('end', () => finish(false));
  });
}
