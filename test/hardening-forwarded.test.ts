/**
 * Issue 11, item 10: forwarded headers. As an ingress (trustForwarded off,
 * the default) a client must not choose the X-Forwarded-Proto/-Host or the
 * Forwarded header an upstream sees; behind a trusted load balancer
 * (trustForwarded on) they are kept and Sluice adds its hop. Real Sluice,
 * real logging upstream on loopback.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { RunningSluice } from '../cli/run-sluice.js';
import { validateConfig } from '../config/config.js';
import { forwardedElement } from '../proxy/headers.js';
import { Pool, startSluice, startUpstream, type Upstream } from './support/helpers.js';

const SPOOFED = {
  'x-forwarded-proto': 'https',
  'x-forwarded-host': 'evil.example',
  'x-forwarded-for': '203.0.113.9',
  forwarded: 'for=203.0.113.9;proto=https;host=evil.example',
};

test('forwardedElement quotes what RFC 7239 requires', () => {
  assert.equal(forwardedElement('127.0.0.1', 'http', 'shop.example.com'), 'for=127.0.0.1;proto=http;host=shop.example.com');
  assert.equal(forwardedElement('::ffff:10.0.0.1', 'https', 'h:8080'), 'for=10.0.0.1;proto=https;host="h:8080"');
  assert.equal(forwardedElement('2001:db8::1', 'http', undefined), 'for="[2001:db8::1]";proto=http');
  assert.equal(forwardedElement('', 'http', 'a"b\\c'), 'for=unknown;proto=http;host="a\\"b\\\\c"');
});

test('proxy.trustForwarded is a boolean, false by default', () => {
  const routes = [{ name: 'r', versions: [{ name: 'v', url: 'http://127.0.0.1:1' }] }];
  assert.equal(validateConfig({ routes }, { env: {} }).proxy.trustForwarded, false);
  assert.equal(validateConfig({ routes, proxy: { trustForwarded: true } }, { env: {} }).proxy.trustForwarded, true);
  assert.throws(() => validateConfig({ routes, proxy: { trustForwarded: 'yes' } }, { env: {} }), (e: { details: Array<{ path: string }> }) => e.details[0]?.path === 'proxy.trustForwarded');
});

for (const trustForwarded of [false, true]) {
  describe(`forwarded headers with trustForwarded: ${trustForwarded}`, () => {
    let up: Upstream;
    let sluice: RunningSluice;
    let pool: Pool;
    let host: string;

    before(async () => {
      up = await startUpstream('v1');
      sluice = await startSluice({ proxy: { trustForwarded }, routes: [{ name: 'r', versions: [{ name: 'v1', url: up.url }] }] });
      pool = new Pool(sluice.trafficUrl, { connections: 1 });
      host = new URL(sluice.trafficUrl).host;
    });

    after(async () => {
      await pool.close();
      await sluice.close();
      await up.close();
    });

    async function seenWith(headers: Record<string, string>) {
      const r = await pool.request({ path: '/x', method: 'GET', headers });
      await r.body.text();
      assert.equal(r.statusCode, 200);
      return up.seen[up.seen.length - 1]!.headers;
    }

    test('without client-sent forwarding headers, Sluice sets all four', async () => {
      const h = await seenWith({});
      assert.equal(h['x-forwarded-for'], '127.0.0.1');
      assert.equal(h['x-forwarded-proto'], 'http');
      assert.equal(h['x-forwarded-host'], host);
      assert.equal(h.forwarded, `for=127.0.0.1;proto=http;host="${host}"`);
    });

    test(trustForwarded ? 'the load balancer\'s headers are kept, our hop appended' : 'the client\'s proto, host and Forwarded are replaced; XFF is appended to', async () => {
      const h = await seenWith(SPOOFED);
      assert.equal(h['x-forwarded-for'], '203.0.113.9, 127.0.0.1');
      const ours = `for=127.0.0.1;proto=http;host="${host}"`;
      if (trustForwarded) {
        assert.equal(h['x-forwarded-proto'], 'https');
        assert.equal(h['x-forwarded-host'], 'evil.example');
        assert.equal(h.forwarded, `${SPOOFED.forwarded}, ${ours}`);
      } else {
        assert.equal(h['x-forwarded-proto'], 'http');
        assert.equal(h['x-forwarded-host'], host);
        assert.equal(h.forwarded, ours);
      }
    });
  });
}
