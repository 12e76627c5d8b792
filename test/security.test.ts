/**
 * Security basics of a proxy: hop-by-hop and Connection-listed headers never
 * cross Sluice (either way) while the headers Sluice adds survive; request
 * targets never change the upstream origin; bodies on GET/HEAD never desync
 * the upstream connection; client aborts leak no upstream sockets; the
 * client-side timeouts are set and enforced.
 *
 * Requests that must be sent byte for byte go over raw `net` sockets.
 */
import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { RunningSluice } from '../cli/run-sluice.js';
import { inParallel, Pool, startSluice, startUpstream, waitFor, type Upstream, type UpstreamHandler } from './support/helpers.js';
import { header, RawClient, requestBytes } from './support/raw-http.js';

// The raw HTTP/1.1 client (byte-for-byte requests, responses parsed in order) is test/support/raw-http.ts.

// ---------------------------------------------------------------- fixtures

type Defer = (close: () => unknown) => void;

/**
 * Closers run when the test ends, last registered first: clients, then
 * Sluice, then upstreams (Sluice's graceful close waits for client connections).
 */
function closers(t: TestContext): Defer {
  const fns: Array<() => unknown> = [];
  t.after(async () => {
    for (const fn of fns.reverse()) await fn();
  });
  return (fn) => void fns.push(fn);
}

/** One upstream, one Sluice routing everything to it; both closed when the test ends. */
async function oneVersion(
  defer: Defer,
  handler?: UpstreamHandler,
  proxy: Record<string, unknown> = {},
): Promise<{ up: Upstream; sluice: RunningSluice; hostHeader: string }> {
  const up = await startUpstream('v1', handler);
  defer(() => up.close());
  const sluice = await startSluice({ proxy, routes: [{ name: 'r', versions: [{ name: 'v1', url: up.url }] }] });
  defer(() => sluice.close());
  return { up, sluice, hostHeader: `Host: ${new URL(sluice.trafficUrl).host}` };
}

async function rawClient(defer: Defer, url: string): Promise<RawClient> {
  const c = await RawClient.connect(url);
  defer(() => c.close());
  return c;
}

