/**
 * `npm run bench:dashboards` — what open dashboards (issue 15) cost Sluice:
 *
 *  1. idle: Sluice's CPU with 0, 1, N, 1, then 0 dashboards' event streams
 *     open (GET /dashboard/events, as the page reads it) and no traffic, an
 *     experiment iterating: the cost of an idle page, as % of one core;
 *  2. load: `npm run bench`'s cases b (bare @fastify/http-proxy) and c
 *     (Sluice, 90/10 sticky) under the same wrk load, c measured without and
 *     with N streams open for the whole run, alternating (b c0 cN, then
 *     cN c0 b, …) so drift hits every run alike; reported as c/b for rps and
 *     for proxy CPU per request, without and with the dashboards.
 *
 * Every stream watches the experiment (the heaviest view: overview, live
 * figures and the experiment with its charts). The streams are read by this
 * process, so their parsing is not charged to Sluice. One Sluice process
 * serves both c conditions.
 *
 * Env: BENCH_DURATION (s, 10), BENCH_ROUNDS (4), BENCH_CONNECTIONS (50),
 * BENCH_WARMUP (s, 2), BENCH_DASHBOARDS (50), BENCH_IDLE (s per idle
 * condition, 30), BENCH_KEEP_TMP=1. Flag --quick: 3 s runs, 1 round, 10 s idle.
 * Needs wrk. Results: bench/results/dashboards-<time>.json.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { envInt as envIntOf, quickFlag } from './lib/args.js';
import { Client } from 'undici';
import { sluiceYaml } from './lib/configs.js';
import { freePorts, httpGet, waitFor200 } from './lib/net.js';
import {
  clkTck, commandExists, cpuSecondsBetween, foreignCpuSince, foreignSnapshot, hasExited, killAll, killAllSync, logTail, spawnManaged, treeTicks, type Managed,
} from './lib/procs.js';
import { median, ratio } from './lib/stats.js';
import { runWrk, type WrkParams } from './lib/wrk.js';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(BENCH_DIR, '..');
const EXPERIMENT = 'bench-ab';

const argv = process.argv.slice(2);
if (argv.includes('--help') || argv.includes('-h')) {
  console.log('usage: npm run bench:dashboards [-- --quick]   (env: BENCH_DURATION, BENCH_ROUNDS, BENCH_CONNECTIONS, BENCH_WARMUP, BENCH_DASHBOARDS, BENCH_IDLE, BENCH_KEEP_TMP)');
  process.exit(0);
}
const quick = quickFlag(argv, 'bench');

const envInt = (name: string, def: number, min: number): number => envIntOf('bench', name, def, min);

const opts = {
  durationS: envInt('BENCH_DURATION', quick ? 3 : 10, 1),
  rounds: envInt('BENCH_ROUNDS', quick ? 1 : 4, 1),
  connections: envInt('BENCH_CONNECTIONS', 50, 1),
  warmupS: envInt('BENCH_WARMUP', 2, 0),
  dashboards: envInt('BENCH_DASHBOARDS', 50, 1),
  idleS: envInt('BENCH_IDLE', quick ? 10 : 30, 1),
  keepTmp: process.env['BENCH_KEEP_TMP'] === '1',
};

const wrkParams: WrkParams = { threads: 1, connections: opts.connections, durationS: opts.durationS, script: path.join(BENCH_DIR, 'wrk-sticky.lua') };

function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SLUICE_')) env[k] = v;
  return { ...env, ...extra };
}

const tsArgs = (script: string, args: readonly (string | number)[]) => ['--import', 'tsx', path.join(BENCH_DIR, script), ...args.map(String)];

// ------------------------------------------------------------ dashboards' streams

interface Stream {
  events: number;
  close(): void;
}

/** One page's stream, as the page reads it: a GET kept open, events counted. */
async function openStream(adminUrl: string): Promise<Stream> {
  const client = new Client(adminUrl, { bodyTimeout: 0 });
  const res = await client.request({ method: 'GET', path: `/dashboard/events?experiment=${EXPERIMENT}`, headers: { accept: 'text/event-stream' } });
  if (res.statusCode !== 200) throw new Error(`GET /dashboard/events answered ${res.statusCode}`);
  const s: Stream = { events: 0, close: () => void client.destroy().catch(() => {}) };
  void (async () => {
    try {
      for await (const chunk of res.body) s.events += ((chunk as Buffer).toString('utf8').match(/^event: /gm) ?? []).length;
    } catch {
      // closed
    }
  })();
  return s;
}

