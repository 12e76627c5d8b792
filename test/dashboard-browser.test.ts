/**
 * The dashboard in a real browser (issue 15, acceptance): Debian's Chromium
 * (/usr/bin/chromium, never a downloaded browser) driven by playwright-core,
 * against a running Sluice with a demo-sized experiment — three sample
 * versions, a Hybrid A/B/n with SLOs and a reward, ~120 requests/s:
 *
 *  - the page loads with no console error and no request leaving the admin
 *    origin (checked for every request of the whole test);
 *  - with a token: the page asks for it before reading anything, an action
 *    without it fails, a wrong one is refused, the right one signs in;
 *  - the weights chart and the timeline update after the next iteration
 *    without a reload, and again after the connection is dropped;
 *  - pause then resume from the page (through the confirmation) change the
 *    experiment's state; a weight edit on a route no experiment owns;
 *  - axe-core finds no serious or critical violation in any view; every
 *    chart has its table;
 *  - read-only mode shows no action;
 *  - a screenshot of the experiment view is saved as an artefact
 *    (SLUICE_ARTIFACTS, default .tmp/artifacts/dashboard-experiment.png;
 *    docs/images/dashboard.png is a copy of it).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium, type Browser, type ConsoleMessage, type Page } from 'playwright-core';
import type { RunningSluice } from '../cli/run-sluice.js';
import { startSampleApp, type SampleApp } from '../demo/sample-app.js';
import { Pool, startSluice, waitFor } from './support/helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const TOKEN = 'browser-test-token';
const EXPERIMENT = 'checkout-abn';
const ARTIFACTS = resolve(process.env.SLUICE_ARTIFACTS ?? '.tmp/artifacts');
const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/** The demo's experiment, with v1 and v2 converting alike so it runs on for the whole test; v3 fails its error-rate SLO. */
function hybrid(route: string, intervalSeconds: number) {
  return {
    kind: 'Experiment',
    name: EXPERIMENT,
    spec: {
      route,
      versions: [{ name: 'v1' }, { name: 'v2' }, { name: 'v3' }],
      testingPattern: 'Hybrid',
      deploymentPattern: 'Progressive',
      criteria: {
        objectives: [
          { metric: 'error-rate', upperLimit: 0.02 },
          { metric: 'latency-p95', upperLimit: 100 },
        ],
        reward: { metric: 'conversion-rate', preferredDirection: 'High' },
        minSamples: 100,
      },
      weights: { maxCandidateWeight: 80, maxCandidateWeightIncrement: 25 },
      duration: { intervalSeconds, maxIterations: 500 },
    },
  };
}

const LAUNCH = {
  executablePath: CHROMIUM,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
};

/** Open-loop load at `qps` through Sluice. */
function startLoad(url: string, qps: number) {
  const pool = new Pool(url, { connections: 16 });
  let n = 0;
  const timer = setInterval(() => {
    for (let i = 0; i < qps / 20; i++) {
      n++;
      const path = n % 4 === 0 ? '/search' : '/checkout';
      pool.request({ method: 'GET', path, headers: { 'x-user-id': `user-${n % 500}` } }).then((r) => r.body.dump(), () => {});
    }
  }, 50);
  return async () => {
    clearInterval(timer);
    await new Promise((r) => setTimeout(r, 200));
    await pool.close();
  };
}

interface Watched {
  page: Page;
  /** Console messages of type error, and uncaught page errors, in order. */
  errors: string[];
  /** Every URL the page requested. */
  requests: string[];
}

async function open(browser: Browser, url: string): Promise<Watched> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, reducedMotion: 'reduce' });
  const page = await context.newPage();
  const watched: Watched = { page, errors: [], requests: [] };
  page.on('console', (m: ConsoleMessage) => {
    if (m.type() === 'error') watched.errors.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => watched.errors.push(`pageerror: ${e.message}`));
  page.on('request', (r) => void watched.requests.push(r.url()));
  await page.goto(url);
  return watched;
}

/** Runs `step`, then takes the console errors it caused: each must match one of `expected`. */
async function expectingErrors(w: Watched, expected: RegExp[], step: () => Promise<void>): Promise<void> {
  const from = w.errors.length;
  await step();
  const caused = w.errors.splice(from);
  for (const e of caused) assert.ok(expected.some((re) => re.test(e)), `unexpected: ${e}`);
}