function connectionsOf(server: { getConnections(cb: (err: Error | null, n: number) => void): unknown }): Promise<number> {
  return new Promise((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
}

function promLine(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const close = line.lastIndexOf('}');
    const got = Object.fromEntries([...line.slice(name.length + 1, close).matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(line.slice(close + 1).trim());
  }
  return undefined;
}

// ---------------------------------------------------------------- tests

describe('hop-by-hop headers', () => {
  it('request: hop-by-hop and Connection-listed headers are stripped; x-forwarded-* are set', async (t) => {
    const defer = closers(t);
    const { up, sluice, hostHeader } = await oneVersion(defer);
    const c = await rawClient(defer, sluice.trafficUrl);
    await c.write(
      requestBytes('GET /hop HTTP/1.1', [
        hostHeader,
        // X-Forwarded-For listed too: the client's value goes, Sluice's own is still added.
        'Connection: keep-alive, X-Secret, x-forwarded-for',
        'X-Secret: 1',
        'X-Forwarded-For: 203.0.113.9',
        'Keep-Alive: timeout=5',
        'Proxy-Authorization: Basic eDp5',
        'Proxy-Connection: keep-alive',
        'TE: trailers',
        'Trailer: x-checksum',
        // Upgrade without the `upgrade` connection option is no upgrade: an ordinary request.
        'Upgrade: foo',
        'X-Normal: yes',
      ]),
    );
    const r = await c.response();
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'v1');
    assert.equal(up.seen.length, 1);
    const h = up.seen[0]!.headers;
    assert.equal(h['x-normal'], 'yes');
    assert.equal(h['x-forwarded-for'], '127.0.0.1', 'the listed client x-forwarded-for goes; Sluice adds its own');
    assert.equal(h['x-forwarded-proto'], 'http');
    assert.equal(h['x-forwarded-host'], new URL(sluice.trafficUrl).host);
    for (const name of ['x-secret', 'keep-alive', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'upgrade']) {
      assert.equal(h[name], undefined, `${name} reached the upstream`);
    }
    // undici's own connection management may say keep-alive; never anything the client listed.
    assert.ok(h.connection === undefined || h.connection === 'keep-alive', `connection: ${h.connection}`);
  });

  it('request: an X-Forwarded-For that is not listed is appended to, not replaced', async (t) => {
    const defer = closers(t);
    const { up, sluice, hostHeader } = await oneVersion(defer);
    const c = await rawClient(defer, sluice.trafficUrl);
    await c.write(requestBytes('GET /xff HTTP/1.1', [hostHeader, 'X-Forwarded-For: 203.0.113.9', 'X-Forwarded-Proto: https']));
    assert.equal((await c.response()).status, 200);
    assert.equal(up.seen[0]!.headers['x-forwarded-for'], '203.0.113.9, 127.0.0.1');
    // trustForwarded is off by default: a client cannot claim https (test/hardening-forwarded.test.ts).
    assert.equal(up.seen[0]!.headers['x-forwarded-proto'], 'http');
  });

  it('response: hop-by-hop, Connection-listed and x-sluice-reward are stripped; x-sluice-version survives', async (t) => {
    const defer = closers(t);
    const { sluice, hostHeader } = await oneVersion(defer, (_req, res) => {
      res.setHeader('Connection', 'X-Internal, x-sluice-version');
      res.setHeader('X-Internal', '1');
      res.setHeader('Keep-Alive', 'timeout=99, max=7');
      res.setHeader('Proxy-Authenticate', 'Basic realm="internal"');
      res.setHeader('Trailer', 'x-checksum');
      res.setHeader('Upgrade', 'h2c');
      res.setHeader('X-Normal', 'yes');
      res.setHeader('x-sluice-reward', '1');
      res.setHeader('x-sluice-version', 'spoofed-by-upstream');
      res.writeHead(200, { 'content-type': 'text/plain' }); // chunked: transfer-encoding is hop-by-hop too
      res.write('hello ');
      res.end('world');
    });
    const c = await rawClient(defer, sluice.trafficUrl);
    await c.write(requestBytes('GET /resp HTTP/1.1', [hostHeader]));
    const r = await c.response();
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'hello world', 're-framed body arrives whole');
    assert.equal(header(r, 'x-normal'), 'yes');
    assert.equal(header(r, 'x-sluice-version'), 'v1');
    for (const name of ['x-internal', 'proxy-authenticate', 'trailer', 'upgrade', 'x-sluice-reward']) {
      assert.equal(header(r, name), undefined, `${name} reached the client`);
    }
    // Node adds the proxy's own Connection/Keep-Alive for the client connection; never the upstream's.
    assert.doesNotMatch(header(r, 'keep-alive') ?? '', /99|max=7/);
    assert.doesNotMatch(header(r, 'connection') ?? '', /internal|x-sluice-version/i);
    // The connection is still usable.
    await c.write(requestBytes('GET /again HTTP/1.1', [hostHeader]));
    assert.equal((await c.response()).status, 200);
  });
});

describe('request targets never change the upstream origin', () => {
  it('dot segments, //host paths, absolute-form and CONNECT reach our upstream or are refused with 4xx', async (t) => {
    const defer = closers(t);
    const { up, sluice, hostHeader } = await oneVersion(defer);
    // A second server an attacker would like to reach: it must receive nothing at all.
    const attacker = await startUpstream('attacker');
    defer(() => attacker.close());
    let attackerConnections = 0;
    attacker.server.on('connection', () => attackerConnections++);
    const evil = `127.0.0.1:${attacker.port}`;

    const cases: Array<{ line: string; upstreamPath: string | null; host?: string }> = [
      // Paths are normalised before forwarding (proxy/path.ts, test/hardening-path-normalisation.test.ts).
      { line: 'GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1', upstreamPath: '/etc/passwd' },
      { line: 'GET /a/../../b HTTP/1.1', upstreamPath: '/b' },
      { line: 'GET //evil.example/x HTTP/1.1', upstreamPath: '/evil.example/x' },
      { line: `GET //${evil}/x HTTP/1.1`, upstreamPath: `/${evil}/x` },
      { line: 'GET http://evil.example/steal HTTP/1.1', upstreamPath: '/steal' },
      { line: `GET http://${evil}/steal?x=1 HTTP/1.1`, upstreamPath: '/steal?x=1', host: `Host: ${evil}` },
      { line: `GET https://user:pw@${evil}/steal HTTP/1.1`, upstreamPath: '/steal' },
      { line: `GET http://${evil} HTTP/1.1`, upstreamPath: '/' },
      { line: `GET ${evil}/x HTTP/1.1`, upstreamPath: null },
      { line: 'OPTIONS * HTTP/1.1', upstreamPath: null },
      { line: `CONNECT ${evil} HTTP/1.1`, upstreamPath: null, host: `Host: ${evil}` },
    ];
    for (const { line, upstreamPath, host } of cases) {
      const before = up.seen.length;
      const c = await RawClient.connect(sluice.trafficUrl);
      try {
        await c.write(requestBytes(line, [host ?? hostHeader, 'Connection: close']));
        // A response, or the connection closed without one (CONNECT has no listener): both are refusals.
        const r = await c.response().catch((err: Error) => {
          if (/connection closed/.test(err.message)) return null;
          throw err;
        });
        const reached = up.seen.slice(before);
        if (r !== null && r.status < 400) {
          assert.equal(reached.length, 1, `${line}: answered ${r.status} without reaching our upstream`);
          assert.equal(reached[0]!.url, upstreamPath, `${line}: upstream saw ${reached[0]!.url}`);
        } else {
          // CONNECT is refused as a method Sluice does not implement (501 SLUICE_METHOD_NOT_IMPLEMENTED).
          const refusal = r === null || (r.status >= 400 && r.status < 500) || (line.startsWith('CONNECT') && r.status === 501);
          assert.ok(refusal, `${line}: answered ${r?.status}`);
          // Refused: nothing was forwarded, or exactly what was expected.
          assert.ok(reached.length === 0 || (reached.length === 1 && reached[0]!.url === upstreamPath), `${line}: upstream saw ${reached[0]?.url}`);
        }
      } finally {
        c.close();
      }
    }
    assert.equal(attacker.seen.length, 0, 'a request reached the attacker');
    assert.equal(attackerConnections, 0, 'the attacker was connected to');
    // Everything the upstream saw was an origin-form path.
    for (const s of up.seen) assert.ok(s.url.startsWith('/'), s.url);
  });
});

describe('bodies on GET and HEAD never desync the upstream connection', () => {
  // Exactly 20 bytes that would read as the start of another request if forwarded as is.
  const SMUGGLE = 'GET /smuggled HTTP/1';
  assert.equal(SMUGGLE.length, 20);

  for (const method of ['GET', 'HEAD'] as const) {
    it(`${method} with Content-Length and a body, then a second request on the same connection`, async (t) => {
      const defer = closers(t);
      // One upstream connection, so a desync would hit the very next request.
      const { up, sluice, hostHeader } = await oneVersion(defer, undefined, { connectionsPerVersion: 1 });
      const c = await rawClient(defer, sluice.trafficUrl);
      await c.write(requestBytes(`${method} /x HTTP/1.1`, [hostHeader, 'Content-Length: 20'], SMUGGLE));
      const first = await c.response({ head: method === 'HEAD' });
      assert.equal(first.status, 200);
      assert.equal(first.body.toString(), method === 'HEAD' ? '' : 'v1');
      await c.write(requestBytes('GET /second HTTP/1.1', [hostHeader]));
      const second = await c.response();
      assert.equal(second.status, 200);
      assert.equal(second.body.toString(), 'v1');
      assert.deepEqual(
        up.seen.map((s) => `${s.method} ${s.url}`),
        [`${method} /x`, 'GET /second'],
      );
      assert.equal(up.seen[0]!.body.length, 0, 'the GET/HEAD body reached the upstream');
      assert.equal(up.seen[0]!.headers['content-length'], undefined);
      assert.equal(up.seen[0]!.headers['transfer-encoding'], undefined);
      assert.ok(!c.ended, 'the client connection was kept');
    });
  }

  it('GET with a chunked body, then a second request on the same connection', async (t) => {
    const defer = closers(t);
    const { up, sluice, hostHeader } = await oneVersion(defer, undefined, { connectionsPerVersion: 1 });
    const c = await rawClient(defer, sluice.trafficUrl);
    const chunk = `GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n`;
    await c.write(
      requestBytes('GET /x HTTP/1.1', [hostHeader, 'Transfer-Encoding: chunked'], `${chunk.length.toString(16)}\r\n${chunk}\r\n0\r\n\r\n`),
    );
    assert.equal((await c.response()).status, 200);
    await c.write(requestBytes('GET /second HTTP/1.1', [hostHeader]));
    const second = await c.response();
    assert.equal(second.status, 200);
    assert.equal(second.body.toString(), 'v1');
    assert.deepEqual(
      up.seen.map((s) => `${s.method} ${s.url}`),
      ['GET /x', 'GET /second'],
    );
    assert.equal(up.seen[0]!.body.length, 0);
  });
});

describe('client aborts', () => {
  it('1,000 requests aborted before the upstream answers leak no sockets', async (t) => {
    const defer = closers(t);
    const CONNECTIONS = 8;
    const N = 1_000;
    const slow: UpstreamHandler = (_req, res) => {
      const timer = setTimeout(() => res.end('late'), 200);
      res.on('close', () => clearTimeout(timer));
    };
    const up = await startUpstream('slow', slow, { record: false });
    defer(() => up.close());
    const sluice = await startSluice({
      proxy: { connectionsPerVersion: CONNECTIONS },
      routes: [{ name: 'r', versions: [{ name: 'v1', url: up.url }] }],
    });
    defer(() => sluice.close());
    const admin = new Pool(sluice.adminUrl, { connections: 1 });
    defer(() => admin.destroy());
    const client = new Pool(sluice.trafficUrl, { connections: 50 });
    defer(() => client.destroy());

    const pool = () => sluice.proxy.upstreams.poolStats().find((p) => p.origin === up.url && p.role === 'primary');
    // Sample both ends of the upstream connections while the aborts run.
    let maxConnected = 0;
    let maxUpstreamSide = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        maxConnected = Math.max(maxConnected, pool()?.connected ?? 0);
        maxUpstreamSide = Math.max(maxUpstreamSide, await connectionsOf(up.server));
        await new Promise((r) => setTimeout(r, 5));
      }
    })();

    // Each request is aborted ~20 ms after it reached Sluice (so every one of them does reach it,
    // however loaded this machine is): while Sluice waits for the upstream's answer, or while
    // it waits for one of the CONNECTIONS upstream connections to be free.
    const controllers = new Map<string, AbortController>();
    const abortLater = (req: { url?: string }) => {
      const ctrl = controllers.get(req.url ?? '');
      if (ctrl) setTimeout(() => ctrl.abort(), 20);
    };
    sluice.proxy.app.server.on('request', abortLater);
    let aborted = 0;
    try {
      await inParallel(N, 50, async (i) => {
        const path = `/abort/${i}`;
        const ctrl = new AbortController();
        controllers.set(path, ctrl);
        try {
          const r = await client.request({ path, method: 'GET', signal: ctrl.signal });
          await r.body.dump();
        } catch (err) {
          if ((err as Error).name === 'AbortError') aborted++;
          else throw err;
        } finally {
          controllers.delete(path);
        }
      });
    } finally {
      sampling = false;
      await sampler;
      sluice.proxy.app.server.off('request', abortLater);
    }
    assert.equal(aborted, N, 'every request was aborted by the client');

    // Everything settles: nothing running or queued, no more connections than configured.
    const settled = await waitFor('the upstream pool to settle after the aborts', async () => {
      const r = await admin.request({ path: '/stats', method: 'GET' });
      const body = (await r.body.json()) as { upstreamPools: Array<{ origin: string; role: string; connected: number; running: number; pending: number }> };
      const p = body.upstreamPools.find((x) => x.origin === up.url && x.role === 'primary');
      return p !== undefined && p.running === 0 && p.pending === 0 ? p : null;
    });
    assert.ok(settled);
    assert.ok(settled.connected <= CONNECTIONS, `pool holds ${settled.connected} connections`);
    assert.ok(maxConnected <= CONNECTIONS, `pool held up to ${maxConnected} connections`);
    await waitFor('the upstream to hold no more connections than the pool may', async () => (await connectionsOf(up.server)) <= CONNECTIONS);
    // A socket Sluice closes is seen closed by the upstream a little later: allow that lag, not growth.
    assert.ok(maxUpstreamSide <= 2 * CONNECTIONS, `the upstream held up to ${maxUpstreamSide} connections`);

    // Each request was counted once, as 499 (client closed first), and as nothing else:
    // no 502 and no upstream error for an abort that was the client's.
    const metrics = await (await admin.request({ path: '/metrics', method: 'GET' })).body.text();
    assert.equal(promLine(metrics, 'sluice_requests_total', { route: 'r', version: 'v1', code: '499' }), N);
    assert.equal(promLine(metrics, 'sluice_requests_total', { route: 'r', version: 'v1', code: '502' }), undefined);
    const stats = sluice.proxy.route('r').route.versions[0]!.stats.snapshot();
    assert.deepEqual(stats.statusCounts, { '499': N });
    assert.equal(stats.requests, N);
    assert.equal(stats.errors, 0);
    assert.deepEqual(Object.values(stats.upstreamErrors).filter((n) => n > 0), []);

    // Client side: once the client is gone, Sluice holds none of its sockets.
    await client.destroy();
    await waitFor('Sluice to hold no client connection', async () => (await connectionsOf(sluice.proxy.app.server)) === 0);

    // And the proxy still serves.
    const fresh = new Pool(sluice.trafficUrl, { connections: 1 });
    defer(() => fresh.destroy());
    const ok = await fresh.request({ path: '/after', method: 'GET' });
    assert.equal(ok.statusCode, 200);
    assert.equal(await ok.body.text(), 'late');
  });
});

