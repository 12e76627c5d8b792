/**
 * Requests Node accepts but the upstream client (undici) refuses to send —
 * two Host headers, say — are the client's fault: they get a 400 and are
 * counted as client errors, never as a version's requests or upstream errors
 * (40 of them once rolled a healthy canary back). Sent over raw sockets,
 * since well-behaved clients cannot produce them.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Pool, startSluice, startUpstream } from './support/helpers.js';
import { RawClient, requestBytes } from './support/raw-http.js';

interface VersionView {
  requests: number;
  errors: number;
  upstreamErrors: Record<string, number>;
  clientErrors?: Record<string, number>;
}

function promValue(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const close = line.lastIndexOf('}');
    const got = Object.fromEntries([...line.slice(name.length + 1, close).matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(line.slice(close + 1).trim());
  }
  return undefined;
}

describe('client-caused framing errors', () => {
  it('two Host headers → 400 SLUICE_REQUEST_UNFORWARDABLE, counted as a client error, not as the version\'s', async (t) => {
    const up = await startUpstream('v1');
    const sluice = await startSluice({ routes: [{ name: 'r', versions: [{ name: 'v1', url: up.url }] }] });
    const admin = new Pool(sluice.adminUrl);
    t.after(async () => {
      await admin.close();
      await sluice.close();
      await up.close();
    });
    const host = new URL(sluice.trafficUrl).host;
    const n = 40;
    const variants = [
      [`Host: ${host}`, 'Host: other.example'],
      [`Host: ${host}`, `Host: ${host}`],
    ];
    for (let i = 0; i < n; i++) {
      const c = await RawClient.connect(sluice.trafficUrl);
      try {
        await c.write(requestBytes(`GET /x/${i} HTTP/1.1`, variants[i % variants.length]!));
        const r = await c.response();
        assert.equal(r.status, 400, `request ${i}: ${r.body.toString()}`);
        const body = JSON.parse(r.body.toString()) as { error: { code: string; message: string } };
        assert.equal(body.error.code, 'SLUICE_REQUEST_UNFORWARDABLE');
      } finally {
        c.close();
      }
    }
    assert.equal(up.seen.length, 0, 'nothing reached the upstream');
    // A well-formed request still works and is the only one charged to the version.
    const traffic = new Pool(sluice.trafficUrl);
    const ok = await (await traffic.request({ path: '/fine', method: 'GET' })).body.text();
    await traffic.close();
    assert.equal(ok, 'v1');

    const stats = (await (await admin.request({ path: '/stats', method: 'GET' })).body.json()) as {
      routes: Record<string, { versions: Record<string, VersionView> }>;
    };
    const v1 = stats.routes.r!.versions.v1!;
    assert.equal(v1.requests, 1, 'only the well-formed request is a request of the version');
    assert.equal(v1.errors, 0, 'no error charged to the version');
    assert.equal(Object.values(v1.upstreamErrors).reduce((a, b) => a + b, 0), 0, 'no upstream error');
    assert.equal(v1.clientErrors?.['invalid-request'], n);

    const text = await (await admin.request({ path: '/metrics', method: 'GET' })).body.text();
    assert.equal(promValue(text, 'sluice_client_errors_total', { route: 'r', version: 'v1', reason: 'invalid-request' }), n);
    assert.equal(promValue(text, 'sluice_requests_total', { route: 'r', version: 'v1', code: '502' }), undefined);
    for (const reason of ['connect', 'reset', 'protocol', 'other']) {
      assert.equal(promValue(text, 'sluice_upstream_errors_total', { route: 'r', version: 'v1', reason }), 0, reason);
    }
  });
});
