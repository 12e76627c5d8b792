/**
 * A Redis Sentinel deployment for the tests, all on free loopback ports and
 * without persistence: one master, one replica (both `redis-server`, see
 * redis-server.ts) and three sentinels (Debian package redis-sentinel), each
 * sentinel with its own writable config file in a temporary directory
 * (sentinels rewrite their config).
 *
 *   const s = await startSentinels(t);   // null: skipped (binary missing, not CI)
 *   if (!s) return;
 *   … s.url …  // sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/sluicem
 *   const { ms } = await s.failover(); // SENTINEL FAILOVER, until the replica is master everywhere
 *
 * Resolves once every sentinel sees the master, the replica (link up) and
 * the two other sentinels, so a failover can be forced at once.
 * Missing binaries follow requireBinary's rule (helpers.ts): fail under CI,
 * otherwise skip with what to install. Everything is killed after the test.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { Redis } from 'ioredis';
import { requireBinary, waitFor } from './helpers.js';
import { freePort } from './helpers.js';
import { spawnRedisProcess, startRedis, type RedisServer } from './redis-server.js';

export interface SentinelDeployment {
  /** The monitored master's name. */
  readonly masterName: string;
  /** sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/{masterName} */
  readonly url: string;
  /** The master at start (a replica after a failover). */
  readonly master: RedisServer;
  /** The replica at start (the master after a failover). */
  readonly replica: RedisServer;
  readonly sentinelPorts: readonly number[];
  /** One command to the redis-server or sentinel on 127.0.0.1:port, on a connection of its own. */
  command(port: number, ...args: Array<string | number>): Promise<unknown>;
  /** The port every sentinel reports as the master's (null while they disagree). */
  masterPort(): Promise<number | null>;
  /**
   * SENTINEL FAILOVER on the first sentinel, then waits until the former
   * replica reports ROLE master and every sentinel names it. `ms`: how long that took.
   */
  failover(timeoutMs?: number): Promise<{ newMasterPort: number; ms: number }>;
}

export interface SentinelOptions {
  readonly masterName?: string;
  /** down-after-milliseconds (default 1000). */
  readonly downAfterMs?: number;
  /** failover-timeout (default 5000). */
  readonly failoverTimeoutMs?: number;
  /** How long to wait for the deployment to settle (default 15 000 ms). */
  readonly startTimeoutMs?: number;
}

