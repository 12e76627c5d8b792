/**
 * Shadow traffic (mirror): isolation of the primary from a broken shadow,
 * body integrity of the copies, the body limit and the concurrency cap, the
 * compare mode, the shadow's Host header and which methods are mirrored.
 *
 * Real servers on 127.0.0.1 only; outcomes are awaited with `waitFor`.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import type { RunningSluice } from '../cli/run-sluice.js';
import { inParallel, Pool, refusingUrl, startSluice, startUpstream, waitFor, type Upstream } from './support/helpers.js';

// ---------------------------------------------------------------- helpers

interface MirrorCounts {
  ok: number;
  error: number;
  dropped: number;
  mismatch: number;
  compared: number;
  mismatchRate: number | null;
}

async function mirrorStats(sluice: RunningSluice, route: string, version = 'shadow'): Promise<MirrorCounts> {
  const res = await fetch(`${sluice.adminUrl}/stats`);
  assert.equal(res.status, 200);
  const body = (await res.json()) as { routes: Record<string, { versions: Record<string, { mirror: MirrorCounts }> }> };
  const v = body.routes[route]?.versions[version];
  assert.ok(v, `no stats for ${route}/${version}`);
  return v.mirror;
}

/** Shadow copies in flight for the route's first mirror, as the admin API reports it. */
async function mirrorInFlight(sluice: RunningSluice, route: string): Promise<number> {
  const res = await fetch(`${sluice.adminUrl}/routes/${route}`);
  assert.equal(res.status, 200);
  const body = (await res.json()) as { mirror: Array<{ inFlight: number }> };
  return body.mirror[0]!.inFlight;
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A server that accepts connections and never reads or answers anything. */
async function startHangingServer(): Promise<{ url: string; accepted: () => number; close(): Promise<void> }> {
  let accepted = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ pauseOnConnect: true }, (socket) => {
    accepted++;
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    accepted: () => accepted,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}


function percentile(sorted: readonly number[], p: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[i]!;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

async function post(pool: Pool, path: string, body: Buffer | Readable, headers: Record<string, string> = {}) {
  const r = await pool.request({ path, method: 'POST', body, headers: { 'content-type': 'application/octet-stream', ...headers } });
  return { status: r.statusCode, body: await r.body.text() };
}

/** A stream of `buf` in 16 KiB pieces with no known length: undici sends it chunked. */
function chunked(buf: Buffer): Readable {
  const pieces: Buffer[] = [];
  for (let i = 0; i < buf.length; i += 16 * 1024) pieces.push(buf.subarray(i, i + 16 * 1024));
  return Readable.from(pieces, { objectMode: false });
}

// ---------------------------------------------------------------- isolation

describe('mirror isolation', () => {
  /*
   * The same closed-loop load against three routes that share one primary
   * upstream: no mirror, a shadow that accepts and never answers, and a shadow
   * whose port refuses connections. Short runs are interleaved round by round,
   * the order rotated each round, so that the machine's noise falls on all
   * three alike; each configuration's p99 (client side) is the median of its
   * per-run p99s.
   *
   * The upstream answers after a fixed DELAY_MS so that latency is dominated
   * by a known delay. On a small shared machine, one process holding the
   * client, the proxy and the upstreams sees stalls of several milliseconds
   * whatever the configuration; 40 ms keeps those inside the 20% tolerance,
   * while a shadow that held the primary back at all (awaited dispatch, a
   * shared connection, head-of-line blocking) adds its timeout to every
   * mirrored request. When the machine is busier than that, the margin is
   * the spread measured in the same run instead: the range of the no-mirror
   * route's per-run p99s, capped at half the mirror timeout (what a shadow
   * holding the primary back would add at least). The mirror timeout is short so that most hung copies
   * reach their deadline, and are aborted, within the run that sent them.
   */
  it("a hanging shadow and a refusing shadow leave the primary's answers and p99 alone", async (t) => {
    const DELAY_MS = 40;
    const CONCURRENCY = 20;
    const REQUESTS = 300; // per run
    const ROUNDS = 7;
    const WARMUP = 400; // per route: connections, JIT, both shadow pools
    const TOLERANCE = 1.2;
    const MIRROR_TIMEOUT_MS = 250;

    const primary = await startUpstream(
      'primary',
      (_req, res) => {
        setTimeout(() => {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.end('primary');
        }, DELAY_MS);
      },
      { record: false },
    );
    const hanging = await startHangingServer();
    const refusing = await refusingUrl();
    const versions = (shadowUrl: string) => [
      { name: 'primary', url: primary.url },
      { name: 'shadow', url: shadowUrl },
    ];
    // A cap far above what a run sends: every copy is sent, and a hung one holds its connection until its deadline.
    const mirror = [{ version: 'shadow', percent: 100, timeout: `${MIRROR_TIMEOUT_MS}ms`, maxConcurrent: 100_000 }];
    const sluice = await startSluice({
      routes: [
        { name: 'plain', match: { pathPrefix: '/plain/' }, versions: versions(refusing) },
        { name: 'hang', match: { pathPrefix: '/hang/' }, versions: versions(hanging.url), mirror },
        { name: 'refuse', match: { pathPrefix: '/refuse/' }, versions: versions(refusing), mirror },
      ],
    });
    const pool = new Pool(sluice.trafficUrl, { connections: CONCURRENCY, pipelining: 1 });
    const quiet = async () => {
      await waitFor('no hung copies in flight', async () => (await mirrorInFlight(sluice, 'hang')) === 0, 10_000, 20);
      await waitFor('no refused copies in flight', async () => (await mirrorInFlight(sluice, 'refuse')) === 0, 10_000, 20);
    };
    try {
      /** One closed-loop run of `n` requests; asserts every answer, returns the client-side p99 in ms. */
      const run = async (route: string, n: number): Promise<number> => {
        const latencies = await inParallel(n, CONCURRENCY, async (i) => {
          const path = `/${route}/${i}`;
          const t0 = performance.now();
          const r = await pool.request({ path, method: 'GET' });
          const body = await r.body.text();
          const ms = performance.now() - t0;
          assert.equal(r.statusCode, 200, `${path}: status`);
          assert.equal(body, 'primary', `${path}: body`);
          assert.equal(r.headers['x-sluice-version'], 'primary', `${path}: version`);
          return ms;
        });
        return percentile(
          latencies.sort((a, b) => a - b),
          0.99,
        );
      };

      const routes = ['plain', 'hang', 'refuse'] as const;
      for (const r of routes) await run(r, WARMUP);

      const p99: Record<(typeof routes)[number], number[]> = { plain: [], hang: [], refuse: [] };
      let stillHanging = 0;
      for (let round = 0; round < ROUNDS; round++) {
        for (let k = 0; k < routes.length; k++) {
          const route = routes[(round + k) % routes.length]!;
          // Every run starts from the same state: no copy of an earlier run still in flight.
          await quiet();
          p99[route].push(await run(route, REQUESTS));
          // All the primary's answers are in while the last copies still hang: nothing waited for them.
          if (route === 'hang') stillHanging = Math.min(stillHanging || Infinity, await mirrorInFlight(sluice, 'hang'));
        }
      }
      assert.ok(stillHanging > 0, 'after every run with the hanging shadow, some copies should still be in flight');
      const [plain, hang, refuse] = routes.map((r) => median(p99[r]));
      const detail = routes.map((r) => `${r} ${p99[r].map((x) => x.toFixed(1)).join('/')}`).join(', ');
      // Same-run baseline: the no-mirror route; its margin, 20% or the spread of its own runs if wider (a busy machine).
      const spread = Math.max(...p99.plain) - Math.min(...p99.plain);
      const limit = plain! + Math.min(Math.max(plain! * (TOLERANCE - 1), spread), MIRROR_TIMEOUT_MS / 2);
      t.diagnostic(`p99 per run (ms): ${detail}; medians: plain ${plain!.toFixed(2)}, hang ${hang!.toFixed(2)}, refuse ${refuse!.toFixed(2)}; limit ${limit.toFixed(2)}`);
      assert.ok(hang! <= limit, `hanging shadow: median p99 ${hang!.toFixed(2)} ms > ${limit.toFixed(2)} ms (plain ${plain!.toFixed(2)} ms + margin; ${detail})`);
      assert.ok(refuse! <= limit, `refusing shadow: median p99 ${refuse!.toFixed(2)} ms > ${limit.toFixed(2)} ms (plain ${plain!.toFixed(2)} ms + margin; ${detail})`);

      // Every copy is accounted for: hung ones as errors once their deadline passed, refused ones as errors.
      await quiet();
      const total = WARMUP + REQUESTS * ROUNDS;
      const h = await mirrorStats(sluice, 'hang');
      assert.deepEqual({ ok: h.ok, error: h.error, dropped: h.dropped, mismatch: h.mismatch }, { ok: 0, error: total, dropped: 0, mismatch: 0 });
      assert.ok(hanging.accepted() > 0, 'the hanging shadow was connected to');
      const r = await mirrorStats(sluice, 'refuse');
      assert.deepEqual({ ok: r.ok, error: r.error, dropped: r.dropped, mismatch: r.mismatch }, { ok: 0, error: total, dropped: 0, mismatch: 0 });
      const p = await mirrorStats(sluice, 'plain');
      assert.deepEqual({ ok: p.ok, error: p.error, dropped: p.dropped }, { ok: 0, error: 0, dropped: 0 });
    } finally {
      await pool.close();
      await hanging.close();
      await sluice.close();
      await primary.close();
    }
  });

  it('a hung copy counts as error only after its timeout; over the concurrency cap copies are dropped', async () => {
    const TIMEOUT_MS = 300;
    const CAP = 3;
    const primary = await startUpstream('primary');
    const hanging = await startHangingServer();
    const sluice = await startSluice({
      routes: [
        {
          name: 'r',
          versions: [
            { name: 'primary', url: primary.url },
            { name: 'shadow', url: hanging.url },
          ],
          mirror: [{ version: 'shadow', percent: 100, timeout: `${TIMEOUT_MS}ms`, maxConcurrent: CAP }],
        },
      ],
    });
    const pool = new Pool(sluice.trafficUrl, { connections: 1 });
    try {
      // One copy: in flight while the primary answers, an error once its deadline passes.
      const t0 = performance.now();
      const r = await pool.request({ path: '/one', method: 'GET' });
      assert.equal(r.statusCode, 200);
      assert.equal(await r.body.text(), 'primary');
      assert.equal(await mirrorInFlight(sluice, 'r'), 1);
      assert.equal((await mirrorStats(sluice, 'r')).error, 0);
      await waitFor('the hung copy to count as error', async () => (await mirrorStats(sluice, 'r')).error === 1, 5_000);
      const elapsed = performance.now() - t0;
      assert.ok(elapsed >= TIMEOUT_MS - 5, `counted as error after ${elapsed.toFixed(0)} ms, before its ${TIMEOUT_MS} ms timeout`);
      await waitFor('the copy to leave the gate', async () => (await mirrorInFlight(sluice, 'r')) === 0, 5_000);

      // Ten requests back to back, well within the timeout: CAP copies hang, the rest are dropped.
      const start = performance.now();
      for (let i = 0; i < 10; i++) {
        const res = await pool.request({ path: `/burst/${i}`, method: 'GET' });
        assert.equal(res.statusCode, 200);
        assert.equal(await res.body.text(), 'primary');
      }
      const burstMs = performance.now() - start;
      if (burstMs < TIMEOUT_MS) {
        const s = await mirrorStats(sluice, 'r');
        assert.equal(s.dropped, 10 - CAP, `dropped over the cap of ${CAP}`);
        assert.equal(await mirrorInFlight(sluice, 'r'), CAP);
      } else {
        // A machine too slow for the burst to fit the timeout still must drop some and never exceed the cap.
        assert.ok((await mirrorStats(sluice, 'r')).dropped > 0, `nothing dropped (burst took ${burstMs.toFixed(0)} ms)`);
      }
      await waitFor('the capped copies to time out', async () => (await mirrorInFlight(sluice, 'r')) === 0, 5_000);
      const s = await mirrorStats(sluice, 'r');
      assert.equal(s.error + s.dropped, 11);
      assert.equal(s.ok, 0);
      // Once the gate is free again, copies are sent again.
      const res = await pool.request({ path: '/after', method: 'GET' });
      await res.body.text();
      assert.equal(await mirrorInFlight(sluice, 'r'), 1);
      assert.equal((await mirrorStats(sluice, 'r')).dropped, s.dropped);
    } finally {
      await pool.close();
      await hanging.close();
      await sluice.close();
      await primary.close();
    }
  });
});

// ---------------------------------------------------------------- bodies

describe('mirrored bodies', () => {
  it('arrive byte-identical under the limit; over it they reach only the primary and count as dropped', async () => {
    const LIMIT = 256 * 1024;
    const echoHash = (_req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(sha256(body));
    };
    const primary = await startUpstream('primary', echoHash);
    const shadow = await startUpstream('shadow', echoHash);
    const sluice = await startSluice({
      routes: [
        {
          name: 'up',
          versions: [
            { name: 'primary', url: primary.url },
            { name: 'shadow', url: shadow.url },
          ],
          mirror: [{ version: 'shadow', percent: 100, methods: ['POST'], maxBodyBytes: '256KiB' }],
        },
      ],
    });
    const pool = new Pool(sluice.trafficUrl, { connections: 4 });
    try {
      const cases = [
        { name: '1k', size: 1024, mirrored: true },
        { name: '100k', size: 100 * 1024, mirrored: true },
        { name: 'limit', size: LIMIT, mirrored: true }, // "larger than the limit" is dropped; equal is not
        { name: 'limit+1', size: LIMIT + 1, mirrored: false },
        { name: '1m', size: 1024 * 1024, mirrored: false },
      ];
      const sent = new Map<string, string>(); // path → sha256
      for (const c of cases) {
        for (const framing of ['length', 'chunked'] as const) {
          const buf = randomBytes(c.size);
          const path = `/upload/${c.name}/${framing}`;
          sent.set(path, sha256(buf));
          const r = await post(pool, path, framing === 'length' ? buf : chunked(buf));
          assert.equal(r.status, 200, path);
          assert.equal(r.body, sha256(buf), `${path}: the primary got the body intact`);
        }
      }
      const mirroredCount = cases.filter((c) => c.mirrored).length * 2;
      const droppedCount = cases.length * 2 - mirroredCount;

      await waitFor('mirrored copies to complete', async () => (await mirrorStats(sluice, 'up')).ok === mirroredCount);
      await waitFor('no copies in flight', async () => (await mirrorInFlight(sluice, 'up')) === 0);
      const s = await mirrorStats(sluice, 'up');
      assert.deepEqual(
        { ok: s.ok, error: s.error, dropped: s.dropped },
        { ok: mirroredCount, error: 0, dropped: droppedCount },
      );

      // Each upload reached the primary once and intact; the shadow got an intact copy only up to the limit.
      for (const c of cases) {
        for (const framing of ['length', 'chunked'] as const) {
          const path = `/upload/${c.name}/${framing}`;
          const p = primary.seen.filter((x) => x.url === path);
          assert.equal(p.length, 1, `${path}: the primary got it once`);
          assert.equal(sha256(p[0]!.body), sent.get(path));
          const sh = shadow.seen.filter((x) => x.url === path);
          if (c.mirrored) {
            assert.equal(sh.length, 1, `${path}: the shadow got it once`);
            assert.equal(sh[0]!.method, 'POST');
            assert.equal(sh[0]!.body.length, c.size, `${path}: shadow body length`);
            assert.equal(sha256(sh[0]!.body), sent.get(path), `${path}: shadow body intact`);
          } else {
            assert.equal(sh.length, 0, `${path}: over the limit, must not reach the shadow`);
          }
        }
      }
    } finally {
      await pool.close();
      await sluice.close();
      await primary.close();
      await shadow.close();
    }
  });
});

// ---------------------------------------------------------------- compare, Host, methods

describe('mirror compare', () => {
  it('counts a different shadow answer as mismatch and an equal one as ok', async () => {
    const primary = await startUpstream('primary', (req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`answer for ${req.url}`);
    });
    const shadow = await startUpstream('shadow', (req, res) => {
      const url = req.url!;
      if (url.startsWith('/diff-body')) {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(`something else for ${url}`);
      } else if (url.startsWith('/diff-status')) {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`answer for ${url}`);
      } else {
        // Same status and body, in a different chunking and with other headers: still equal.
        res.writeHead(200, { 'content-type': 'text/html', 'x-extra': '1' });
        const body = `answer for ${url}`;
        res.write(body.slice(0, 3));
        res.end(body.slice(3));
      }
    });
    const sluice = await startSluice({
      routes: [
        {
          name: 'cmp',
          versions: [
            { name: 'primary', url: primary.url },
            { name: 'shadow', url: shadow.url },
          ],
          mirror: [{ version: 'shadow', percent: 100, compare: true }],
        },
      ],
    });
    const pool = new Pool(sluice.trafficUrl, { connections: 4 });
    try {
      const paths = [
        ...Array.from({ length: 6 }, (_, i) => `/same/${i}`),
        ...Array.from({ length: 3 }, (_, i) => `/diff-body/${i}`),
        `/diff-status/0`,
      ];
      await inParallel(paths.length, 4, async (i) => {
        const r = await pool.request({ path: paths[i]!, method: 'GET' });
        assert.equal(r.statusCode, 200);
        assert.equal(await r.body.text(), `answer for ${paths[i]}`, 'the client always gets the primary');
      });
      await waitFor('all pairs compared', async () => (await mirrorStats(sluice, 'cmp')).compared === paths.length);
      await waitFor('no copies in flight', async () => (await mirrorInFlight(sluice, 'cmp')) === 0);
      const s = await mirrorStats(sluice, 'cmp');
      assert.deepEqual(s, { ok: 6, error: 0, dropped: 0, mismatch: 4, compared: 10, mismatchRate: 0.4 });
    } finally {
      await pool.close();
      await sluice.close();
      await primary.close();
      await shadow.close();
    }
  });

  it('compares a 204 at its headers, and leaves the shadow of a failed primary uncompared', async () => {
    const primary = await startUpstream('primary', (req, res) => {
      if (req.url!.startsWith('/broken')) res.socket!.destroy();
      else res.writeHead(204).end();
    });
    const shadow = await startUpstream('shadow', (req, res) => {
      if (req.url!.startsWith('/broken')) res.writeHead(200, { 'content-type': 'text/plain' }).end('fine');
      else res.writeHead(204).end();
    });
    const sluice = await startSluice({
      routes: [
        {
          name: 'cmp',
          versions: [
            { name: 'primary', url: primary.url },
            { name: 'shadow', url: shadow.url },
          ],
          mirror: [{ version: 'shadow', percent: 100, compare: true }],
        },
      ],
    });
    const pool = new Pool(sluice.trafficUrl, { connections: 1 });
    try {
      for (const path of ['/empty/0', '/broken/0', '/empty/1', '/broken/1']) {
        const r = await pool.request({ path, method: 'GET' });
        assert.equal(r.statusCode, path.startsWith('/broken') ? 502 : 204);
        await r.body.text();
      }
      await waitFor('every shadow counted', async () => (await mirrorStats(sluice, 'cmp')).ok === 4);
      await waitFor('no copies in flight', async () => (await mirrorInFlight(sluice, 'cmp')) === 0);
      const s = await mirrorStats(sluice, 'cmp');
      assert.deepEqual(s, { ok: 4, error: 0, dropped: 0, mismatch: 0, compared: 2, mismatchRate: 0 });
    } finally {
      await pool.close();
      await sluice.close();
      await primary.close();
      await shadow.close();
    }
  });
});

