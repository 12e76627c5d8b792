/**
 * WebSocket (HTTP Upgrade) proxying: the version is chosen at the upgrade
 * request like any request (rules, sticky key, weights), then frames flow
 * untouched both ways. Real ws servers and clients on 127.0.0.1.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import type { RunningSluice } from '../cli/run-sluice.js';
import { refusingUrl, startSluice, waitFor } from './support/helpers.js';

// ---------------------------------------------------------------- helpers

interface WsUpstream {
  readonly url: string;
  /** Headers of every upgrade request received. */
  readonly upgrades: http.IncomingHttpHeaders[];
  /** Close codes received from clients. */
  readonly closeCodes: number[];
  close(): Promise<void>;
}

/**
 * A ws server that greets with `${version}:welcome`, echoes text as
 * `${version}:${msg}` and binary with a `${version}:` prefix, and on the text
 * `close-me` closes with 4002.
 */
async function startWsUpstream(version: string): Promise<WsUpstream> {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(version);
  });
  const wss = new WebSocketServer({ server });
  const upgrades: http.IncomingHttpHeaders[] = [];
  const closeCodes: number[] = [];
  wss.on('connection', (ws, req) => {
    upgrades.push(req.headers);
    ws.on('error', () => {});
    ws.on('close', (code) => closeCodes.push(code));
    ws.send(`${version}:welcome`);
    ws.on('message', (data: RawData, isBinary: boolean) => {
      const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
      if (isBinary) return ws.send(Buffer.concat([Buffer.from(`${version}:`), buf]), { binary: true });
      const text = buf.toString('utf8');
      if (text === 'close-me') return ws.close(4002, 'server says bye');
      ws.send(`${version}:${text}`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    upgrades,
    closeCodes,
    close: async () => {
      for (const c of wss.clients) c.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A message queue over one client socket, so that no message is missed between awaits. */
class Client {
  readonly #queue: Array<{ data: Buffer; binary: boolean }> = [];
  readonly #waiters: Array<(m: { data: Buffer; binary: boolean }) => void> = [];
  readonly closed: Promise<{ code: number; reason: string }>;

  /** x-sluice-version of the 101 answer. */
  version: string | undefined;

  constructor(readonly ws: WebSocket) {
    ws.on('message', (data: RawData, binary: boolean) => {
      const m = { data: Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data), binary };
      const w = this.#waiters.shift();
      if (w) w(m);
      else this.#queue.push(m);
    });
    this.closed = new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  }

  next(): Promise<{ data: Buffer; binary: boolean }> {
    const m = this.#queue.shift();
    if (m) return Promise.resolve(m);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  async nextText(): Promise<string> {
    const m = await this.next();
    assert.equal(m.binary, false, 'expected a text message');
    return m.data.toString('utf8');
  }

  async close(): Promise<void> {
    if (this.ws.readyState !== WebSocket.CLOSED) this.ws.close(1000);
    await this.closed;
  }
}

/** Opens a ws connection through Sluice; rejects with the status when the upgrade is refused. */
function connect(url: string, headers: Record<string, string> = {}): Promise<Client> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    // Attach the queue before 'open' so a message in the same packet as the 101 is not lost.
    const client = new Client(ws);
    ws.once('upgrade', (res) => {
      const v = res.headers['x-sluice-version'];
      client.version = Array.isArray(v) ? v[0] : v;
    });
    ws.once('open', () => resolve(client));
    ws.once('unexpected-response', (req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        req.destroy();
        reject(Object.assign(new Error(`unexpected-response ${res.statusCode}`), { statusCode: res.statusCode, body: Buffer.concat(chunks).toString() }));
      });
    });
    ws.once('error', reject);
  });
}

/** Which version a fresh connection was given: from its greeting, cross-checked with x-sluice-version. */
async function versionOf(c: Client): Promise<string> {
  const welcome = await c.nextText();
  const m = /^(v\d):welcome$/.exec(welcome);
  assert.ok(m, `unexpected greeting ${welcome}`);
  assert.equal(c.version, m[1], 'x-sluice-version of the 101 names the version that answers');
  return m[1]!;
}


// ---------------------------------------------------------------- tests

describe('websocket proxying', () => {
  let v1: WsUpstream;
  let v2: WsUpstream;
  let sluice: RunningSluice;
  let wsUrl: string;

  before(async () => {
    v1 = await startWsUpstream('v1');
    v2 = await startWsUpstream('v2');
    const down = await refusingUrl();
    sluice = await startSluice({
      routes: [
        {
          name: 'down',
          match: { pathPrefix: '/down' },
          versions: [{ name: 'gone', url: down }],
        },
        {
          name: 'chat',
          versions: [
            { name: 'v1', url: v1.url },
            { name: 'v2', url: v2.url },
          ],
          weights: { v1: 50, v2: 50 },
          rules: [{ match: { headers: { 'x-canary': 'true' } }, version: 'v2' }],
          sticky: { header: 'x-user-id' },
        },
      ],
    });
    wsUrl = sluice.trafficUrl.replace(/^http/, 'ws');
  });

  after(async () => {
    await sluice?.close();
    await v1?.close();
    await v2?.close();
  });

  /** Per user: the version of each of `n` successive connections. */
  async function versionsOver(user: string, n: number, headers: Record<string, string> = {}): Promise<string[]> {
    const seen: string[] = [];
    for (let i = 0; i < n; i++) {
      const c = await connect(`${wsUrl}/chat`, { 'x-user-id': user, ...headers });
      seen.push(await versionOf(c));
      await c.close();
    }
    return seen;
  }

  it('sticky users land on one version across 20 reconnects', async () => {
    const byUser = new Map<string, string>();
    for (let u = 0; u < 12; u++) {
      const user = `user-${u}`;
      const seen = await versionsOver(user, 20);
      assert.equal(new Set(seen).size, 1, `${user} moved between versions: ${seen.join(',')}`);
      byUser.set(user, seen[0]!);
    }
    // With 50/50 weights the keys spread over both versions (the hash is deterministic, so this is not luck).
    assert.deepEqual(new Set(byUser.values()), new Set(['v1', 'v2']), `all users on one version: ${[...byUser].join(' ')}`);
  });

  it('x-canary: true talks to v2, even for a user whose key is on v1', async () => {
    let v1User: string | undefined;
    for (let u = 0; u < 50 && v1User === undefined; u++) {
      if ((await versionsOver(`probe-${u}`, 1))[0] === 'v1') v1User = `probe-${u}`;
    }
    assert.ok(v1User, 'no user key maps to v1');
    assert.deepEqual(await versionsOver(v1User, 5, { 'x-canary': 'true' }), ['v2', 'v2', 'v2', 'v2', 'v2']);
    assert.deepEqual(await versionsOver(v1User, 2), ['v1', 'v1'], 'without the header the key keeps v1');
    // Keyless canary traffic too.
    const c = await connect(`${wsUrl}/chat`, { 'x-canary': 'true' });
    assert.equal(await versionOf(c), 'v2');
    await c.close();
    // The upstream got the client's headers (and the upgrade) through Sluice.
    const last = v2.upgrades.at(-1)!;
    assert.equal(last['x-canary'], 'true');
    assert.equal(last.upgrade?.toLowerCase(), 'websocket');
    assert.ok(last['x-forwarded-for'], 'x-forwarded-for is set');
  });

  it('messages flow both ways, text and binary, and close codes cross the proxy', async () => {
    const c = await connect(`${wsUrl}/chat`, { 'x-canary': 'true', 'x-user-id': 'talker' });
    assert.equal(await versionOf(c), 'v2'); // server → client, unprompted
    for (const msg of ['hello', 'second message', 'ünïcödé ✓', '']) {
      c.ws.send(msg);
      assert.equal(await c.nextText(), `v2:${msg}`);
    }
    // Several in flight at once keep their order.
    const burst = Array.from({ length: 50 }, (_, i) => `m${i}`);
    for (const m of burst) c.ws.send(m);
    for (const m of burst) assert.equal(await c.nextText(), `v2:${m}`);
    // A large binary frame arrives intact in both directions.
    const big = randomBytes(512 * 1024);
    c.ws.send(big, { binary: true });
    const echoed = await c.next();
    assert.equal(echoed.binary, true);
    assert.ok(echoed.data.equals(Buffer.concat([Buffer.from('v2:'), big])), 'binary echo differs');
    // The client's close code reaches the upstream.
    const before = v2.closeCodes.length;
    c.ws.close(4001, 'client says bye');
    assert.equal((await c.closed).code, 4001);
    await waitFor('the upstream to see the close', () => v2.closeCodes.length > before, 5_000);
    assert.equal(v2.closeCodes.at(-1), 4001);
    // And the upstream's close code reaches the client.
    const d = await connect(`${wsUrl}/chat`, { 'x-canary': 'true' });
    assert.equal(await versionOf(d), 'v2');
    d.ws.send('close-me');
    assert.deepEqual(await d.closed, { code: 4002, reason: 'server says bye' });
  });

  it('an upstream that refuses: the client gets 502 and Sluice keeps serving', async () => {
    await assert.rejects(connect(`${wsUrl}/down`), (err: Error & { statusCode?: number; body?: string }) => {
      assert.equal(err.message, 'unexpected-response 502');
      assert.equal(err.statusCode, 502);
      const body = JSON.parse(err.body ?? '{}') as { error?: { code?: string } };
      assert.equal(body.error?.code, 'SLUICE_UPSTREAM_CONNECT');
      return true;
    });
    // Counted as an upstream failure of that version.
    const stats = (await (await fetch(`${sluice.adminUrl}/stats`)).json()) as {
      routes: Record<string, { versions: Record<string, { requests: number; errors: number; upstreamErrors: Record<string, number> }> }>;
    };
    const gone = stats.routes.down!.versions.gone!;
    assert.equal(gone.requests, 1);
    assert.equal(gone.errors, 1);
    assert.equal(gone.upstreamErrors.connect, 1);
    // Still up: websockets and plain HTTP on the other route work.
    const c = await connect(`${wsUrl}/chat`, { 'x-canary': 'true' });
    assert.equal(await versionOf(c), 'v2');
    c.ws.send('still here');
    assert.equal(await c.nextText(), 'v2:still here');
    await c.close();
    const res = await fetch(`${sluice.trafficUrl}/chat`, { headers: { 'x-canary': 'true' } });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'v2');
    assert.equal(res.headers.get('x-sluice-version'), 'v2');
  });
});
