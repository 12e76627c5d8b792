/**
 * `npm run bench` — proxy overhead benchmark, all cases side by side in one run:
 *
 *   a  direct           wrk → upstream
 *   b  bare             wrk → fastify + @fastify/http-proxy → upstream
 *   c  sluice           wrk → Sluice (v1/v2 90/10, sticky x-user-id, metrics) → upstreams
 *   d  sluice+mirror    as c plus a 10 % shadow copy to v2
 *   e  nginx            wrk → nginx (keepalive upstream pool) → upstream
 *   f  sluice-redis     as c, but `sluice proxy --redis` (data plane in Redis mode) against a
 *                       redis-server of its own; Redis is never on the request path
 *
 * Runs alternate (a b c d e f a b c d e f …), each measured run preceded by a
 * discarded warm-up. See bench/README.md.
 *
 * Env: BENCH_DURATION (s, default 10), BENCH_ROUNDS (2), BENCH_CONNECTIONS (50),
 * BENCH_WARMUP (s, 2), BENCH_CASES (e.g. "abe"), BENCH_READY_TIMEOUT (s, 10),
 * BENCH_SLUICE_LOG_LEVEL (warn), BENCH_KEEP_TMP=1. Flag: --quick (3 s, 1 round).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { nginxConf, redisServerArgs, sluiceYaml } from './lib/configs.js';
import { freePorts, httpGet, redisInline, waitFor200, waitForRedis } from './lib/net.js';
import {
  clkTck,
  commandExists,
  cpuSecondsBetween,
  hasExited,
  killAll,
  killAllSync,
  killManaged,
  logTail,
  spawnManaged,
  treeTicks,
  type Managed,
} from './lib/procs.js';
import { diff, median, ratio } from './lib/stats.js';
import { runWrk, wrkArgs, type WrkParams, type WrkResult } from './lib/wrk.js';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(BENCH_DIR, '..');
const NGINX = '/usr/sbin/nginx';
const REDIS_SERVER = 'redis-server';
/** Key prefix case f gives `sluice proxy --redis-prefix`. */
const REDIS_PREFIX = 'bench:';
/** Issue 4, acceptance 7: Redis mode vs in-memory, same run. */
const REDIS_TARGET = { rpsRatioMin: 0.97, p99DeltaMaxMs: 0.5 } as const;

// ------------------------------------------------------------------ options

function usage(): never {
  console.log(`usage: npm run bench [-- --quick]

  --quick                 3 s per run, 1 round (smoke test)
env BENCH_DURATION=10     seconds per measured run
    BENCH_ROUNDS=2        rounds (each case once per round; odd rounds a→f, even rounds f→a)
    BENCH_CONNECTIONS=50  wrk connections (1 thread)
    BENCH_WARMUP=2        seconds of discarded warm-up before each measured run (0: none)
    BENCH_CASES=abcdef    subset of cases to run
    BENCH_READY_TIMEOUT=10  seconds a proxy gets to become ready
    BENCH_SLUICE_LOG_LEVEL=warn  SLUICE_LOG_LEVEL given to the Sluice processes
    BENCH_KEEP_TMP=1      keep the temp dir (configs, child logs)
    BENCH_SLUICE_NODE_ARGS='--cpu-prof --cpu-prof-dir=DIR'  extra node flags for the Sluice processes`);
  process.exit(0);
}

const argv = process.argv.slice(2);
if (argv.includes('--help') || argv.includes('-h')) usage();
for (const a of argv) {
  if (a !== '--quick') {
    console.error(`bench: unknown argument ${a} (try --help)`);
    process.exit(2);
  }
}
const quick = argv.includes('--quick');

function envInt(name: string, def: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) {
    console.error(`bench: ${name}=${raw} must be an integer >= ${min}`);
    process.exit(2);
  }
  return n;
}

