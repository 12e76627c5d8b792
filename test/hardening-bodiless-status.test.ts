/**
 * 204 and 304 never have a body (RFC 9110 §6.4.1). A 304 with the
 * representation's Content-Length and no body — legal, common behind
 * If-None-Match — must be delivered; a 204/304 that wrongly carries a body
 * must not reset the client's connection or spoil the next response. Raw
 * upstream (exact bytes) and raw client (one keep-alive connection).
 */
import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { Pool, startSluice } from './support/helpers.js';
import { header, RawClient, RawUpstream, requestBytes, responseBytes, type RawHandler } from './support/raw-http.js';

async function setUp(t: TestContext, handler: RawHandler) {
  const up = await RawUpstream.start(handler);
  const sluice = await startSluice({ routes: [{ name: 'r', versions: [{ name: 'v1', url: up.url }] }] });
  const client = await RawClient.connect(sluice.trafficUrl);
  const admin = new Pool(sluice.adminUrl);
  t.after(async () => {
    client.close();
    await admin.close();
    await sluice.close();
    await up.close();
  });
  const host = `Host: ${new URL(sluice.trafficUrl).host}`;
  const errors = async () => {
    const s = (await (await admin.request({ path: '/stats', method: 'GET' })).body.json()) as {
      routes: Record<string, { versions: Record<string, { errors: number }> }>;
    };
    return s.routes.r!.versions.v1!.errors;
  };
  return { up, client, host, errors };
}

/** Answers /plain with a 200; anything else as `odd` says, as raw bytes. */
function upstream(odd: (target: string) => string): RawHandler {
  return (req, socket) => {
    if (req.target === '/plain') socket.write(responseBytes('200 OK', ['Content-Type: text/plain'], 'plain'));
    else socket.write(odd(req.target));
  };
}

describe('204 and 304', () => {
  for (const [status, extra] of [
    ['304 Not Modified', ['ETag: "abc"', 'Content-Length: 1234']],
    ['204 No Content', ['Content-Length: 5']],
  ] as const) {
    it(`${status} with Content-Length and no body is delivered, and the connection goes on`, async (t) => {
      const { client, host, errors } = await setUp(t, upstream(() => `HTTP/1.1 ${status}\r\n${extra.map((l) => `${l}\r\n`).join('')}\r\n`));
      for (let i = 0; i < 3; i++) {
        await client.write(requestBytes('GET /cached HTTP/1.1', [host, 'If-None-Match: "abc"']));
        const r = await client.response();
        assert.equal(r.status, Number(status.slice(0, 3)));
        assert.equal(r.body.length, 0);
        // A 204 must not carry Content-Length; a 304's describes the representation and may stay.
        assert.equal(header(r, 'content-length'), status.startsWith('204') ? undefined : '1234');
        await client.write(requestBytes('GET /plain HTTP/1.1', [host]));
        const p = await client.response();
        assert.equal(p.status, 200);
        assert.equal(p.body.toString(), 'plain');
      }
      assert.equal(await errors(), 0);
    });
  }

  for (const status of ['204 No Content', '304 Not Modified']) {
    it(`${status} that wrongly carries a body: the client gets it without the body, its connection is not reset`, async (t) => {
      const { client, host } = await setUp(t, upstream(() => responseBytes(status, ['Content-Type: text/plain'], 'stray body')));
      for (let i = 0; i < 3; i++) {
        await client.write(requestBytes('GET /odd HTTP/1.1', [host]));
        const r = await client.response();
        assert.equal(r.status, Number(status.slice(0, 3)));
        await client.write(requestBytes('GET /plain HTTP/1.1', [host]));
        const p = await client.response();
        assert.equal(p.status, 200, `the next response is whole: ${p.body.toString()}`);
        assert.equal(p.body.toString(), 'plain');
      }
      assert.equal(client.ended, false, 'the client connection is still open');
    });
  }
});
