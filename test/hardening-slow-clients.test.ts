/**
 * Issue 11, item 3: slow clients must not take a version down. A client that
 * uploads slowly or stops reading must not hold one of the version's pooled
 * upstream connections for long: bounded bodies are read whole before
 * dispatch, bounded responses are read whole from the upstream and handed to
 * the client at its own pace, a client that stops reading past the buffer is
 * cut after `sendTimeout`, and past `connectionsPerVersion + queueLimit`
 * requests in flight a version sheds load with 503 SLUICE_OVERLOADED.
 *
 * The slow clients are raw sockets; the normal clients are measured in the
 * same run, unloaded first, so the latency check is a ratio, never a time.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import net from 'node:net';
import type { RunningSluice } from '../cli/run-sluice.js';
import { Pool, startSluice, startUpstream, waitFor, type Upstream } from './support/helpers.js';

/** Larger than what loopback's kernel buffers absorb for a client that does not read (~4 MB here). */
const BIG = Buffer.alloc(6 * 1024 * 1024, 'abcdefghijklmnopqrstuvwxyz');
const BIG_SHA = createHash('sha256').update(BIG).digest('hex');
const HUGE = Buffer.alloc(24 * 1024 * 1024, 'z');
const BURST = Buffer.alloc(8 * 1024 * 1024, 'b');

interface AppUpstream extends Upstream {
  /** Requests for /big and /huge received. (When the upstream finishes writing says little: kernel buffers take megabytes.) */
  readonly bigAsked: { n: number };
  /** Requests to /hold waiting to be answered; call each to answer. */
  readonly held: Array<() => void>;
}

/** The sample app: /small, /big, /huge, /upload (answers the body's sha256) and /hold (answers when told). */
async function startApp(): Promise<AppUpstream> {
  const bigAsked = { n: 0 };
  const held: Array<() => void> = [];
  const up = await startUpstream(
    'app',
    (req, res, body) => {
      const path = req.url ?? '/';
      if (path === '/big' || path === '/huge') {
        const data = path === '/big' ? BIG : HUGE;
        bigAsked.n++;
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': data.length });
        res.end(data);
      } else if (path === '/upload') {
        const text = `${body.length} ${createHash('sha256').update(body).digest('hex')}`;
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': text.length });
        res.end(text);
      } else if (path === '/burst') {
        // A burst, then quiet until told (an event stream), then the tail.
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BURST.length + 4 });
        res.write(BURST);
        held.push(() => res.end('tail'));
      } else if (path === '/hold') {
        held.push(() => res.end('held'));
      } else {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 });
        res.end('ok');
      }
    },
    { record: false },
  );
  return Object.assign(up, { bigAsked, held });
}

function config(upstream: string, proxy: Record<string, unknown>) {
  return {
    // A short drain: a test that fails with clients still stuck must not wait out the default 30 s.
    proxy: { drainTimeout: '1s', ...proxy },
    // A request timeout far beyond the test: what frees connections must be the new protections.
    routes: [{ name: 'app', versions: [{ name: 'v1', url: upstream }], timeouts: { request: '120s' } }],
  };
}

function connect(url: string): Promise<net.Socket> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(port), hostname, () => resolve(s));
    s.once('error', reject);
  });
}

function write(s: net.Socket, data: string | Buffer): Promise<void> {
  return new Promise((resolve, reject) => s.write(data, (err) => (err ? reject(err) : resolve())));
}

/** Everything the socket receives until the peer closes it. */
function readAll(s: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  return new Promise((resolve) => s.once('close', () => resolve(Buffer.concat(chunks))));
}

