/**
 * 502/504 bodies tell the client which route, version and reason failed, in
 * Sluice's own words; the cause's message (`connect ECONNREFUSED
 * 10.x.y.z:port`) names internal addresses and stays in the log.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { runSluice } from '../cli/run-sluice.js';
import { validateConfig } from '../config/config.js';
import { freePort, Pool, waitFor } from './support/helpers.js';

it('a refused upstream: the 502 body names route, version and reason but no address; the log keeps the address', async (t) => {
  const port = await freePort();
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  const config = validateConfig(
    { listen: '127.0.0.1:0', admin: { listen: '127.0.0.1:0' }, routes: [{ name: 'r', versions: [{ name: 'v1', url: `http://127.0.0.1:${port}` }] }] },
    { env: {} },
  );
  const sluice = await runSluice(config, pino({ level: 'warn' }, sink));
  const client = new Pool(sluice.trafficUrl);
  t.after(async () => {
    await client.close();
    await sluice.close();
  });

  const r = await client.request({ path: '/x', method: 'GET' });
  const text = await r.body.text();
  assert.equal(r.statusCode, 502);
  const body = JSON.parse(text) as { error: { code: string; message: string; route: string; version: string; reason: string } };
  assert.equal(body.error.code, 'SLUICE_UPSTREAM_CONNECT');
  assert.equal(body.error.route, 'r');
  assert.equal(body.error.version, 'v1');
  assert.equal(body.error.reason, 'connect');
  assert.match(body.error.message, /v1/);
  assert.doesNotMatch(text, /127\.0\.0\.1|ECONNREFUSED/, 'the body names no address and no errno');
  assert.doesNotMatch(text, new RegExp(String(port)), 'the body names no port');

  const logged = await waitFor('the upstream failure to be logged', () => lines.find((l) => l.includes('upstream failed')));
  assert.match(logged, new RegExp(`ECONNREFUSED 127\\.0\\.0\\.1:${port}`), 'the log keeps the address');
});
