/**
 * Soak: mixed traffic for a long time against a real Sluice (`sluice start`,
 * a child process), watching its memory for leaks.
 *
 *   npm run soak                      # 10 minutes
 *   SOAK_SECONDS=120 npm run soak     # shorter
 *
 * Two sample versions run in this process (HTTP and WebSocket echo). The
 * traffic, all at once for the whole run:
 *   - normal clients: GET (sticky keys, some rewards), small POSTs, slow answers;
 *   - slow uploaders, a tenth of which stall until clientBodyTimeout cuts them;
 *   - readers that pause for up to 8 s before reading a 2 or 24 MiB answer, and
 *     readers of an endless answer that never read (sendTimeout must cut them);
 *   - aborts: clients that leave mid-response, mid-upload, and while waiting;
 *   - WebSockets that open, exchange messages and close;
 *   - weight changes through the admin API every 2 s.
 *
 * Every SOAK_SAMPLE_SECONDS (default: a 60th of the run, 1-10 s) it reads
 * process_resident_memory_bytes, nodejs_heap_size_used_bytes and
 * process_open_fds from Sluice's /metrics. At the end it prints them at
 * start and end with their slope (least squares, per minute) over the whole
 * run and over its second half, the steady state, and the traffic counts.
 * A leak shows as a steady-state slope that does not flatten as the run grows
 * longer; a socket leak as open fds that grow.
 */
import { Buffer } from 'node:buffer';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { linearRegression } from 'simple-statistics';
import { Pool } from 'undici';
import { WebSocket, WebSocketServer } from 'ws';
import { freePorts, waitFor200 } from './lib/net.js';
import { hasExited, killAll, killAllSync, logTail, spawnManaged } from './lib/procs.js';

const SECONDS = Number(process.env.SOAK_SECONDS ?? 600);
if (!(SECONDS >= 10)) throw new Error(`SOAK_SECONDS must be at least 10, got ${process.env.SOAK_SECONDS}`);
const SAMPLE_SECONDS = Number(process.env.SOAK_SAMPLE_SECONDS ?? Math.min(10, Math.max(1, SECONDS / 60)));

const BIG = Buffer.alloc(2 * 1024 * 1024, 'soak');
/** More than the kernel's socket buffers (several MB on loopback, both legs) and responseBuffer take: a reader that stops is cut by sendTimeout. */
const HUGE = Buffer.alloc(24 * 1024 * 1024, 'huge');
const SMALL = Buffer.from(JSON.stringify({ ok: true, pad: 'x'.repeat(64) }));
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const rand = (lo: number, hi: number) => lo + Math.random() * (hi - lo);

/** Outcome counters, printed at the end. */
const counts = new Map<string, number>();
function count(what: string): void {
  counts.set(what, (counts.get(what) ?? 0) + 1);
}

// ---------------------------------------------------------------- sample versions

async function startVersion(name: string): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    if (req.method === 'POST') {
      let n = 0;
      req.on('data', (c: Buffer) => (n += c.length));
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(`${name} ${n}`);
      });
      req.on('error', () => {});
      return;
    }
    req.resume();
    if (url.startsWith('/endless')) {
      // Never ends: only Sluice giving up on a client that does not read stops it.
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const pump = () => {
        while (!res.destroyed && res.write(BIG.subarray(0, 65536)));
      };
      res.on('drain', pump);
      pump();
      return;
    }
    if (url.startsWith('/big') || url.startsWith('/huge')) {
      const data = url.startsWith('/big') ? BIG : HUGE;
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': data.length });
      res.end(data);
    } else if (url.startsWith('/slow')) {
      const t = setTimeout(() => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': SMALL.length });
        res.end(SMALL);
      }, rand(20, 200));
      res.on('close', () => clearTimeout(t));
    } else {
      const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': SMALL.length };
      if (Math.random() < 0.1) headers['x-sluice-reward'] = 1;
      res.writeHead(200, headers);
      res.end(SMALL);
    }
  });
  // Longer than Sluice's upstream keep-alive, as an upstream should be.
  server.keepAliveTimeout = 65_000;
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => {
    ws.on('message', (data, binary) => ws.send(data, { binary }));
    ws.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// ---------------------------------------------------------------- traffic

let running = true;
const sockets = new Set<net.Socket>();
const websockets = new Set<WebSocket>();

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
}

