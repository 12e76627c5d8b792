/**
 * Past 1,000 request headers Node stops putting them in the header map that
 * Sluice routes and frames by, though `rawHeaders` — what is forwarded —
 * keeps them all: a POST body was dropped silently (upstream got
 * content-length: 0, client got 200), and a header named in Connection still
 * went upstream. Such requests are refused with 431; a body is never dropped.
 */
import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { startSluice, startUpstream } from './support/helpers.js';
import { RawClient, requestBytes } from './support/raw-http.js';

async function setUp(t: TestContext) {
  const up = await startUpstream('v1', (_req, res, body) => res.end(`got ${body.length} bytes`));
  const sluice = await startSluice({ routes: [{ name: 'r', versions: [{ name: 'v1', url: up.url }] }] });
  t.after(async () => {
    await sluice.close();
    await up.close();
  });
  const host = `Host: ${new URL(sluice.trafficUrl).host}`;
  const send = async (lines: string[], body: string) => {
    const c = await RawClient.connect(sluice.trafficUrl);
    try {
      await c.write(requestBytes('POST /form HTTP/1.1', lines, body));
      return await c.response();
    } finally {
      c.close();
    }
  };
  return { up, host, send };
}

const padding = (n: number) => Array.from({ length: n }, (_, i) => `X-Pad-${i}: ${i}`);

describe('over-long header lists', () => {
  it('999 padding headers before Content-Length: 431 SLUICE_TOO_MANY_HEADERS, nothing forwarded', async (t) => {
    const { up, host, send } = await setUp(t);
    const r = await send([host, ...padding(999), 'Content-Length: 5'], 'hello');
    assert.equal(r.status, 431, r.body.toString());
    assert.equal((JSON.parse(r.body.toString()) as { error: { code: string } }).error.code, 'SLUICE_TOO_MANY_HEADERS');
    assert.equal(up.seen.length, 0, 'no request went upstream without its body');
  });

  it('a header named in Connection beyond the 1,000th: 431, it never reaches the upstream', async (t) => {
    const { up, host, send } = await setUp(t);
    const r = await send([host, 'Content-Length: 0', ...padding(1_000), 'X-Secret: s', 'Connection: keep-alive, X-Secret'], '');
    assert.equal(r.status, 431);
    assert.equal(up.seen.length, 0);
  });

  it('up to 1,000 headers are forwarded whole, body included', async (t) => {
    const { up, host, send } = await setUp(t);
    const r = await send([host, ...padding(997), 'Content-Length: 5', 'X-Last: yes'], 'hello');
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'got 5 bytes');
    assert.equal(up.seen[0]!.headers['x-last'], 'yes');
  });
});
