/**
 * Upstream faults: refused, reset before headers, reset mid-response, slow
 * beyond the route's request timeout, and a 503 of the upstream's own. Each
 * must reach the client as the contract says (502/504 JSON, or a broken
 * response when headers already went out), be counted per reason in
 * /metrics and /stats, and leave the process healthy.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { RunningSluice } from '../cli/run-sluice.js';
import { freePort, Pool, startSluice, startUpstream, waitFor, type Upstream } from './support/helpers.js';

interface ErrorBody {
  error: { code: string; message: string; route: string; version: string; reason: string };
}

interface VersionStatsView {
  requests: number;
  errors: number;
  statusCounts: Record<string, number>;
  upstreamErrors: Record<string, number>;
}


/** Values of one Prometheus series family, keyed by its labels in a canonical (sorted) form. */
function parseMetric(text: string, name: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const close = line.lastIndexOf('}');
    const labels = [...line.slice(name.length + 1, close).matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)]
      .map((m) => `${m[1]}=${m[2]}`)
      .sort()
      .join(',');
    out.set(labels, Number(line.slice(close + 1).trim()));
  }
  return out;
}

function labelKey(labels: Record<string, string>): string {
  return Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .sort()
    .join(',');
}

describe('upstream faults', () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  let sluice: RunningSluice;
  let client: Pool;
  let admin: Pool;
  let resetUp: Upstream;
  let midUp: Upstream;
  let slowUp: Upstream;
  let unavailableUp: Upstream;
  let goodUp: Upstream;
  let refusedPort: number;

  before(async () => {
    process.on('unhandledRejection', onUnhandled);
    refusedPort = await freePort();
    // Odd requests: a plain close (FIN); even ones: a TCP RST. Both before any byte of the response.
    let resets = 0;
    resetUp = await startUpstream('reset', (req) => (++resets % 2 === 1 ? req.socket.destroy() : req.socket.resetAndDestroy()));
    midUp = await startUpstream('mid', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' }); // no content-length: chunked
      res.write('first part of the body,', () => {
        // Flushed to the kernel: now cut the connection before the terminating chunk.
        res.socket?.destroy();
      });
    });
    slowUp = await startUpstream('slow', () => {
      /* never answers */
    });
    unavailableUp = await startUpstream('unavailable', (_req, res) => {
      res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '1' });
      res.end('upstream says: unavailable');
    });
    goodUp = await startUpstream('good');
    const route = (name: string, url: string, extra: Record<string, unknown> = {}) => ({
      name,
      match: { pathPrefix: `/${name}` },
      versions: [{ name: `${name}-v1`, url }],
      ...extra,
    });
    sluice = await startSluice({
      routes: [
        route('refused', `http://127.0.0.1:${refusedPort}`),
        route('reset', resetUp.url),
        route('mid', midUp.url),
        route('slow', slowUp.url, { timeouts: { request: '300ms' } }),
        route('unavailable', unavailableUp.url),
        route('good', goodUp.url),
      ],
    });
    client = new Pool(sluice.trafficUrl, { connections: 4 });
    admin = new Pool(sluice.adminUrl, { connections: 1 });
  });

  after(async () => {
    process.off('unhandledRejection', onUnhandled);
    await client?.destroy();
    await admin?.destroy();
    await sluice?.close();
    await Promise.all([resetUp, midUp, slowUp, unavailableUp, goodUp].map((u) => u?.close()));
  });

  async function request(path: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string; ms: number }> {
    const start = performance.now();
    const r = await client.request({ path, method: 'GET' });
    const body = await r.body.text();
    return { status: r.statusCode, headers: r.headers as http.IncomingHttpHeaders, body, ms: performance.now() - start };
  }

  async function upstreamErrorsMetric(route: string, reason: string): Promise<number> {
    const r = await admin.request({ path: '/metrics', method: 'GET' });
    assert.equal(r.statusCode, 200);
    const series = parseMetric(await r.body.text(), 'sluice_upstream_errors_total');
    const v = series.get(labelKey({ route, version: `${route}-v1`, reason }));
    assert.ok(v !== undefined, `no sluice_upstream_errors_total series for ${route}/${reason}`);
    return v;
  }

  async function versionStats(route: string): Promise<VersionStatsView> {
    const r = await admin.request({ path: '/stats', method: 'GET' });
    assert.equal(r.statusCode, 200);
    const body = (await r.body.json()) as { routes: Record<string, { versions: Record<string, VersionStatsView> }> };
    const v = body.routes[route]?.versions[`${route}-v1`];
    assert.ok(v, `no /stats entry for ${route}`);
    return v;
  }

  function assertErrorBody(body: string, route: string, code: string, reason: string): void {
    const parsed = JSON.parse(body) as ErrorBody;
    assert.equal(parsed.error.code, code);
    assert.equal(parsed.error.reason, reason);
    assert.equal(parsed.error.route, route);
    assert.equal(parsed.error.version, `${route}-v1`);
    assert.match(parsed.error.message, new RegExp(`${route}-v1`));
  }

  it('refused connection → 502 SLUICE_UPSTREAM_CONNECT, counted with reason connect', async () => {
    const n = 3;
    for (let i = 0; i < n; i++) {
      const r = await request(`/refused/${i}`);
      assert.equal(r.status, 502);
      assert.match(String(r.headers['content-type']), /^application\/json/);
      assert.equal(r.headers['x-sluice-version'], 'refused-v1');
      assertErrorBody(r.body, 'refused', 'SLUICE_UPSTREAM_CONNECT', 'connect');
    }
    assert.equal(await upstreamErrorsMetric('refused', 'connect'), n);
    assert.equal(await upstreamErrorsMetric('refused', 'reset'), 0);
    const s = await versionStats('refused');
    assert.equal(s.requests, n);
    assert.equal(s.errors, n);
    assert.equal(s.statusCounts['502'], n);
    assert.equal(s.upstreamErrors.connect, n);
  });

  it('closed or reset before the response headers → 502 SLUICE_UPSTREAM_RESET, reason reset, no retry', async () => {
    const n = 4;
    for (let i = 0; i < n; i++) {
      const r = await request(`/reset/${i}`);
      assert.equal(r.status, 502);
      assertErrorBody(r.body, 'reset', 'SLUICE_UPSTREAM_RESET', 'reset');
    }
    assert.equal(resetUp.seen.length, n, 'each request reached the upstream exactly once');
    assert.equal(await upstreamErrorsMetric('reset', 'reset'), n);
    const s = await versionStats('reset');
    assert.equal(s.requests, n);
    assert.equal(s.errors, n);
    assert.equal(s.upstreamErrors.reset, n);
  });

  it('reset mid-response → the client sees a broken response, counted as reset and as an error', async () => {
    const r = await client.request({ path: '/mid/stream', method: 'GET' });
    // The headers went out before the upstream failed: the status is the upstream's.
    assert.equal(r.statusCode, 200);
    assert.equal(r.headers['x-sluice-version'], 'mid-v1');
    await assert.rejects(r.body.text(), 'a truncated body must not read as a complete one');
    assert.equal(midUp.seen.length, 1);
    // The proxy counts when it sees the upstream close, which may come just after the client does.
    await waitFor('the mid-response reset to be counted', async () => (await upstreamErrorsMetric('mid', 'reset')) === 1, 5_000);
    const s = await versionStats('mid');
    assert.equal(s.requests, 1);
    assert.equal(s.errors, 1);
    assert.equal(s.upstreamErrors.reset, 1);
  });

  it('an upstream slower than timeouts.request → 504 SLUICE_UPSTREAM_TIMEOUT in about that time', async () => {
    const r = await request('/slow/x');
    assert.equal(r.status, 504);
    assertErrorBody(r.body, 'slow', 'SLUICE_UPSTREAM_TIMEOUT', 'timeout');
    assert.ok(r.ms >= 250, `answered after ${r.ms.toFixed(0)} ms: before the 300 ms timeout`);
    assert.ok(r.ms < 2_000, `answered after ${r.ms.toFixed(0)} ms: the 300 ms timeout was not applied`);
    assert.equal(slowUp.seen.length, 1);
    assert.equal(await upstreamErrorsMetric('slow', 'timeout'), 1);
    const s = await versionStats('slow');
    assert.equal(s.errors, 1);
    assert.equal(s.statusCounts['504'], 1);
  });

  it("an upstream's own 503 is passed through as is, exactly once, and counted as an error", async () => {
    const r = await request('/unavailable/x');
    assert.equal(r.status, 503);
    assert.equal(r.body, 'upstream says: unavailable');
    assert.equal(r.headers['retry-after'], '1');
    assert.equal(r.headers['x-sluice-version'], 'unavailable-v1');
    assert.equal(unavailableUp.seen.length, 1, 'no hidden retry');
    const s = await versionStats('unavailable');
    assert.equal(s.requests, 1);
    assert.equal(s.errors, 1);
    assert.equal(s.statusCounts['503'], 1);
    // The upstream answered: it is not a transport fault.
    assert.equal(Object.values(s.upstreamErrors).reduce((a, b) => a + b, 0), 0);
  });

  it('after all of that the process is healthy: /healthz 200, a healthy version answers, no unhandled rejection', async () => {
    const h = await admin.request({ path: '/healthz', method: 'GET' });
    assert.equal(h.statusCode, 200);
    await h.body.dump();
    const r = await request('/good/x');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'good');
    assert.equal(r.headers['x-sluice-version'], 'good-v1');
    // Failed routes still fail cleanly, not worse, after the others.
    const again = await request('/refused/again');
    assert.equal(again.status, 502);
    // Give any stray rejection of the faults above a chance to surface before checking.
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(unhandled, []);
  });
});