/** The status code of a raw response, once its head has arrived; 0 if the connection closed first. */
function statusOf(s: net.Socket, timeoutMs: number): Promise<number> {
  return new Promise((resolve) => {
    let head = '';
    const done = (code: number) => {
      clearTimeout(timer);
      s.off('data', onData);
      s.off('close', onClose);
      resolve(code);
    };
    const onData = (c: Buffer) => {
      head += c.toString('latin1', 0, Math.min(c.length, 64));
      const m = /^HTTP\/1\.1 (\d{3})/.exec(head);
      if (m) done(Number(m[1]));
    };
    const onClose = () => done(0);
    const timer = setTimeout(() => done(-1), timeoutMs);
    s.on('data', onData);
    s.once('close', onClose);
  });
}

/** Normal clients: `workers` closed loops with a pause, mixing GETs with sticky keys, POSTs and slow answers. */
async function normalClients(pool: Pool, workers: number, pauseMs: number): Promise<void> {
  const body = Buffer.alloc(8 * 1024, 'b');
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (running) {
        const r = Math.random();
        try {
          const res =
            r < 0.8
              ? await pool.request({ path: '/small', method: 'GET', headers: { 'x-user-id': `u${(Math.random() * 1000) | 0}` } })
              : r < 0.9
                ? await pool.request({ path: '/upload', method: 'POST', body })
                : await pool.request({ path: '/slow', method: 'GET' });
          await res.body.dump();
          count(`normal ${res.statusCode}`);
        } catch (err) {
          count(`normal error ${(err as { code?: string }).code ?? (err as Error).message}`);
        }
        await sleep(pauseMs);
      }
    }),
  );
}

/** Uploads that trickle: 16 KiB in 16 pieces a few hundred ms apart; one in ten stalls until Sluice cuts it. */
async function slowUploaders(port: number, concurrent: number): Promise<void> {
  await Promise.all(
    Array.from({ length: concurrent }, async () => {
      while (running) {
        let s: net.Socket | null = null;
        try {
          s = await connect(port);
          s.on('error', () => {});
          const answer = statusOf(s, 30_000);
          s.write('POST /upload HTTP/1.1\r\nHost: soak\r\nContent-Length: 16384\r\nConnection: close\r\n\r\n');
          const stall = Math.random() < 0.1;
          for (let i = 0; i < 16 && running && !s.destroyed; i++) {
            if (stall && i === 4) break;
            s.write(Buffer.alloc(1024, 'u'));
            await sleep(rand(50, 400));
          }
          const status = await answer;
          if (running) count(stall ? `slow upload (stalled) ${status}` : `slow upload ${status}`);
        } catch {
          count('slow upload connect error');
        } finally {
          s?.destroy();
        }
      }
    }),
  );
}

/** Readers that stop for a while (some longer than sendTimeout) before reading a 2 MiB or (one in four) a 24 MiB answer. */
async function slowReaders(port: number, concurrent: number): Promise<void> {
  await Promise.all(
    Array.from({ length: concurrent }, async () => {
      while (running) {
        let s: net.Socket | null = null;
        try {
          s = await connect(port);
          s.on('error', () => {});
          s.pause();
          const huge = Math.random() < 0.25;
          s.write(`GET ${huge ? '/huge' : '/big'} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n`);
          await sleep(rand(500, 8000));
          let got = 0;
          const closed = new Promise<void>((resolve) => s!.once('close', () => resolve()));
          s.on('data', (c: Buffer) => (got += c.length));
          s.resume();
          await Promise.race([closed, sleep(20_000)]);
          if (running) count(`slow reader ${huge ? '24 MiB' : '2 MiB'} ${got > (huge ? HUGE : BIG).length ? 'whole' : 'cut'}`);
        } catch {
          count('slow reader connect error');
        } finally {
          s?.destroy();
        }
      }
    }),
  );
}

