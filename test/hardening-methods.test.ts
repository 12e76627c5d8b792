/**
 * Every method Node parses is routed like GET — WebDAV's PROPFIND, MKCOL,
 * COPY, REPORT, caches' PURGE, … — not answered 404 although a route
 * matches. CONNECT alone is refused, with 501: Sluice is not a forward proxy.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startSluice, startUpstream } from './support/helpers.js';
import { RawClient, requestBytes } from './support/raw-http.js';

it('every method of http.METHODS but CONNECT reaches the upstream of a matching route; CONNECT gets 501', async (t) => {
  const up = await startUpstream('v1');
  const sluice = await startSluice({ routes: [{ name: 'api', match: { pathPrefix: '/api' }, versions: [{ name: 'v1', url: up.url }] }] });
  t.after(async () => {
    await sluice.close();
    await up.close();
  });
  const host = `Host: ${new URL(sluice.trafficUrl).host}`;
  const send = async (method: string, path: string) => {
    const c = await RawClient.connect(sluice.trafficUrl);
    try {
      await c.write(requestBytes(`${method} ${path} HTTP/1.1`, [host, 'Content-Length: 0']));
      return await c.response({ head: method === 'HEAD' });
    } finally {
      c.close();
    }
  };
  const wrong: string[] = [];
  for (const method of http.METHODS) {
    if (method === 'CONNECT') continue;
    const r = await send(method, `/api/${method}`);
    const seen = up.seen.find((s) => s.url === `/api/${method}`);
    if (r.status !== 200 || seen?.method !== method) wrong.push(`${method}: ${r.status}, upstream saw ${seen?.method ?? 'nothing'}`);
  }
  assert.deepEqual(wrong, [], 'every method is forwarded');

  // No route matches: the same 404 as for a GET, whatever the method.
  for (const method of ['PROPFIND', 'PURGE', 'GET']) {
    const r = await send(method, '/elsewhere');
    assert.equal(r.status, 404, method);
    assert.equal((JSON.parse(r.body.toString()) as { error: { code: string } }).error.code, 'SLUICE_ROUTE_NOT_FOUND');
  }

  const c = await RawClient.connect(sluice.trafficUrl);
  t.after(() => c.close());
  await c.write(requestBytes('CONNECT example.org:443 HTTP/1.1', ['Host: example.org:443']));
  const r = await c.response();
  assert.equal(r.status, 501);
  assert.equal((JSON.parse(r.body.toString()) as { error: { code: string } }).error.code, 'SLUICE_METHOD_NOT_IMPLEMENTED');
  await c.closed(5_000);
  assert.equal(up.seen.filter((s) => s.method === 'CONNECT').length, 0);
});
