/**
 * HTTP/2 and TLS on the traffic port, end to end over real servers on
 * loopback (issue 13):
 *
 * - TLS: HTTP/2 by ALPN and HTTP/1.1 for a client that offers only that
 *   (node:http2, https, undici); SNI choosing the certificate of two hosts;
 *   certificate files replaced while a steady stream of requests runs over
 *   new and kept-alive connections, HTTP/1.1 and HTTP/2 (no request fails, new
 *   connections see the new certificate, kept-alive ones keep theirs); a
 *   client trusting another CA fails its handshake and Sluice serves on.
 * - Cleartext: h2c by prior knowledge and HTTP/1.1 on one port; streams of
 *   one session routed each on its own (weights and rules); http1, h2c and h2
 *   (private CA, mTLS) versions reached from HTTP/1.1 and HTTP/2 clients, with
 *   a 100 KB body echoed both ways; a version whose TLS settings cannot pass
 *   (no client certificate for an upstream that requires one, a CA that did
 *   not sign the upstream's certificate) gets a 502 naming it, never an answer.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { copyFileSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { pino } from 'pino';
import { Agent, fetch, Pool } from 'undici';
import { runSluice, type RunningSluice } from '../cli/run-sluice.js';
import { validateConfig } from '../config/config.js';
import { createPki, type IssuedPair, type Pki } from './support/certs.js';
import { inParallel, startSluice, startUpstream, waitFor, type Upstream } from './support/helpers.js';

// ---------------------------------------------------------------- clients

interface H2Response {
  readonly status: number;
  readonly headers: http2.IncomingHttpHeaders;
  readonly body: Buffer;
}

/** Every client session a test opens, closed in after() should a test fail half-way. */
const clientSessions = new Set<http2.ClientHttp2Session>();

function h2Connect(url: string, opts: http2.SecureClientSessionOptions = {}): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url, opts);
    clientSessions.add(session);
    session.once('close', () => clientSessions.delete(session));
    const onError = (err: Error): void => {
      session.destroy();
      reject(err);
    };
    session.once('error', onError);
    session.once('connect', () => {
      session.off('error', onError);
      // A session-level error after connect reaches the streams; it must not end the process.
      session.on('error', () => {});
      resolve(session);
    });
  });
}

function closeSession(session: http2.ClientHttp2Session): Promise<void> {
  if (session.closed || session.destroyed) return Promise.resolve();
  return new Promise((resolve) => session.close(() => resolve()));
}

function h2Request(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: Buffer): Promise<H2Response> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':path': '/', ...headers }, { endStream: body === undefined });
    const chunks: Buffer[] = [];
    let head: http2.IncomingHttpHeaders | null = null;
    let settled = false;
    req.on('response', (h) => (head = h));
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (settled) return;
      settled = true;
      if (head === null) reject(new Error('stream ended without response headers'));
      else resolve({ status: Number(head[':status']), headers: head, body: Buffer.concat(chunks) });
    });
    req.on('error', (err) => {
      if (settled) return;
      settled = true;
      reject(err);
    });
    req.on('close', () => {
      if (settled) return;
      settled = true;
      reject(new Error(`stream closed before its end (RST_STREAM ${req.rstCode})`));
    });
    if (body !== undefined) req.end(body);
  });
}

interface H1Response {
  readonly status: number;
  readonly httpVersion: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
  /** The connection's peer certificate fingerprint (TLS only). */
  readonly fingerprint: string | null;
  readonly alpn: string | false | null;
}

/** One request with node:http or node:https; `options` may carry an agent, ca, ALPNProtocols. */
function h1Request(url: string, options: https.RequestOptions, body?: Buffer): Promise<H1Response> {
  const mod = url.startsWith('https:') ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(url, { method: body === undefined ? 'GET' : 'POST', ...options }, (res) => {
      // Read now: a kept-alive socket is detached from the response once it ends.
      const socket = res.socket as tls.TLSSocket | null;
      const secure = socket !== null && typeof socket.getPeerCertificate === 'function';
      const fingerprint = secure ? socket.getPeerCertificate().fingerprint256 : null;
      const alpn = secure ? socket.alpnProtocol : null;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        resolve({
          status: res.statusCode ?? 0,
          httpVersion: res.httpVersion,
          headers: res.headers,
          body: Buffer.concat(chunks),
          fingerprint,
          alpn,
        });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** The certificate a new TLS connection gets: its SHA-256 fingerprint and subjectAltName. */
function peerCertificate(port: number, ca: string, servername?: string): Promise<{ fingerprint: string; san: string }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca, ALPNProtocols: ['http/1.1'], ...(servername ? { servername } : {}) }, () => {
      const c = socket.getPeerCertificate();
      socket.destroy();
      resolve({ fingerprint: c.fingerprint256, san: c.subjectaltname ?? '' });
    });
    socket.once('error', reject);
  });
}