/** Splits a raw HTTP/1.1 response with Content-Length into status, headers and body. */
function parseResponse(raw: Buffer): { status: number; headers: Map<string, string>; body: Buffer } {
  const end = raw.indexOf('\r\n\r\n');
  assert.ok(end > 0, `no complete response head in ${raw.length} bytes: ${raw.subarray(0, 200).toString('latin1')}`);
  const lines = raw.subarray(0, end).toString('latin1').split('\r\n');
  const status = Number(lines[0]!.split(' ')[1]);
  const headers = new Map(lines.slice(1).map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
  const length = Number(headers.get('content-length') ?? -1);
  const body = raw.subarray(end + 4, length >= 0 ? end + 4 + length : undefined);
  return { status, headers, body };
}

/** Requests Sluice has on upstream connections or queued for one: what a slow client must not hold. */
function upstreamBusy(sluice: RunningSluice): number {
  return sluice.proxy.upstreams.poolStats().reduce((n, p) => n + (p.role === 'primary' ? p.running + p.pending : 0), 0);
}

function p99(ms: number[]): number {
  const s = [...ms].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(0.99 * s.length) - 1)]!;
}

/**
 * `n` GETs of /small, `concurrency` at a time. A request not answered within
 * `deadlineMs` counts as not served; the run stops early once more than
 * `maxFailures` failed, so that a starving proxy fails the test quickly.
 */
async function normalClients(pool: Pool, n: number, concurrency: number, deadlineMs: number, maxFailures: number) {
  const latencies: number[] = [];
  const reasons = new Set<string>();
  let failed = 0;
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n && failed <= maxFailures) {
        next++;
        const t0 = performance.now();
        try {
          const r = await pool.request({ path: '/small', method: 'GET', signal: AbortSignal.timeout(deadlineMs) });
          const body = await r.body.text();
          if (r.statusCode === 200 && body === 'ok') latencies.push(performance.now() - t0);
          else {
            failed++;
            reasons.add(`${r.statusCode} ${body.slice(0, 120)}`);
          }
        } catch (err) {
          failed++;
          reasons.add(String(err));
        }
      }
    }),
  );
  return { served: latencies.length, failed, latencies, reasons: [...reasons].slice(0, 3).join('; ') };
}