export async function startSentinels(t: TestContext, opts: SentinelOptions = {}): Promise<SentinelDeployment | null> {
  const sentinelBin = requireBinary(t, 'redis-sentinel', 'redis-sentinel');
  if (sentinelBin === null) return null;
  const name = opts.masterName ?? 'sluicem';
  const startTimeoutMs = opts.startTimeoutMs ?? 15_000;
  // No delay before a full sync (7.0 waits 5 s by default for more replicas to join): the
  // initial sync, and the former master's resync after a failover, start at once.
  const fast = ['--repl-diskless-sync-delay', '0'];
  const master = await startRedis(t, { args: fast });
  if (master === null) return null;
  const replica = await startRedis(t, { args: [...fast, '--replicaof', '127.0.0.1', String(master.port)] });
  if (replica === null) return null;

  const command = async (port: number, ...args: Array<string | number>): Promise<unknown> => {
    const c = new Redis({ host: '127.0.0.1', port, lazyConnect: true, connectTimeout: 1000, commandTimeout: 1000, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
    c.on('error', () => {});
    try {
      await c.connect();
      return await c.call(String(args[0]), ...args.slice(1).map(String));
    } finally {
      c.disconnect();
    }
  };
  const quietly = (port: number, ...args: Array<string | number>) => command(port, ...args).catch(() => null);

  await waitFor('the replica in sync with the master', async () => /master_link_status:up/.test(String(await quietly(replica.port, 'INFO', 'replication'))), startTimeoutMs, 50);

  const dir = mkdtempSync(join(tmpdir(), 'sluice-sentinel-'));
  const children: ChildProcess[] = [];
  t.after(async () => {
    await Promise.all(
      children.map(async (c) => {
        if (c.exitCode !== null || c.signalCode !== null) return;
        const gone = new Promise((r) => c.once('exit', r));
        c.kill('SIGKILL');
        await gone;
      }),
    );
    rmSync(dir, { recursive: true, force: true });
  });

  const launch = async (i: number, port: number): Promise<ChildProcess> => {
    const conf = join(dir, `sentinel-${i}-${port}.conf`);
    writeFileSync(
      conf,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        'protected-mode no',
        'daemonize no',
        'logfile ""',
        `dir ${dir}`,
        // Before `monitor`: addresses stay as given, no DNS.
        'sentinel resolve-hostnames no',
        `sentinel monitor ${name} 127.0.0.1 ${master.port} 2`,
        `sentinel down-after-milliseconds ${name} ${opts.downAfterMs ?? 1000}`,
        `sentinel failover-timeout ${name} ${opts.failoverTimeoutMs ?? 5000}`,
        `sentinel parallel-syncs ${name} 1`,
        '',
      ].join('\n'),
    );
    const { proc, output } = spawnRedisProcess(sentinelBin, [conf], dir);
    let exited: string | null = null;
    proc.once('exit', (code, signal) => (exited = `redis-sentinel exited (${signal ?? `code ${code}`}):\n${output()}`));
    proc.once('error', (err) => (exited = `redis-sentinel failed to start: ${err.message}`));
    const deadline = Date.now() + 5000;
    for (;;) {
      if ((await quietly(port, 'PING')) === 'PONG') return proc;
      if (exited !== null) throw new Error(exited);
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`redis-sentinel on port ${port} did not answer PING:\n${output()}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  const sentinelPorts: number[] = [];
  for (let i = 0; i < 3; i++) {
    // The free port can be taken between finding and binding it: try a few.
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      try {
        children.push(await launch(i, port));
        sentinelPorts.push(port);
        break;
      } catch (err) {
        if (attempt >= 3) throw err;
      }
    }
  }

  /** SENTINEL REPLICAS/SENTINELS answers: arrays of flat [key, value, …] arrays. */
  const records = async (port: number, ...args: string[]): Promise<Array<Record<string, string>>> => {
    const reply = await quietly(port, 'SENTINEL', ...args);
    if (!Array.isArray(reply)) return [];
    return reply.map((flat: string[]) => Object.fromEntries(flat.flatMap((v, i) => (i % 2 === 0 ? [[v, flat[i + 1]!]] : []))));
  };

  const masterPort = async (): Promise<number | null> => {
    const ports = await Promise.all(
      sentinelPorts.map(async (p) => {
        const addr = await quietly(p, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name);
        return Array.isArray(addr) ? Number(addr[1]) : null;
      }),
    );
    return ports.every((p) => p !== null && p === ports[0]) ? ports[0]! : null;
  };

  await waitFor(
    'every sentinel to see the replica and the two other sentinels',
    async () => {
      for (const p of sentinelPorts) {
        const replicas = await records(p, 'REPLICAS', name);
        if (!replicas.some((r) => Number(r.port) === replica.port && r.flags === 'slave' && r['master-link-status'] === 'ok')) return false;
        const peers = await records(p, 'SENTINELS', name);
        if (peers.filter((s) => !s.flags?.includes('down')).length !== 2) return false;
      }
      return (await masterPort()) === master.port;
    },
    startTimeoutMs,
    100,
  );

  return {
    masterName: name,
    url: `sentinel://${sentinelPorts.map((p) => `127.0.0.1:${p}`).join(',')}/${name}`,
    master,
    replica,
    sentinelPorts,
    command,
    masterPort,
    failover: async (timeoutMs = 15_000) => {
      const started = Date.now();
      const before = await masterPort();
      const target = before === master.port ? replica.port : master.port;
      const ok = await command(sentinelPorts[0]!, 'SENTINEL', 'FAILOVER', name);
      if (ok !== 'OK') throw new Error(`SENTINEL FAILOVER answered ${String(ok)}`);
      await waitFor(
        `port ${target} to be master for every sentinel`,
        async () => {
          const role = await quietly(target, 'ROLE');
          return Array.isArray(role) && role[0] === 'master' && (await masterPort()) === target;
        },
        timeoutMs,
        50,
      );
      return { newMasterPort: target, ms: Date.now() - started };
    },
  };
}