const opts = {
  durationS: envInt('BENCH_DURATION', quick ? 3 : 10, 1),
  rounds: envInt('BENCH_ROUNDS', quick ? 1 : 2, 1),
  connections: envInt('BENCH_CONNECTIONS', 50, 1),
  warmupS: envInt('BENCH_WARMUP', 2, 0),
  readyTimeoutMs: envInt('BENCH_READY_TIMEOUT', 10, 1) * 1000,
  cases: (process.env['BENCH_CASES'] ?? 'abcdef').toLowerCase(),
  sluiceLogLevel: process.env['BENCH_SLUICE_LOG_LEVEL'] ?? 'warn',
  keepTmp: process.env['BENCH_KEEP_TMP'] === '1',
  /** Extra node flags for the Sluice processes (c, d, f), e.g. `--cpu-prof --cpu-prof-dir=/tmp/p`. */
  sluiceNodeArgs: (process.env['BENCH_SLUICE_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== ''),
};

const wrkParams: WrkParams = {
  threads: 1,
  connections: opts.connections,
  durationS: opts.durationS,
  script: path.join(BENCH_DIR, 'wrk-sticky.lua'),
};

// ------------------------------------------------------------------- cases

type CaseId = 'a' | 'b' | 'c' | 'd' | 'e' | 'f';

interface BenchCase {
  id: CaseId;
  name: string;
  description: string;
  url: string | null;
  proc: Managed | null;
  /** Process-tree roots whose CPU is the proxy's (empty for direct). */
  cpuRoots: number[];
  /**
   * Processes the proxy needs besides itself (f: its redis-server). Their CPU is recorded
   * apart from the proxy's; if one dies between runs the case is restarted like a dead proxy.
   */
  helpers: Managed[];
  adminUrl: string | null;
  /** (Re)starts the proxy: null when ready, else why not. Null for direct. */
  launch: (() => Promise<string | null>) | null;
  /** Why and when the proxy had to be restarted between runs. */
  restarts: string[];
  status: 'pending' | 'ready' | 'failed' | 'skipped';
  note: string | null;
}

interface RunRecord {
  round: number;
  case: CaseId;
  startedAt: string;
  url: string;
  warmup: { requests: number; rps: number; errors: number } | { error: string } | null;
  wrk: WrkResult | null;
  wrkOutput: string | null;
  error: string | null;
  proxyCpuSeconds: number | null;
  proxyCpuUsPerReq: number | null;
  upstreamCpuSeconds: number | null;
  upstreamCpuUsPerReq: number | null;
  /** f only: CPU of its redis-server during the measured run (not in proxyCpu*: Redis is off the request path). */
  redisCpuSeconds: number | null;
  redisCpuUsPerReq: number | null;
  /** Set when the proxy had died and was restarted just before this run. */
  restartedBefore: string | null;
  /** Requests each upstream served during the measured run (includes mirror copies). */
  upstreamRequests: { v1: number; v2: number } | null;
}

const ALL_CASES: ReadonlyArray<Pick<BenchCase, 'id' | 'name' | 'description'>> = [
  { id: 'a', name: 'direct', description: 'wrk -> upstream (no proxy)' },
  { id: 'b', name: 'bare http-proxy', description: 'fastify + @fastify/http-proxy, fixed upstream, logger off' },
  { id: 'c', name: 'sluice', description: 'Sluice, 1 route, v1/v2 90/10, sticky x-user-id, metrics on' },
  { id: 'd', name: 'sluice+mirror', description: 'as c + mirror 10% to v2' },
  { id: 'e', name: 'nginx', description: 'nginx 1 worker, upstream keepalive 64, HTTP/1.1' },
  { id: 'f', name: 'sluice-redis', description: 'as c, as `sluice proxy --redis` (data plane in Redis mode, own redis-server)' },
];

function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    // SLUICE_* would override the generated config (listen ports, token, redis…).
    if (!k.startsWith('SLUICE_')) env[k] = v;
  }
  return { ...env, ...extra };
}

function nodeTsArgs(script: string, args: readonly (string | number)[]): string[] {
  return ['--import', 'tsx', path.join(BENCH_DIR, script), ...args.map(String)];
}

function fail(c: BenchCase, note: string): void {
  c.status = 'failed';
  c.note = note;
  if (interrupted) return;
  const tail = c.proc ? logTail(c.proc) : '';
  console.log(`  ${c.id} ${c.name}: FAILED — ${note}${tail ? `\n    last log lines (${c.proc?.logPath}):\n${tail}` : ''}`);
}

/** One request through the case's URL: must be 200 before we measure anything. Null when fine. */
async function sanityCheck(c: BenchCase): Promise<string | null> {
  try {
    const r = await httpGet(c.url!, { timeoutMs: 5000, headers: { 'x-user-id': 'user-sanity' } });
    if (r.status !== 200) return `GET ${c.url} answered ${r.status} (expected 200): ${r.body.slice(0, 200)}`;
    if ((c.id === 'c' || c.id === 'd' || c.id === 'f') && r.headers['x-sluice-version'] === undefined) {
      console.log(`  ${c.id} ${c.name}: note: response has no x-sluice-version header`);
    }
    return null;
  } catch (err) {
    return `GET ${c.url} failed: ${(err as Error).message}`;
  }
}

// --------------------------------------------------------------------- main

let interrupted = false;
let tmpDir: string | null = null;