/** Clients that leave: mid-response, mid-upload, or while the version is still thinking. */
async function aborters(port: number, everyMs: number): Promise<void> {
  while (running) {
    const kind = (Math.random() * 3) | 0;
    try {
      const s = await connect(port);
      s.on('error', () => {});
      if (kind === 0) {
        s.write('GET /big HTTP/1.1\r\nHost: soak\r\n\r\n');
        await new Promise<void>((resolve) => {
          s.once('data', () => resolve());
          s.once('close', () => resolve());
        });
        count('abort mid-response');
      } else if (kind === 1) {
        s.write(`POST /upload HTTP/1.1\r\nHost: soak\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n${'c'.repeat(1024)}\r\n`);
        await sleep(rand(1, 50));
        count('abort mid-upload');
      } else {
        s.write('GET /slow HTTP/1.1\r\nHost: soak\r\n\r\n');
        await sleep(rand(1, 30));
        count('abort while waiting');
      }
      s.destroy();
    } catch {
      count('abort connect error');
    }
    await sleep(everyMs);
  }
}

/**
 * Clients that never read an endless answer: once the kernel's buffers are
 * full, Sluice must cut them after sendTimeout. A paused socket cannot see
 * the close, so after `waitMs` each reads what is left: a cut connection ends.
 */
async function nonReaders(port: number, concurrent: number, waitMs: number): Promise<void> {
  await Promise.all(
    Array.from({ length: concurrent }, async () => {
      while (running) {
        let s: net.Socket | null = null;
        try {
          s = await connect(port);
          s.on('error', () => {});
          s.pause();
          s.write('GET /endless HTTP/1.1\r\nHost: soak\r\n\r\n');
          await sleep(waitMs);
          const closed = new Promise<boolean>((resolve) => s!.once('close', () => resolve(true)));
          s.on('data', () => {});
          s.resume();
          const cut = await Promise.race([closed, sleep(5000).then(() => false)]);
          if (running) count(cut ? 'non-reader cut' : 'non-reader NOT cut');
        } catch {
          count('non-reader connect error');
        } finally {
          s?.destroy();
        }
      }
    }),
  );
}

/** WebSockets through Sluice: each lives 2-10 s, sending a message every 250 ms and expecting its echo. */
async function websocketClients(port: number, concurrent: number): Promise<void> {
  await Promise.all(
    Array.from({ length: concurrent }, async () => {
      while (running) {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers: { 'x-user-id': `w${(Math.random() * 100) | 0}` } });
        websockets.add(ws);
        try {
          await new Promise<void>((resolve, reject) => {
            ws.once('open', () => resolve());
            ws.once('error', reject);
            ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
          });
          const until = Date.now() + rand(2000, 10_000);
          while (running && Date.now() < until && ws.readyState === WebSocket.OPEN) {
            const echoed = new Promise<boolean>((resolve) => {
              const t = setTimeout(() => resolve(false), 5000);
              ws.once('message', () => {
                clearTimeout(t);
                resolve(true);
              });
            });
            ws.send(`ping ${Date.now()}`);
            count((await echoed) ? 'websocket echo' : 'websocket echo missing');
            await sleep(250);
          }
          ws.close();
          count('websocket session');
        } catch (err) {
          count(`websocket error ${(err as Error).message}`);
        } finally {
          ws.terminate();
          websockets.delete(ws);
        }
      }
    }),
  );
}

