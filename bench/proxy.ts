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
 * gRPC, unary Say calls over h2c (h2load -c50 -m10) to a bare node:http2 upstream (bench/grpc-upstream.ts):
 *   g  grpc-direct      h2load → gRPC upstream v1
 *   h  grpc-sluice      h2load → Sluice (h2c listener; two h2c versions 90/10) → gRPC upstreams
 *   i  grpc-nginx       h2load → nginx (http2 listener, grpc_pass, upstream keepalive) → gRPC upstreams 9:1
 *
 * HTTPS (TLS termination, HTTP/1.1 keep-alive; wrk over https, certificate from a throwaway CA):
 *   j  https-sluice     wrk → Sluice with listen.tls, as c → upstreams
 *   k  https-nginx      wrk → nginx ssl listener, as e → upstream
 *
 * Runs alternate (a b c … k, then k … a), each measured run preceded by a
 * discarded warm-up. See bench/README.md.
 *
 * Env: BENCH_DURATION (s, default 10), BENCH_ROUNDS (2), BENCH_CONNECTIONS (50),
 * BENCH_H2_CLIENTS (50), BENCH_H2_STREAMS (10),
 * BENCH_WARMUP (s, 2), BENCH_CASES (e.g. "abe"), BENCH_READY_TIMEOUT (s, 10),
 * BENCH_SLUICE_LOG_LEVEL (warn), BENCH_KEEP_TMP=1. Flag: --quick (3 s, 1 round).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { envInt as envIntOf, quickFlag } from './lib/args.js';