function fingerprintOf(certPath: string): string {
  return new X509Certificate(readFileSync(certPath)).fingerprint256;
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

interface ErrorBody {
  error: { code: string; message: string; route: string; version: string; reason: string };
}

interface LogLine {
  level: number;
  msg: string;
  version?: string;
  reason?: string;
  code?: string;
  err?: string;
}

/** startSluice with the log kept, parsed: what an operator reads when a version fails. */
async function startLoggedSluice(config: Record<string, unknown>): Promise<{ sluice: RunningSluice; lines: LogLine[] }> {
  const lines: LogLine[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
  const full = { listen: '127.0.0.1:0', admin: { listen: '127.0.0.1:0' }, ...config };
  return { sluice: await runSluice(validateConfig(full, { env: {} }), log), lines };
}

// ---------------------------------------------------------------- upstreams

interface H2Upstream {
  readonly url: string;
  readonly port: number;
  /** What each request carried: its x-to header and the client certificate's CN (h2 over TLS). */
  readonly seen: Array<{ to: string; clientCn: string | null }>;
  /** Handshakes the server refused (mTLS without a client certificate). */
  readonly tlsErrors: Error[];
  close(): Promise<void>;
}

/**
 * An HTTP/2 upstream: h2c, or h2 over TLS requiring a client certificate
 * signed by `secure.ca`. Answers `name` to GET and echoes POST bodies; says
 * which HTTP version it got (x-up-proto) and who the client was (x-client-cn).
 */
async function startH2Upstream(name: string, secure?: { cert: string; key: string; ca: string }): Promise<H2Upstream> {
  const seen: H2Upstream['seen'] = [];
  const tlsErrors: Error[] = [];
  const sessions = new Set<http2.ServerHttp2Session>();
  const onRequest = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const socket = req.stream.session?.socket as tls.TLSSocket | undefined;
      const cn = secure && socket ? String(socket.getPeerCertificate().subject?.CN ?? '') || null : null;
      seen.push({ to: String(req.headers['x-to'] ?? ''), clientCn: cn });
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'x-up-proto': req.httpVersion,
        ...(cn !== null ? { 'x-client-cn': cn } : {}),
      });
      res.end(req.method === 'POST' ? body : name);
    });
  };
  const server = secure
    ? http2.createSecureServer(
        { cert: readFileSync(secure.cert), key: readFileSync(secure.key), ca: readFileSync(secure.ca), requestCert: true, rejectUnauthorized: true },
        onRequest,
      )
    : http2.createServer(onRequest);
  server.on('session', (s: http2.ServerHttp2Session) => {
    sessions.add(s);
    s.on('error', () => {});
    s.once('close', () => sessions.delete(s));
  });
  server.on('tlsClientError', (err: Error) => tlsErrors.push(err));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `${secure ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    seen,
    tlsErrors,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sessions) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** An HTTP/1.1 upstream: answers `v1` to GET, echoes POST bodies, says which HTTP version it got. */
function startH1Upstream(): Promise<Upstream> {
  return startUpstream(
    'v1',
    (req, res, body) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-up-proto': req.httpVersion });
      res.end(req.method === 'POST' ? body : 'v1');
    },
    { record: false },
  );
}

// ---------------------------------------------------------------- the PKIs

let pki: Pki; // Sluice's listener certificates (the CA clients trust)
let upPki: Pki; // the upstream's private CA (server certificate and Sluice's client certificate)
let otherPki: Pki; // a CA nobody here should trust
let ca: string;
let listenDir: string; // the listener's certificate files, replaced in place by the reload test
let live: IssuedPair;
let sniA: IssuedPair;
let sniB: IssuedPair;
let upServer: IssuedPair;
let upClient: IssuedPair;
let h1: Upstream;
let h2c: H2Upstream;
let h2s: H2Upstream;

/** Copies `from` over `to` as the reload test does: each file written aside, then renamed into place (key first). */
function replacePair(from: IssuedPair, to: IssuedPair): void {
  copyFileSync(from.key, `${to.key}.tmp`);
  copyFileSync(from.cert, `${to.cert}.tmp`);
  renameSync(`${to.key}.tmp`, to.key);
  renameSync(`${to.cert}.tmp`, to.cert);
}

before(async () => {
  pki = createPki();
  upPki = createPki();
  otherPki = createPki();
  ca = pki.caPem();
  listenDir = mkdtempSync(join(tmpdir(), 'sluice-h2-tls-'));
  const issued = pki.issue('listen-1', { hosts: ['sluice.test'], ips: ['127.0.0.1'] });
  live = { cert: join(listenDir, 'live.crt'), key: join(listenDir, 'live.key') };
  replacePair(issued, live);
  const a = pki.issue('a-1', { hosts: ['a.test'] });
  sniA = { cert: join(listenDir, 'a.crt'), key: join(listenDir, 'a.key') };
  replacePair(a, sniA);
  sniB = pki.issue('b', { hosts: ['b.test'] });
  upServer = upPki.issue('up', { hosts: ['up.test'] });
  upClient = upPki.issue('sluice-client', { hosts: ['sluice-client'], client: true });
  h1 = await startH1Upstream();
  h2c = await startH2Upstream('v2');
  h2s = await startH2Upstream('v3', { cert: upServer.cert, key: upServer.key, ca: upPki.caCert });
});

after(async () => {
  await Promise.all([...clientSessions].map((s) => (s.destroy(), Promise.resolve())));
  await Promise.all([h1?.close(), h2c?.close(), h2s?.close()]);
  pki?.remove();
  upPki?.remove();
  otherPki?.remove();
  if (listenDir) rmSync(listenDir, { recursive: true, force: true });
});

/** Versions of route `r` as the brief names them, and one rule per version on `x-to`. */
function versions(names: readonly string[]) {
  const all: Record<string, Record<string, unknown>> = {
    v1: { name: 'v1', url: h1.url },
    v2: { name: 'v2', url: h2c.url, protocol: 'h2c' },
    v3: { name: 'v3', url: h2s.url, protocol: 'h2', tls: { ca: upPki.caCert, cert: upClient.cert, key: upClient.key, servername: 'up.test' } },
    // The upstream requires a client certificate; this version has none.
    nocert: { name: 'nocert', url: h2s.url, protocol: 'h2', tls: { ca: upPki.caCert, servername: 'up.test' } },
    // The CA of another PKI: the upstream's certificate cannot be verified.
    badca: { name: 'badca', url: h2s.url, protocol: 'h2', tls: { ca: otherPki.caCert, cert: upClient.cert, key: upClient.key, servername: 'up.test' } },
  };
  return {
    versions: names.map((n) => all[n]!),
    rules: names.map((n) => ({ match: { headers: { 'x-to': { exact: n } } }, version: n })),
  };
}

// ---------------------------------------------------------------- TLS

describe('TLS on the traffic port', () => {
  let sluice: RunningSluice;
  let port: number;

  before(async () => {
    sluice = await startSluice({
      listen: {
        address: '127.0.0.1:0',
        http2: true,
        tls: {
          cert: live.cert,
          key: live.key,
          sni: [
            { hosts: ['a.test'], cert: sniA.cert, key: sniA.key },
            { hosts: ['b.test'], cert: sniB.cert, key: sniB.key },
          ],
          minVersion: 'TLSv1.2',
          reloadInterval: '100ms',
        },
      },
      routes: [{ name: 'r', ...versions(['v1', 'v3']), weights: { v1: 100, v3: 0 } }],
    });
    assert.match(sluice.trafficUrl, /^https:\/\/127\.0\.0\.1:\d+$/);
    port = Number(new URL(sluice.trafficUrl).port);
  });

  after(async () => {
    await sluice?.close();
  });

  it('a client offering h2 gets HTTP/2 by ALPN, to an http1 and an h2 version, bodies both ways', async () => {
    const session = await h2Connect(sluice.trafficUrl, { ca });
    try {
      assert.equal(session.alpnProtocol, 'h2');
      const r = await h2Request(session, {});
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-sluice-version'], 'v1');
      assert.equal(r.headers['x-up-proto'], '1.1');
      assert.equal(r.body.toString(), 'v1');

      const body = randomBytes(100 * 1024);
      const echoed = await h2Request(session, { ':method': 'POST', 'content-type': 'application/octet-stream' }, body);
      assert.equal(echoed.status, 200);
      assert.equal(echoed.headers['x-sluice-version'], 'v1');
      assert.equal(sha256(echoed.body), sha256(body));

      // TLS on both sides: h2 from the client, h2 with a private CA and a client certificate to the version.
      const v3 = await h2Request(session, { ':method': 'POST', 'x-to': 'v3' }, body);
      assert.equal(v3.status, 200);
      assert.equal(v3.headers['x-sluice-version'], 'v3');
      assert.equal(v3.headers['x-up-proto'], '2.0');
      assert.equal(v3.headers['x-client-cn'], 'sluice-client');
      assert.equal(sha256(v3.body), sha256(body));
    } finally {
      await closeSession(session);
    }
  });

  it('a client offering only http/1.1 gets HTTP/1.1 (node:https, undici request and fetch)', async () => {
    const agent = new https.Agent({ ca, ALPNProtocols: ['http/1.1'] } as https.AgentOptions);
    try {
      const r = await h1Request(sluice.trafficUrl, { agent });
      assert.equal(r.alpn, 'http/1.1');
      assert.equal(r.httpVersion, '1.1');
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-sluice-version'], 'v1');
      assert.equal(r.body.toString(), 'v1');
      const body = randomBytes(100 * 1024);
      const v3 = await h1Request(sluice.trafficUrl, { agent, headers: { 'x-to': 'v3' } }, body);
      assert.equal(v3.httpVersion, '1.1');
      assert.equal(v3.status, 200);
      assert.equal(v3.headers['x-sluice-version'], 'v3');
      assert.equal(v3.headers['x-client-cn'], 'sluice-client');
      assert.equal(sha256(v3.body), sha256(body));
    } finally {
      agent.destroy();
    }

    const dispatcher = new Agent({ connect: { ca } });
    try {
      const res = await fetch(sluice.trafficUrl, { dispatcher });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('x-sluice-version'), 'v1');
      assert.equal(await res.text(), 'v1');
      const pool = new Pool(sluice.trafficUrl, { connect: { ca } });
      try {
        const r = await pool.request({ path: '/', method: 'GET', headers: { 'x-to': 'v3' } });
        assert.equal(r.statusCode, 200);
        assert.equal(r.headers['x-sluice-version'], 'v3');
        assert.equal(await r.body.text(), 'v3');
      } finally {
        await pool.close();
      }
    } finally {
      await dispatcher.close();
    }
  });

  it('SNI picks the certificate of each host; no SNI or an unknown name gets the default', async () => {
    assert.equal((await peerCertificate(port, ca, 'a.test')).san, 'DNS:a.test');
    assert.equal((await peerCertificate(port, ca, 'b.test')).san, 'DNS:b.test');
    assert.equal((await peerCertificate(port, ca, 'A.TEST.')).san, 'DNS:a.test');
    const def = await peerCertificate(port, ca);
    assert.equal(def.san, 'DNS:sluice.test, IP Address:127.0.0.1');
    assert.equal(def.fingerprint, fingerprintOf(live.cert));
    // HTTP/2 with SNI: the session verifies a.test's certificate and is served.
    const session = await h2Connect(sluice.trafficUrl, { ca, servername: 'b.test' });
    try {
      assert.equal(session.alpnProtocol, 'h2');
      assert.equal((session.socket as tls.TLSSocket).getPeerCertificate().subjectaltname, 'DNS:b.test');
      const r = await h2Request(session, {});
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-sluice-version'], 'v1');
    } finally {
      await closeSession(session);
    }
  });

  it('replaced certificate files are picked up with no failed request over new and kept-alive h1/h2 connections', async () => {
    const oldFp = fingerprintOf(live.cert);
    const oldAFp = fingerprintOf(sniA.cert);
    const next = pki.issue('listen-2', { hosts: ['sluice.test'], ips: ['127.0.0.1'] });
    const nextA = pki.issue('a-2', { hosts: ['a.test'] });
    const newFp = fingerprintOf(next.cert);
    const newAFp = fingerprintOf(nextA.cert);
    assert.notEqual(newFp, oldFp);
    assert.equal((await peerCertificate(port, ca)).fingerprint, oldFp);

    let swapped = false;
    let stop = false;
    interface Loop {
      readonly name: string;
      ok: number;
      okAfterSwap: number;
      readonly failures: string[];
      /** Fingerprints the connections carrying successful requests had, after the swap was seen. */
      readonly fingerprintsAfterSwap: Set<string>;
    }
    const loops: Loop[] = [];
    const run = async (name: string, once: () => Promise<string>): Promise<void> => {
      const loop: Loop = { name, ok: 0, okAfterSwap: 0, failures: [], fingerprintsAfterSwap: new Set() };
      loops.push(loop);
      while (!stop) {
        const after = swapped;
        try {
          const fp = await once();
          loop.ok++;
          if (after) {
            loop.okAfterSwap++;
            loop.fingerprintsAfterSwap.add(fp);
          }
        } catch (err) {
          loop.failures.push(String((err as Error).message ?? err));
        }
      }
    };
    const check = (status: number, version: unknown, body: Buffer): void => {
      if (status !== 200 || version !== 'v1' || body.toString() !== 'v1') throw new Error(`got ${status} ${String(version)} ${body.toString().slice(0, 200)}`);
    };

    const keptH1 = new https.Agent({ ca, keepAlive: true, maxSockets: 1 });
    const keptH2 = await h2Connect(sluice.trafficUrl, { ca });
    const keptH2Fp = (keptH2.socket as tls.TLSSocket).getPeerCertificate().fingerprint256;
    assert.equal(keptH2Fp, oldFp);
    const done = Promise.all([
      run('h1 kept-alive', async () => {
        const r = await h1Request(sluice.trafficUrl, { agent: keptH1 });
        check(r.status, r.headers['x-sluice-version'], r.body);
        return r.fingerprint!;
      }),
      run('h1 new connections', async () => {
        const r = await h1Request(sluice.trafficUrl, { agent: false, ca });
        check(r.status, r.headers['x-sluice-version'], r.body);
        return r.fingerprint!;
      }),
      run('h2 kept-alive', async () => {
        // Two streams at once on the one session.
        const [r1, r2] = await Promise.all([h2Request(keptH2, {}), h2Request(keptH2, {})]);
        check(r1.status, r1.headers['x-sluice-version'], r1.body);
        check(r2.status, r2.headers['x-sluice-version'], r2.body);
        return keptH2Fp;
      }),
      run('h2 new sessions', async () => {
        const s = await h2Connect(sluice.trafficUrl, { ca });
        try {
          const fp = (s.socket as tls.TLSSocket).getPeerCertificate().fingerprint256;
          const r = await h2Request(s, {});
          check(r.status, r.headers['x-sluice-version'], r.body);
          return fp;
        } finally {
          await closeSession(s);
        }
      }),
      run('h2 new sessions, SNI a.test', async () => {
        const s = await h2Connect(sluice.trafficUrl, { ca, servername: 'a.test' });
        try {
          const fp = (s.socket as tls.TLSSocket).getPeerCertificate().fingerprint256;
          const r = await h2Request(s, {});
          check(r.status, r.headers['x-sluice-version'], r.body);
          return fp;
        } finally {
          await closeSession(s);
        }
      }),
    ]);
    try {
      // Load first, then the swap under it.
      await waitFor('every loop to serve before the swap', () => loops.length === 5 && loops.every((l) => l.ok >= 10), 20_000);
      replacePair(next, live);
      replacePair(nextA, sniA);
      await waitFor('a new connection to see the new default certificate', async () => (await peerCertificate(port, ca)).fingerprint === newFp, 20_000);
      await waitFor('a new connection to a.test to see its new certificate', async () => (await peerCertificate(port, ca, 'a.test')).fingerprint === newAFp, 20_000);
      swapped = true;
      await waitFor('every loop to serve after the swap', () => loops.every((l) => l.okAfterSwap >= 20), 30_000);
    } finally {
      stop = true;
      await done;
      keptH1.destroy();
      await closeSession(keptH2);
    }

    for (const l of loops) assert.deepEqual(l.failures, [], `${l.name}: ${l.failures.length} failed of ${l.ok + l.failures.length}`);
    const byName = new Map(loops.map((l) => [l.name, l]));
    // New connections after the swap got the new certificates ...
    assert.deepEqual([...byName.get('h1 new connections')!.fingerprintsAfterSwap], [newFp]);
    assert.deepEqual([...byName.get('h2 new sessions')!.fingerprintsAfterSwap], [newFp]);
    assert.deepEqual([...byName.get('h2 new sessions, SNI a.test')!.fingerprintsAfterSwap], [newAFp]);
    assert.notEqual(newAFp, oldAFp);
    // ... while the kept-alive ones went on over the connection made with the old one.
    assert.deepEqual([...byName.get('h1 kept-alive')!.fingerprintsAfterSwap], [oldFp]);
    assert.deepEqual([...byName.get('h2 kept-alive')!.fingerprintsAfterSwap], [oldFp]);
  });

  it('a client trusting another CA fails the handshake, and Sluice serves on', async () => {
    const other = otherPki.caPem();
    await assert.rejects(peerCertificate(port, other), (err: NodeJS.ErrnoException) => {
      assert.match(String(err.code), /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY|SELF_SIGNED/);
      return true;
    });
    await assert.rejects(h2Connect(sluice.trafficUrl, { ca: other }), (err: NodeJS.ErrnoException) => {
      assert.match(String(err.code), /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY|SELF_SIGNED/);
      return true;
    });
    await assert.rejects(h1Request(sluice.trafficUrl, { agent: false, ca: other }), (err: NodeJS.ErrnoException) => {
      assert.match(String(err.code), /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY|SELF_SIGNED/);
      return true;
    });
    // A client that gives up mid-handshake or sends garbage instead of a ClientHello leaves no trace either.
    await new Promise<void>((resolve) => {
      const raw = tls.connect({ host: '127.0.0.1', port, ca: other, rejectUnauthorized: true });
      raw.on('error', () => resolve());
      raw.on('close', () => resolve());
    });
    const r = await h1Request(sluice.trafficUrl, { agent: false, ca });
    assert.equal(r.status, 200);
    const session = await h2Connect(sluice.trafficUrl, { ca });
    try {
      assert.equal((await h2Request(session, {})).status, 200);
    } finally {
      await closeSession(session);
    }
  });
});

// ---------------------------------------------------------------- cleartext

describe('cleartext: h2c by prior knowledge beside HTTP/1.1, and h2c/h2 versions', () => {
  let sluice: RunningSluice;
  let logLines: LogLine[];
  let client: Pool;

  before(async () => {
    ({ sluice, lines: logLines } = await startLoggedSluice({
      listen: '127.0.0.1:0',
      routes: [{ name: 'r', ...versions(['v1', 'v2', 'v3', 'nocert', 'badca']), weights: { v1: 50, v2: 50, v3: 0, nocert: 0, badca: 0 } }],
    }));
    assert.match(sluice.trafficUrl, /^http:\/\//);
    client = new Pool(sluice.trafficUrl, { connections: 4 });
  });

  after(async () => {
    await client?.close();
    await sluice?.close();
  });

  async function h1(headers: Record<string, string>, body?: Buffer): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }> {
    const r = await client.request({ path: '/', method: body === undefined ? 'GET' : 'POST', headers, ...(body !== undefined ? { body } : {}) });
    return { status: r.statusCode, headers: r.headers, body: Buffer.from(await r.body.arrayBuffer()) };
  }

  it('serves h2c by prior knowledge and HTTP/1.1 on the same port', async () => {
    const session = await h2Connect(sluice.trafficUrl);
    try {
      assert.equal(session.alpnProtocol, 'h2c');
      const r = await h2Request(session, { 'x-to': 'v1' });
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-sluice-version'], 'v1');
      assert.equal(r.body.toString(), 'v1');
    } finally {
      await closeSession(session);
    }
    const plain = await h1Request(sluice.trafficUrl, { agent: false, headers: { 'x-to': 'v1' } });
    assert.equal(plain.httpVersion, '1.1');
    assert.equal(plain.status, 200);
    assert.equal(plain.headers['x-sluice-version'], 'v1');
    assert.equal(plain.body.toString(), 'v1');
    // Unruled: the 50/50 weights.
    const any = await h1Request(sluice.trafficUrl, { agent: false });
    assert.equal(any.status, 200);
    assert.ok(['v1', 'v2'].includes(String(any.headers['x-sluice-version'])));
  });

  it('routes each stream of one session on its own: 200 streams at 50/50 reach both versions', async () => {
    const session = await h2Connect(sluice.trafficUrl);
    try {
      const results = await inParallel(200, 20, () => h2Request(session, {}));
      const counts = new Map<string, number>();
      for (const r of results) {
        assert.equal(r.status, 200);
        const v = String(r.headers['x-sluice-version']);
        assert.equal(r.body.toString(), v);
        counts.set(v, (counts.get(v) ?? 0) + 1);
      }
      assert.deepEqual([...counts.keys()].sort(), ['v1', 'v2']);
      assert.ok(counts.get('v1')! > 0 && counts.get('v2')! > 0, JSON.stringify([...counts]));
      assert.ok(!session.closed && !session.destroyed, 'every stream went over the one session');
    } finally {
      await closeSession(session);
    }
  });

  it('routes alternate streams of one session by rule to http1, h2c and h2 versions', async () => {
    const session = await h2Connect(sluice.trafficUrl);
    try {
      const order = ['v1', 'v2', 'v3'];
      const results = await inParallel(60, 15, (i) => h2Request(session, { 'x-to': order[i % 3]! }));
      results.forEach((r, i) => {
        const want = order[i % 3]!;
        assert.equal(r.status, 200, `stream ${i}`);
        assert.equal(r.headers['x-sluice-version'], want, `stream ${i}`);
        assert.equal(r.body.toString(), want, `stream ${i}`);
        assert.equal(r.headers['x-up-proto'], want === 'v1' ? '1.1' : '2.0', `stream ${i}`);
      });
    } finally {
      await closeSession(session);
    }
  });

  it('reaches the h2c version and the h2 version (private CA, client certificate) from HTTP/1.1 and HTTP/2 clients, 100 KB echoed both ways', async () => {
    const body = randomBytes(100 * 1024);
    const session = await h2Connect(sluice.trafficUrl);
    try {
      for (const to of ['v1', 'v2', 'v3']) {
        const want = { up: to === 'v1' ? '1.1' : '2.0', cn: to === 'v3' ? 'sluice-client' : undefined };
        const viaH1 = await h1({ 'x-to': to });
        assert.equal(viaH1.status, 200, `h1 → ${to}`);
        assert.equal(viaH1.headers['x-sluice-version'], to);
        assert.equal(viaH1.headers['x-up-proto'], want.up, `h1 → ${to}: the version's protocol`);
        assert.equal(viaH1.headers['x-client-cn'], want.cn);
        assert.equal(viaH1.body.toString(), to);
        const postH1 = await h1({ 'x-to': to, 'content-type': 'application/octet-stream' }, body);
        assert.equal(postH1.status, 200, `h1 POST → ${to}`);
        assert.equal(postH1.headers['x-sluice-version'], to);
        assert.equal(sha256(postH1.body), sha256(body), `h1 POST → ${to}: the echo`);

        const viaH2 = await h2Request(session, { 'x-to': to });
        assert.equal(viaH2.status, 200, `h2 → ${to}`);
        assert.equal(viaH2.headers['x-sluice-version'], to);
        assert.equal(viaH2.headers['x-up-proto'], want.up, `h2 → ${to}: the version's protocol`);
        assert.equal(viaH2.headers['x-client-cn'], want.cn);
        // Without a length the body streams through; with one (under proxy.requestBuffer) it is read whole first.
        for (const length of [{}, { 'content-length': String(body.length) }]) {
          const postH2 = await h2Request(session, { ':method': 'POST', 'x-to': to, 'content-type': 'application/octet-stream', ...length }, body);
          assert.equal(postH2.status, 200, `h2 POST → ${to} ${JSON.stringify(length)}`);
          assert.equal(postH2.headers['x-sluice-version'], to);
          assert.equal(sha256(postH2.body), sha256(body), `h2 POST → ${to} ${JSON.stringify(length)}: the echo`);
        }
      }
    } finally {
      await closeSession(session);
    }
    assert.ok(h2s.seen.some((s) => s.to === 'v3' && s.clientCn === 'sluice-client'));
  });

  /** Sluice's 502 for a version that failed: in its own words, naming route and version, leaking no address or TLS internals. */
  function upstreamError(status: number, version: unknown, text: string, want: string, via: string): ErrorBody['error'] {
    assert.equal(status, 502, `${via}: ${text}`);
    assert.equal(version, want, via);
    const { error } = JSON.parse(text) as ErrorBody;
    assert.match(error.code, /^SLUICE_UPSTREAM_/, via);
    assert.equal(error.route, 'r');
    assert.equal(error.version, want);
    assert.match(error.message, new RegExp(`^version ${want} of route r: `));
    assert.doesNotMatch(text, /127\.0\.0\.1|SSL|certificate|up\.test/i, `${via}: the cause stays in the log`);
    return error;
  }

  it('an upstream that requires a client certificate refuses a version without one: a clear 502, and the process serves on', async () => {
    const refusedBefore = h2s.tlsErrors.length;
    const check = (status: number, version: unknown, text: string, via: string): ErrorBody['error'] => upstreamError(status, version, text, 'nocert', via);
    const viaH1 = await h1({ 'x-to': 'nocert' });
    const e1 = check(viaH1.status, viaH1.headers['x-sluice-version'], viaH1.body.toString(), 'h1');
    const session = await h2Connect(sluice.trafficUrl);
    try {
      const viaH2 = await h2Request(session, { 'x-to': 'nocert' });
      const e2 = check(viaH2.status, viaH2.headers['x-sluice-version'], viaH2.body.toString(), 'h2');
      // Both paths name the failure alike.
      assert.equal(e2.code, e1.code);
      assert.equal(e2.reason, e1.reason);
      // The version with its certificate, on the same upstream, and the others still answer.
      assert.equal((await h2Request(session, { 'x-to': 'v3' })).status, 200);
      assert.equal((await h2Request(session, { 'x-to': 'v1' })).status, 200);
    } finally {
      await closeSession(session);
    }
    assert.equal((await h1({ 'x-to': 'v3' })).status, 200);
    assert.ok(!h2s.seen.some((s) => s.to === 'nocert'), 'no request of the certless version reached the upstream');
    await waitFor('the upstream to have refused the certless handshakes', () => h2s.tlsErrors.length > refusedBefore);
    // The client gets a generic 502 (SLUICE_UPSTREAM_ERROR, reason "other"); the log says why.
    assert.equal(e1.code, 'SLUICE_UPSTREAM_ERROR');
    await waitFor('a log line naming the missing client certificate', () =>
      logLines.some((l) => l.level === 40 && l.msg === 'upstream failed' && l.version === 'nocert' && /CERTIFICATE_REQUIRED/.test(l.code ?? '') && /certificate required/.test(l.err ?? '')),
    );
    const metrics = await (await fetch(`${sluice.adminUrl}/metrics`)).text();
    assert.match(metrics, new RegExp(`sluice_upstream_errors_total\\{[^}]*version="nocert"[^}]*reason="${e1.reason}"[^}]*\\} [1-9]`));
  });

  it('a CA that did not sign the upstream certificate fails closed: 502 every time, never an answer', async () => {
    const session = await h2Connect(sluice.trafficUrl);
    try {
      for (let i = 0; i < 3; i++) {
        const viaH1 = await h1({ 'x-to': 'badca' });
        upstreamError(viaH1.status, viaH1.headers['x-sluice-version'], viaH1.body.toString(), 'badca', 'h1 GET');
        const post = await h1({ 'x-to': 'badca' }, Buffer.from('secret'));
        upstreamError(post.status, post.headers['x-sluice-version'], post.body.toString(), 'badca', 'h1 POST');
        const viaH2 = await h2Request(session, { 'x-to': 'badca' });
        upstreamError(viaH2.status, viaH2.headers['x-sluice-version'], viaH2.body.toString(), 'badca', 'h2 GET');
        const postH2 = await h2Request(session, { ':method': 'POST', 'x-to': 'badca' }, Buffer.from('secret'));
        upstreamError(postH2.status, postH2.headers['x-sluice-version'], postH2.body.toString(), 'badca', 'h2 POST');
      }
      assert.equal((await h2Request(session, { 'x-to': 'v3' })).status, 200);
    } finally {
      await closeSession(session);
    }
    assert.ok(!h2s.seen.some((s) => s.to === 'badca'), 'no request of the badca version reached the upstream');
    await waitFor('a log line naming the certificate that could not be verified', () =>
      logLines.some((l) => l.level === 40 && l.version === 'badca' && /certificate/.test(l.err ?? '')),
    );
  });

  // Known gap: over HTTP/2 the failed verification reaches stream-to-h2.ts as the stream's
  // ERR_HTTP2_STREAM_CANCEL ("caused by: self-signed certificate in certificate chain"), which
  // failureOf() maps to RESET by its ERR_HTTP2_ prefix: the client reads "the upstream version closed
  // the connection" and it counts as reason="reset", where HTTP/1.1 says SLUICE_UPSTREAM_ERROR, "other".
  it('names a failed upstream certificate check alike over HTTP/1.1 and HTTP/2', async () => {
    const viaH1 = await h1({ 'x-to': 'badca' });
    const session = await h2Connect(sluice.trafficUrl);
    try {
      const viaH2 = await h2Request(session, { 'x-to': 'badca' });
      const e1 = upstreamError(viaH1.status, viaH1.headers['x-sluice-version'], viaH1.body.toString(), 'badca', 'h1');
      const e2 = upstreamError(viaH2.status, viaH2.headers['x-sluice-version'], viaH2.body.toString(), 'badca', 'h2');
      assert.deepEqual([e2.code, e2.reason], [e1.code, e1.reason]);
    } finally {
      await closeSession(session);
    }
  });
});

describe('listen.http2: false', () => {
  it('serves HTTP/1.1 only: a prior-knowledge h2c client is refused at the connection, HTTP/1.1 is served', async () => {
    const up = await startUpstream('v1');
    const s = await startSluice({
      listen: { address: '127.0.0.1:0', http2: false },
      routes: [{ name: 'r', versions: [{ name: 'v1', url: up.url }] }],
    });
    after(async () => {
      await s.close();
      await up.close();
    });
    const r = await fetch(s.trafficUrl);
    assert.equal(r.status, 200);
    await r.body?.cancel();
    // The preface is no HTTP/1.1 request line: the HTTP/1.1 parser answers 400 and closes; the session never comes up.
    const failed = await new Promise<boolean>((resolve) => {
      const session = http2.connect(s.trafficUrl);
      session.on('error', () => resolve(true));
      session.on('close', () => resolve(true));
      const req = session.request({ ':path': '/' });
      req.on('error', () => {});
      req.on('response', () => {
        session.destroy();
        resolve(false);
      });
      req.end();
    });
    assert.equal(failed, true);
  });
});