/** Moves the split between v1 and v2 every `everyMs`, as an experiment would. */
async function weightChanges(admin: Pool, everyMs: number): Promise<void> {
  while (running) {
    const v2 = (Math.random() * 101) | 0;
    try {
      const r = await admin.request({
        path: '/routes/app/weights',
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ v1: 100 - v2, v2 }),
      });
      await r.body.dump();
      count(`weights ${r.statusCode}`);
    } catch {
      count('weights error');
    }
    await sleep(everyMs);
  }
}

// ---------------------------------------------------------------- memory samples

interface Sample {
  readonly t: number;
  readonly rss: number;
  readonly heap: number;
  readonly fds: number;
  readonly cpu: number;
}

function metricValue(text: string, name: string): number {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : Number.NaN;
}

async function sample(admin: Pool, t0: number): Promise<Sample> {
  const r = await admin.request({ path: '/metrics', method: 'GET' });
  const text = await r.body.text();
  return {
    t: (Date.now() - t0) / 1000,
    rss: metricValue(text, 'process_resident_memory_bytes'),
    heap: metricValue(text, 'nodejs_heap_size_used_bytes'),
    fds: metricValue(text, 'process_open_fds'),
    cpu: metricValue(text, 'process_cpu_seconds_total'),
  };
}

/** Least-squares slope of `pick` against time, per minute. */
function slopePerMinute(samples: readonly Sample[], pick: (s: Sample) => number): number {
  if (samples.length < 2) return Number.NaN;
  return linearRegression(samples.map((s) => [s.t / 60, pick(s)])).m;
}

