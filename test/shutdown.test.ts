/**
 * Graceful shutdown of the real CLI: `sluice start` gets SIGTERM while
 * requests are in flight; they complete, new connections are turned away and
 * the process exits 0.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, Pool, startUpstream, waitFor } from './support/helpers.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));


/** One request on a fresh connection: its status, or the connection error's code. */
function freshRequest(url: string): Promise<{ status: number } | { code: string }> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, headers: { connection: 'close' } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ code: err.code ?? err.message }));
  });
}

function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

describe('sluice start: SIGTERM', () => {
  it('lets in-flight requests complete, turns new connections away and exits 0', async (t) => {
    const IN_FLIGHT = 50;
    const DRAIN_TIMEOUT_S = 30;
    // Once the in-flight requests are answered there is nothing left to wait for: exit well before the drain timeout.
    const EXIT_DEADLINE_MS = 10_000;
    const upstream = await startUpstream('app', (req, res) => {
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(`ok ${req.url}`);
      }, 300);
    });
    const dir = mkdtempSync(join(tmpdir(), 'sluice-shutdown-'));
    const port = await freePort();
    const adminPort = await freePort();
    const trafficUrl = `http://127.0.0.1:${port}`;
    const adminUrl = `http://127.0.0.1:${adminPort}`;
    const configFile = join(dir, 'sluice.yaml');
    writeFileSync(
      configFile,
      [
        `listen: 127.0.0.1:${port}`,
        `admin: { listen: 127.0.0.1:${adminPort} }`,
        'logLevel: info',
        // Explicit, so the exit deadline below means something: the drain timeout is the fallback, not the plan.
        `proxy: { drainTimeout: ${DRAIN_TIMEOUT_S}s }`,
        'routes:',
        '  - name: app',
        '    versions:',
        `      - { name: v1, url: ${upstream.url} }`,
        '',
      ].join('\n'),
    );
    // The CLI reads SLUICE_* variables: start it with none of ours.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SLUICE_')));
    const child = spawn(process.execPath, ['bin/sluice.js', 'start', '-c', configFile], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const pool = new Pool(trafficUrl, { connections: IN_FLIGHT });
    try {
      await waitFor(
        'sluice to be ready',
        async () => {
          if (child.exitCode !== null) throw new Error(`sluice exited early with ${child.exitCode}:\n${output}`);
          return (await fetch(`${adminUrl}/readyz`)).status === 200;
        },
        20_000,
        50,
      );

      const responses = Array.from({ length: IN_FLIGHT }, async (_, i) => {
        const r = await pool.request({ path: `/r/${i}`, method: 'GET' });
        return { status: r.statusCode, body: await r.body.text(), version: r.headers['x-sluice-version'] };
      });
      // Catch now, assert later: a rejection must not go unhandled while we wait below.
      const settled = Promise.allSettled(responses);
      await waitFor(`the upstream to receive all ${IN_FLIGHT} requests`, () => upstream.seen.length === IN_FLIGHT, 10_000, 5);

      assert.ok(child.kill('SIGTERM'), 'SIGTERM delivered');
      const exit = exited(child);
      const signalledAt = Date.now();

      // The signal was taken: readiness drops while the in-flight requests drain.
      await waitFor('readyz to report draining', async () => (await fetch(`${adminUrl}/readyz`)).status === 503, 5_000, 10);
      const fresh = await freshRequest(`${trafficUrl}/after-signal`);
      assert.ok(
        ('code' in fresh && fresh.code === 'ECONNREFUSED') || ('status' in fresh && fresh.status === 503),
        `a new connection after SIGTERM must be refused or get 503, got ${JSON.stringify(fresh)}`,
      );

      const results = await withDeadline(settled, 10_000, 'the in-flight requests');
      results.forEach((r, i) => {
        assert.equal(r.status, 'fulfilled', `request ${i} failed: ${r.status === 'rejected' ? String(r.reason) : ''}`);
        if (r.status === 'fulfilled') assert.deepEqual(r.value, { status: 200, body: `ok /r/${i}`, version: 'v1' }, `request ${i}`);
      });
      assert.equal(upstream.seen.length, IN_FLIGHT, 'nothing after the signal reached the upstream');

      // Keep-alive connections (undici's default, and any load balancer's) must not hold the process until the drain timeout.
      const { code, signal } = await withDeadline(
        exit,
        EXIT_DEADLINE_MS,
        `sluice to exit once its in-flight requests were answered (drain timeout ${DRAIN_TIMEOUT_S}s; are idle keep-alive connections holding it open?)`,
      );
      t.diagnostic(`exited ${Date.now() - signalledAt} ms after SIGTERM`);
      assert.equal(signal, null, `sluice was killed by ${signal}:\n${output}`);
      assert.equal(code, 0, `sluice exited with ${code}:\n${output}`);
      assert.deepEqual(await freshRequest(`${trafficUrl}/after-exit`), { code: 'ECONNREFUSED' });
    } finally {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited(child);
      }
      await pool.close();
      await upstream.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
