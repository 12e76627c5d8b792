/**
 * Issue 11, item 9: the Upgrade path applies the response rules of the
 * normal path (hop-by-hop, Connection-listed, Proxy-Authenticate and
 * x-sluice-reward stripped, the reward counted, the version header added),
 * splices only `websocket` upgrades, caps upgraded connections per version
 * and closes them on drain. Raw sockets on both sides, on loopback.
 */
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import { describe, test, type TestContext } from 'node:test';
import type { RunningSluice } from '../cli/run-sluice.js';
import { startSluice, waitFor } from './support/helpers.js';

interface RawUpstream {
  readonly url: string;
  /** Request heads received, as text. */
  readonly heads: string[];
  /** Connections that are spliced (answered 101) and still open. */
  open: number;
  close(): Promise<void>;
}

/**
 * An upstream that answers any request with `answer` (a full response head),
 * then echoes bytes when it answered 101.
 */
async function rawUpstream(answer: (head: string) => string): Promise<RawUpstream> {
  const heads: string[] = [];
  const sockets = new Set<net.Socket>();
  const up: RawUpstream = { url: '', heads, open: 0, close: async () => {} };
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    let buf = '';
    let spliced = false;
    s.on('data', (d) => {
      if (spliced) return void s.write(d);
      buf += d.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      const head = buf.slice(0, end);
      heads.push(head);
      const reply = answer(head);
      s.write(reply);
      if (reply.startsWith('HTTP/1.1 101')) {
        spliced = true;
        up.open++;
        s.once('close', () => up.open--);
        const rest = buf.slice(end + 4);
        if (rest) s.write(rest);
      } else s.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  Object.assign(up, {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  });
  return up;
}

const SWITCH =
  'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade, X-Internal\r\nX-Internal: secret\r\n' +
  'Keep-Alive: timeout=5\r\nProxy-Authenticate: Basic realm="inner"\r\nx-sluice-reward: 2.5\r\nSec-WebSocket-Accept: abc\r\n\r\n';

class RawClient {
  readonly socket: net.Socket;
  #buf = Buffer.alloc(0);
  #waiters: Array<() => void> = [];
  readonly closed: Promise<void>;

  constructor(url: string) {
    const u = new URL(url);
    this.socket = net.connect(Number(u.port), u.hostname);
    this.socket.on('error', () => {});
    this.socket.on('data', (d: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, d]);
      for (const w of this.#waiters.splice(0)) w();
    });
    this.closed = new Promise((r) => this.socket.once('close', () => r()));
    this.socket.once('close', () => { for (const w of this.#waiters.splice(0)) w(); });
  }

  /** Waits until the received text satisfies `done` (or the socket closes), with a deadline. */
  async until(done: (text: string) => boolean, what: string): Promise<string> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const text = this.#buf.toString('latin1');
      if (done(text)) return text;
      if (this.socket.destroyed || Date.now() > deadline) throw new Error(`${what}: got ${JSON.stringify(text)}`);
      await new Promise<void>((r) => {
        this.#waiters.push(r);
        setTimeout(r, 100).unref();
      });
    }
  }

  async head(): Promise<{ status: number; headers: Map<string, string[]>; text: string }> {
    const text = await this.until((t) => t.includes('\r\n\r\n'), 'response head');
    const lines = text.slice(0, text.indexOf('\r\n\r\n')).split('\r\n');
    const headers = new Map<string, string[]>();
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      const k = l.slice(0, i).trim().toLowerCase();
      headers.set(k, [...(headers.get(k) ?? []), l.slice(i + 1).trim()]);
    }
    return { status: Number(lines[0]!.split(' ')[1]), headers, text };
  }
}

function upgrade(sluice: RunningSluice, kind = 'websocket', path = '/chat'): RawClient {
  const c = new RawClient(sluice.trafficUrl);
  c.socket.write(
    `GET ${path} HTTP/1.1\r\nHost: h\r\nConnection: Upgrade${kind === 'websocket' ? '' : ', HTTP2-Settings'}\r\nUpgrade: ${kind}\r\n` +
      (kind === 'websocket' ? 'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' : 'HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n') +
      '\r\n',
  );
  return c;
}

async function setup(t: TestContext, answer: (head: string) => string, proxy: Record<string, unknown> = {}) {
  const up = await rawUpstream(answer);
  const sluice = await startSluice({ proxy, routes: [{ name: 'ws', versions: [{ name: 'v1', url: up.url }] }] });
  t.after(async () => {
    await sluice.close();
    await up.close();
  });
  return { up, sluice };
}

async function stats(sluice: RunningSluice): Promise<{ requests: number; rewards: number; rewardSum: number }> {
  const r = await fetch(`${sluice.adminUrl}/stats`);
  return ((await r.json()) as { routes: Record<string, { versions: Record<string, { requests: number; rewards: number; rewardSum: number }> }> }).routes.ws!.versions.v1!;
}

describe('the upgrade path applies the response rules', () => {
  test('101: hop-by-hop, Connection-listed, Proxy-Authenticate and x-sluice-reward stripped; reward counted; version header added', async (t) => {
    const { sluice } = await setup(t, () => SWITCH);
    const c = upgrade(sluice);
    const h = await c.head();
    assert.equal(h.status, 101, h.text);
    for (const name of ['x-internal', 'keep-alive', 'proxy-authenticate', 'x-sluice-reward']) assert.equal(h.headers.get(name), undefined, `${name} reached the client`);
    assert.deepEqual(h.headers.get('upgrade'), ['websocket']);
    assert.deepEqual(h.headers.get('connection'), ['Upgrade']);
    assert.deepEqual(h.headers.get('sec-websocket-accept'), ['abc']);
    assert.deepEqual(h.headers.get('x-sluice-version'), ['v1']);
    c.socket.write('ping');
    await c.until((t) => t.endsWith('ping'), 'echo through the splice');
    const s = await waitFor('the reward counted', async () => ((await stats(sluice)).rewards === 1 ? stats(sluice) : null));
    assert.equal(s.rewardSum, 2.5);
    c.socket.destroy();
  });

  test('a declined upgrade is relayed with the same rules', async (t) => {
    const { sluice } = await setup(t, () =>
      'HTTP/1.1 403 Forbidden\r\nConnection: X-Internal\r\nX-Internal: 1\r\nProxy-Authenticate: Basic\r\nx-sluice-reward: 1\r\nContent-Length: 2\r\n\r\nno');
    const c = upgrade(sluice);
    const h = await c.head();
    assert.equal(h.status, 403);
    for (const name of ['x-internal', 'proxy-authenticate', 'x-sluice-reward']) assert.equal(h.headers.get(name), undefined, `${name} reached the client`);
    assert.deepEqual(h.headers.get('x-sluice-version'), ['v1']);
    await waitFor('the reward counted', async () => (await stats(sluice)).rewards === 1);
    c.socket.destroy();
  });
});

describe('only websocket upgrades are spliced', () => {
  test('an h2c upgrade is served as a plain request: the upstream never sees Upgrade', async (t) => {
    const { up, sluice } = await setup(t, (head) =>
      /^upgrade:/im.test(head) ? SWITCH : 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nplain');
    const c = upgrade(sluice, 'h2c');
    const text = await c.until((t) => t.endsWith('plain'), 'a plain answer');
    assert.match(text, /^HTTP\/1\.1 200/);
    assert.equal(up.heads.length, 1);
    assert.doesNotMatch(up.heads[0]!, /^upgrade:/im, 'the upstream was asked to upgrade');
    assert.doesNotMatch(up.heads[0]!, /^http2-settings:/im, 'a Connection-listed header reached the upstream');
    await c.closed;
  });
});

describe('upgraded connections per version', () => {
  test('beyond proxy.maxUpgradesPerVersion, an upgrade is refused with 503; a slot frees when one closes', async (t) => {
    const { up, sluice } = await setup(t, () => SWITCH, { maxUpgradesPerVersion: 2 });
    const a = upgrade(sluice);
    const b = upgrade(sluice);
    assert.equal((await a.head()).status, 101);
    assert.equal((await b.head()).status, 101);
    const c = upgrade(sluice);
    const h = await c.head();
    assert.equal(h.status, 503, h.text);
    assert.match(h.text, /SLUICE_UPGRADE_LIMIT/);
    assert.equal(up.open, 2);
    a.socket.destroy();
    await waitFor('a slot to free', async () => {
      const d = upgrade(sluice);
      const ok = (await d.head()).status === 101;
      d.socket.destroy();
      return ok;
    });
    b.socket.destroy();
  });

  test('drain closes upgraded connections instead of waiting for the drain timeout', async (t) => {
    const { up, sluice } = await setup(t, () => SWITCH, { drainTimeout: '20s' });
    const a = upgrade(sluice);
    assert.equal((await a.head()).status, 101);
    let drained = false;
    const closing = sluice.close().then(() => (drained = true));
    const first = await Promise.race([a.closed.then(() => 'client closed'), new Promise((r) => setTimeout(r, 10_000, 'timeout'))]);
    assert.equal(first, 'client closed');
    await closing;
    assert.ok(drained);
    await waitFor('the upstream side closed', () => up.open === 0);
  });
});