async function openStreams(adminUrl: string, n: number): Promise<Stream[]> {
  const streams = await Promise.all(Array.from({ length: n }, () => openStream(adminUrl)));
  // Each has had its first events (the whole state) before anything is measured.
  const deadline = Date.now() + 10_000;
  while (streams.some((s) => s.events < 3) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  return streams;
}

// ------------------------------------------------------------------- main

interface Run {
  round: number;
  case: 'b' | 'c0' | 'cN';
  rps: number | null;
  p99: number | null;
  cpuUsPerReq: number | null;
  errors: number | null;
  /** Share of the machine other processes (not this bench's) used during the run: ≥ 5% is flagged (!). */
  otherLoad: number | null;
  /** cN: events the streams received during the measured run. */
  streamEvents: number | null;
  error: string | null;
}

async function main(): Promise<number> {
  if (!commandExists('wrk')) {
    console.error('bench: wrk is not installed (apt-get install wrk)');
    return 2;
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-dash-'));
  const cpuModel = /^model name\s*:\s*(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? 'unknown';
  console.log(`Sluice dashboards bench — node ${process.version}, ${cpuModel} x${os.cpus().length}`);
  console.log(`${opts.dashboards} dashboards · idle ${opts.idleS} s per condition · wrk -t1 -c${opts.connections} -d${opts.durationS}s · warm-up ${opts.warmupS}s · ${opts.rounds} round(s) · tmp ${tmp}`);

  const [up1Port, up2Port, barePort, cPort, cAdmin] = (await freePorts(5)) as [number, number, number, number, number];
  const spawn = async (name: string, args: string[], ready: string, env: NodeJS.ProcessEnv = childEnv()): Promise<Managed> => {
    const m = spawnManaged({ name, cmd: process.execPath, args, cwd: ROOT, env, logPath: path.join(tmp, `${name}.log`) });
    const why = await waitFor200(ready, 15_000, () => hasExited(m.child));
    if (why) throw new Error(`${name} did not start: ${why}\n${logTail(m)}`);
    return m;
  };
  await spawn('upstream-v1', tsArgs('upstream.ts', [up1Port, 'v1']), `http://127.0.0.1:${up1Port}/__bench/count`);
  await spawn('upstream-v2', tsArgs('upstream.ts', [up2Port, 'v2']), `http://127.0.0.1:${up2Port}/__bench/count`);
  const bare = await spawn('bare-proxy', tsArgs('bare-proxy.ts', [barePort, up1Port]), `http://127.0.0.1:${barePort}/`);
  const yaml = path.join(tmp, 'sluice-c.yaml');
  fs.writeFileSync(yaml, sluiceYaml({ port: cPort, adminPort: cAdmin, v1Port: up1Port, v2Port: up2Port, mirror: false }));
  const adminUrl = `http://127.0.0.1:${cAdmin}`;
  const sluice = await spawn('sluice-c', [path.join(ROOT, 'bin', 'sluice.js'), 'start', '-c', yaml], `${adminUrl}/readyz`, childEnv({ SLUICE_LOG_LEVEL: 'warn' }));

  // An experiment keeping c's 90/10 (FixedSplit, never deciding), iterating every 5 s: what the dashboards watch.
  const put = await fetch(`${adminUrl}/experiments/${EXPERIMENT}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      kind: 'Experiment',
      name: EXPERIMENT,
      spec: {
        route: 'bench',
        versions: [{ name: 'v1' }, { name: 'v2' }],
        testingPattern: 'A/B',
        deploymentPattern: 'FixedSplit',
        criteria: { reward: { metric: 'conversion-rate' }, objectives: [{ metric: 'error-rate', upperLimit: 0.01 }], minSamples: 1_000_000_000 },
        weights: { initial: { v1: 90, v2: 10 } },
        duration: { intervalSeconds: 5, maxIterations: 10_000 },
      },
    }),
  });
  if (put.status !== 201) throw new Error(`applying the experiment answered ${put.status}: ${await put.text()}`);
  const page = await httpGet(`${adminUrl}/`);
  const pageBytes = Buffer.byteLength(page.body);
  console.log(`page: ${pageBytes} bytes (${(pageBytes / 1024).toFixed(1)} KiB), status ${page.status}`);

  // ---- 1. idle: no traffic
  const cpuShare = async (seconds: number): Promise<number> => {
    const before = treeTicks([sluice.pid]);
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    return cpuSecondsBetween(before, treeTicks([sluice.pid])) / ((Date.now() - t0) / 1000);
  };
  await new Promise((r) => setTimeout(r, 2000)); // settle after start
  // 0 1 N 1 0: each count measured early and late, so what the process does anyway (JIT, GC,
  // iterations every 5 s) falls on every count alike. The figure per count is the mean of its runs.
  const idleRuns: Record<string, number[]> = {};
  for (const n of [0, 1, opts.dashboards, 1, 0]) {
    const streams = n > 0 ? await openStreams(adminUrl, n) : [];
    await new Promise((r) => setTimeout(r, 1500)); // past the first events
    const foreign = foreignSnapshot();
    const share = await cpuShare(opts.idleS);
    const other = foreignCpuSince(foreign, os.cpus().length).share;
    (idleRuns[String(n)] ??= []).push(share);
    const events = streams.reduce((s, x) => s + x.events, 0);
    for (const s of streams) s.close();
    console.log(
      `idle, ${String(n).padStart(2)} dashboard(s): Sluice CPU ${(share * 100).toFixed(2)}% of one core${n > 0 ? ` (${events} events received in all)` : ''}` +
        (other >= 0.05 ? `  (!) other processes used ${(other * 100).toFixed(0)}% of the machine` : ''),
    );
    await new Promise((r) => setTimeout(r, 1000));
  }
  const idle: Record<string, number> = Object.fromEntries(Object.entries(idleRuns).map(([n, xs]) => [n, xs.reduce((a, b) => a + b, 0) / xs.length]));

  // ---- 2. load: b, c without and with the dashboards, alternating
  const runs: Run[] = [];
  const cases: Array<Run['case']> = ['b', 'c0', 'cN'];
  for (let round = 1; round <= opts.rounds; round++) {
    for (const id of round % 2 === 1 ? cases : [...cases].reverse()) {
      const url = id === 'b' ? `http://127.0.0.1:${barePort}/` : `http://127.0.0.1:${cPort}/`;
      const proc = id === 'b' ? bare : sluice;
      const run: Run = { round, case: id, rps: null, p99: null, cpuUsPerReq: null, errors: null, otherLoad: null, streamEvents: null, error: null };
      runs.push(run);
      const streams = id === 'cN' ? await openStreams(adminUrl, opts.dashboards) : [];
      try {
        if (opts.warmupS > 0) await runWrk({ ...wrkParams, durationS: opts.warmupS }, url);
        const eventsBefore = streams.reduce((s, x) => s + x.events, 0);
        const before = treeTicks([proc.pid]);
        const foreign = foreignSnapshot();
        const w = await runWrk(wrkParams, url);
        const cpu = cpuSecondsBetween(before, treeTicks([proc.pid]));
        run.otherLoad = foreignCpuSince(foreign, os.cpus().length).share;
        run.rps = w.result.rps;
        run.p99 = w.result.percentilesMs.p99;
        run.errors = w.result.errors;
        run.cpuUsPerReq = w.result.requests > 0 ? (cpu * 1e6) / w.result.requests : null;
        if (id === 'cN') run.streamEvents = streams.reduce((s, x) => s + x.events, 0) - eventsBefore;
      } catch (err) {
        run.error = (err as Error).message;
      } finally {
        for (const s of streams) s.close();
      }
      console.log(
        `[${round}/${opts.rounds}] ${id.padEnd(3)} ${run.error ?? `${run.rps!.toFixed(0).padStart(6)} rps  p99 ${run.p99!.toFixed(2)} ms  cpu ${run.cpuUsPerReq?.toFixed(1) ?? '-'} µs/req  errors ${run.errors}`}` +
          (run.streamEvents !== null ? `  (${opts.dashboards} streams got ${run.streamEvents} events)` : '') +
          (run.otherLoad !== null && run.otherLoad >= 0.05 ? `  (!) other processes used ${(run.otherLoad * 100).toFixed(0)}% of the machine` : ''),
      );
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  // ---- report: c/b per round (each round's c against the same round's b), then medians
  const per = (id: Run['case'], f: (r: Run) => number | null) => runs.filter((r) => r.case === id).map(f).filter((x): x is number => x !== null);
  const rpsRatios = (id: 'c0' | 'cN') => runs.filter((r) => r.case === id).map((c) => ratio(c.rps, runs.find((b) => b.case === 'b' && b.round === c.round)?.rps)).filter((x): x is number => x !== null);
  const cpuRatios = (id: 'c0' | 'cN') => runs.filter((r) => r.case === id).map((c) => ratio(c.cpuUsPerReq, runs.find((b) => b.case === 'b' && b.round === c.round)?.cpuUsPerReq)).filter((x): x is number => x !== null);
  const summary = {
    rps: { b: median(per('b', (r) => r.rps)), c0: median(per('c0', (r) => r.rps)), cN: median(per('cN', (r) => r.rps)) },
    cpuUsPerReq: { b: median(per('b', (r) => r.cpuUsPerReq)), c0: median(per('c0', (r) => r.cpuUsPerReq)), cN: median(per('cN', (r) => r.cpuUsPerReq)) },
    p99Ms: { b: median(per('b', (r) => r.p99)), c0: median(per('c0', (r) => r.p99)), cN: median(per('cN', (r) => r.p99)) },
    rpsCOverB: { without: median(rpsRatios('c0')), with: median(rpsRatios('cN')), withoutRounds: rpsRatios('c0'), withRounds: rpsRatios('cN') },
    cpuCOverB: { without: median(cpuRatios('c0')), with: median(cpuRatios('cN')), withoutRounds: cpuRatios('c0'), withRounds: cpuRatios('cN') },
    idleCpuShareOfOneCore: idle,
    idleRuns,
    pageBytes,
  };
  const f2 = (x: number | null) => (x === null ? '-' : x.toFixed(2));
  const list = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(' ');
  console.log('');
  console.log(`idle Sluice CPU (% of one core): 0 dashboards ${(idle['0']! * 100).toFixed(2)}% · 1: ${(idle['1']! * 100).toFixed(2)}% · ${opts.dashboards}: ${(idle[String(opts.dashboards)]! * 100).toFixed(2)}%`);
  console.log(`rps         b ${summary.rps.b?.toFixed(0)} · c ${summary.rps.c0?.toFixed(0)} · c+${opts.dashboards} ${summary.rps.cN?.toFixed(0)}`);
  console.log(`rps c/b     without ${f2(summary.rpsCOverB.without)} (rounds ${list(summary.rpsCOverB.withoutRounds)}) · with ${opts.dashboards} dashboards ${f2(summary.rpsCOverB.with)} (rounds ${list(summary.rpsCOverB.withRounds)})`);
  console.log(`CPU/req c/b without ${f2(summary.cpuCOverB.without)} (rounds ${list(summary.cpuCOverB.withoutRounds)}) · with ${opts.dashboards} dashboards ${f2(summary.cpuCOverB.with)} (rounds ${list(summary.cpuCOverB.withRounds)})`);
  const out = path.join(BENCH_DIR, 'results', `dashboards-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(out, JSON.stringify({ startedAt: new Date().toISOString(), node: process.version, cpuModel, cores: os.cpus().length, clkTck: clkTck(), opts, runs, summary }, null, 2));
  console.log(`results: ${path.relative(ROOT, out)}`);
  if (!opts.keepTmp) fs.rmSync(tmp, { recursive: true, force: true });
  return runs.some((r) => r.error !== null) ? 1 : 0;
}

process.on('exit', () => killAllSync());
process.on('SIGINT', () => {
  void killAll().then(() => process.exit(130));
});
main().then(
  async (code) => {
    await killAll();
    process.exit(code);
  },
  async (err: unknown) => {
    console.error(`bench: ${(err as Error).message}`);
    await killAll();
    process.exit(2);
  },
);
