/**
 * Early answers: an upstream may answer before it has read the whole request
 * — 413 with `Connection: close` to a large upload — and close. The client
 * must get that 413 (not a 502 SLUICE_UPSTREAM_RESET), and the version is not
 * charged an error. Raw upstream (answers right after the head, never reads
 * the body) and raw client (keeps uploading while it reads).
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { Pool, startSluice } from './support/helpers.js';
import { RawClient, RawUpstream, requestBytes, responseBytes } from './support/raw-http.js';

it('413 + Connection: close while a large upload is still arriving reaches the client as that 413, every time', async (t) => {
  let n = 0;
  const up = await RawUpstream.start(
    (_req, socket) => {
      socket.write(responseBytes('413 Payload Too Large', ['Connection: close', 'Content-Type: text/plain'], 'too large'));
      // Half close politely (FIN, then RST when more body arrives), half abruptly (RST at once: unread data).
      if (n++ % 2 === 0) socket.end();
      else socket.destroy();
    },
    { readBodies: false },
  );
  const sluice = await startSluice({ routes: [{ name: 'r', versions: [{ name: 'v1', url: up.url }] }] });
  const admin = new Pool(sluice.adminUrl);
  t.after(async () => {
    await admin.close();
    await sluice.close();
    await up.close();
  });
  const host = new URL(sluice.trafficUrl).host;
  const size = 8 * 1024 * 1024;
  const chunk = Buffer.alloc(64 * 1024, 'x');
  const tries = 10;
  const statuses: number[] = [];
  for (let i = 0; i < tries; i++) {
    const c = await RawClient.connect(sluice.trafficUrl);
    try {
      await c.write(requestBytes(`POST /upload/${i} HTTP/1.1`, [`Host: ${host}`, `Content-Length: ${size}`, 'Content-Type: application/octet-stream']));
      // Upload without waiting for it: the answer comes while the body is still going out.
      void (async () => {
        for (let sent = 0; sent < size && !c.ended; sent += chunk.length) await c.write(chunk).catch(() => {});
      })();
      const r = await c.response({ timeoutMs: 10_000 });
      statuses.push(r.status);
      if (r.status === 413) assert.equal(r.body.toString(), 'too large');
    } finally {
      c.close();
    }
  }
  assert.deepEqual(statuses, new Array(tries).fill(413), 'every client got the 413');
  const stats = (await (await admin.request({ path: '/stats', method: 'GET' })).body.json()) as {
    routes: Record<string, { versions: Record<string, { requests: number; errors: number; statusCounts: Record<string, number> }> }>;
  };
  const v1 = stats.routes.r!.versions.v1!;
  assert.equal(v1.errors, 0, 'an early answer is not the version\'s error');
  assert.equal(v1.statusCounts['413'], tries);
});
