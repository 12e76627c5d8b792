import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A same-run baseline: how long starting the CLI (loading every module) takes on this machine now, in ms. */
async function startupMs(): Promise<number> {
  const t0 = performance.now();
  await run('node', ['bin/sluice.js', '--help']);
  return performance.now() - t0;
}

test('npm start (sluice demo) runs the experiment to its verdict: v2 wins, v3 is rolled back', async (t) => {
  // Ephemeral ports so the test never clashes with a Sluice already on 8080/9901.
  const env = { ...process.env, SLUICE_LISTEN: '127.0.0.1:0', SLUICE_ADMIN_LISTEN: '127.0.0.1:0' };
  // The demo takes ~7 s on an idle machine; its time limit was a fixed 90 s. It now scales with a same-run
  // baseline: 90 s, or 20 × the CLI's start-up plus twice the demo's whole schedule (40 iterations × 0.6 s) if longer.
  const timeout = Math.max(90_000, Math.round(20 * (await startupMs()) + 2 * 40 * 600));
  t.diagnostic(`time limit ${timeout} ms`);
  const { stdout } = await run('node', ['bin/sluice.js', 'demo', '--interval', '0.6', '--qps', '400'], { env, timeout });
  assert.match(stdout, /Completed: winner v2/);
  assert.match(stdout, /v3 violates its SLOs: rolled back/);
  assert.match(stdout, /traffic now: v1=0% v2=100% v3=0%/);
  assert.match(stdout, /0 failed at the client/);
});

test('a bad sluice.yaml refuses to start and lists every problem by path', async () => {
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bad-'));
  const file = join(dir, 'sluice.yaml');
  writeFileSync(
    file,
    `listen: 127.0.0.1:0
routes:
  - name: shop
    versions: [{ name: v1, url: http://127.0.0.1:1 }, { name: v2, url: "not a url" }]
    weights: { v1: 90, v9: 10 }
`,
  );
  const err = await run('node', ['bin/sluice.js', 'start', '-c', file], { timeout: 30_000 }).then(
    () => null,
    (e: { code: number; stderr: string }) => e,
  );
  assert.ok(err, 'sluice start should fail');
  assert.equal(err.code, 1);
  assert.match(err.stderr, /SLUICE_CONFIG_INVALID/);
  assert.match(err.stderr, /routes\[0\]\.weights\.v9: unknown version/);
  assert.match(err.stderr, /routes\[0\]\.versions\[1\]\.url/);
});
