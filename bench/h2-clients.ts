/**
 * `npm run bench:h2-clients` — which HTTP/2 client should Sluice use towards
 * h2c/h2 versions? undici 7's (`new Client(origin, { allowH2: true, useH2c:
 * true })`, the dispatch API Sluice's forward.ts uses) against node:http2's
 * `ClientHttp2Session.request` (what proxy/h2-upstreams.ts uses), in one run:
 *
 *   1. throughput: unary gRPC-shaped POSTs (bench/lib/grpc.ts's SayRequest) to
 *      the bench's fast h2c server (bench/grpc-upstream.ts, its own process),
 *      the same number in flight on one connection for each client, rounds
 *      alternating undici / node / undici / node …; calls/s and this process's
 *      CPU per call (the server's too, to show both clients load it alike);
 *   2. correctness: does each client hand over the response trailers
 *      (grpc-status), a trailers-only answer (one HEADERS frame with
 *      END_STREAM carrying grpc-status), the upstream's RST_STREAM error code,
 *      a stream that stays quiet longer than the client's body timeout, and
 *      both directions at once (each request chunk sent only after the
 *      previous one came back, as a bidirectional gRPC call may)?
 *
 * Env: H2C_DURATION (s per round, default 5; 2 with --quick), H2C_ROUNDS (3;
 * 1 with --quick), H2C_CONCURRENCY (100 calls in flight), H2C_WARMUP (s, 1),
 * H2C_BODY_TIMEOUT_MS (500: undici's bodyTimeout for the idle check; the
 * server stays quiet 3× as long). Writes bench/results/h2-clients-<ISO>.json.
 */
import fs from 'node:fs';
import http2, { constants as h2c } from 'node:http2';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { envInt as envIntOf, quickFlag } from './lib/args.js';
import { Client, type Dispatcher } from 'undici';

import { BENCH_SAY_TEXT, SAY_PATH, sayRequest, waitForGrpc } from './lib/grpc.js';
import { freePorts } from './lib/net.js';
import {
  clkTck, cpuSecondsBetween, foreignCpuSince, foreignSnapshot, hasExited, killAll, killAllSync, logTail, spawnManaged, treeTicks,
} from './lib/procs.js';
import { median } from './lib/stats.js';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(BENCH_DIR, '..');

const argv = process.argv.slice(2);
if (argv.includes('--help') || argv.includes('-h')) {
  console.log(`usage: npm run bench:h2-clients [-- --quick]

  --quick                   2 s per round, 1 round each
env H2C_DURATION=5          seconds per measured round
    H2C_ROUNDS=3            rounds per client (alternating undici, node, undici, node, …)
    H2C_CONCURRENCY=100     calls in flight, on one connection per client
    H2C_WARMUP=1            seconds of discarded calls before each round
    H2C_BODY_TIMEOUT_MS=500 undici bodyTimeout for the idle-stream check`);
  process.exit(0);
}
const quick = quickFlag(argv, 'bench:h2-clients');

const envInt = (name: string, def: number, min: number): number => envIntOf('bench:h2-clients', name, def, min);

const opts = {
  durationS: envInt('H2C_DURATION', quick ? 2 : 5, 1),
  rounds: envInt('H2C_ROUNDS', quick ? 1 : 3, 1),
  concurrency: envInt('H2C_CONCURRENCY', 100, 1),
  warmupS: envInt('H2C_WARMUP', 1, 0),
  bodyTimeoutMs: envInt('H2C_BODY_TIMEOUT_MS', 500, 50),
};

const BODY = sayRequest(BENCH_SAY_TEXT);
const REQUEST_HEADERS = { 'content-type': 'application/grpc', te: 'trailers' } as const;

// ------------------------------------------------------------------ clients

/** What one call saw, whichever client made it. */
interface CallOutcome {
  status: number;
  /** Response header names → first value. */
  headers: Record<string, string>;
  /** null: the client delivered no trailers. */
  trailers: Record<string, string> | null;
  bodyBytes: number;
  /** The error the client reported, if any. */
  error: { name: string; code: string | null; message: string } | null;
  /** node:http2 only: the stream's RST_STREAM code (null when closed without one, or not exposed). */
  rstCode: number | null;
  ms: number;
}