async function axeViolations(page: Page, context: string): Promise<string[]> {
  // Evaluated through the DevTools protocol: the page's CSP (rightly) lets no injected <script> run.
  if (!(await page.evaluate('typeof window.axe !== "undefined"'))) await page.evaluate(AXE_SOURCE);
  const result = (await page.evaluate(`axe.run(document, { resultTypes: ['violations'] })`)) as {
    violations: Array<{ id: string; impact: string | null; help: string; nodes: Array<{ target: unknown }> }>;
  };
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${context}: ${v.id} (${v.impact}): ${v.help} at ${JSON.stringify(v.nodes.slice(0, 3).map((n) => n.target))}`);
}

// Elsewhere a missing Chromium skips with what to install; under CI it fails (CI must have it: .ci/run installs it).
const missing = existsSync(CHROMIUM) || process.env.CI ? false : `${CHROMIUM} not found: install the Debian package chromium to run this test`;

describe('the dashboard in Chromium', { skip: missing }, () => {
  const apps: SampleApp[] = [];
  let sluice: RunningSluice;
  let readOnly: RunningSluice;
  let admin: Pool;
  let stopLoad: () => Promise<void>;
  let browser: Browser;
  let w: Watched;
  let origin: string;

  const api = async (method: string, path: string, body?: unknown) => {
    const r = await admin.request({
      method: method as 'GET',
      path,
      headers: { authorization: `Bearer ${TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.body.text();
    return { status: r.statusCode, json: text ? JSON.parse(text) : null };
  };
  const state = async () => (await api('GET', `/experiments/${EXPERIMENT}`)).json.status.state as string;
  const iterationShown = async () => Number(((await w.page.textContent('#iteration')) ?? '').split('/')[0]);

  before(async () => {
    if (process.env.CI && !existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is required in CI (Debian package chromium; .ci/run installs it)`);
    apps.push(
      ...(await Promise.all([
        startSampleApp({ name: 'v1', latencyMs: 8, errorRate: 0.002, conversionRate: 0.06, seed: 1 }),
        startSampleApp({ name: 'v2', latencyMs: 9, errorRate: 0.002, conversionRate: 0.06, seed: 2 }),
        startSampleApp({ name: 'v3', latencyMs: 8, errorRate: 0.06, conversionRate: 0.05, seed: 3 }),
      ])),
    );
    const versions = apps.map((a) => ({ name: a.name, url: a.url }));
    const routes = [
      { name: 'checkout', match: { pathPrefix: '/checkout' }, versions, weights: { v1: 100 } },
      { name: 'search', match: { pathPrefix: '/search' }, versions: versions.slice(0, 2), weights: { v1: 90, v2: 10 }, mirror: [{ version: 'v2', percent: 20, compare: true }] },
    ];
    sluice = await startSluice({ admin: { listen: '127.0.0.1:0', token: TOKEN }, routes });
    readOnly = await startSluice({ admin: { listen: '127.0.0.1:0', dashboard: 'read-only' }, routes });
    origin = sluice.adminUrl;
    admin = new Pool(sluice.adminUrl, { connections: 2 });
    const put = await api('PUT', `/experiments/${EXPERIMENT}`, hybrid('checkout', 1.5));
    assert.equal(put.status, 201, JSON.stringify(put.json));
    stopLoad = startLoad(sluice.trafficUrl, 120);
    browser = await chromium.launch(LAUNCH);
  });

  after(async () => {
    await browser?.close();
    await stopLoad?.();
    await admin?.close();
    await Promise.all([sluice?.close(), readOnly?.close()]);
    await Promise.all(apps.map((a) => a.close()));
  });

  test('with a token: the page asks for it before reading anything; an action without it fails; a wrong one is refused; the right one signs in', async () => {
    w = await open(browser, `${origin}/#/experiments/${EXPERIMENT}`);
    const page = w.page;
    await page.waitForSelector('#login:not([hidden])');
    assert.equal(await page.textContent('#connection'), 'Signed out');
    assert.deepEqual(w.requests, [`${origin}/#/experiments/${EXPERIMENT}`.replace(/#.*/, '')], 'the page read nothing before the token');
    assert.deepEqual(w.errors, [], 'the page loads with no console error');
    assert.equal((await page.$$('#experiment-title')).length, 0);

    await expectingErrors(w, [/status of 401/], async () => {
      const status = await page.evaluate(`fetch('/experiments/${EXPERIMENT}/pause', { method: 'POST' }).then((r) => r.status)`);
      assert.equal(status, 401, 'an action without the token');
      assert.equal(await state(), 'Running');
      await page.fill('#token', 'not-the-token');
      await page.click('#sign-in');
      await page.waitForSelector('#login:not([hidden])');
      await waitFor('the refusal to show', async () => (await page.textContent('#login-message')) === 'The token was refused.', 5000);
    });
    assert.equal(await page.inputValue('#token'), '', 'the field does not keep the token');

    await page.fill('#token', TOKEN);
    await page.click('#sign-in');
    await page.waitForSelector('#experiment-title');
    await waitFor('Live', async () => (await page.textContent('#connection')) === 'Live', 5000);
    assert.match((await page.textContent('#experiment-title')) ?? '', new RegExp(`^${EXPERIMENT} Running`));
    // The token went nowhere but the Authorization header: not in the address, a cookie or storage.
    assert.doesNotMatch(page.url(), new RegExp(TOKEN));
    assert.deepEqual(await page.context().cookies(), []);
    assert.equal(await page.evaluate('localStorage.length + sessionStorage.length'), 0);
    assert.ok(w.requests.every((u) => !u.includes(TOKEN)));
  });

  test('the weights chart and the timeline update after the next iteration, without a reload', async () => {
    const page = w.page;
    await page.evaluate('window.__notReloaded = true');
    await page.waitForSelector('#chart-weights svg');
    await waitFor('an iteration on the page', async () => (await iterationShown()) >= 1, 10_000);
    const before = { iteration: await iterationShown(), chart: await page.innerHTML('#chart-weights'), rows: await page.locator('#timeline tbody tr').count() };
    await waitFor('the next iteration on the page', async () => (await iterationShown()) > before.iteration, 10_000, 50);
    const after = { iteration: await iterationShown(), chart: await page.innerHTML('#chart-weights'), rows: await page.locator('#timeline tbody tr').count() };
    assert.notEqual(after.chart, before.chart, 'the weights chart was redrawn');
    assert.ok(after.rows > before.rows, `timeline rows ${before.rows} -> ${after.rows}`);
    assert.equal(await page.textContent('#timeline tbody tr:first-child th'), String(after.iteration));
    assert.equal(await page.locator('#chart-weights-table tbody tr').count(), after.iteration + 1, 'the chart table follows too');
    assert.equal(await page.evaluate('window.__notReloaded'), true, 'no reload');
    // The live figures are there too.
    await waitFor('live rates', async () => Number(await page.textContent('[data-live="checkout|v1|rps"]')) > 0, 15_000);
    assert.deepEqual(w.errors, []);
  });

  test('every chart has its table; axe finds no serious or critical violation in any view', async () => {
    const page = w.page;
    const figures = await page.$$eval('figure', (fs) => fs.map((f) => ({ svg: f.querySelectorAll('svg').length, table: f.querySelectorAll('table').length, label: f.querySelector('svg')?.getAttribute('aria-label') })));
    assert.ok(figures.length >= 2, `${figures.length} charts`);
    for (const f of figures) assert.deepEqual([f.svg, f.table, typeof f.label], [1, 1, 'string']);
    const bars = await page.$$eval('.bar', (bs) => bs.map((b) => [b.getAttribute('role'), b.getAttribute('aria-label')]));
    assert.ok(bars.length >= 2 && bars.every(([role, label]) => role === 'img' && /\d+%/.test(label ?? '')), JSON.stringify(bars));

    const violations = await axeViolations(page, 'experiment');
    await page.click('a[href="#/routes"]');
    await page.waitForSelector('#editor-search');
    violations.push(...(await axeViolations(page, 'routes')));
    await page.click('a[href="#/experiments"]');
    await page.waitForSelector('#experiments');
    violations.push(...(await axeViolations(page, 'experiments')));
    assert.deepEqual(violations, []);
    assert.deepEqual(w.errors, []);
  });

  test('pause, then resume from the page change the experiment\'s state (each through a confirmation)', async () => {
    const page = w.page;
    await page.click(`a[href="#/experiments/${EXPERIMENT}"]`);
    await page.waitForSelector('#action-pause:not([disabled])');
    await page.click('#action-pause');
    await page.waitForSelector('#confirm[open]');
    assert.match((await page.textContent('#confirm-title')) ?? '', /Pause checkout-abn\?/);
    await page.click('#confirm-cancel');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await state(), 'Running', 'cancelled: nothing happened');

    await page.click('#action-pause');
    await page.click('#confirm-ok');
    await waitFor('Paused in the API', async () => (await state()) === 'Paused', 5000);
    await waitFor('Paused on the page', async () => /Paused/.test((await page.textContent('#experiment-title')) ?? ''), 5000);
    assert.equal(await page.textContent('#next-iteration'), '-');
    await page.waitForSelector('#action-resume:not([disabled])');
    await page.click('#action-resume');
    await page.click('#confirm-ok');
    await waitFor('Running in the API', async () => (await state()) === 'Running', 5000);
    await waitFor('Running on the page', async () => /Running/.test((await page.textContent('#experiment-title')) ?? ''), 5000);
    assert.deepEqual(w.errors, []);
  });

  test('a weight edit on a route no experiment owns; none offered on the experiment\'s route', async () => {
    const page = w.page;
    await page.click('a[href="#/routes"]');
    await page.waitForSelector('#editor-search');
    assert.equal((await page.$$('#editor-checkout')).length, 0, 'checkout is owned by the experiment');
    await page.fill('#weight-search-v1', '80');
    await page.fill('#weight-search-v2', '20');
    await page.click('#apply-weights-search');
    await page.click('#confirm-ok');
    await waitFor('the new weights in the API', async () => (await api('GET', '/routes/search')).json.weights.v2 === 20, 5000);
    await waitFor('the new weights on the page', async () => /v1 80%, v2 20%/.test((await page.textContent('#route-search')) ?? ''), 5000);
    assert.deepEqual(w.errors, []);
  });

  test('a dropped connection: the page says so, reconnects by itself and goes on updating', async () => {
    const page = w.page;
    await page.click(`a[href="#/experiments/${EXPERIMENT}"]`);
    await page.waitForSelector('#experiment-title');
    await waitFor('Live', async () => (await page.textContent('#connection')) === 'Live', 5000);
    // Net errors from the cut stream are Chromium's to log; nothing else may be.
    await expectingErrors(w, [/net::ERR_|Failed to load resource/], async () => {
      sluice.admin.server.closeAllConnections();
      await page.waitForSelector('#disconnected', { timeout: 5000 });
      await waitFor('Live again', async () => (await page.textContent('#connection')) === 'Live', 15_000, 50);
    });
    const iteration = await iterationShown();
    await waitFor('an iteration after the reconnect', async () => (await iterationShown()) > iteration, 10_000, 50);
    assert.equal((await page.$$('#disconnected')).length, 0);
  });

  test('a screenshot of the experiment view is saved as a test artefact', async () => {
    const page = w.page;
    await page.waitForSelector('#chart-pbest svg', { timeout: 15_000 });
    await waitFor('the last message to go', async () => (await page.textContent('#toast')) === '', 10_000, 100);
    mkdirSync(ARTIFACTS, { recursive: true });
    const file = join(ARTIFACTS, 'dashboard-experiment.png');
    await page.screenshot({ path: file, fullPage: true });
    assert.ok(readFileSync(file).length > 10_000, 'a screenshot');
  });

  test('no request of the whole session left the admin origin', () => {
    assert.ok(w.requests.length > 3);
    const elsewhere = w.requests.filter((u) => new URL(u).origin !== origin);
    assert.deepEqual(elsewhere, []);
    assert.deepEqual(w.errors, []);
  });

  test('read-only mode shows no action', async () => {
    const put = await fetch(`${readOnly.adminUrl}/experiments/${EXPERIMENT}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(hybrid('checkout', 60)) });
    assert.equal(put.status, 201);
    const ro = await open(browser, `${readOnly.adminUrl}/#/experiments/${EXPERIMENT}`);
    const page = ro.page;
    await page.waitForSelector('#experiment-title');
    assert.equal(await page.textContent('#process'), 'all-in-one, read-only');
    const actions = async () => page.$$eval('button, dialog, form, input, select', (els) => els.filter((e) => !e.closest('[hidden]')).map((e) => e.outerHTML.slice(0, 80)));
    assert.deepEqual(await actions(), []);
    await page.click('a[href="#/routes"]');
    await page.waitForSelector('#route-search');
    assert.deepEqual(await actions(), [], 'no weight editor either');
    assert.deepEqual(await axeViolations(page, 'read-only routes'), []);
    assert.deepEqual(ro.errors, []);
    assert.deepEqual(ro.requests.filter((u) => new URL(u).origin !== readOnly.adminUrl), []);
    await page.context().close();
  });
});
