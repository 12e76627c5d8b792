/**
 * The dashboard's CLI side (issue 15): `sluice dashboard` prints (and with
 * --open opens) the page's URL, never with the token in it, after checking
 * the page is served and the token works; `sluice describe --watch`
 * refreshes the describe view until the experiment ends.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { RunningSluice } from '../cli/run-sluice.js';
import { startSluice, startUpstream, type Upstream, waitFor } from './support/helpers.js';

const TOKEN = 'cli-dash-token';

/** Decided by mock metrics in a few iterations of 0.3 s, without traffic. */
const QUICK_AB = {
  route: 'shop',
  versions: [{ name: 'v1' }, { name: 'v2' }],
  testingPattern: 'A/B',
  criteria: { reward: { metric: 'orders' }, minSamples: 100 },
  duration: { intervalSeconds: 0.3, maxIterations: 60 },
  metrics: [{ name: 'orders', source: 'mock', type: 'rate', values: { v1: { mean: 0.05 }, v2: { mean: 0.1 } }, countPerSecond: 1000 }],
};

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: readonly string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SLUICE_')));
    execFile('node', ['bin/sluice.js', ...args], { env: { ...clean, ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('sluice dashboard and describe --watch', () => {
  const upstreams: Upstream[] = [];
  let sluice: RunningSluice;
  let off: RunningSluice;
  let dir: string;
  let tokenFile: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-dash-cli-'));
    tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, `${TOKEN}\n`);
    upstreams.push(...(await Promise.all([startUpstream('v1'), startUpstream('v2')])));
    const routes = [{ name: 'shop', versions: upstreams.map((u, i) => ({ name: `v${i + 1}`, url: u.url })) }];
    sluice = await startSluice({ admin: { listen: '127.0.0.1:0', token: TOKEN }, routes });
    off = await startSluice({ admin: { listen: '127.0.0.1:0', dashboard: 'off' }, routes });
  });

  after(async () => {
    await Promise.all([sluice?.close(), off?.close()]);
    await Promise.all(upstreams.map((u) => u.close()));
    rmSync(dir, { recursive: true, force: true });
  });

  test('sluice dashboard: the URL (no token in it), the token checked, --open through the platform opener; off and unreachable fail', async () => {
    const ok = await cli(['dashboard', '--admin', sluice.adminUrl, '--token-file', tokenFile]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, `${sluice.adminUrl}/\n`);
    assert.match(ok.stderr, /asks for the admin token/);

    const wrong = await cli(['dashboard', '--admin', sluice.adminUrl, '--token', 'nope']);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /refused the token/);

    const none = await cli(['dashboard', '--admin', off.adminUrl]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /serves no dashboard \(admin\.dashboard: off/);

    // --open: a stand-in xdg-open on PATH records what it was given.
    const bin = join(dir, 'bin');
    const opened = join(dir, 'opened');
    rmSync(bin, { recursive: true, force: true });
    mkdirSync(bin);
    writeFileSync(join(bin, 'xdg-open'), `#!/bin/sh\necho "$@" > ${opened}\n`);
    chmodSync(join(bin, 'xdg-open'), 0o755);
    const open = await cli(['dashboard', '--open', '--admin', sluice.adminUrl, '--token-file', tokenFile], { PATH: `${bin}:${process.env.PATH}` });
    assert.equal(open.code, 0, open.stderr);
    const arg = await waitFor('the opener to run', () => {
      try {
        return readFileSync(opened, 'utf8');
      } catch {
        return null;
      }
    }, 5000);
    assert.equal(arg.trim(), `${sluice.adminUrl}/`);
    assert.ok(!arg.includes(TOKEN));
  });

  test('sluice describe --watch: the view again as the experiment iterates, until it has ended (exit 0)', async () => {
    const put = await fetch(`${sluice.adminUrl}/experiments/ab`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      // Iterations of 1 s: the verdict (at iteration 2) comes after the CLI has started and drawn once
      // (at 0.3 s it could come before, on a busy machine, leaving one view to compare).
      body: JSON.stringify({ kind: 'Experiment', name: 'ab', spec: { ...QUICK_AB, duration: { intervalSeconds: 1, maxIterations: 60 } } }),
    });
    assert.equal(put.status, 201);
    const r = await cli(['describe', 'ab', '--watch', '--interval', '0.2', '--admin', sluice.adminUrl, '--token-file', tokenFile]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout, /\x1b\[/, 'no terminal escapes into a pipe');
    const frames = r.stdout.split(/^--- \d\d:\d\d:\d\d ---$/m).filter((f) => f.trim() !== '');
    assert.ok(frames.length >= 2, `${frames.length} views:\n${r.stdout}`);
    const iterations = frames.map((f) => Number(/^Iteration:\s+(\d+)\//m.exec(f)?.[1]));
    for (let i = 1; i < iterations.length; i++) assert.ok(iterations[i]! >= iterations[i - 1]!, iterations.join(','));
    assert.match(frames.at(-1)!, /^State:\s+Completed$/m);
    assert.match(frames.at(-1)!, /^Winner:\s+v2$/m);

    const gone = await cli(['describe', 'nope', '--watch', '--admin', sluice.adminUrl, '--token-file', tokenFile]);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /SLUICE_EXPERIMENT_NOT_FOUND/);
    const bad = await cli(['describe', 'ab', '--watch', '--interval', '0', '--admin', sluice.adminUrl, '--token-file', tokenFile]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--interval must be/);
  });
});