interface H2Client {
  readonly name: string;
  readonly description: string;
  /** One POST with `body`; `bodyTimeoutMs` only where the client has one. */
  call(pathname: string, body: Buffer): Promise<CallOutcome>;
  /**
   * Full duplex: sends `chunks` one at a time, each only after the previous one was echoed back
   * (bench/grpc-upstream.ts /PingPong). Resolves how many came back before the end or `timeoutMs`.
   */
  pingPong(chunks: number, timeoutMs: number): Promise<{ echoed: number; outcome: CallOutcome | null; timedOut: boolean }>;
  /** The fast path for the throughput rounds: resolves true for a complete answer with grpc-status 0. */
  say(): Promise<boolean>;
  close(): Promise<void>;
}

function first(v: unknown): string {
  if (Array.isArray(v)) return String(v[0]);
  return Buffer.isBuffer(v) ? v.toString('latin1') : String(v);
}

/** undici hands headers/trailers over as raw [name, value, …] buffers (HTTP/1.1) or a plain object (HTTP/2). */
function headerRecord(raw: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (raw == null) return out;
  if (Array.isArray(raw)) {
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const k = first(raw[i]).toLowerCase();
      out[k] ??= first(raw[i + 1]);
    }
    return out;
  }
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) if (v !== undefined) out[k.toLowerCase()] = first(v);
  return out;
}

function errorInfo(err: Error): CallOutcome['error'] {
  return { name: err.name, code: (err as { code?: string }).code ?? null, message: err.message };
}

/** undici 7: Client with allowH2 + useH2c, the legacy dispatch handler callbacks Sluice's forward.ts uses. */
function undiciClient(origin: string, concurrency: number, bodyTimeoutMs: number): H2Client {
  const client = new Client(origin, {
    allowH2: true,
    useH2c: true,
    // Without it undici keeps one request in flight per connection even over HTTP/2 (Sluice's pools set 100 too).
    pipelining: concurrency,
    maxConcurrentStreams: Math.max(100, concurrency),
    bodyTimeout: bodyTimeoutMs,
  } as Client.Options);
  const headers = { ...REQUEST_HEADERS };
  const say = (): Promise<boolean> =>
    new Promise((resolve) => {
      let status = 0;
      const handler = {
        onConnect() {},
        onHeaders(s: number) {
          status = s;
          return true;
        },
        onData() {
          return true;
        },
        onComplete(trailers: unknown) {
          resolve(status === 200 && headerRecord(trailers)['grpc-status'] === '0');
        },
        onError() {
          resolve(false);
        },
      };
      client.dispatch({ path: SAY_PATH, method: 'POST', headers, body: BODY }, handler as unknown as Dispatcher.DispatchHandler);
    });
  const call = (pathname: string, body: Buffer): Promise<CallOutcome> =>
    new Promise((resolve) => {
      const start = performance.now();
      const out: CallOutcome = { status: 0, headers: {}, trailers: null, bodyBytes: 0, error: null, rstCode: null, ms: 0 };
      const finish = (): void => {
        out.ms = performance.now() - start;
        resolve(out);
      };
      const handler = {
        onConnect() {},
        onHeaders(s: number, raw: unknown) {
          out.status = s;
          out.headers = headerRecord(raw);
          return true;
        },
        onData(chunk: Buffer) {
          out.bodyBytes += chunk.length;
          return true;
        },
        onComplete(trailers: unknown) {
          const t = headerRecord(trailers);
          out.trailers = Object.keys(t).length > 0 ? t : null;
          finish();
        },
        onError(err: Error) {
          out.error = errorInfo(err);
          finish();
        },
      };
      client.dispatch({ path: pathname, method: 'POST', headers, body }, handler as unknown as Dispatcher.DispatchHandler);
    });
  const pingPong = (chunks: number, timeoutMs: number): Promise<{ echoed: number; outcome: CallOutcome | null; timedOut: boolean }> =>
    new Promise((resolve) => {
      const start = performance.now();
      let echoed = 0;
      let wake: (() => void) | null = null;
      let settled = false;
      let abort: ((err?: Error) => void) | null = null;
      const out: CallOutcome = { status: 0, headers: {}, trailers: null, bodyBytes: 0, error: null, rstCode: null, ms: 0 };
      const done = (timedOut: boolean): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        out.ms = performance.now() - start;
        resolve({ echoed, outcome: out, timedOut });
        if (timedOut) abort?.(new Error('ping-pong timed out'));
      };
      const timer = setTimeout(() => done(true), timeoutMs);
      // Chunk i+1 is produced only once chunk i has come back.
      async function* body(): AsyncGenerator<Buffer> {
        for (let i = 0; i < chunks; i++) {
          yield Buffer.from(`ping ${i}\n`);
          if (echoed <= i) await new Promise<void>((r) => (wake = r));
        }
      }
      const handler = {
        onConnect(a: (err?: Error) => void) {
          abort = a;
        },
        onHeaders(s: number, raw: unknown) {
          out.status = s;
          out.headers = headerRecord(raw);
          return true;
        },
        onData(chunk: Buffer) {
          out.bodyBytes += chunk.length;
          echoed += chunk.toString('latin1').split('\n').length - 1;
          const w = wake;
          wake = null;
          w?.();
          return true;
        },
        onComplete(trailers: unknown) {
          const t = headerRecord(trailers);
          out.trailers = Object.keys(t).length > 0 ? t : null;
          done(false);
        },
        onError(err: Error) {
          out.error = errorInfo(err);
          done(false);
        },
      };
      client.dispatch(
        // undici takes an async iterable body at run time; its types list only Readable.
        { path: '/sluice.test.Echo/PingPong', method: 'POST', headers, body: body() as unknown as Buffer },
        handler as unknown as Dispatcher.DispatchHandler,
      );
    });
  return {
    name: 'undici',
    description: `undici Client { allowH2: true, useH2c: true, pipelining: ${concurrency} }, dispatch() with onConnect/onHeaders/onData/onComplete/onError`,
    call,
    pingPong,
    say,
    close: () => client.close(),
  };
}

