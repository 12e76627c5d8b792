/**
 * Edge cases of the HTTP/2 request path found in review, each with the
 * client or upstream behaviour that exposed it: a connection-specific header
 * from the client, bodiless answers from an HTTP/1.1 version, a client
 * resetting its stream mid-upload, upstream stream bookkeeping, and
 * proxy.headersTimeout: 0 on the cleartext port.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { upstreamHeadersOfStream } from '../proxy/headers.js';
import { startSluice, startUpstream, waitFor } from './support/helpers.js';

type Headers = Record<string, string | number>;

function request(session: http2.ClientHttp2Session, headers: Headers, body?: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const s = session.request(headers, { endStream: body === undefined });
    let status = 0;
    let text = '';
    s.on('response', (h) => (status = Number(h[':status'])));
    s.on('data', (c: Buffer) => (text += c));
    s.on('close', () => resolve({ status, body: text }));
    s.on('error', reject);
    if (body !== undefined) s.end(body);
  });
}

async function h2cUpstream(t: TestContext, onStream: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void): Promise<string> {
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
  });
  server.on('stream', onStream);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  // server.close() waits for every session; Sluice's upstream session may outlive the test's other cleanup.
  t.after(() => new Promise<void>((r) => {
    server.close(() => r());
    for (const s of sessions) s.destroy();
  }));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function stats(adminUrl: string): Promise<any> {
  return (await fetch(`${adminUrl}/stats`)).json();
}

describe('HTTP/2 edge cases', () => {
  it('connection-specific headers a client slips into an HTTP/2 request (http2-settings, te other than trailers) never reach the upstream request, which node:http2 would refuse', () => {
    const out = upstreamHeadersOfStream(
      { ':method': 'GET', ':path': '/', ':authority': 'a', 'http2-settings': 'AAMAAABk', te: 'gzip', 'x-ok': '1' },
      'a', '127.0.0.1', false, { trustForwarded: false, keepBody: false, h2: true, hostSuffix: '' },
    );
    assert.equal(out['http2-settings'], undefined);
    assert.equal(out.te, undefined);
    assert.equal(out['x-ok'], '1');
    assert.equal(upstreamHeadersOfStream({ te: 'trailers' }, 'a', '', false, { trustForwarded: false, keepBody: false, h2: true, hostSuffix: '' }).te, 'trailers');
  });

  it('HEAD, 204 and 304 from an HTTP/1.1 version reach an HTTP/2 client and count as what they are, not 499', async (t) => {
    const up = await startUpstream('v1', (req, res) => {
      if (req.url === '/204') return void res.writeHead(204).end();
      if (req.url === '/304') return void res.writeHead(304, { etag: '"x"' }).end();
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' }).end(req.method === 'HEAD' ? undefined : 'ok');
    });
    const sluice = await startSluice({ routes: [{ name: 'r', versions: [{ name: 'v1', url: up.url }] }] });
    const session = http2.connect(sluice.trafficUrl);
    t.after(async () => {
      session.close();
      await sluice.close();
      await up.close();
    });
    assert.equal((await request(session, { ':path': '/', ':method': 'HEAD' })).status, 200);
    assert.equal((await request(session, { ':path': '/204' })).status, 204);
    assert.equal((await request(session, { ':path': '/304' })).status, 304);
    const v1 = await waitFor('three requests counted', async () => {
      const v = (await stats(sluice.adminUrl)).routes.r.versions.v1;
      return v.requests === 3 ? v : null;
    });
    assert.deepEqual(v1.statusCounts, { 200: 1, 204: 1, 304: 1 });
  });

  it('a client gone mid-upload: the version\'s stream is cancelled (RST_STREAM CANCEL), the call counted 499, not charged', async (t) => {
    const closed: number[] = [];
    const url = await h2cUpstream(t, (s) => {
      s.resume();
      s.on('close', () => closed.push(s.rstCode ?? -1));
      s.on('error', () => {});
    });
    const sluice = await startSluice({ routes: [{ name: 'r', versions: [{ name: 'v1', url, protocol: 'h2c' }] }] });
    const session = http2.connect(sluice.trafficUrl);
    t.after(async () => {
      await sluice.close();
    });
    const s = session.request({ ':path': '/upload', ':method': 'POST' });
    s.on('error', () => {});
    s.write(Buffer.alloc(3000, 1));
    await new Promise((r) => setTimeout(r, 200));
    // The connection goes with the stream half sent. (node:http2 cancels a stream by ending it and resetting
    // it at once: the version sees END_STREAM immediately followed by RST_STREAM CANCEL.)
    session.destroy();
    await waitFor('the version\'s stream to close', () => closed.length > 0);
    assert.equal(closed[0], http2.constants.NGHTTP2_CANCEL);
    const v1 = await waitFor('the call counted', async () => {
      const v = (await stats(sluice.adminUrl)).routes.r.versions.v1;
      return v.requests === 1 ? v : null;
    });
    assert.deepEqual([v1.statusCounts, v1.errors], [{ 499: 1 }, 0]);
  });

  it('upstream HTTP/2 streams are counted down as they close: one session carries sequential calls', async (t) => {
    const url = await h2cUpstream(t, (s) => {
      s.respond({ ':status': 200 });
      s.end('ok');
    });
    const sluice = await startSluice({ routes: [{ name: 'r', versions: [{ name: 'v1', url, protocol: 'h2c' }] }] });
    const session = http2.connect(sluice.trafficUrl);
    t.after(async () => {
      session.close();
      await sluice.close();
    });
    for (let i = 0; i < 150; i++) assert.equal((await request(session, { ':path': `/${i}` })).status, 200);
    const sessions = await waitFor('no stream left open upstream', async () => {
      const u = (await stats(sluice.adminUrl)).upstreamSessions.filter((x: any) => x.role === 'primary');
      return u.every((x: any) => x.streams === 0) ? u : null;
    });
    assert.deepEqual(sessions.map((x: any) => x.sessions), [1], 'one session: more would mean streams were never counted down');
  });

  it('proxy.headersTimeout: 0 turns the first-bytes bound off on the cleartext port, as it does for HTTP/1.1, instead of closing every connection', async (t) => {
    const up = await startUpstream('v1');
    const sluice = await startSluice({ proxy: { headersTimeout: 0 }, routes: [{ name: 'r', versions: [{ name: 'v1', url: up.url }] }] });
    t.after(async () => {
      await sluice.close();
      await up.close();
    });
    const r = await fetch(sluice.trafficUrl);
    assert.equal(r.status, 200);
    await r.body?.cancel();
    const session = http2.connect(sluice.trafficUrl);
    t.after(() => session.close());
    assert.equal((await request(session, { ':path': '/' })).status, 200);
  });
});