import { createPki } from '../test/support/certs.js';
import { nginxConf, nginxGrpcConf, nginxTlsConf, redisServerArgs, sluiceGrpcYaml, sluiceYaml } from './lib/configs.js';
import { BENCH_SAY_TEXT, SAY_PATH, callSay, checkSayAnswer, h2Call, sayRequest, waitForGrpc } from './lib/grpc.js';
import { h2loadArgs, runH2load, type H2loadParams, type H2loadResult } from './lib/h2load.js';
import { freePorts, httpGet, redisInline, waitFor200, waitForPort, waitForRedis } from './lib/net.js';
import {
  clkTck,
  commandExists,
  cpuSecondsBetween,
  foreignCpuSince,
  foreignSnapshot,
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
/** Issue 13: gRPC through Sluice against nginx grpc_pass, same run (calls/s h/i). */
const GRPC_TARGET = { rpsRatioMin: 0.5 } as const;
/** nginx grpc_pass's upstream keepalive pool: at least the calls h2load keeps in flight (see nginxGrpcConf). */
const NGINX_GRPC_KEEPALIVE = 1024;
/** A run during which processes outside the bench took this share of the machine (or more) is flagged. */
const FOREIGN_SHARE_FLAG = 0.05;

// ------------------------------------------------------------------ options

function usage(): never {
  console.log(`usage: npm run bench [-- --quick]

  --quick                 3 s per run, 1 round (smoke test)
env BENCH_DURATION=10     seconds per measured run
    BENCH_ROUNDS=2        rounds (each case once per round; odd rounds a→k, even rounds k→a)
    BENCH_CONNECTIONS=50  wrk connections (1 thread)
    BENCH_WARMUP=2        seconds of discarded warm-up before each measured run (0: none)
    BENCH_QUIET_WAIT=0    seconds each run may wait for other processes to leave the machine (0: never waits)
    BENCH_H2_CLIENTS=50   h2load connections for the gRPC cases g h i (-c, 1 thread)
    BENCH_H2_STREAMS=10   h2load concurrent streams per connection (-m)
    BENCH_CASES=abcdefghijk  subset of cases to run (a–f HTTP/1.1, g–i gRPC, j–k HTTPS)
    BENCH_READY_TIMEOUT=10  seconds a proxy gets to become ready
    BENCH_SLUICE_LOG_LEVEL=warn  SLUICE_LOG_LEVEL given to the Sluice processes
    BENCH_KEEP_TMP=1      keep the temp dir (configs, child logs)
    BENCH_SLUICE_NODE_ARGS='--cpu-prof --cpu-prof-dir=DIR'  extra node flags for the Sluice processes`);
  process.exit(0);
}

const argv = process.argv.slice(2);
if (argv.includes('--help') || argv.includes('-h')) usage();
const quick = quickFlag(argv, 'bench');

const envInt = (name: string, def: number, min: number): number => envIntOf('bench', name, def, min);

const opts = {
  durationS: envInt('BENCH_DURATION', quick ? 3 : 10, 1),
  rounds: envInt('BENCH_ROUNDS', quick ? 1 : 2, 1),
  connections: envInt('BENCH_CONNECTIONS', 50, 1),
  h2Clients: envInt('BENCH_H2_CLIENTS', 50, 1),
  h2Streams: envInt('BENCH_H2_STREAMS', 10, 1),
  warmupS: envInt('BENCH_WARMUP', 2, 0),
  /** Seconds a run may wait for other processes to leave the machine (≤ 5% of it for 1 s) before it starts; 0: never waits. */
  quietWaitS: envInt('BENCH_QUIET_WAIT', 0, 0),
  readyTimeoutMs: envInt('BENCH_READY_TIMEOUT', 10, 1) * 1000,
  cases: (process.env['BENCH_CASES'] ?? 'abcdefghijk').toLowerCase(),
  sluiceLogLevel: process.env['BENCH_SLUICE_LOG_LEVEL'] ?? 'warn',
  keepTmp: process.env['BENCH_KEEP_TMP'] === '1',
  /** Extra node flags for the Sluice processes (c, d, f, h, j), e.g. `--cpu-prof --cpu-prof-dir=/tmp/p`. */
  sluiceNodeArgs: (process.env['BENCH_SLUICE_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== ''),
};

const wrkParams: WrkParams = {
  threads: 1,
  connections: opts.connections,
  durationS: opts.durationS,
  script: path.join(BENCH_DIR, 'wrk-sticky.lua'),
};

// ------------------------------------------------------------------- cases

type CaseId = 'a' | 'b' | 'c' | 'd' | 'e' | 'f' | 'g' | 'h' | 'i' | 'j' | 'k';
/** http1: wrk over HTTP/1.1 (a–f); grpc: h2load unary calls over h2c (g–i); https: wrk over TLS (j, k). */
type CaseKind = 'http1' | 'grpc' | 'https';

interface BenchCase {
  id: CaseId;
  name: string;
  description: string;
  kind: CaseKind;
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
  /** requests: 2xx/3xx for h2load; started: h2load's streams started (those in flight at its stop included). */
  warmup: { requests: number; rps: number; errors: number; started?: number } | { error: string } | null;
  /** wrk's figures (a–f, j, k). */
  wrk: WrkResult | null;
  wrkOutput: string | null;
  /** h2load's figures (g–i); p50/p99 from its per-request log. */
  h2load: H2loadResult | null;
  h2loadOutput: string | null;
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
  /**
   * CPU the machine spent outside the bench's process tree during the measured run (other
   * people's tests, builds…), in seconds and as a share of all cores × the run's wall time.
   */
  foreignCpuSeconds: number | null;
  foreignCpuShare: number | null;
  /** BENCH_QUIET_WAIT: seconds waited for a quiet machine before the run (null: not asked to wait). */
  waitedForQuietS: number | null;
  /** Requests each upstream served during the measured run (includes mirror copies). */
  upstreamRequests: { v1: number; v2: number } | null;
}

/** The figures every case has, whichever load generator measured it. */
interface LoadFigures {
  requests: number;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

function loadOf(r: RunRecord): LoadFigures | null {
  const w = r.wrk ?? r.h2load;
  if (w === null) return null;
  return { requests: w.requests, rps: w.rps, p50: w.percentilesMs.p50, p99: w.percentilesMs.p99, errors: w.errors };
}

const ALL_CASES: ReadonlyArray<Pick<BenchCase, 'id' | 'name' | 'description' | 'kind'>> = [
  { id: 'a', name: 'direct', description: 'wrk -> upstream (no proxy)', kind: 'http1' },
  { id: 'b', name: 'bare http-proxy', description: 'fastify + @fastify/http-proxy, fixed upstream, logger off', kind: 'http1' },
  { id: 'c', name: 'sluice', description: 'Sluice, 1 route, v1/v2 90/10, sticky x-user-id, metrics on', kind: 'http1' },
  { id: 'd', name: 'sluice+mirror', description: 'as c + mirror 10% to v2', kind: 'http1' },
  { id: 'e', name: 'nginx', description: 'nginx 1 worker, upstream keepalive 64, HTTP/1.1', kind: 'http1' },
  { id: 'f', name: 'sluice-redis', description: 'as c, as `sluice proxy --redis` (data plane in Redis mode, own redis-server)', kind: 'http1' },
  { id: 'g', name: 'grpc-direct', description: 'h2load -> gRPC upstream v1 over h2c (no proxy)', kind: 'grpc' },
  { id: 'h', name: 'grpc-sluice', description: 'Sluice h2c listener, 1 route, two h2c versions v1/v2 90/10, metrics on', kind: 'grpc' },
  { id: 'i', name: 'grpc-nginx', description: `nginx 1 worker, http2 listener (h2c), grpc_pass, upstream v1/v2 weight 9:1, keepalive ${NGINX_GRPC_KEEPALIVE}`, kind: 'grpc' },
  { id: 'j', name: 'https-sluice', description: 'as c, with listen.tls (HTTP/1.1 over TLS, keep-alive)', kind: 'https' },
  { id: 'k', name: 'https-nginx', description: 'as e, with an ssl listener (HTTP/1.1 over TLS, keep-alive)', kind: 'https' },
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

const SLUICE_CASES: readonly CaseId[] = ['c', 'd', 'f', 'h', 'j'];
/** The CA certificate (PEM) the HTTPS cases' certificate is signed by, for the sanity checks. */
let tlsCaPem: string | null = null;
/** gRPC calls each case got outside h2load (sanity checks), to reconcile Sluice's own counts. */
const sanityCalls = new Map<CaseId, number>();

/**
 * One request through the case's URL before anything is measured: 200 for
 * HTTP, a well-formed OK answer to Say for gRPC (status 200, one message,
 * grpc-status 0 in the trailers). Null when fine.
 */
async function sanityCheck(c: BenchCase): Promise<string | null> {
  const fromSluice = SLUICE_CASES.includes(c.id);
  if (c.kind === 'grpc') {
    const origin = new URL(c.url!).origin;
    try {
      sanityCalls.set(c.id, (sanityCalls.get(c.id) ?? 0) + 1);
      const r = await callSay(origin, {}, 5000);
      const why = checkSayAnswer(r);
      if (why) return `gRPC Say via ${origin}: ${why}`;
      if (fromSluice && r.headers['x-sluice-version'] === undefined) {
        console.log(`  ${c.id} ${c.name}: note: response has no x-sluice-version header`);
      }
      return null;
    } catch (err) {
      return `gRPC Say via ${origin} failed: ${(err as Error).message}`;
    }
  }
  try {
    const r = await httpGet(c.url!, { timeoutMs: 5000, headers: { 'x-user-id': 'user-sanity' }, ...(tlsCaPem ? { ca: tlsCaPem } : {}) });
    if (r.status !== 200) return `GET ${c.url} answered ${r.status} (expected 200): ${r.body.slice(0, 200)}`;
    if (fromSluice && r.headers['x-sluice-version'] === undefined) {
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

  const sayFile = path.join(tmp, 'say-request.bin');
  fs.writeFileSync(sayFile, sayRequest(BENCH_SAY_TEXT));
  const h2Params: H2loadParams = {
    clients: opts.h2Clients,
    streams: opts.h2Streams,
    durationS: opts.durationS,
    headers: ['content-type: application/grpc', 'te: trailers'],
    dataFile: sayFile,
  };

  console.log(`Sluice proxy bench — node ${process.version}, ${cpuModel} x${os.cpus().length}`);
  console.log(
    `wrk -t${wrkParams.threads} -c${wrkParams.connections} -d${wrkParams.durationS}s --latency -s bench/wrk-sticky.lua` +
      ` · warm-up ${opts.warmupS}s · ${opts.rounds} round(s) · CLK_TCK ${clkTck()} · tmp ${tmp}`,
  );
  if (/[ghi]/.test(opts.cases)) {
    console.log(`gRPC: h2load ${h2loadArgs({ ...h2Params, dataFile: '<SayRequest>' }, `http://…${SAY_PATH}`, null).join(' ')}`);
  }

  const [up1Port, up2Port, barePort, cPort, cAdmin, dPort, dAdmin, ePort, fPort, fAdmin, redisPort] = (await freePorts(11)) as [
    number, number, number, number, number, number, number, number, number, number, number,
  ];
  const [g1Port, g2Port, hPort, hAdmin, iPort, jPort, jAdmin, kPort] = (await freePorts(8)) as [
    number, number, number, number, number, number, number, number,
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
  const skip = (c: BenchCase, note: string): void => {
    if (c.status !== 'pending') return;
    c.status = 'skipped';
    c.note = note;
    console.log(`  ${c.id} ${c.name}: skipped — ${note}`);
  };

  // ---- gRPC upstreams (g, h, i): two processes of bench/grpc-upstream.ts, h2c
  const grpcCases = cases.filter((c) => c.kind === 'grpc');
  if (!commandExists('h2load')) for (const c of grpcCases) skip(c, 'h2load is not installed (apt-get install nghttp2-client)');
  const grpcUps: Managed[] = [];
  if (grpcCases.some((c) => c.status === 'pending')) {
    console.log('starting gRPC upstreams…');
    for (const [port, name] of [[g1Port, 'v1'], [g2Port, 'v2']] as const) {
      const u = spawnManaged({
        name: `grpc-upstream-${name}`, cmd: process.execPath, args: nodeTsArgs('grpc-upstream.ts', [port, name]),
        cwd: ROOT, env: childEnv(), logPath: path.join(tmp, `grpc-upstream-${name}.log`),
      });
      grpcUps.push(u);
      const why = await waitForGrpc(`http://127.0.0.1:${port}`, 10_000, () => hasExited(u.child));
      if (why) {
        for (const c of grpcCases) if (c.status === 'pending') fail(c, `${u.name} did not start: ${why}\n${logTail(u)}`);
        break;
      }
    }
  }
  const grpcCounts = async (): Promise<{ v1: number; v2: number } | null> => {
    try {
      const [a, b] = await Promise.all(
        [g1Port, g2Port].map(async (p) => {
          const r = await h2Call(`http://127.0.0.1:${p}`, { ':method': 'GET', ':path': '/__bench/count' }, null);
          return (JSON.parse(r.body.toString('utf8')) as { requests: number }).requests;
        }),
      );
      return { v1: a!, v2: b! };
    } catch {
      return null;
    }
  };

  // ---- TLS (j, k): a throwaway CA and a server certificate for 127.0.0.1 (EC P-256, openssl CLI)
  const tlsCases = cases.filter((c) => c.kind === 'https');
  let serverPair: { cert: string; key: string } | null = null;
  if (tlsCases.some((c) => c.status === 'pending')) {
    try {
      const pki = createPki(fs.mkdtempSync(path.join(tmp, 'pki-')));
      fs.chmodSync(pki.dir, 0o755);
      serverPair = pki.issue('bench-server', { hosts: ['localhost'], ips: ['127.0.0.1'] });
      fs.chmodSync(serverPair.key, 0o644); // read by nginx (its master reads it as our user; harmless in a temp dir)
      tlsCaPem = pki.caPem();
    } catch (err) {
      for (const c of tlsCases) if (c.status === 'pending') fail(c, `could not make a test certificate with openssl: ${(err as Error).message}`);
    }
  }
  const exitOf = (m: Managed): string => String(m.child.exitCode ?? m.child.signalCode);

  /** Spawn, wait until `readyUrl` answers 200, then one GET through the case's URL. Null when ready. */
  const spawnAndWait = async (c: BenchCase, spawnOpts: Parameters<typeof spawnManaged>[0], readyUrl: string): Promise<string | null> => {
    try {
      c.proc = spawnManaged(spawnOpts);
    } catch (err) {
      return (err as Error).message;
    }
    c.cpuRoots = [c.proc.pid];
    // readyUrl '': the proxy is ready when its port accepts connections (nginx's http2 and ssl listeners).
    const port = Number(new URL(c.url!).port);
    const why = readyUrl === ''
      ? await waitForPort(port, opts.readyTimeoutMs, () => hasExited(c.proc!.child))
      : await waitFor200(readyUrl, opts.readyTimeoutMs, () => hasExited(c.proc!.child));
    if (why) {
      const exit = hasExited(c.proc.child) ? ` (exit ${exitOf(c.proc)})` : '';
      return `did not become ready${exit}: ${readyUrl === '' ? `port ${port}` : `GET ${readyUrl}`}: ${why}`;
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

  // ---- gRPC: g direct, h Sluice, i nginx grpc_pass
  const g = byId('g');
  g.url = `http://127.0.0.1:${g1Port}${SAY_PATH}`;

  const h = byId('h');
  h.url = `http://127.0.0.1:${hPort}${SAY_PATH}`;
  h.adminUrl = `http://127.0.0.1:${hAdmin}`;
  const hYaml = path.join(tmp, 'sluice-h.yaml');
  h.launch = async () => {
    if (!fs.existsSync(sluiceBin)) return `${path.relative(ROOT, sluiceBin)} does not exist: case not run`;
    fs.writeFileSync(hYaml, sluiceGrpcYaml({ port: hPort, adminPort: hAdmin, v1Port: g1Port, v2Port: g2Port }));
    const why = await spawnAndWait(h, {
      name: 'sluice-h', cmd: process.execPath, args: [...opts.sluiceNodeArgs, sluiceBin, 'start', '-c', hYaml],
      cwd: ROOT, env: childEnv({ SLUICE_LOG_LEVEL: opts.sluiceLogLevel }), logPath: path.join(tmp, 'sluice-h.log'),
    }, `${h.adminUrl}/readyz`);
    return why && `\`node bin/sluice.js start -c ${hYaml}\` ${why}`;
  };

  /** nginx in a directory of its own (pid file, temp paths, error log), ready when `readyCheck` passes. */
  const launchNginx = async (c: BenchCase, dir: string, conf: string, readyUrl: string): Promise<string | null> => {
    fs.mkdirSync(dir, { recursive: true });
    fs.chmodSync(dir, 0o755);
    const confPath = path.join(dir, 'nginx.conf');
    const errLog = path.join(dir, 'nginx-error.log');
    fs.writeFileSync(confPath, conf);
    const why = await spawnAndWait(c, {
      name: `nginx-${c.id}`, cmd: NGINX, args: ['-p', dir, '-c', confPath, '-e', errLog, '-g', 'daemon off;'],
      cwd: dir, env: childEnv(), logPath: path.join(dir, 'nginx-stdout.log'),
    }, readyUrl);
    const errTail = fs.existsSync(errLog) ? fs.readFileSync(errLog, 'utf8').trim().split('\n').slice(-3).join(' | ') : '';
    return why && `${why}${errTail ? `; ${errTail}` : ''}`;
  };

  const i = byId('i');
  i.url = `http://127.0.0.1:${iPort}${SAY_PATH}`;
  i.launch = async () => {
    const dir = path.join(tmp, 'nginx-grpc');
    const conf = nginxGrpcConf({ dir, port: iPort, v1Port: g1Port, v2Port: g2Port, keepalive: NGINX_GRPC_KEEPALIVE });
    // Ready: the port answers (any status over HTTP/1.1 is fine: it is an http2 listener); then the gRPC sanity call.
    return launchNginx(i, dir, conf, '');
  };

  // ---- HTTPS: j Sluice with listen.tls, k nginx ssl; HTTP/1.1 to the same upstreams as c and e
  const j = byId('j');
  j.url = `https://127.0.0.1:${jPort}/`;
  j.adminUrl = `http://127.0.0.1:${jAdmin}`;
  const jYaml = path.join(tmp, 'sluice-j.yaml');
  j.launch = async () => {
    if (!fs.existsSync(sluiceBin)) return `${path.relative(ROOT, sluiceBin)} does not exist: case not run`;
    fs.writeFileSync(jYaml, sluiceYaml({ port: jPort, adminPort: jAdmin, v1Port: up1Port, v2Port: up2Port, mirror: false, tls: serverPair! }));
    const why = await spawnAndWait(j, {
      name: 'sluice-j', cmd: process.execPath, args: [...opts.sluiceNodeArgs, sluiceBin, 'start', '-c', jYaml],
      cwd: ROOT, env: childEnv({ SLUICE_LOG_LEVEL: opts.sluiceLogLevel }), logPath: path.join(tmp, 'sluice-j.log'),
    }, `${j.adminUrl}/readyz`);
    return why && `\`node bin/sluice.js start -c ${jYaml}\` ${why}`;
  };

  const k = byId('k');
  k.url = `https://127.0.0.1:${kPort}/`;
  k.launch = async () => {
    const dir = path.join(tmp, 'nginx-tls');
    const conf = nginxTlsConf({ dir, port: kPort, upstreamPort: up1Port, cert: serverPair!.cert, key: serverPair!.key });
    return launchNginx(k, dir, conf, '');
  };
  if (!fs.existsSync(NGINX)) for (const c of [i, k]) skip(c, `${NGINX} not installed`);

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
    // A direct gRPC case has nothing to launch, but its upstream's answer is checked like a proxy's.
    const why = c.launch ? await c.launch() : c.kind === 'grpc' ? await sanityCheck(c) : null;
    if (why) fail(c, why);
    else c.status = 'ready';
  }

  // ---- runs, alternating
  const runs: RunRecord[] = [];
  const httpUpRoots = [up1.pid, up2.pid];
  const grpcUpRoots = grpcUps.map((u) => u.pid);
  /** h2load streams started against each gRPC case, warm-ups included: what Sluice's own counts are reconciled with. */
  const h2loadStarted = new Map<CaseId, number>();
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
        h2load: null, h2loadOutput: null, error: null, proxyCpuSeconds: null, proxyCpuUsPerReq: null, upstreamCpuSeconds: null, upstreamCpuUsPerReq: null,
        redisCpuSeconds: null, redisCpuUsPerReq: null, upstreamRequests: null, restartedBefore,
        foreignCpuSeconds: null, foreignCpuShare: null, waitedForQuietS: null,
      };
      runs.push(rec);
      if (opts.quietWaitS > 0) {
        const waited = await waitForQuiet(opts.quietWaitS);
        rec.waitedForQuietS = waited.seconds;
        if (waited.seconds >= 1) console.log(`  ${c.id} ${c.name}: waited ${waited.seconds} s for a quiet machine${waited.quiet ? '' : ' (not quiet: measured anyway)'}`);
      }
      const grpc = c.kind === 'grpc';
      const countStarted = (n: number): void => void h2loadStarted.set(c.id, (h2loadStarted.get(c.id) ?? 0) + n);
      if (opts.warmupS > 0) {
        try {
          if (grpc) {
            const w = await runH2load({ ...h2Params, durationS: opts.warmupS }, c.url!, null);
            countStarted(w.result.started);
            rec.warmup = { requests: w.result.requests, rps: w.result.rps, errors: w.result.errors, started: w.result.started };
          } else {
            const w = await runWrk({ ...wrkParams, durationS: opts.warmupS }, c.url!);
            rec.warmup = { requests: w.result.requests, rps: w.result.rps, errors: w.result.errors };
          }
        } catch (err) {
          rec.warmup = { error: (err as Error).message };
        }
      }
      const counts = grpc ? grpcCounts : upstreamCounts;
      const upRoots = grpc ? grpcUpRoots : httpUpRoots;
      const countsBefore = await counts();
      const proxyBefore = treeTicks(c.cpuRoots);
      const upBefore = treeTicks(upRoots);
      const helperRoots = c.helpers.map((m) => m.pid);
      const helpersBefore = treeTicks(helperRoots);
      const foreignBefore = foreignSnapshot();
      try {
        let reqs: number;
        if (grpc) {
          const w = await runH2load(h2Params, c.url!, path.join(tmp, `h2load-${c.id}-${round}.log`));
          rec.h2load = w.result;
          rec.h2loadOutput = w.raw;
          countStarted(w.result.started);
          reqs = w.result.requests;
        } else {
          const w = await runWrk(wrkParams, c.url!);
          rec.wrk = w.result;
          rec.wrkOutput = w.raw;
          reqs = w.result.requests;
        }
        const proxyAfter = treeTicks(c.cpuRoots);
        const upAfter = treeTicks(upRoots);
        const helpersAfter = treeTicks(helperRoots);
        const foreign = foreignCpuSince(foreignBefore, os.cpus().length);
        rec.foreignCpuSeconds = foreign.seconds;
        rec.foreignCpuShare = foreign.share;
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
      const countsAfter = await counts();
      if (countsBefore && countsAfter) {
        rec.upstreamRequests = { v1: countsAfter.v1 - countsBefore.v1, v2: countsAfter.v2 - countsBefore.v2 };
      }
      const w = loadOf(rec);
      console.log(
        `[${round}/${opts.rounds}] ${c.id} ${c.name.padEnd(16)} ` +
          (w
            ? `${fmt(w.rps, 0).padStart(7)} rps  p50 ${fmt(w.p50, 2)} ms  p99 ${fmt(w.p99, 2)} ms  ` +
              `cpu ${rec.proxyCpuUsPerReq === null ? '-' : fmt(rec.proxyCpuUsPerReq, 1)} µs/req  errors ${w.errors}` +
              (rec.foreignCpuShare !== null && rec.foreignCpuShare >= FOREIGN_SHARE_FLAG
                ? `  (!) other processes used ${fmt(rec.foreignCpuShare * 100, 0)}% of the machine`
                : '')
            : `ERROR: ${rec.error}`),
      );
      // The calls h2load abandoned at its stop are still being answered by the proxy: let them drain
      // before the next case is measured, so their CPU is not charged to it.
      if (grpc && c.cpuRoots.length > 0) await new Promise((r) => setTimeout(r, 500));
    }
  }

  // ---- summary
  const summary = cases.map((c) => {
    const ok = runs.filter((r) => r.case === c.id && loadOf(r) !== null);
    const figures = ok.map((r) => loadOf(r)!);
    const failedRuns = runs.filter((r) => r.case === c.id && loadOf(r) === null).length;
    const cpu = ok.map((r) => r.proxyCpuUsPerReq).filter((x): x is number => x !== null);
    const v1 = ok.reduce((s, r) => s + (r.upstreamRequests?.v1 ?? 0), 0);
    const v2 = ok.reduce((s, r) => s + (r.upstreamRequests?.v2 ?? 0), 0);
    const reqs = figures.reduce((s, f) => s + f.requests, 0);
    const problems = [...c.restarts];
    if (failedRuns > 0) problems.push(`${failedRuns} run(s) failed`);
    if (ok.length > 0 && c.status === 'failed' && c.note) problems.push(c.note);
    if (ok.length > 0 && ok.length < opts.rounds) problems.push(`only ${ok.length} of ${opts.rounds} run(s) measured`);
    const errors = figures.reduce((s, f) => s + f.errors, 0);
    const foreignMax = Math.max(0, ...ok.map((r) => r.foreignCpuShare ?? 0));
    if (foreignMax >= FOREIGN_SHARE_FLAG) problems.push(`other processes used up to ${fmt(foreignMax * 100, 0)}% of the machine during a run`);
    if (errors > 0) {
      problems.push(c.kind === 'grpc' ? `${errors} calls failed (non-2xx/3xx), errored or timed out in h2load` : `${errors} non-2xx responses or socket errors`);
    }
    return {
      case: c.id,
      name: c.name,
      description: c.description,
      kind: c.kind,
      tool: c.kind === 'grpc' ? 'h2load' : 'wrk',
      status: ok.length > 0 ? 'measured' : c.status === 'skipped' ? 'skipped' : 'failed',
      note: ok.length > 0 ? null : c.note ?? 'no run measured',
      /** Anything that makes this case's figures suspect (flagged `(!)` in the table). */
      problems,
      runs: ok.length,
      rps: median(figures.map((f) => f.rps)),
      p50Ms: median(figures.map((f) => f.p50)),
      p99Ms: median(figures.map((f) => f.p99)),
      proxyCpuUsPerReq: c.cpuRoots.length > 0 ? median(cpu) : null,
      upstreamCpuUsPerReq: median(ok.map((r) => r.upstreamCpuUsPerReq).filter((x): x is number => x !== null)),
      redisCpuUsPerReq: median(ok.map((r) => r.redisCpuUsPerReq).filter((x): x is number => x !== null)),
      /** The largest share of the machine other processes took during one of this case's runs. */
      foreignCpuShareMax: ok.length > 0 ? foreignMax : null,
      errors,
      failedRuns,
      // gRPC: of the calls the upstreams answered (h2load's calls in flight at its stop are answered too, not counted by it).
      upstreamShare: c.kind === 'grpc' ? (v1 + v2 > 0 ? { v1: v1 / (v1 + v2), v2: v2 / (v1 + v2) } : null) : reqs > 0 ? { v1: v1 / reqs, v2: v2 / reqs } : null,
    };
  });
  const S = (id: CaseId) => summary.find((s) => s.case === id)!;
  const ratios = {
    rps: {
      c_over_b: ratio(S('c').rps, S('b').rps), d_over_b: ratio(S('d').rps, S('b').rps), c_over_a: ratio(S('c').rps, S('a').rps),
      f_over_c: ratio(S('f').rps, S('c').rps),
      h_over_i: ratio(S('h').rps, S('i').rps), h_over_g: ratio(S('h').rps, S('g').rps), i_over_g: ratio(S('i').rps, S('g').rps),
      j_over_k: ratio(S('j').rps, S('k').rps), j_over_c: ratio(S('j').rps, S('c').rps), k_over_e: ratio(S('k').rps, S('e').rps),
    },
    p99DeltaMs: {
      c_minus_b: diff(S('c').p99Ms, S('b').p99Ms), d_minus_b: diff(S('d').p99Ms, S('b').p99Ms),
      f_minus_c: diff(S('f').p99Ms, S('c').p99Ms),
      h_minus_i: diff(S('h').p99Ms, S('i').p99Ms), j_minus_k: diff(S('j').p99Ms, S('k').p99Ms),
    },
    cpuPerReq: {
      c_over_b: ratio(S('c').proxyCpuUsPerReq, S('b').proxyCpuUsPerReq), d_over_b: ratio(S('d').proxyCpuUsPerReq, S('b').proxyCpuUsPerReq),
      f_over_c: ratio(S('f').proxyCpuUsPerReq, S('c').proxyCpuUsPerReq),
      h_over_i: ratio(S('h').proxyCpuUsPerReq, S('i').proxyCpuUsPerReq),
      j_over_k: ratio(S('j').proxyCpuUsPerReq, S('k').proxyCpuUsPerReq), j_over_c: ratio(S('j').proxyCpuUsPerReq, S('c').proxyCpuUsPerReq),
      k_over_e: ratio(S('k').proxyCpuUsPerReq, S('e').proxyCpuUsPerReq),
    },
  };
  // gRPC through Sluice against nginx grpc_pass (issue 13). null: not measurable in this run.
  const grpcTarget = {
    ...GRPC_TARGET,
    rpsRatio: ratios.rps.h_over_i,
    met: ratios.rps.h_over_i === null ? null : ratios.rps.h_over_i >= GRPC_TARGET.rpsRatioMin,
  };

  // Sluice's own count of the gRPC calls of case h, by version and grpc-status, against what was sent:
  // every stream h2load started (warm-ups and streams in flight at its stops included) plus the sanity calls.
  let grpcCalls: Record<string, unknown> | null = null;
  if (h.status === 'ready' && h.adminUrl) grpcCalls = await scrapeGrpcCalls(h.adminUrl, (h2loadStarted.get('h') ?? 0) + (sanityCalls.get('h') ?? 0));

  // The TLS version and cipher each HTTPS case negotiates with OpenSSL's client defaults (as wrk's).
  const tlsNegotiated: Record<string, { protocol: string | null; cipher: string | null } | { error: string }> = {};
  for (const c of [j, k]) if (c.status === 'ready') tlsNegotiated[c.id] = opensslBrief(Number(new URL(c.url!).port));
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
  for (const id of ['c', 'd', 'f', 'h', 'j'] as const) {
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
  if (/[ghi]/.test(opts.cases)) {
    console.log('g–i: rps = unary gRPC calls/s that h2load saw succeed (2xx), p50/p99 from its per-request log; errors = failed/errored/timed-out calls');
  }
  console.log('');
  console.log(
    `rps ratio   c/b ${fmtRatio(ratios.rps.c_over_b)}   d/b ${fmtRatio(ratios.rps.d_over_b)}   c/a ${fmtRatio(ratios.rps.c_over_a)}`,
  );
  console.log(`p99 delta   c−b ${fmtDelta(ratios.p99DeltaMs.c_minus_b)}   d−b ${fmtDelta(ratios.p99DeltaMs.d_minus_b)}`);
  console.log(`CPU/req     c/b ${fmtRatio(ratios.cpuPerReq.c_over_b)}   d/b ${fmtRatio(ratios.cpuPerReq.d_over_b)}`);
  const met = (x: boolean | null): string => (x === null ? 'n/a' : x ? 'met' : 'NOT met');
  if (opts.cases.includes('f')) {
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
  if (/[ghi]/.test(opts.cases)) {
    console.log(
      `gRPC        calls/s h/i ${fmtRatio(ratios.rps.h_over_i)} (target ≥ ${GRPC_TARGET.rpsRatioMin}: ${met(grpcTarget.met)})   ` +
        `h/g ${fmtRatio(ratios.rps.h_over_g)}   i/g ${fmtRatio(ratios.rps.i_over_g)}   ` +
        `p99 h−i ${fmtDelta(ratios.p99DeltaMs.h_minus_i)}   CPU/call h/i ${fmtRatio(ratios.cpuPerReq.h_over_i)}`,
    );
  }
  if (grpcCalls) {
    const byStatus = grpcCalls['byStatus'] as Record<string, number>;
    console.log(
      `            h as Sluice counted it: sluice_grpc_calls_total ${Object.entries(byStatus).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}` +
        ` of ${String(grpcCalls['expected'])} calls sent (h2load streams started + sanity calls)` +
        `; upstream errors ${String(grpcCalls['upstreamErrors'])}; HTTP codes ${JSON.stringify(grpcCalls['httpCodes'])}`,
    );
  }
  if (/[jk]/.test(opts.cases)) {
    console.log(
      `HTTPS       rps j/k ${fmtRatio(ratios.rps.j_over_k)}   p99 j−k ${fmtDelta(ratios.p99DeltaMs.j_minus_k)}   CPU/req j/k ${fmtRatio(ratios.cpuPerReq.j_over_k)}` +
        `   · TLS cost: rps j/c ${fmtRatio(ratios.rps.j_over_c)}, k/e ${fmtRatio(ratios.rps.k_over_e)}; CPU/req j/c ${fmtRatio(ratios.cpuPerReq.j_over_c)}, k/e ${fmtRatio(ratios.cpuPerReq.k_over_e)}`,
    );
    for (const [id, t] of Object.entries(tlsNegotiated)) {
      console.log(`            ${id} negotiates ${'error' in t ? `? (${t.error})` : `${t.protocol ?? '?'} ${t.cipher ?? '?'}`} with OpenSSL's client defaults`);
    }
  }
  for (const id of ['c', 'd', 'f', 'h', 'i', 'j'] as const) {
    const s = S(id);
    if (s.status === 'measured' && s.upstreamShare) {
      console.log(
        `upstream share ${id}: v1 ${fmt(s.upstreamShare.v1 * 100, 1)}%  v2 ${fmt(s.upstreamShare.v2 * 100, 1)}%  ` +
          `of ${S(id).kind === 'grpc' ? 'the calls the upstreams answered' : 'client requests'}` +
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
    h2load: {
      clients: h2Params.clients,
      streams: h2Params.streams,
      durationS: h2Params.durationS,
      args: h2loadArgs({ ...h2Params, dataFile: '<SayRequest file>' }, `<origin>${SAY_PATH}`, '<log file>'),
      request: `SayRequest { text: ${JSON.stringify(BENCH_SAY_TEXT)} }, ${sayRequest(BENCH_SAY_TEXT).length} bytes with the gRPC prefix`,
      nginxGrpcKeepalive: NGINX_GRPC_KEEPALIVE,
    },
    ratios,
    redisTarget,
    grpcTarget,
    grpcCalls,
    tlsNegotiated,
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

/** Until other processes use less than FOREIGN_SHARE_FLAG of the machine for a whole second, at most `maxS` seconds. */
async function waitForQuiet(maxS: number): Promise<{ seconds: number; quiet: boolean }> {
  const start = Date.now();
  for (;;) {
    const before = foreignSnapshot();
    await new Promise((r) => setTimeout(r, 1000));
    if (foreignCpuSince(before, os.cpus().length).share < FOREIGN_SHARE_FLAG) return { seconds: Math.round((Date.now() - start) / 1000) - 1, quiet: true };
    if (Date.now() - start >= maxS * 1000) return { seconds: Math.round((Date.now() - start) / 1000), quiet: false };
  }
}

/**
 * Sluice's sluice_grpc_calls_total (by grpc_status, summed over versions, and per version),
 * sluice_requests_total codes and non-zero sluice_upstream_errors_total, read once the counts
 * have settled (the calls h2load abandons at its stop are finished by Sluice after it).
 */
async function scrapeGrpcCalls(adminUrl: string, expected: number): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = { expected };
  let last = -1;
  for (let attempt = 0; attempt < 20; attempt++) {
    let body: string;
    try {
      const r = await httpGet(`${adminUrl}/metrics`, { timeoutMs: 3000 });
      body = r.body;
    } catch (err) {
      return { ...out, error: (err as Error).message };
    }
    const byStatus: Record<string, number> = {};
    const byVersion: Record<string, Record<string, number>> = {};
    const httpCodes: Record<string, number> = {};
    const upstreamErrors: Record<string, number> = {};
    let total = 0;
    for (const m of body.matchAll(/^sluice_grpc_calls_total\{([^}]*)\} (\S+)$/gm)) {
      const labels = Object.fromEntries([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1]!, x[2]!]));
      const n = Number(m[2]);
      const st = labels['grpc_status'] ?? '?';
      const v = labels['version'] ?? '?';
      byStatus[st] = (byStatus[st] ?? 0) + n;
      (byVersion[v] ??= {})[st] = n;
      total += n;
    }
    for (const m of body.matchAll(/^sluice_requests_total\{[^}]*code="(\d+)"[^}]*\} (\S+)$/gm)) {
      httpCodes[m[1]!] = (httpCodes[m[1]!] ?? 0) + Number(m[2]);
    }
    for (const m of body.matchAll(/^sluice_upstream_errors_total\{[^}]*version="([^"]*)"[^}]*reason="([^"]*)"[^}]*\} (\S+)$/gm)) {
      if (Number(m[3]) > 0) upstreamErrors[`${m[1]}/${m[2]}`] = Number(m[3]);
    }
    Object.assign(out, { total, byStatus, byVersion, httpCodes, upstreamErrors: Object.keys(upstreamErrors).length === 0 ? 'none' : upstreamErrors });
    if (total === last && total >= expected) break;
    last = total;
    await new Promise((r) => setTimeout(r, 250));
  }
  const ok = (out['byStatus'] as Record<string, number> | undefined)?.['OK'] ?? 0;
  out['ok'] = ok;
  out['notOk'] = ((out['total'] as number | undefined) ?? 0) - ok;
  return out;
}

/** `openssl s_client -brief` against 127.0.0.1:`port`: the protocol and cipher OpenSSL's client defaults (wrk's) negotiate. */
function opensslBrief(port: number): { protocol: string | null; cipher: string | null } | { error: string } {
  const r = spawnSync('openssl', ['s_client', '-brief', '-connect', `127.0.0.1:${port}`], { input: '', encoding: 'utf8', timeout: 5000 });
  if (r.error) return { error: r.error.message };
  const text = `${r.stdout ?? ''}\n${r.stderr ?? ''}`;
  return {
    protocol: /^Protocol version:\s*(\S+)/m.exec(text)?.[1] ?? null,
    cipher: /^Ciphersuite:\s*(\S+)/m.exec(text)?.[1] ?? null,
  };
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