/** node:http2: one ClientHttp2Session, session.request per call. */
function nodeClient(origin: string): H2Client {
  const session = http2.connect(origin);
  session.on('error', () => {});
  const headers = { ':method': 'POST', ':path': SAY_PATH, ...REQUEST_HEADERS };
  const noop = (): void => {};
  const say = (): Promise<boolean> =>
    new Promise((resolve) => {
      const s = session.request(headers);
      let ok = false;
      let status = 0;
      s.on('response', (h) => (status = Number(h[':status'])));
      s.on('trailers', (t) => (ok = status === 200 && t['grpc-status'] === '0'));
      s.on('data', noop);
      s.on('error', noop);
      s.on('close', () => resolve(ok));
      s.end(BODY);
    });
  const call = (pathname: string, body: Buffer): Promise<CallOutcome> =>
    new Promise((resolve) => {
      const start = performance.now();
      const out: CallOutcome = { status: 0, headers: {}, trailers: null, bodyBytes: 0, error: null, rstCode: null, ms: 0 };
      const s = session.request({ ...headers, ':path': pathname });
      s.on('response', (h) => {
        out.status = Number(h[':status']);
        out.headers = headerRecord(h);
      });
      s.on('trailers', (t) => (out.trailers = headerRecord(t)));
      s.on('data', (d: Buffer) => (out.bodyBytes += d.length));
      s.on('error', (err: Error) => (out.error = errorInfo(err)));
      s.on('close', () => {
        out.rstCode = s.rstCode === undefined || s.rstCode === h2c.NGHTTP2_NO_ERROR ? null : s.rstCode;
        out.ms = performance.now() - start;
        resolve(out);
      });
      s.end(body);
    });
  const pingPong = (chunks: number, timeoutMs: number): Promise<{ echoed: number; outcome: CallOutcome | null; timedOut: boolean }> =>
    new Promise((resolve) => {
      const start = performance.now();
      let echoed = 0;
      let settled = false;
      const out: CallOutcome = { status: 0, headers: {}, trailers: null, bodyBytes: 0, error: null, rstCode: null, ms: 0 };
      const s = session.request({ ...headers, ':path': '/sluice.test.Echo/PingPong' });
      const done = (timedOut: boolean): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        out.ms = performance.now() - start;
        resolve({ echoed, outcome: out, timedOut });
        if (timedOut) s.close(h2c.NGHTTP2_CANCEL);
      };
      const timer = setTimeout(() => done(true), timeoutMs);
      s.on('response', (h) => {
        out.status = Number(h[':status']);
        out.headers = headerRecord(h);
      });
      s.on('data', (d: Buffer) => {
        out.bodyBytes += d.length;
        echoed += d.toString('latin1').split('\n').length - 1;
        if (echoed < chunks) s.write(`ping ${echoed}\n`);
        else s.end();
      });
      s.on('trailers', (t) => (out.trailers = headerRecord(t)));
      s.on('error', (err: Error) => (out.error = errorInfo(err)));
      s.on('close', () => done(false));
      s.write('ping 0\n');
    });
  return {
    name: 'node:http2',
    description: 'http2.connect(origin), session.request(headers) per call: response/trailers/data/close events, stream.rstCode',
    call,
    pingPong,
    say,
    close: () => new Promise<void>((resolve) => session.close(() => resolve())),
  };
}