async function main(): Promise<number> {
  const startedAt = new Date();
  const cpuModel = /^model name\s*:\s*(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? 'unknown';

  if (!commandExists('wrk')) {
    console.error('bench: wrk is not installed (apt-get install wrk)');
    return 2;
  }

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-'));
  tmpDir = tmp;
  fs.chmodSync(tmp, 0o755); // nginx workers may run as another user
  let keepTmp = opts.keepTmp;

  console.log(`Sluice proxy bench — node ${process.version}, ${cpuModel} x${os.cpus().length}`);
  console.log(
    `wrk -t${wrkParams.threads} -c${wrkParams.connections} -d${wrkParams.durationS}s --latency -s bench/wrk-sticky.lua` +
      ` · warm-up ${opts.warmupS}s · ${opts.rounds} round(s) · CLK_TCK ${clkTck()} · tmp ${tmp}`,
  );

  const [up1Port, up2Port, barePort, cPort, cAdmin, dPort, dAdmin, ePort, fPort, fAdmin, redisPort] = (await freePorts(11)) as [
    number, number, number, number, number, number, number, number, number, number, number,
  ];

  // ---- upstreams (shared by every case)
  console.log('starting upstreams…');
  const up1 = spawnManaged({
    name: 'upstream-v1', cmd: process.execPath, args: nodeTsArgs('upstream.ts', [up1Port, 'v1']),
    cwd: ROOT, env: childEnv(), logPath: path.join(tmp, 'upstream-v1.log'),
  });
  const up2 = spawnManaged({
    name: 'upstream-v2', cmd: process.execPath, args: nodeTsArgs('upstream.ts', [up2Port, 'v2']),
    cwd: ROOT, env: childEnv(), logPath: path.join(tmp, 'upstream-v2.log'),
  });
  for (const [u, port] of [[up1, up1Port], [up2, up2Port]] as const) {
    const why = await waitFor200(`http://127.0.0.1:${port}/__bench/count`, 10_000, () => hasExited(u.child));
    if (why) {
      console.error(`bench: ${u.name} did not start: ${why}\n${logTail(u)}`);
      return 2;
    }
  }
  const upstreamCounts = async (): Promise<{ v1: number; v2: number } | null> => {
    try {
      const [a, b] = await Promise.all(
        [up1Port, up2Port].map(async (p) => (JSON.parse((await httpGet(`http://127.0.0.1:${p}/__bench/count`)).body) as { requests: number }).requests),
      );
      return { v1: a!, v2: b! };
    } catch {
      return null;
    }
  };

  // ---- proxies
  const cases: BenchCase[] = ALL_CASES.map((c) => ({
    ...c, url: null, proc: null, cpuRoots: [], helpers: [], adminUrl: null, launch: null, restarts: [],
    status: opts.cases.includes(c.id) ? 'pending' : 'skipped',
    note: opts.cases.includes(c.id) ? null : 'not selected (BENCH_CASES)',
  }));
  const byId = (id: CaseId): BenchCase => cases.find((c) => c.id === id)!;
  const exitOf = (m: Managed): string => String(m.child.exitCode ?? m.child.signalCode);

  /** Spawn, wait until `readyUrl` answers 200, then one GET through the case's URL. Null when ready. */
  const spawnAndWait = async (c: BenchCase, spawnOpts: Parameters<typeof spawnManaged>[0], readyUrl: string): Promise<string | null> => {
    try {
      c.proc = spawnManaged(spawnOpts);
    } catch (err) {
      return (err as Error).message;
    }
    c.cpuRoots = [c.proc.pid];
    const why = await waitFor200(readyUrl, opts.readyTimeoutMs, () => hasExited(c.proc!.child));
    if (why) {
      const exit = hasExited(c.proc.child) ? ` (exit ${exitOf(c.proc)})` : '';
      return `did not become ready${exit}: GET ${readyUrl}: ${why}`;
    }
    return sanityCheck(c);
  };

  const a = byId('a');
  a.url = `http://127.0.0.1:${up1Port}/`;

  const b = byId('b');
  b.url = `http://127.0.0.1:${barePort}/`;
  b.launch = () =>
    spawnAndWait(b, {
      name: 'bare-proxy', cmd: process.execPath, args: nodeTsArgs('bare-proxy.ts', [barePort, up1Port]),
      cwd: ROOT, env: childEnv(), logPath: path.join(tmp, 'bare-proxy.log'),
    }, b.url!);

  const sluiceBin = path.join(ROOT, 'bin', 'sluice.js');
  for (const [id, port, adminPort, mirror] of [['c', cPort, cAdmin, false], ['d', dPort, dAdmin, true]] as const) {
    const c = byId(id);
    const yamlPath = path.join(tmp, `sluice-${id}.yaml`);
    c.url = `http://127.0.0.1:${port}/`;
    c.adminUrl = `http://127.0.0.1:${adminPort}`;
    c.launch = async () => {
      if (!fs.existsSync(sluiceBin)) {
        return `${path.relative(ROOT, sluiceBin)} does not exist (the Sluice CLI is not there yet): case not run`;
      }
      fs.writeFileSync(yamlPath, sluiceYaml({ port, adminPort, v1Port: up1Port, v2Port: up2Port, mirror }));
      const why = await spawnAndWait(c, {
        name: `sluice-${id}`, cmd: process.execPath, args: [...opts.sluiceNodeArgs, sluiceBin, 'start', '-c', yamlPath],
        cwd: ROOT, env: childEnv({ SLUICE_LOG_LEVEL: opts.sluiceLogLevel }), logPath: path.join(tmp, `sluice-${id}.log`),
      }, `${c.adminUrl}/readyz`);
      return why && `\`node bin/sluice.js start -c ${yamlPath}\` ${why}`;
    };
  }

  const e = byId('e');
  e.url = `http://127.0.0.1:${ePort}/`;
  if (e.status === 'pending' && !fs.existsSync(NGINX)) {
    e.status = 'skipped';
    e.note = `${NGINX} not installed`;
    console.log(`  e nginx: skipped — ${NGINX} not installed`);
  }
  e.launch = async () => {
    const confPath = path.join(tmp, 'nginx.conf');
    const errLog = path.join(tmp, 'nginx-error.log');
    fs.writeFileSync(confPath, nginxConf({ dir: tmp, port: ePort, upstreamPort: up1Port }));
    // cpuRoots = the master; the worker is found as its child.
    const why = await spawnAndWait(e, {
      name: 'nginx', cmd: NGINX, args: ['-p', tmp, '-c', confPath, '-e', errLog, '-g', 'daemon off;'],
      cwd: tmp, env: childEnv(), logPath: path.join(tmp, 'nginx-stdout.log'),
    }, e.url!);
    const errTail = fs.existsSync(errLog) ? fs.readFileSync(errLog, 'utf8').trim().split('\n').slice(-3).join(' | ') : '';
    return why && `${why}${errTail ? `; ${errTail}` : ''}`;
  };

  // f: the same route and config as c, run as the data plane in Redis mode against a redis-server
  // of its own (loopback, no persistence). The proxy publishes its counters every second and follows
  // routing state by pub/sub + poll; Redis is never on the request path.
  const f = byId('f');
  const redisUrl = `redis://127.0.0.1:${redisPort}`;
  f.url = `http://127.0.0.1:${fPort}/`;
  f.adminUrl = `http://127.0.0.1:${fAdmin}`;
  if (f.status === 'pending' && !commandExists(REDIS_SERVER)) {
    f.status = 'skipped';
    f.note = `${REDIS_SERVER} not installed (apt-get install redis-server)`;
    console.log(`  f sluice-redis: skipped — ${f.note}`);
  }
  let redis: Managed | null = null;
  /** (Re)starts the bench's redis-server unless it is running. Null when it answers PING. */
  const ensureRedis = async (): Promise<string | null> => {
    if (redis && !hasExited(redis.child)) return null;
    if (redis) killManaged(redis);
    const dir = path.join(tmp, 'redis');
    fs.mkdirSync(dir, { recursive: true });
    try {
      redis = spawnManaged({
        name: 'redis-server', cmd: REDIS_SERVER, args: redisServerArgs({ port: redisPort, dir }),
        cwd: dir, env: childEnv(), logPath: path.join(tmp, 'redis-server.log'),
      });
    } catch (err) {
      return (err as Error).message;
    }
    const started = redis;
    f.helpers = [started];
    const why = await waitForRedis(redisPort, 10_000, () => hasExited(started.child));
    if (!why) return null;
    const logTailText = logTail(started, 5);
    return `${REDIS_SERVER} on 127.0.0.1:${redisPort} did not become ready: ${why}${logTailText ? `\n${logTailText}` : ''}`;
  };
  const fYaml = path.join(tmp, 'sluice-f.yaml');
  const fArgs = [sluiceBin, 'proxy', '-c', fYaml, '--redis', redisUrl, '--redis-prefix', REDIS_PREFIX];
  f.launch = async () => {
    if (!fs.existsSync(sluiceBin)) {
      return `${path.relative(ROOT, sluiceBin)} does not exist (the Sluice CLI is not there yet): case not run`;
    }
    const redisWhy = await ensureRedis();
    if (redisWhy) return redisWhy;
    fs.writeFileSync(fYaml, sluiceYaml({ port: fPort, adminPort: fAdmin, v1Port: up1Port, v2Port: up2Port, mirror: false }));
    const cmdline = `\`node bin/sluice.js ${fArgs.slice(1).join(' ')}\``;
    const why = await spawnAndWait(f, {
      name: 'sluice-f', cmd: process.execPath, args: [...opts.sluiceNodeArgs, ...fArgs],
      cwd: ROOT, env: childEnv({ SLUICE_LOG_LEVEL: opts.sluiceLogLevel }), logPath: path.join(tmp, 'sluice-f.log'),
    }, `${f.adminUrl}/readyz`);
    if (why) return `${cmdline} ${why}`;
    // /readyz is green without Redis (by design): make sure this really measures Redis mode,
    // i.e. the proxy has flushed its counters to Redis at least once (sluice_store_up 1).
    const upWhy = await waitForStoreUp(f.adminUrl!, opts.readyTimeoutMs, () => hasExited(f.proc!.child));
    return upWhy && `${cmdline} is ready but not connected to Redis: ${upWhy}`;
  };

  console.log('starting proxies…');
  // f's redis-server first, before any proxy: a proxy started right after it ran ~8% slower for
  // the whole run — measured with f in in-memory mode too, and with c when c was started after
  // it — an artefact of start order on 2 cores, not of Redis mode (bench/README.md).
  if (f.status === 'pending') {
    const why = await ensureRedis();
    if (why) fail(f, why);
  }
  for (const c of cases) {
    if (c.status !== 'pending') continue;
    const why = c.launch ? await c.launch() : null;
    if (why) fail(c, why);
    else c.status = 'ready';
  }

  // ---- runs, alternating
  const runs: RunRecord[] = [];
  const upRoots = [up1.pid, up2.pid];
  for (let round = 1; round <= opts.rounds; round++) {
    // Odd rounds run a→f, even rounds f→a: whatever drifts within a round (the
    // upstream's heap, the machine's other load) weighs on every case alike.
    for (const c of round % 2 === 1 ? cases : [...cases].reverse()) {
      if (interrupted) return 130;
      if (c.status !== 'ready') continue;
      let restartedBefore: string | null = null;
      const dead = c.proc ? [c.proc, ...c.helpers].find((m) => hasExited(m.child)) : undefined;
      if (c.proc && dead) {
        // On a shared machine something else may have killed it (a broad pkill): restart once, and say so.
        const what = `${dead === c.proc ? 'the process' : dead.name} exited (${exitOf(dead)}) before round ${round}`;
        killManaged(c.proc);
        const why = c.launch ? await c.launch() : 'cannot restart';
        if (why) {
          fail(c, `${what}; restart failed: ${why}`);
          continue;
        }
        c.restarts.push(`${what}; restarted`);
        restartedBefore = what;
        console.log(`  ${c.id} ${c.name}: ${what} — restarted (flagged in the table)`);
      }
      const rec: RunRecord = {
        round, case: c.id, startedAt: new Date().toISOString(), url: c.url!, warmup: null, wrk: null, wrkOutput: null,
        error: null, proxyCpuSeconds: null, proxyCpuUsPerReq: null, upstreamCpuSeconds: null, upstreamCpuUsPerReq: null,
        redisCpuSeconds: null, redisCpuUsPerReq: null, upstreamRequests: null, restartedBefore,
      };
      runs.push(rec);
      if (opts.warmupS > 0) {
        try {
          const w = await runWrk({ ...wrkParams, durationS: opts.warmupS }, c.url!);
          rec.warmup = { requests: w.result.requests, rps: w.result.rps, errors: w.result.errors };
        } catch (err) {
          rec.warmup = { error: (err as Error).message };
        }
      }
      const countsBefore = await upstreamCounts();
      const proxyBefore = treeTicks(c.cpuRoots);
      const upBefore = treeTicks(upRoots);
      const helperRoots = c.helpers.map((m) => m.pid);
      const helpersBefore = treeTicks(helperRoots);
      try {
        const w = await runWrk(wrkParams, c.url!);
        const proxyAfter = treeTicks(c.cpuRoots);
        const upAfter = treeTicks(upRoots);
        const helpersAfter = treeTicks(helperRoots);
        rec.wrk = w.result;
        rec.wrkOutput = w.raw;
        const reqs = w.result.requests;
        if (c.cpuRoots.length > 0) {
          rec.proxyCpuSeconds = cpuSecondsBetween(proxyBefore, proxyAfter);
          rec.proxyCpuUsPerReq = reqs > 0 ? (rec.proxyCpuSeconds * 1e6) / reqs : null;
        }
        rec.upstreamCpuSeconds = cpuSecondsBetween(upBefore, upAfter);
        rec.upstreamCpuUsPerReq = reqs > 0 ? (rec.upstreamCpuSeconds * 1e6) / reqs : null;
        if (helperRoots.length > 0) {
          rec.redisCpuSeconds = cpuSecondsBetween(helpersBefore, helpersAfter);
          rec.redisCpuUsPerReq = reqs > 0 ? (rec.redisCpuSeconds * 1e6) / reqs : null;
        }
      } catch (err) {
        rec.error = (err as Error).message;
      }
      if (interrupted) return 130;
      const countsAfter = await upstreamCounts();
      if (countsBefore && countsAfter) {
        rec.upstreamRequests = { v1: countsAfter.v1 - countsBefore.v1, v2: countsAfter.v2 - countsBefore.v2 };
      }
      const w = rec.wrk;
      console.log(
        `[${round}/${opts.rounds}] ${c.id} ${c.name.padEnd(16)} ` +
          (w
            ? `${fmt(w.rps, 0).padStart(7)} rps  p50 ${fmt(w.percentilesMs.p50, 2)} ms  p99 ${fmt(w.percentilesMs.p99, 2)} ms  ` +
              `cpu ${rec.proxyCpuUsPerReq === null ? '-' : fmt(rec.proxyCpuUsPerReq, 1)} µs/req  errors ${w.errors}`
            : `ERROR: ${rec.error}`),
      );
    }
  }

  // ---- summary
  const summary = cases.map((c) => {
    const ok = runs.filter((r) => r.case === c.id && r.wrk);
    const failedRuns = runs.filter((r) => r.case === c.id && !r.wrk).length;
    const cpu = ok.map((r) => r.proxyCpuUsPerReq).filter((x): x is number => x !== null);
    const v1 = ok.reduce((s, r) => s + (r.upstreamRequests?.v1 ?? 0), 0);
    const v2 = ok.reduce((s, r) => s + (r.upstreamRequests?.v2 ?? 0), 0);
    const reqs = ok.reduce((s, r) => s + r.wrk!.requests, 0);
    const problems = [...c.restarts];
    if (failedRuns > 0) problems.push(`${failedRuns} run(s) failed`);
    if (ok.length > 0 && c.status === 'failed' && c.note) problems.push(c.note);
    if (ok.length > 0 && ok.length < opts.rounds) problems.push(`only ${ok.length} of ${opts.rounds} run(s) measured`);
    const errors = ok.reduce((s, r) => s + r.wrk!.errors, 0);
    if (errors > 0) problems.push(`${errors} non-2xx responses or socket errors`);
    return {
      case: c.id,
      name: c.name,
      description: c.description,
      status: ok.length > 0 ? 'measured' : c.status === 'skipped' ? 'skipped' : 'failed',
      note: ok.length > 0 ? null : c.note ?? 'no run measured',
      /** Anything that makes this case's figures suspect (flagged `(!)` in the table). */
      problems,
      runs: ok.length,
      rps: median(ok.map((r) => r.wrk!.rps)),
      p50Ms: median(ok.map((r) => r.wrk!.percentilesMs.p50)),
      p99Ms: median(ok.map((r) => r.wrk!.percentilesMs.p99)),
      proxyCpuUsPerReq: c.cpuRoots.length > 0 ? median(cpu) : null,
      upstreamCpuUsPerReq: median(ok.map((r) => r.upstreamCpuUsPerReq).filter((x): x is number => x !== null)),
      redisCpuUsPerReq: median(ok.map((r) => r.redisCpuUsPerReq).filter((x): x is number => x !== null)),
      errors,
      failedRuns,
      upstreamShare: reqs > 0 ? { v1: v1 / reqs, v2: v2 / reqs } : null,
    };
  });
  const S = (id: CaseId) => summary.find((s) => s.case === id)!;
  const ratios = {
    rps: {
      c_over_b: ratio(S('c').rps, S('b').rps), d_over_b: ratio(S('d').rps, S('b').rps), c_over_a: ratio(S('c').rps, S('a').rps),
      f_over_c: ratio(S('f').rps, S('c').rps),
    },
    p99DeltaMs: {
      c_minus_b: diff(S('c').p99Ms, S('b').p99Ms), d_minus_b: diff(S('d').p99Ms, S('b').p99Ms),
      f_minus_c: diff(S('f').p99Ms, S('c').p99Ms),
    },
    cpuPerReq: {
      c_over_b: ratio(S('c').proxyCpuUsPerReq, S('b').proxyCpuUsPerReq), d_over_b: ratio(S('d').proxyCpuUsPerReq, S('b').proxyCpuUsPerReq),
      f_over_c: ratio(S('f').proxyCpuUsPerReq, S('c').proxyCpuUsPerReq),
    },
  };
  // Redis mode vs in-memory (issue 4, acceptance 7). null: not measurable in this run (f or c missing).
  const rpsMet = ratios.rps.f_over_c === null ? null : ratios.rps.f_over_c >= REDIS_TARGET.rpsRatioMin;
  const p99Met = ratios.p99DeltaMs.f_minus_c === null ? null : ratios.p99DeltaMs.f_minus_c <= REDIS_TARGET.p99DeltaMaxMs;
  const redisTarget = {
    ...REDIS_TARGET,
    rpsRatio: ratios.rps.f_over_c,
    p99DeltaMs: ratios.p99DeltaMs.f_minus_c,
    rpsMet,
    p99Met,
    met: rpsMet === null || p99Met === null ? null : rpsMet && p99Met,
  };

  // Sluice's own view of the split (shape per docs/contract.md; stored raw).
  const sluiceStats: Record<string, unknown> = {};
  for (const id of ['c', 'd', 'f'] as const) {
    const c = byId(id);
    if (!c.adminUrl || c.status !== 'ready') continue;
    try {
      const r = await httpGet(`${c.adminUrl}/stats`, { timeoutMs: 3000 });
      sluiceStats[id] = r.status === 200 ? JSON.parse(r.body) : { status: r.status, body: r.body.slice(0, 500) };
    } catch (err) {
      sluiceStats[id] = { error: (err as Error).message };
    }
  }

  // What case f left in Redis mode: its store gauge/flush count and the keys under its prefix.
  let redisMode: Record<string, unknown> | null = null;
  if (f.status === 'ready' && f.adminUrl) {
    const version = spawnSync(REDIS_SERVER, ['--version'], { encoding: 'utf8' }).stdout?.trim() ?? null;
    redisMode = { url: redisUrl, prefix: REDIS_PREFIX, command: `node bin/sluice.js ${fArgs.slice(1).join(' ')}`, redisServer: version };
    try {
      const m = await httpGet(`${f.adminUrl}/metrics`, { timeoutMs: 3000 });
      const metric = (name: string): number | null => {
        const hit = new RegExp(`^${name}(?:\\{[^}]*\\})? ([\\d.eE+-]+)$`, 'm').exec(m.body);
        return hit ? Number(hit[1]) : null;
      };
      redisMode['storeUp'] = metric('sluice_store_up');
      redisMode['flushes'] = metric('sluice_store_flush_seconds_count');
      redisMode['flushSecondsSum'] = metric('sluice_store_flush_seconds_sum');
    } catch (err) {
      redisMode['metricsError'] = (err as Error).message;
    }
    try {
      // First line of the KEYS reply is `*<count>`.
      const keys = await redisInline(redisPort, `KEYS ${REDIS_PREFIX}*`, 3000);
      redisMode['keysUnderPrefix'] = keys.startsWith('*') ? Number(keys.slice(1)) : keys;
    } catch (err) {
      redisMode['redisError'] = (err as Error).message;
    }
  }

  // ---- table
  console.log('');
  const header = ['case', 'rps', 'p50 ms', 'p99 ms', 'proxy CPU µs/req', 'errors'];
  const rows: string[][] = summary.filter((s) => opts.cases.includes(s.case)).map((s) => {
    const label = `${s.case} ${s.name}`;
    if (s.status !== 'measured') return [label, `${s.status.toUpperCase()}: ${s.note ?? ''}`];
    return [
      label,
      fmt(s.rps, 0),
      fmt(s.p50Ms, 2),
      fmt(s.p99Ms, 2),
      s.proxyCpuUsPerReq === null ? '-' : fmt(s.proxyCpuUsPerReq, 1),
      s.problems.length > 0 ? `${s.errors} (!)` : '0',
    ];
  });
  printTable(header, rows);
  const flagged = summary.filter((s) => s.status === 'measured' && s.problems.length > 0);
  if (flagged.length > 0) {
    console.log('(!) treat these figures with suspicion:');
    for (const s of flagged) console.log(`    ${s.case} ${s.name}: ${s.problems.join('; ')}`);
  }
  console.log(`medians over ${opts.rounds} round(s); proxy CPU = utime+stime of the proxy process tree / requests completed`);
  console.log('');
  console.log(
    `rps ratio   c/b ${fmtRatio(ratios.rps.c_over_b)}   d/b ${fmtRatio(ratios.rps.d_over_b)}   c/a ${fmtRatio(ratios.rps.c_over_a)}`,
  );
  console.log(`p99 delta   c−b ${fmtDelta(ratios.p99DeltaMs.c_minus_b)}   d−b ${fmtDelta(ratios.p99DeltaMs.d_minus_b)}`);
  console.log(`CPU/req     c/b ${fmtRatio(ratios.cpuPerReq.c_over_b)}   d/b ${fmtRatio(ratios.cpuPerReq.d_over_b)}`);
  if (opts.cases.includes('f')) {
    const met = (x: boolean | null): string => (x === null ? 'n/a' : x ? 'met' : 'NOT met');
    console.log(
      `Redis mode  rps f/c ${fmtRatio(ratios.rps.f_over_c)} (target ≥ ${REDIS_TARGET.rpsRatioMin}: ${met(rpsMet)})   ` +
        `p99 f−c ${fmtDelta(ratios.p99DeltaMs.f_minus_c)} (target ≤ +${REDIS_TARGET.p99DeltaMaxMs} ms: ${met(p99Met)})   ` +
        `CPU/req f/c ${fmtRatio(ratios.cpuPerReq.f_over_c)}`,
    );
    if (redisMode) {
      console.log(
        `            f in Redis mode: sluice_store_up ${redisMode['storeUp'] ?? '?'}, ${redisMode['flushes'] ?? '?'} flushes, ` +
          `${redisMode['keysUnderPrefix'] ?? '?'} key(s) under ${REDIS_PREFIX}; redis-server CPU ${fmt(S('f').redisCpuUsPerReq, 2)} µs/req (not in proxy CPU)`,
      );
    }
  }
  for (const id of ['c', 'd', 'f'] as const) {
    const s = S(id);
    if (s.status === 'measured' && s.upstreamShare) {
      console.log(
        `upstream share ${id}: v1 ${fmt(s.upstreamShare.v1 * 100, 1)}%  v2 ${fmt(s.upstreamShare.v2 * 100, 1)}%  of client requests` +
          (id === 'd' ? ' (v2 includes mirror copies)' : ''),
      );
    }
  }

  // ---- JSON
  const resultsDir = path.join(BENCH_DIR, 'results');
  fs.mkdirSync(resultsDir, { recursive: true });
  const outPath = path.join(resultsDir, `proxy-${startedAt.toISOString().replace(/:/g, '-')}.json`);
  const doc = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    node: process.version,
    cpuModel,
    cpus: os.cpus().length,
    kernel: os.release(),
    clkTck: clkTck(),
    wrk: {
      threads: wrkParams.threads,
      connections: wrkParams.connections,
      durationS: wrkParams.durationS,
      warmupS: opts.warmupS,
      rounds: opts.rounds,
      script: 'bench/wrk-sticky.lua',
      args: wrkArgs({ ...wrkParams, script: 'bench/wrk-sticky.lua' }, '<url>'),
    },
    quick,
    sluiceLogLevel: opts.sluiceLogLevel,
    cases: cases.map((c) => ({
      id: c.id, name: c.name, description: c.description, status: c.status, note: c.note, url: c.url, restarts: c.restarts,
    })),
    runs,
    medians: summary,
    ratios,
    redisTarget,
    redisMode,
    sluiceStats,
  };
  fs.writeFileSync(outPath, `${JSON.stringify(doc, null, 2)}\n`);
  console.log(`\nraw runs and medians: ${path.relative(ROOT, outPath)}`);

  const failed = summary.filter((s) => s.status === 'failed' || (s.status === 'measured' && s.runs < opts.rounds));
  if (failed.length > 0) keepTmp = true;
  if (keepTmp) console.log(`configs and child logs kept in ${tmp}`);
  else fs.rmSync(tmp, { recursive: true, force: true });
  if (failed.length > 0) {
    console.log(`failed: ${failed.map((s) => `${s.case} ${s.name}`).join(', ')}`);
    return 1;
  }
  return 0;
}