const MB = 1024 * 1024;
const mb = (n: number) => `${(n / MB).toFixed(1)} MB`;
const mbSlope = (n: number) => `${n >= 0 ? '+' : ''}${(n / MB).toFixed(2)} MB/min`;

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-soak-'));
  const [v1, v2] = [await startVersion('v1'), await startVersion('v2')];
  const [port, adminPort] = (await freePorts(2)) as [number, number];
  const config = path.join(dir, 'sluice.yaml');
  fs.writeFileSync(
    config,
    [
      `listen: 127.0.0.1:${port}`,
      `admin: { listen: 127.0.0.1:${adminPort} }`,
      // Short client timeouts so that stalled uploads and readers are cut many times during the run.
      'proxy: { connectionsPerVersion: 16, clientBodyTimeout: 3s, sendTimeout: 5s, responseBuffer: 1MiB }',
      'routes:',
      '  - name: app',
      '    versions:',
      `      - { name: v1, url: http://127.0.0.1:${v1.port} }`,
      `      - { name: v2, url: http://127.0.0.1:${v2.port} }`,
      '    weights: { v1: 50, v2: 50 }',
      '    sticky: { header: x-user-id }',
      '    mirror:',
      '      - { version: v2, percent: 5 }',
      '',
    ].join('\n'),
  );
  const sluice = spawnManaged({
    name: 'sluice',
    cmd: process.execPath,
    args: ['bin/sluice.js', 'start', '-c', config],
    env: { ...process.env, SLUICE_LOG_LEVEL: 'warn' },
    logPath: path.join(dir, 'sluice.log'),
  });
  const notReady = await waitFor200(`http://127.0.0.1:${adminPort}/readyz`, 30_000, () => hasExited(sluice.child));
  if (notReady !== null) throw new Error(`sluice did not become ready: ${notReady}\n${logTail(sluice)}`);

  const admin = new Pool(`http://127.0.0.1:${adminPort}`, { connections: 2 });
  const traffic = new Pool(`http://127.0.0.1:${port}`, { connections: 16 });
  console.log(`soak: ${SECONDS} s against sluice pid ${sluice.pid} (127.0.0.1:${port}), a sample every ${SAMPLE_SECONDS} s; log in ${dir}`);

  const t0 = Date.now();
  const samples: Sample[] = [await sample(admin, t0)];
  const generators = Promise.all([
    normalClients(traffic, 8, 10),
    slowUploaders(port, 32),
    slowReaders(port, 16),
    nonReaders(port, 4, 20_000),
    aborters(port, 40),
    websocketClients(port, 16),
    weightChanges(admin, 2000),
  ]);
  const end = t0 + SECONDS * 1000;
  let nextReport = t0 + 60_000;
  while (Date.now() < end && !hasExited(sluice.child)) {
    await sleep(Math.min(SAMPLE_SECONDS * 1000, Math.max(0, end - Date.now())));
    try {
      const s = await sample(admin, t0);
      samples.push(s);
      if (Date.now() >= nextReport) {
        nextReport += 60_000;
        console.log(`  t=${s.t.toFixed(0)}s rss ${mb(s.rss)} heap ${mb(s.heap)} fds ${s.fds}`);
      }
    } catch (err) {
      count(`metrics error ${(err as Error).message}`);
    }
  }
  running = false;
  // Nothing may outlive the run: cut what is still waiting on a timer or a peer.
  for (const s of sockets) s.destroy();
  for (const ws of websockets) ws.terminate();
  await Promise.race([generators, sleep(25_000)]);
  const died = hasExited(sluice.child);
  // What is left once the traffic has gone: connections closed, buffers released.
  let settled: Sample | null = null;
  if (!died) {
    await sleep(3000);
    settled = await sample(admin, t0).catch(() => null);
  }

  const stats = died ? null : await admin.request({ path: '/stats', method: 'GET' }).then((r) => r.body.json()).catch(() => null);

  const first = samples[0]!;
  const last = samples[samples.length - 1]!;
  const half = samples.filter((s) => s.t >= SECONDS / 2);
  const wall = last.t - first.t;
  console.log('\ntraffic:');
  for (const [k, n] of [...counts.entries()].sort()) console.log(`  ${k.padEnd(40)} ${n}`);
  console.log(`\nsluice memory (${samples.length} samples over ${wall.toFixed(0)} s):`);
  console.log(`  rss   start ${mb(first.rss)}  end ${mb(last.rss)}  max ${mb(Math.max(...samples.map((s) => s.rss)))}  slope ${mbSlope(slopePerMinute(samples, (s) => s.rss))}, second half ${mbSlope(slopePerMinute(half, (s) => s.rss))}`);
  console.log(`  heap  start ${mb(first.heap)}  end ${mb(last.heap)}  max ${mb(Math.max(...samples.map((s) => s.heap)))}  slope ${mbSlope(slopePerMinute(samples, (s) => s.heap))}, second half ${mbSlope(slopePerMinute(half, (s) => s.heap))}`);
  console.log(`  fds   start ${first.fds}  end ${last.fds}  max ${Math.max(...samples.map((s) => s.fds))}  slope ${slopePerMinute(samples, (s) => s.fds).toFixed(2)}/min`);
  console.log(`  cpu   ${(((last.cpu - first.cpu) / wall) * 100).toFixed(0)}% of a core on average`);
  const versions = (stats as { routes?: Record<string, { versions: Record<string, { requests: number; errors: number; statusCounts?: Record<string, number> }> }> } | null)?.routes?.app?.versions;
  if (versions) {
    console.log('\nsluice /stats (route app):');
    for (const [name, v] of Object.entries(versions)) console.log(`  ${name}: requests ${v.requests}, errors ${v.errors}, by status ${JSON.stringify(v.statusCounts ?? {})}`);
  }
  if (settled !== null) console.log(`  after the traffic stopped (+3 s): rss ${mb(settled.rss)} heap ${mb(settled.heap)} fds ${settled.fds}`);
  if (died) console.log(`\nsluice exited during the soak:\n${logTail(sluice, 40)}`);

  await admin.close();
  await traffic.close();
  await killAll();
  await Promise.all([v1.close(), v2.close()]);
  process.exitCode = died ? 1 : 0;
}

process.on('exit', killAllSync);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    killAllSync();
    process.exit(130);
  });
}
main().catch(async (err) => {
  console.error(err);
  await killAll();
  process.exit(1);
});