describe('slow clients', () => {
  let app: AppUpstream;
  const cleanups: Array<() => Promise<unknown> | unknown> = [];

  before(async () => {
    app = await startApp();
  });

  after(async () => {
    for (const c of cleanups.reverse()) await c();
    await app.close();
  });

  async function sluiceWith(proxy: Record<string, unknown>): Promise<{ sluice: RunningSluice; client: Pool }> {
    const sluice = await startSluice(config(app.url, proxy));
    const client = new Pool(sluice.trafficUrl, { connections: 8 });
    cleanups.push(() => sluice.close(), () => client.close());
    return { sluice, client };
  }

  it('256 slow uploaders and non-readers leave normal clients served at their unloaded p99', async (t) => {
    const CONNECTIONS = 4;
    const UPLOADERS = 224;
    const NON_READERS = 32;
    const { sluice, client } = await sluiceWith({ connectionsPerVersion: CONNECTIONS, responseBuffer: '8MiB', bufferMemory: '512MiB' });
    const sockets: net.Socket[] = [];
    let trickle: NodeJS.Timeout | undefined;
    try {
      // Unloaded, same process, same connections: the reference this run is judged against.
      await normalClients(client, 500, CONNECTIONS, 10_000, 0);
      const unloaded = await normalClients(client, 1000, CONNECTIONS, 10_000, 0);
      assert.equal(unloaded.served, 1000);

      const uploaders = await Promise.all(Array.from({ length: UPLOADERS }, () => connect(sluice.trafficUrl)));
      const readers = await Promise.all(Array.from({ length: NON_READERS }, () => connect(sluice.trafficUrl)));
      sockets.push(...uploaders, ...readers);
      for (const s of sockets) s.on('error', () => {});
      await Promise.all(uploaders.map((s) => write(s, 'POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: 4096\r\n\r\n0123456789abcdef')));
      for (const s of readers) s.pause();
      const bigBefore = app.bigAsked.n;
      await Promise.all(readers.map((s) => write(s, 'GET /big HTTP/1.1\r\nHost: app\r\n\r\n')));
      // Slow, not dead: a byte per second each, so no idle timeout is what saves the others.
      trickle = setInterval(() => {
        for (const s of uploaders) if (!s.destroyed) s.write('x');
      }, 1000);
      // Once every non-reader's answer sits in Sluice's buffers, no upstream connection is busy.
      // Old code never gets there (non-readers and uploads hold them all): measure anyway.
      const allBuffered = await waitFor('no upstream connection held by a slow client', () => app.bigAsked.n >= bigBefore + NON_READERS && upstreamBusy(sluice) === 0, 15_000).then(
        () => true,
        () => false,
      );

      const loaded = await normalClients(client, 1000, CONNECTIONS, Math.ceil(Math.max(2000, 50 * p99(unloaded.latencies))), 20);
      const busy = upstreamBusy(sluice);

      // The buffered answers are whole: a non-reader that finally reads gets every byte.
      const late = readers[0]!;
      const got = readAll(late);
      late.resume();
      late.end();
      const res = parseResponse(await got);

      // Every byte of the buffer budget comes back once the slow clients are gone.
      clearInterval(trickle);
      for (const s of sockets) s.destroy();
      const released = await waitFor('the buffer budget to be released', () => sluice.proxy.slowClients.bufferedBytes === 0, 10_000).then(
        () => true,
        () => false,
      );
      // Unloaded again: phases on a shared machine differ by noise alone, so the reference is the slower of the two.
      const unloadedAfter = allBuffered ? await normalClients(client, 1000, CONNECTIONS, 10_000, 20) : unloaded;
      const reference = Math.max(p99(unloaded.latencies), p99(unloadedAfter.latencies));

      const ratio = loaded.served > 0 ? p99(loaded.latencies) / reference : Number.POSITIVE_INFINITY;
      const figures = `served ${loaded.served}/1000 (failed ${loaded.failed}: ${loaded.reasons}); p99 unloaded ${p99(unloaded.latencies).toFixed(2)} ms before, ${p99(
        unloadedAfter.latencies,
      ).toFixed(2)} ms after; loaded ${loaded.served > 0 ? p99(loaded.latencies).toFixed(2) : '-'} ms (×${ratio.toFixed(2)} the slower); upstream requests in flight under load: ${busy}`;
      t.diagnostic(figures);
      assert.ok(loaded.served / 1000 >= 0.99, `fewer than 99% of normal clients served with 256 slow clients connected: ${figures}`);
      assert.ok(allBuffered, `non-readers still hold upstream connections: ${figures}`);
      // The target is 2×; the margin absorbs the rest of a shared 2-core machine's noise.
      assert.ok(ratio < 2.5, `normal clients' p99 under load is not within 2× (+ margin) of the unloaded p99: ${figures}`);
      assert.equal(res.status, 200);
      assert.equal(res.body.length, BIG.length);
      assert.equal(createHash('sha256').update(res.body).digest('hex'), BIG_SHA);
      assert.ok(released, `buffer budget not released: ${sluice.proxy.slowClients.bufferedBytes} bytes still held`);
    } finally {
      clearInterval(trickle);
      for (const s of sockets) s.destroy();
    }
  });

  it('a body under requestBuffer is read whole before it takes an upstream connection', async () => {
    const { sluice, client } = await sluiceWith({ connectionsPerVersion: 1 });
    const s = await connect(sluice.trafficUrl);
    s.on('error', () => {});
    try {
      const body = Buffer.alloc(64 * 1024, 'q');
      const answer = readAll(s);
      await write(s, `POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`);
      await write(s, body.subarray(0, 1000));
      // The only upstream connection is free while the upload stalls.
      const r = await client.request({ path: '/small', method: 'GET', signal: AbortSignal.timeout(5000) });
      assert.equal(r.statusCode, 200);
      assert.equal(await r.body.text(), 'ok');
      await write(s, body.subarray(1000));
      const res = parseResponse(await answer);
      assert.equal(res.status, 200);
      assert.equal(res.body.toString(), `${body.length} ${createHash('sha256').update(body).digest('hex')}`);
    } finally {
      s.destroy();
    }
  });

  it('a body that stalls past clientBodyTimeout gets 408 SLUICE_REQUEST_TIMEOUT before dispatch', async () => {
    const { sluice, client } = await sluiceWith({ connectionsPerVersion: 1, clientBodyTimeout: '300ms' });
    const s = await connect(sluice.trafficUrl);
    s.on('error', () => {});
    const answer = readAll(s);
    await write(s, 'POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: 1000\r\n\r\n0123456789');
    const res = parseResponse(await answer);
    assert.equal(res.status, 408);
    assert.equal(JSON.parse(res.body.toString()).error.code, 'SLUICE_REQUEST_TIMEOUT');
    // Never dispatched: the version is not charged for the client's stall.
    assert.equal(sluice.proxy.stats.get('app', 'v1').requests, 0);
    const r = await client.request({ path: '/small', method: 'GET', signal: AbortSignal.timeout(5000) });
    assert.equal(r.statusCode, 200);
    await r.body.text();
  });

  it('a streamed body (over requestBuffer) that stalls past clientBodyTimeout is cut and its upstream connection released', async () => {
    const { sluice, client } = await sluiceWith({ connectionsPerVersion: 1, requestBuffer: '1KiB', clientBodyTimeout: '300ms' });
    const s = await connect(sluice.trafficUrl);
    s.on('error', () => {});
    await write(s, `POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: 100000\r\n\r\n${'x'.repeat(4000)}`);
    await waitFor('the proxy to cut the stalled upload', () => s.destroyed || s.readableEnded, 10_000);
    s.destroy();
    const r = await client.request({ path: '/small', method: 'GET', signal: AbortSignal.timeout(5000) });
    assert.equal(r.statusCode, 200);
    await r.body.text();
  });

  it('a response under responseBuffer frees the upstream connection before a non-reading client reads it', async () => {
    const { sluice, client } = await sluiceWith({ connectionsPerVersion: 1, responseBuffer: '8MiB' });
    const before = app.bigAsked.n;
    const s = await connect(sluice.trafficUrl);
    s.on('error', () => {});
    s.pause();
    await write(s, 'GET /big HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n');
    try {
      await waitFor('Sluice to read the whole answer and free the connection', () => app.bigAsked.n > before && upstreamBusy(sluice) === 0, 10_000);
      const r = await client.request({ path: '/small', method: 'GET', signal: AbortSignal.timeout(5000) });
      assert.equal(r.statusCode, 200);
      await r.body.text();
      const got = readAll(s);
      s.resume();
      const res = parseResponse(await got);
      assert.equal(res.status, 200);
      assert.equal(createHash('sha256').update(res.body).digest('hex'), BIG_SHA);
    } finally {
      s.destroy();
    }
  });

  it('a client that stops reading past responseBuffer is cut after sendTimeout and the upstream released', async () => {
    const { sluice, client } = await sluiceWith({ connectionsPerVersion: 1, responseBuffer: '64KiB', sendTimeout: '300ms' });
    const s = await connect(sluice.trafficUrl);
    s.on('error', () => {});
    s.pause();
    await write(s, 'GET /huge HTTP/1.1\r\nHost: app\r\n\r\n');
    const stats = sluice.proxy.stats.get('app', 'v1');
    // A paused client cannot see its connection close; Sluice's side shows it: the request ends as 499 and frees its connection.
    await waitFor('Sluice to cut the non-reading client', () => stats.byStatus[499]! >= 1 && upstreamBusy(sluice) === 0, 10_000);
    s.destroy();
    const r = await client.request({ path: '/small', method: 'GET', signal: AbortSignal.timeout(5000) });
    assert.equal(r.statusCode, 200);
    await r.body.text();
  });

  it('a client that caught up is not cut by sendTimeout while the version is quiet between chunks', async () => {
    const { sluice } = await sluiceWith({ connectionsPerVersion: 2, responseBuffer: '1MiB', sendTimeout: '300ms' });
    const stats = sluice.proxy.stats.get('app', 'v1');
    const heldBefore = app.held.length;
    const s = await connect(sluice.trafficUrl);
    s.on('error', () => {});
    s.pause();
    await write(s, 'GET /burst HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n');
    // Sluice met backpressure (so the send timeout was armed); then the client reads all there is.
    await waitFor('Sluice to buffer for the paused client', () => sluice.proxy.slowClients.bufferedBytes > 0, 10_000);
    const chunks: Buffer[] = [];
    let got = 0;
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      got += c.length;
    });
    const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
    s.resume();
    await waitFor('the client to read the burst', () => got >= BURST.length && app.held.length > heldBefore, 10_000);
    // A witness that stops reading is cut by sendTimeout; by then the caught-up client has been quiet longer than that too.
    const w = await connect(sluice.trafficUrl);
    w.on('error', () => {});
    w.pause();
    await write(w, 'GET /huge HTTP/1.1\r\nHost: app\r\n\r\n');
    await waitFor('the witness to be cut', () => stats.byStatus[499]! >= 1, 10_000);
    w.destroy();
    app.held.pop()!();
    await closed;
    const res = parseResponse(Buffer.concat(chunks));
    assert.equal(res.status, 200);
    assert.equal(res.body.length, BURST.length + 4);
    assert.equal(res.body.subarray(-4).toString(), 'tail');
    assert.equal(stats.byStatus[499], 1, 'only the witness was cut');
  });

  it('past connectionsPerVersion + queueLimit requests in flight, a version sheds with 503 SLUICE_OVERLOADED and Retry-After', async () => {
    const { sluice } = await sluiceWith({ connectionsPerVersion: 2, queueLimit: 2 });
    const client = new Pool(sluice.trafficUrl, { connections: 8 });
    cleanups.push(() => client.close());
    const heldBefore = app.held.length;
    const inFlight = Array.from({ length: 4 }, () =>
      client.request({ path: '/hold', method: 'GET' }).then(async (r) => ({ status: r.statusCode, body: await r.body.text() })),
    );
    // Two on the upstream's connections, two queued behind them.
    await waitFor('two requests held by the upstream', () => app.held.length >= heldBefore + 2, 10_000);
    await waitFor('two more queued in the pool', () => sluice.proxy.upstreams.poolStats().some((p) => p.role === 'primary' && p.pending + p.running >= 4), 10_000);
    const r = await client.request({ path: '/hold', method: 'GET', signal: AbortSignal.timeout(5000) });
    const body = JSON.parse(await r.body.text());
    assert.equal(r.statusCode, 503);
    assert.equal(body.error.code, 'SLUICE_OVERLOADED');
    assert.ok(Number(r.headers['retry-after']) >= 1, `Retry-After: ${String(r.headers['retry-after'])}`);
    assert.equal(r.headers['x-sluice-version'], 'v1');
    // Answer everything held: the queued two reach the upstream and are answered too.
    await waitFor('every admitted request answered', () => {
      while (app.held.length > heldBefore) app.held.pop()!();
      return sluice.proxy.upstreams.poolStats().every((p) => p.running + p.pending === 0);
    }, 10_000);
    const results = await Promise.all(inFlight);
    assert.deepEqual(results.map((x) => x.status), [200, 200, 200, 200]);
    // The slots were given back: the version takes requests again.
    const again = client.request({ path: '/hold', method: 'GET' });
    await waitFor('the next request to reach the upstream', () => app.held.length > heldBefore, 10_000);
    app.held.pop()!();
    const r2 = await again;
    assert.equal(r2.statusCode, 200);
    await r2.body.text();
    const stats = sluice.proxy.stats.get('app', 'v1');
    assert.equal(stats.byStatus[503], 1);
  });
});