/** Poll the admin /metrics until `sluice_store_up 1` (the first flush to Redis succeeded). Null when up. */
async function waitForStoreUp(adminUrl: string, timeoutMs: number, isDead: () => boolean): Promise<string | null> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (isDead()) return 'the process exited';
    try {
      const r = await httpGet(`${adminUrl}/metrics`, { timeoutMs: 1000 });
      const m = /^sluice_store_up(?:\{[^}]*\})? (\S+)$/m.exec(r.body);
      if (r.status === 200 && m?.[1] === '1') return null;
      last = r.status !== 200 ? `GET /metrics: HTTP ${r.status}` : m ? `sluice_store_up ${m[1]}` : 'no sluice_store_up in /metrics';
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return `not within ${Math.round(timeoutMs / 1000)} s (last: ${last})`;
}

// ------------------------------------------------------------------ output

function fmt(x: number | null | undefined, digits: number): string {
  return x == null ? '-' : x.toFixed(digits);
}
function fmtRatio(x: number | null): string {
  return x === null ? 'n/a' : x.toFixed(3);
}
function fmtDelta(x: number | null): string {
  return x === null ? 'n/a' : `${x >= 0 ? '+' : ''}${x.toFixed(2)} ms`;
}

function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) =>
    Math.max(h.length, ...rows.filter((r) => i === 0 || r.length > 2).map((r) => (r[i] ?? '').length)),
  );
  const line = (cells: string[]): string =>
    cells.length === 2 && header.length > 2
      ? `${cells[0]!.padEnd(widths[0]!)}  ${cells[1]}` // a failed/skipped case: one message cell
      : cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r));
}

// ---------------------------------------------------------- lifecycle

let cleanupPromise: Promise<void> | null = null;
/** Idempotent: every caller waits for the same teardown. */
function cleanup(): Promise<void> {
  cleanupPromise ??= killAll(3000);
  return cleanupPromise;
}

let signalExitCode = 130;
function finishInterrupted(): never {
  if (tmpDir && !opts.keepTmp) fs.rmSync(tmpDir, { recursive: true, force: true });
  process.exit(signalExitCode);
}

process.on('exit', killAllSync);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    if (interrupted) return;
    interrupted = true;
    signalExitCode = sig === 'SIGINT' ? 130 : 143;
    console.error(`\nbench: ${sig}, stopping child processes…`);
    void cleanup().finally(finishInterrupted);
  });
}

let code = 1;
try {
  code = await main();
} catch (err) {
  console.error('bench failed:', err);
  code = 1;
} finally {
  await cleanup();
}
if (interrupted) finishInterrupted();
process.exit(code);