// -------------------------------------------------------------- throughput

interface Round {
  client: string;
  round: number;
  calls: number;
  failed: number;
  seconds: number;
  callsPerSec: number;
  cpuUsPerCall: number;
  serverCpuUsPerCall: number | null;
  /** Share of the machine processes outside this bench took during the round. */
  foreignCpuShare: number;
}

/** `concurrency` loops, each issuing calls back to back until `seconds` have passed. */
async function drive(c: H2Client, concurrency: number, seconds: number): Promise<{ calls: number; failed: number; elapsed: number }> {
  const deadline = performance.now() + seconds * 1000;
  let calls = 0;
  let failed = 0;
  const loop = async (): Promise<void> => {
    while (performance.now() < deadline) {
      if (await c.say()) calls++;
      else failed++;
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: concurrency }, loop));
  return { calls, failed, elapsed: (performance.now() - start) / 1000 };
}

// -------------------------------------------------------------- correctness

interface Check {
  id: string;
  what: string;
  path: string;
  /** Judges one client's outcome: [delivered?, what it saw]. */
  judge: (o: CallOutcome, client: string) => [boolean, string];
}

const RST_CODES: ReadonlyArray<[number, string]> = [
  [h2c.NGHTTP2_REFUSED_STREAM, 'REFUSED_STREAM'],
  [h2c.NGHTTP2_CANCEL, 'CANCEL'],
  [h2c.NGHTTP2_ENHANCE_YOUR_CALM, 'ENHANCE_YOUR_CALM'],
];

function describeError(o: CallOutcome): string {
  return o.error ? `${o.error.name}${o.error.code ? ` ${o.error.code}` : ''}: "${o.error.message}"` : 'no error';
}

function checks(bodyTimeoutMs: number): Check[] {
  const idleMs = bodyTimeoutMs * 3;
  return [
    {
      id: 'trailers',
      what: 'response trailers (grpc-status 0 after one DATA message)',
      path: SAY_PATH,
      judge: (o) => {
        const st = o.trailers?.['grpc-status'];
        return [st === '0', o.error ? describeError(o) : `status ${o.status}, ${o.bodyBytes} body bytes, trailers ${o.trailers ? JSON.stringify(o.trailers) : 'none'}`];
      },
    },
    {
      id: 'trailers-only',
      what: 'trailers-only answer (HEADERS + END_STREAM with grpc-status 5)',
      path: '/sluice.test.Echo/TrailersOnly',
      judge: (o) => {
        const st = o.headers['grpc-status'] ?? o.trailers?.['grpc-status'];
        return [st === '5' && o.error === null, o.error ? describeError(o) : `status ${o.status}, grpc-status ${st ?? 'missing'} in the ${o.headers['grpc-status'] ? 'headers' : 'trailers'}`];
      },
    },
    ...RST_CODES.map(([code, name]): Check => ({
      id: `rst-${code}`,
      what: `upstream RST_STREAM ${name} (${code}) before any header`,
      path: `/sluice.test.Echo/Reset?code=${code}`,
      judge: (o) => {
        if (o.rstCode !== null) return [o.rstCode === code, `stream.rstCode ${o.rstCode}${o.error ? `; ${describeError(o)}` : ''}`];
        // undici: the only trace is its error; a number in a property counts, a name in the message is text only.
        const named = o.error !== null && (o.error.message.includes(`NGHTTP2_${name}`) || o.error.message.includes(`code ${code}`));
        return [false, `${describeError(o)}${named ? ' (the code only as text in the message)' : ' (the code is lost)'}`];
      },
    })),
    {
      id: 'idle',
      what: `stream quiet for ${idleMs} ms after its headers (undici bodyTimeout ${bodyTimeoutMs} ms; default 300 s)`,
      path: `/sluice.test.Echo/Idle?ms=${idleMs}`,
      judge: (o) => {
        const st = o.trailers?.['grpc-status'];
        const ok = st === '0' && o.error === null;
        return [ok, ok ? `delivered after ${Math.round(o.ms)} ms, grpc-status 0` : `${describeError(o)} after ${Math.round(o.ms)} ms`];
      },
    },
  ];
}

