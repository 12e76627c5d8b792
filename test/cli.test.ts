/**
 * The `sluice` client commands, run as a user runs them: `node bin/sluice.js …`
 * as a child process against an in-process Sluice (admin API with a token).
 * Every CLI start costs ~0.5–1 s (tsx), so the invocations are few and,
 * where independent, run in parallel.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import type { RunningSluice } from '../cli/run-sluice.js';
import { SluiceError } from '../common/errors.js';
import { validateExperiment } from '../control/spec.js';
import { startSampleApp, type SampleApp } from '../demo/sample-app.js';
import { Pool, startSluice, startUpstream, type Upstream } from './support/helpers.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TOKEN = 't0ken';

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The environment without anything that would change what the CLI does. */
const BASE_ENV = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SLUICE_') && k !== 'NODE_TEST_CONTEXT'));

let adminUrl = '';

function cli(args: readonly string[], env: Record<string, string> = {}, timeoutMs = 30_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['bin/sluice.js', ...args],
      { cwd: ROOT, env: { ...BASE_ENV, SLUICE_ADMIN_URL: adminUrl, SLUICE_TOKEN: TOKEN, ...env }, timeout: timeoutMs },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

function show(r: CliResult): string {
  return `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

function canary(name: string, route: string, intervalSeconds: number, extra = ''): string {
  return `kind: Experiment
name: ${name}
spec:
  route: ${route}
  versions: [{ name: v1 }, { name: v2 }]
  testingPattern: Canary
  criteria:
    objectives:
      - { metric: error-rate, upperLimit: 0.1 }
      - { metric: latency-mean, upperLimit: 1.5, relativeTo: baseline }
    minSamples: 20
  duration: { intervalSeconds: ${intervalSeconds}, maxIterations: 200 }
${extra}`;
}

const BAD = `kind: Experimen
name: checkout
spec:
  route: shop
  versions: [{ name: v1 }, { name: v1 }]
  testingPattern: Canery
  criteria: { confidence: 2, minSamples: 0, objectives: [{ metric: error-rate, upperLimit: 5 }] }
  duration: { intervalSeconds: -1 }
  colour: blue
`;

describe('sluice CLI', () => {
  let sluice: RunningSluice;
  let admin: Pool;
  let dir: string;
  const upstreams: Upstream[] = [];
  const apps: SampleApp[] = [];
  const file = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  const api = async (method: 'GET' | 'PUT', path: string, body?: { yaml: string }) => {
    const headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` };
    if (body) headers['content-type'] = 'application/yaml';
    const r = await admin.request({ method, path, headers, body: body?.yaml });
    const text = await r.body.text();
    assert.ok(r.statusCode < 300, `${method} ${path}: ${r.statusCode} ${text}`);
    return JSON.parse(text) as Record<string, any>;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-cli-'));
    upstreams.push(await startUpstream('v1'), await startUpstream('v2'));
    apps.push(
      await startSampleApp({ name: 'v1', latencyMs: 4, errorRate: 0.01, conversionRate: 0.05, seed: 1 }),
      await startSampleApp({ name: 'v2', latencyMs: 2, errorRate: 0, conversionRate: 0.1, seed: 2 }),
    );
    const [u1, u2] = upstreams;
    const [a1, a2] = apps;
    sluice = await startSluice({
      admin: { listen: '127.0.0.1:0', token: TOKEN },
      routes: [
        { name: 'shop', match: { pathPrefix: '/shop' }, versions: [{ name: 'v1', url: u1!.url }, { name: 'v2', url: u2!.url }] },
        { name: 'other', match: { pathPrefix: '/other' }, versions: [{ name: 'v1', url: u1!.url }, { name: 'v2', url: u2!.url }] },
        { name: 'fast', versions: [{ name: 'v1', url: a1!.url }, { name: 'v2', url: a2!.url }] },
      ],
    });
    adminUrl = sluice.adminUrl;
    admin = new Pool(sluice.adminUrl);
  });

  after(async () => {
    await admin.close();
    await sluice.close();
    for (const x of [...upstreams, ...apps]) await x.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('validate: exit 0 with a summary; exit 1 listing every problem', async () => {
    const good = file('good.yaml', canary('checkout', 'shop', 10));
    const bad = file('bad.yaml', BAD);
    const [ok, ko] = await Promise.all([cli(['validate', '-f', good]), cli(['validate', '-f', bad])]);
    assert.equal(ok.code, 0, show(ok));
    assert.match(ok.stdout, /good\.yaml: valid \(Canary, Progressive\/thompson; 2 versions: v1 baseline, v2; route shop; 2 objectives; every 10s/);

    assert.equal(ko.code, 1, show(ko));
    let expected: readonly { path: string; message: string }[] = [];
    try {
      validateExperiment(parseYaml(BAD));
      assert.fail('the bad document validates');
    } catch (err) {
      assert.ok(err instanceof SluiceError);
      expected = err.details;
    }
    assert.ok(expected.length >= 7, `expected many problems, got ${expected.length}`);
    assert.match(ko.stderr, new RegExp(`bad\\.yaml: invalid \\(${expected.length} problems\\)`));
    for (const d of expected) assert.ok(ko.stderr.includes(`${d.path}: ${d.message}`), `missing "${d.path}: ${d.message}" in\n${ko.stderr}`);
  });

  test('apply, then describe and get show it; get routes; apply errors come with their details', async () => {
    const exp = file('lifecycle.yaml', canary('lifecycle', 'shop', 60));
    const applied = await cli(['apply', '-f', exp]);
    assert.equal(applied.code, 0, show(applied));
    assert.match(applied.stdout, /applied lifecycle: Running, iteration 0\/200, weights v1=90 v2=10/);

    const lost = file('lost.yaml', canary('lost', 'nowhere', 60));
    const [described, listed, routes, failed] = await Promise.all([
      cli(['describe', 'lifecycle']),
      cli(['get', 'experiments']),
      cli(['get', 'routes', '-o', 'json']),
      cli(['apply', '-f', lost]),
    ]);
    assert.equal(described.code, 0, show(described));
    assert.match(described.stdout, /Name:\s+lifecycle/);
    assert.match(described.stdout, /Route:\s+shop/);
    assert.match(described.stdout, /State:\s+Running/);
    assert.match(described.stdout, /Iteration:\s+0\/200/);
    assert.match(described.stdout, /Weights:\s+v1=90 v2=10/);
    assert.match(described.stdout, /error-rate <= 0\.1/);

    assert.equal(listed.code, 0, show(listed));
    const lines = listed.stdout.trim().split('\n');
    assert.deepEqual(lines[0]!.split(/\s+/), ['NAME', 'ROUTE', 'PATTERN', 'STATE', 'ITERATION', 'WINNER', 'WEIGHTS']);
    assert.deepEqual(lines.find((l) => l.startsWith('lifecycle'))!.split(/\s+/), ['lifecycle', 'shop', 'Canary', 'Running', '0/200', '-', 'v1=90,v2=10']);

    assert.equal(routes.code, 0, show(routes));
    const json = JSON.parse(routes.stdout) as { routes: Array<{ name: string; weights: Record<string, number> }> };
    assert.deepEqual(
      json.routes.map((r) => r.name),
      ['shop', 'other', 'fast'],
    );
    assert.deepEqual(json.routes[0]!.weights, { v1: 90, v2: 10 });

    assert.equal(failed.code, 1, show(failed));
    assert.match(failed.stderr, /^sluice: experiment is invalid \[SLUICE_EXPERIMENT_INVALID\]\nspec\.route: no route named "nowhere"/);
  });

  test('weights: sets a route; a malformed argument is a usage error; the server\'s 400 prints its details', async () => {
    const before = (await api('GET', '/routes/other')).generation as number;
    const [malformed, rejected] = await Promise.all([cli(['weights', 'other', 'v1=90', 'v2=ten']), cli(['weights', 'other', 'v1=50', 'v2=10'])]);
    assert.equal(malformed.code, 1, show(malformed));
    assert.match(malformed.stderr, /sluice: bad weight "v2=ten": expected VERSION=PERCENT/);
    assert.match(malformed.stderr, /usage: sluice weights ROUTE/);
    assert.equal(rejected.code, 1, show(rejected));
    assert.match(rejected.stderr, /\[SLUICE_WEIGHTS_INVALID\]\nweights: must sum to 100, got 60/);
    assert.equal((await api('GET', '/routes/other')).generation, before, 'nothing changed');

    const set = await cli(['weights', 'other', 'v1=30', 'v2=70']);
    assert.equal(set.code, 0, show(set));
    assert.match(set.stdout, /route other: generation \d+, weights v1=30 v2=70/);
    assert.deepEqual((await api('GET', '/routes/other')).weights, { v1: 30, v2: 70 });
  });

  test('pause, resume, abort (traffic back to the baseline), and apply again', async () => {
    const paused = await cli(['pause', 'lifecycle']);
    assert.equal(paused.code, 0, show(paused));
    assert.match(paused.stdout, /^lifecycle: Paused/);
    assert.equal((await api('GET', '/experiments/lifecycle')).status.state, 'Paused');

    const resumed = await cli(['resume', 'lifecycle']);
    assert.equal(resumed.code, 0, show(resumed));
    assert.match(resumed.stdout, /^lifecycle: Running/);

    const aborted = await cli(['abort', 'lifecycle']);
    assert.equal(aborted.code, 0, show(aborted));
    assert.match(aborted.stdout, /^lifecycle: Aborted, iteration 0\/200, weights v1=100 v2=0/);
    assert.deepEqual((await api('GET', '/routes/shop')).weights, { v1: 100, v2: 0 });

    const again = await cli(['apply', '-f', join(dir, 'lifecycle.yaml')]);
    assert.equal(again.code, 0, show(again));
    assert.match(again.stdout, /applied lifecycle: Running/);
    assert.deepEqual((await api('GET', '/routes/shop')).weights, { v1: 90, v2: 10 });
  });

  test('promote ends an experiment with the winner, and all traffic goes to it', async () => {
    await api('PUT', '/experiments/promo', { yaml: canary('promo', 'other', 60) });
    const promoted = await cli(['promote', 'promo', 'v2']);
    assert.equal(promoted.code, 0, show(promoted));
    assert.match(promoted.stdout, /^promo: Completed, winner v2, iteration 0\/200, weights v1=0 v2=100 \(promoted v2 by hand\)/);
    const e = await api('GET', '/experiments/promo');
    assert.equal(e.status.state, 'Completed');
    assert.equal(e.status.winner, 'v2');
    assert.deepEqual((await api('GET', '/routes/other')).weights, { v1: 0, v2: 100 });
    const deleted = await cli(['delete', 'promo']);
    assert.equal(deleted.code, 0, show(deleted));
    assert.equal((await api('GET', '/experiments')).experiments.some((x: { name: string }) => x.name === 'promo'), false);
  });

  test('without the token: 401 with a hint; no server: says so', async () => {
    const [anonymous, nowhere] = await Promise.all([
      cli(['weights', 'other', 'v1=100'], { SLUICE_TOKEN: '' }),
      cli(['get', 'experiments'], { SLUICE_ADMIN_URL: 'http://127.0.0.1:1' }),
    ]);
    assert.equal(anonymous.code, 1, show(anonymous));
    assert.match(anonymous.stderr, /\[SLUICE_UNAUTHORIZED\]/);
    assert.match(anonymous.stderr, /--token .*SLUICE_TOKEN/);
    assert.deepEqual((await api('GET', '/routes/other')).weights, { v1: 0, v2: 100 }, 'unchanged');

    assert.equal(nowhere.code, 1, show(nowhere));
    assert.match(nowhere.stderr, /cannot reach the admin API at http:\/\/127\.0\.0\.1:1 \(is sluice running\? --admin \/ SLUICE_ADMIN_URL\)/);
  });

  test('assert waits for a quick canary to complete with v2; a wrong winner exits 1; report shows the history', async () => {
    await api('PUT', '/experiments/quick', { yaml: canary('quick', 'fast', 0.1) });
    const traffic = new Pool(sluice.trafficUrl, { connections: 4 });
    let running = true;
    const load = Array.from({ length: 4 }, async () => {
      while (running) {
        const r = await traffic.request({ method: 'GET', path: '/' });
        await r.body.text();
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
    });
    let passed: CliResult;
    try {
      passed = await cli(['assert', 'quick', '--completed', '--winner', 'v2', '--no-failure', '--timeout', '60s'], {}, 70_000);
    } finally {
      running = false;
      await Promise.all(load);
      await traffic.close();
    }
    assert.equal(passed.code, 0, show(passed));
    assert.match(passed.stdout, /quick: Completed, winner v2, weights v1=0 v2=100: completed, winner v2, no failure: ok/);

    const [wrong, report, html, unwritable] = await Promise.all([
      cli(['assert', 'quick', '--winner', 'v1', '--timeout', '5s']),
      cli(['report', 'quick']),
      cli(['report', 'quick', '--html', join(dir, 'r.html')]),
      cli(['report', 'quick', '--html', join(dir, 'no-such-dir', 'r.html')]),
    ]);
    assert.equal(wrong.code, 1, show(wrong));
    assert.match(wrong.stdout, /FAILED winner v1: the winner is v2, expected v1/);

    assert.equal(report.code, 0, show(report));
    const e = await api('GET', '/experiments/quick');
    assert.match(report.stdout, /State:\s+Completed/);
    assert.match(report.stdout, /Winner:\s+v2/);
    assert.match(report.stdout, /VERSION\s+SAMPLES\s+ERROR-RATE\s+LATENCY-MEAN\s+LATENCY-P95\s+CONVERSION-RATE\s+VERDICT\s+P\(FEASIBLE\)\s+P\(BEST\)/);
    assert.match(report.stdout, /^\s+v2\s+\d+\s+0\s+.*feasible\s+\d\.\d{3}/m);
    assert.match(report.stdout, /latency-mean <= 1\.5x baseline\s+[\d.]+x\s+\d\.\d{3}/);
    assert.match(report.stdout, /ITER\s+TIME\s+WEIGHTS\s+SAMPLES\s+VERDICTS\s+P\(BEST\)\s+REASON/);
    const historyRows = report.stdout.split('\n').filter((l) => /^\s+\d+\s+\d\d:\d\d:\d\d/.test(l));
    assert.equal(historyRows.length, e.status.history.length, 'one row per iteration');
    assert.match(historyRows.at(-1)!, /v1=0,v2=100.*candidate v2 meets every objective/);

    assert.equal(html.code, 0, show(html));
    assert.equal(html.stdout, `wrote ${join(dir, 'r.html')}\n`);
    const page = readFileSync(join(dir, 'r.html'), 'utf8');
    assert.ok(page.startsWith('<!doctype html>'), page.slice(0, 100));
    assert.match(page, /<title>Sluice experiment quick: Completed<\/title>/);
    assert.equal(unwritable.code, 1, show(unwritable));
    assert.match(unwritable.stderr, /^sluice: cannot write the HTML report to .*no-such-dir.*ENOENT/);
  });
});