describe('mirror requests', () => {
  let primary: Upstream;
  let shadow: Upstream;

  async function withSluice(mirror: Record<string, unknown>, fn: (sluice: RunningSluice, pool: Pool) => Promise<void>): Promise<void> {
    primary = await startUpstream('primary');
    shadow = await startUpstream('shadow');
    const sluice = await startSluice({
      routes: [
        {
          name: 'm',
          versions: [
            { name: 'primary', url: primary.url },
            { name: 'shadow', url: shadow.url },
          ],
          mirror: [{ version: 'shadow', percent: 100, ...mirror }],
        },
      ],
    });
    const pool = new Pool(sluice.trafficUrl, { connections: 2 });
    try {
      await fn(sluice, pool);
    } finally {
      await pool.close();
      await sluice.close();
      await primary.close();
      await shadow.close();
    }
  }

  /** Waits until `n` copies have finished and none is in flight, then returns the counts. */
  async function settled(sluice: RunningSluice, n: number): Promise<MirrorCounts> {
    await waitFor(`${n} copies done`, async () => {
      const s = await mirrorStats(sluice, 'm');
      return s.ok + s.error + s.dropped >= n && (await mirrorInFlight(sluice, 'm')) === 0;
    });
    return mirrorStats(sluice, 'm');
  }

  it("gives the shadow's Host a -shadow suffix and leaves the primary's alone", async () => {
    await withSluice({}, async (sluice, pool) => {
      const r = await pool.request({ path: '/h', method: 'GET', headers: { host: 'shop.example.com' } });
      assert.equal(r.statusCode, 200);
      assert.equal(await r.body.text(), 'primary');
      await settled(sluice, 1);
      assert.equal(primary.seen[0]!.headers.host, 'shop.example.com');
      assert.equal(shadow.seen.length, 1);
      assert.equal(shadow.seen[0]!.headers.host, 'shop.example.com-shadow');
      assert.equal(shadow.seen[0]!.url, '/h');
      // Everything else as the primary sees it.
      assert.equal(shadow.seen[0]!.headers['x-forwarded-host'], 'shop.example.com');
    });
  });

  it('mirrors only GET, HEAD and OPTIONS by default', async () => {
    await withSluice({}, async (sluice, pool) => {
      // The ones that must not be copied go first: if one were, it would be counted by the time the rest are.
      for (const method of ['POST', 'PUT', 'PATCH', 'DELETE'] as const) {
        const r = await pool.request({ path: `/x/${method}`, method, body: `body of ${method}` });
        assert.equal(r.statusCode, 200);
        await r.body.text();
      }
      for (const method of ['GET', 'HEAD', 'OPTIONS'] as const) {
        const r = await pool.request({ path: `/x/${method}`, method });
        assert.equal(r.statusCode, 200);
        await r.body.text();
      }
      const s = await settled(sluice, 3);
      assert.deepEqual({ ok: s.ok, error: s.error, dropped: s.dropped }, { ok: 3, error: 0, dropped: 0 });
      assert.deepEqual(shadow.seen.map((x) => x.method).sort(), ['GET', 'HEAD', 'OPTIONS']);
      assert.equal(primary.seen.length, 7);
    });
  });

  it('mirrors POST (with its body) when methods lists POST', async () => {
    await withSluice({ methods: ['POST'] }, async (sluice, pool) => {
      const r = await pool.request({ path: '/p', method: 'POST', body: 'hello shadow', headers: { 'content-type': 'text/plain' } });
      assert.equal(r.statusCode, 200);
      assert.equal(await r.body.text(), 'primary');
      const s = await settled(sluice, 1);
      assert.equal(s.ok, 1);
      assert.equal(shadow.seen.length, 1);
      assert.equal(shadow.seen[0]!.method, 'POST');
      assert.equal(shadow.seen[0]!.body.toString(), 'hello shadow');
      assert.equal(shadow.seen[0]!.headers['content-type'], 'text/plain');
    });
  });
});