// --------------------------------------------------------------------- main

async function main(): Promise<number> {
  const startedAt = new Date();
  const cpuModel = /^model name\s*:\s*(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? 'unknown';
  const undiciVersion = (JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', 'undici', 'package.json'), 'utf8')) as { version: string }).version;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-h2c-'));
  const [port] = (await freePorts(1)) as [number];
  const origin = `http://127.0.0.1:${port}`;
  console.log(`HTTP/2 clients bench — node ${process.version}, undici ${undiciVersion}, ${cpuModel} x${os.cpus().length}`);
  console.log(
    `${opts.rounds} round(s) × ${opts.durationS} s per client, alternating; ${opts.concurrency} calls in flight on one connection; ` +
      `warm-up ${opts.warmupS} s; server bench/grpc-upstream.ts (h2c, own process)`,
  );

  const server = spawnManaged({
    name: 'grpc-upstream', cmd: process.execPath, args: ['--import', 'tsx', path.join(BENCH_DIR, 'grpc-upstream.ts'), String(port), 'v1'],
    cwd: ROOT, env: process.env, logPath: path.join(tmp, 'grpc-upstream.log'),
  });
  const why = await waitForGrpc(origin, 10_000, () => hasExited(server.child));
  if (why) {
    console.error(`bench:h2-clients: the server did not start: ${why}\n${logTail(server)}`);
    return 2;
  }

  const make = (name: string): H2Client =>
    name === 'undici' ? undiciClient(origin, opts.concurrency, 300_000) : nodeClient(origin);

  // ---- throughput, alternating
  const rounds: Round[] = [];
  for (let round = 1; round <= opts.rounds; round++) {
    const order = round % 2 === 1 ? ['undici', 'node:http2'] : ['node:http2', 'undici'];
    for (const name of order) {
      const c = make(name);
      if (opts.warmupS > 0) await drive(c, opts.concurrency, opts.warmupS);
      const cpu0 = process.cpuUsage();
      const srv0 = treeTicks([server.pid]);
      const foreign0 = foreignSnapshot();
      const r = await drive(c, opts.concurrency, opts.durationS);
      const foreign = foreignCpuSince(foreign0, os.cpus().length);
      const cpu = process.cpuUsage(cpu0);
      const srvSeconds = cpuSecondsBetween(srv0, treeTicks([server.pid]));
      await c.close();
      const rec: Round = {
        client: name, round, calls: r.calls, failed: r.failed, seconds: r.elapsed,
        callsPerSec: r.calls / r.elapsed,
        cpuUsPerCall: r.calls > 0 ? (cpu.user + cpu.system) / r.calls : Number.NaN,
        serverCpuUsPerCall: r.calls > 0 ? (srvSeconds * 1e6) / r.calls : null,
        foreignCpuShare: foreign.share,
      };
      rounds.push(rec);
      console.log(
        `[${round}/${opts.rounds}] ${name.padEnd(10)} ${rec.callsPerSec.toFixed(0).padStart(7)} calls/s  ` +
          `client CPU ${rec.cpuUsPerCall.toFixed(1)} µs/call  server CPU ${rec.serverCpuUsPerCall?.toFixed(1) ?? '-'} µs/call  failed ${r.failed}` +
          (foreign.share >= 0.05 ? `  (!) other processes used ${(foreign.share * 100).toFixed(0)}% of the machine` : ''),
      );
    }
  }
  const perClient = ['undici', 'node:http2'].map((name) => {
    const rs = rounds.filter((r) => r.client === name);
    return {
      client: name,
      callsPerSec: median(rs.map((r) => r.callsPerSec)),
      cpuUsPerCall: median(rs.map((r) => r.cpuUsPerCall)),
      serverCpuUsPerCall: median(rs.map((r) => r.serverCpuUsPerCall).filter((x): x is number => x !== null)),
      failed: rs.reduce((s, r) => s + r.failed, 0),
    };
  });

  // ---- correctness
  const table: Array<{ check: string; what: string; results: Record<string, { delivered: boolean; saw: string }> }> = [];
  const clients = [undiciClient(origin, opts.concurrency, opts.bodyTimeoutMs), nodeClient(origin)];
  for (const chk of checks(opts.bodyTimeoutMs)) {
    const row: (typeof table)[number] = { check: chk.id, what: chk.what, results: {} };
    for (const c of clients) {
      const o = await c.call(chk.path, BODY);
      const [delivered, saw] = chk.judge(o, c.name);
      row.results[c.name] = { delivered, saw };
    }
    table.push(row);
  }
  const PING_CHUNKS = 20;
  const pingRow: (typeof table)[number] = {
    check: 'full-duplex',
    what: `both directions at once: ${PING_CHUNKS} request chunks, each sent after the previous one was echoed`,
    results: {},
  };
  for (const c of clients) {
    const r = await c.pingPong(PING_CHUNKS, 3000);
    const ok = r.echoed === PING_CHUNKS && !r.timedOut && r.outcome?.error === null;
    pingRow.results[c.name] = {
      delivered: ok,
      saw: r.timedOut
        ? `stalled: ${r.echoed} of ${PING_CHUNKS} echoed, nothing more within 3 s`
        : `${r.echoed} of ${PING_CHUNKS} echoed in ${Math.round(r.outcome?.ms ?? 0)} ms${r.outcome?.error ? `; ${describeError(r.outcome)}` : `, grpc-status ${r.outcome?.trailers?.['grpc-status'] ?? 'missing'}`}`,
    };
  }
  table.push(pingRow);
  await Promise.all(clients.map((c) => c.close().catch(() => {})));

  // ---- report
  console.log('');
  console.log('client       calls/s  client CPU µs/call  server CPU µs/call  failed');
  console.log('----------  --------  ------------------  ------------------  ------');
  for (const p of perClient) {
    console.log(
      `${p.client.padEnd(10)}  ${(p.callsPerSec?.toFixed(0) ?? '-').padStart(8)}  ${(p.cpuUsPerCall?.toFixed(1) ?? '-').padStart(18)}  ` +
        `${(p.serverCpuUsPerCall?.toFixed(1) ?? '-').padStart(18)}  ${String(p.failed).padStart(6)}`,
    );
  }
  const [u, n] = perClient as [(typeof perClient)[number], (typeof perClient)[number]];
  const rps = u.callsPerSec !== null && n.callsPerSec !== null ? u.callsPerSec / n.callsPerSec : null;
  const cpu = u.cpuUsPerCall !== null && n.cpuUsPerCall !== null ? u.cpuUsPerCall / n.cpuUsPerCall : null;
  console.log(`medians over ${opts.rounds} round(s); undici/node: calls/s ${rps?.toFixed(3) ?? 'n/a'}, client CPU per call ${cpu?.toFixed(3) ?? 'n/a'}`);
  console.log('');
  for (const row of table) {
    console.log(`${row.what}:`);
    for (const [name, r] of Object.entries(row.results)) console.log(`  ${name.padEnd(10)} ${r.delivered ? 'yes' : 'NO '}  ${r.saw}`);
  }

  const resultsDir = path.join(BENCH_DIR, 'results');
  fs.mkdirSync(resultsDir, { recursive: true });
  const outPath = path.join(resultsDir, `h2-clients-${startedAt.toISOString().replace(/:/g, '-')}.json`);
  const doc = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    node: process.version,
    undici: undiciVersion,
    cpuModel,
    cpus: os.cpus().length,
    clkTck: clkTck(),
    options: opts,
    quick,
    clients: Object.fromEntries(clients.map((c) => [c.name, c.description])),
    rounds,
    medians: perClient,
    ratios: { callsPerSec_undici_over_node: rps, cpuPerCall_undici_over_node: cpu },
    correctness: table,
  };
  fs.writeFileSync(outPath, `${JSON.stringify(doc, null, 2)}\n`);
  console.log(`\nraw rounds and checks: ${path.relative(ROOT, outPath)}`);
  fs.rmSync(tmp, { recursive: true, force: true });
  return 0;
}

process.on('exit', killAllSync);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    void killAll(1000).finally(() => process.exit(130));
  });
}

let code = 1;
try {
  code = await main();
} catch (err) {
  console.error('bench:h2-clients failed:', err);
} finally {
  await killAll(2000);
}
process.exit(code);