describe('client-side timeouts', () => {
  it('headersTimeout and requestTimeout are set on the traffic server from the config', async (t) => {
    const defer = closers(t);
    const { sluice } = await oneVersion(defer, undefined, { headersTimeout: '2s', requestTimeout: '5s' });
    const server = sluice.proxy.app.server;
    assert.equal(server.headersTimeout, 2_000);
    assert.equal(server.requestTimeout, 5_000);
  });

  it('the defaults are not "disabled"', async (t) => {
    const defer = closers(t);
    const { sluice } = await oneVersion(defer);
    const server = sluice.proxy.app.server;
    assert.ok(server.headersTimeout > 0, `headersTimeout ${server.headersTimeout}`);
    assert.ok(server.requestTimeout > 0, `requestTimeout ${server.requestTimeout}`);
  });

  /**
   * Node enforces headersTimeout and requestTimeout only when it sweeps its
   * connections, every `connectionsCheckingInterval` ms (30 s by default).
   * Sluice sweeps at least every second, so a timeout means what it says.
   */
  function sweepInterval(server: object): number {
    const interval = (server as { connectionsCheckingInterval?: number }).connectionsCheckingInterval ?? 30_000;
    assert.ok(interval <= 1_000, `connectionsCheckingInterval is ${interval} ms: client timeouts would be enforced only that often`);
    return interval;
  }

  it('a client that sends its headers slower than headersTimeout is cut off', async (t) => {
    const defer = closers(t);
    const { up, sluice } = await oneVersion(defer, undefined, { headersTimeout: '300ms', requestTimeout: '1s' });
    const interval = sweepInterval(sluice.proxy.app.server);
    const c = await rawClient(defer, sluice.trafficUrl);
    const start = performance.now();
    await c.write('GET / HTTP/1.1\r\n'); // … and never the rest
    const limit = 300 + interval + 1_000;
    const r = await c.response({ timeoutMs: limit }).catch(() => null);
    if (r !== null) assert.equal(r.status, 408);
    await c.closed(limit);
    const ms = performance.now() - start;
    assert.ok(ms >= 250, `cut off after ${ms.toFixed(0)} ms, before headersTimeout`);
    assert.equal(up.seen.length, 0);
  });

  it('a client that sends its body slower than requestTimeout is cut off', async (t) => {
    const defer = closers(t);
    const { up, sluice, hostHeader } = await oneVersion(defer, undefined, { headersTimeout: '300ms', requestTimeout: '600ms' });
    const interval = sweepInterval(sluice.proxy.app.server);
    const c = await rawClient(defer, sluice.trafficUrl);
    const start = performance.now();
    await c.write(requestBytes('POST /upload HTTP/1.1', [hostHeader, 'Content-Length: 100'], 'only a part')); // … and never the rest
    const limit = 600 + interval + 1_000;
    const r = await c.response({ timeoutMs: limit }).catch(() => null);
    if (r !== null) assert.ok(r.status === 408 || r.status >= 500, `answered ${r.status}`);
    await c.closed(limit);
    const ms = performance.now() - start;
    assert.ok(ms >= 550, `cut off after ${ms.toFixed(0)} ms, before requestTimeout`);
    // The upstream never got a whole request.
    assert.equal(up.seen.length, 0);
  });
});
