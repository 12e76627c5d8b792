/**
 * The dashboard on the admin API (issue 15, docs/dashboard.md), without a
 * browser (test/dashboard-browser.test.ts drives the page in Chromium):
 *
 *  - the page: served without the token, self-contained (nothing to fetch,
 *    no inline handler), its script and style allowed by the hashes in a
 *    strict CSP, under 150 KB, its script valid JavaScript;
 *  - the data endpoints keep needing the token; `off` serves nothing,
 *    `read-only` a page that says so;
 *  - the feed: the first events hold the whole state, an experiment's event
 *    follows its iterations, no topic is sent more than once a second, an
 *    idle process sends nothing but heartbeats, the state endpoint's ETag,
 *    the estimated next iteration across pause and resume;
 *  - cost: 50 open streams make the feed read and build no more often than
 *    one (compared within one run), and the loop stops when nobody watches;
 *  - the rates it derives from counter snapshots.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import vm from 'node:vm';
import { after, before, describe, test } from 'node:test';
import { dashboardFeedOf } from '../admin/dashboard/index.js';
import { DashboardFeed } from '../admin/dashboard/feed.js';
import { RateTracker } from '../admin/dashboard/rates.js';
import type { RunningSluice } from '../cli/run-sluice.js';
import { LatencySketch } from '../common/sketch.js';
import type { VersionSnapshot } from '../common/snapshots.js';
import { silentLogger } from '../common/logger.js';
import { validateConfig } from '../config/config.js';
import { Pool, startSluice, startUpstream, type Upstream, waitFor } from './support/helpers.js';
import { openEvents } from './support/sse.js';

const TOKEN = 'dash-token';

/** Iterates every `interval` s and never decides (FixedSplit, minSamples out of reach). */
function endless(name: string, route: string, interval: number) {
  return {
    kind: 'Experiment',
    name,
    spec: {
      route,
      versions: [{ name: 'v1' }, { name: 'v2' }],
      testingPattern: 'A/B',
      deploymentPattern: 'FixedSplit',
      criteria: { reward: { metric: 'conversion-rate' }, objectives: [{ metric: 'error-rate', upperLimit: 0.05 }], minSamples: 10_000_000 },
      weights: { initial: { v1: 70, v2: 30 } },
      duration: { intervalSeconds: interval, maxIterations: 10_000 },
    },
  };
}

describe('the dashboard page and feed', () => {
  const upstreams: Upstream[] = [];
  let sluice: RunningSluice;
  let admin: Pool;
  let traffic: Pool;
  let loadRunning = true;
  let load: Promise<void>;

  const call = async (method: string, path: string, opts: { token?: string | null; body?: unknown; headers?: Record<string, string> } = {}) => {
    const headers: Record<string, string> = { ...opts.headers };
    const token = opts.token === undefined ? TOKEN : opts.token;
    if (token !== null) headers.authorization = `Bearer ${token}`;
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    const r = await admin.request({ method: method as 'GET', path, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
    const text = await r.body.text();
    return { status: r.statusCode, headers: r.headers, text, json: () => JSON.parse(text) };
  };

  before(async () => {
    upstreams.push(...(await Promise.all([startUpstream('v1', undefined, { record: false }), startUpstream('v2', undefined, { record: false })])));
    const versions = upstreams.map((u, i) => ({ name: `v${i + 1}`, url: u.url }));
    sluice = await startSluice({
      admin: { listen: '127.0.0.1:0', token: TOKEN },
      routes: [
        { name: 'shop', match: { pathPrefix: '/shop' }, versions, weights: { v1: 70, v2: 30 }, mirror: [{ version: 'v2', percent: 50, compare: true }] },
        { name: 'quiet', match: { pathPrefix: '/quiet' }, versions },
      ],
    });
    admin = new Pool(sluice.adminUrl, { connections: 4 });
    traffic = new Pool(sluice.trafficUrl, { connections: 4 });
    const put = await call('PUT', '/experiments/ab', { body: endless('ab', 'shop', 1) });
    assert.equal(put.status, 201, put.text);
    load = (async () => {
      while (loadRunning) {
        try {
          const r = await traffic.request({ method: 'GET', path: '/shop/x' });
          await r.body.dump();
        } catch {
          // closing
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
  });

  after(async () => {
    loadRunning = false;
    await load;
    await admin?.close();
    await traffic?.close();
    await sluice?.close();
    await Promise.all(upstreams.map((u) => u.close()));
  });

  test('GET / is served without the token: one self-contained page under 150 KB, its script and style allowed by hash in a strict CSP', async () => {
    const r = await call('GET', '/', { token: null });
    assert.equal(r.status, 200);
    assert.match(String(r.headers['content-type']), /^text\/html; charset=utf-8/);
    const html = r.text;
    const bytes = Buffer.byteLength(html);
    assert.ok(bytes < 150 * 1024, `the page weighs ${bytes} bytes`);

    const csp = String(r.headers['content-security-policy']);
    const directives = new Map(csp.split(';').map((d) => d.trim().split(/\s+/)).map(([k, ...v]) => [k!, v]));
    assert.deepEqual(directives.get('default-src'), ["'none'"]);
    assert.deepEqual(directives.get('connect-src'), ["'self'"]);
    assert.deepEqual(directives.get('frame-ancestors'), ["'none'"]);
    assert.deepEqual(directives.get('form-action'), ["'none'"]);
    assert.deepEqual(directives.get('base-uri'), ["'none'"]);
    assert.doesNotMatch(csp, /unsafe-|https?:|\*/);
    const scripts = [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1]!);
    const styles = [...html.matchAll(/<style>([\s\S]*?)<\/style>/g)].map((m) => m[1]!);
    assert.equal(scripts.length, 1);
    assert.equal(styles.length, 1);
    const hash = (t: string) => `'sha256-${createHash('sha256').update(t).digest('base64')}'`;
    assert.deepEqual(directives.get('script-src'), [hash(scripts[0]!)]);
    assert.deepEqual(directives.get('style-src'), [hash(styles[0]!)]);
    assert.equal(r.headers['x-content-type-options'], 'nosniff');
    assert.equal(r.headers['referrer-policy'], 'no-referrer');

    // Nothing to fetch from anywhere, nothing run but the one hashed script.
    assert.doesNotMatch(html, /https?:\/\//);
    assert.doesNotMatch(html, /<script[^>]*\bsrc=|<iframe|<object|<embed/i);
    assert.doesNotMatch(styles[0]!, /url\(|@import|@font-face/i);
    assert.deepEqual([...html.matchAll(/<link\b[^>]*>/g)].map((m) => m[0]), ['<link rel="icon" href="data:,">']);
    assert.doesNotMatch(html, /\son[a-z]+\s*=/i, 'an inline event handler');
    assert.doesNotMatch(scripts[0]!, /localStorage|sessionStorage|document\.cookie|EventSource|eval\(|new Function/);
    assert.doesNotThrow(() => new vm.Script(scripts[0]!), 'the script does not parse');
    assert.match(html, /<meta name="sluice-dashboard" content="on">/);
    assert.match(html, /<meta name="sluice-token" content="required">/);

    const again = await call('GET', '/', { token: null, headers: { 'if-none-match': String(r.headers.etag) } });
    assert.equal(again.status, 304);
    // The page is public; every other unknown path still needs the token first.
    assert.equal((await call('GET', '/nothing-here', { token: null })).status, 401);
  });

  test('every data endpoint keeps requiring the token', async () => {
    for (const path of ['/dashboard/events', '/dashboard/state', '/dashboard/state?experiment=ab', '/experiments', '/stats']) {
      const r = await call('GET', path, { token: null });
      assert.equal(r.status, 401, path);
      assert.equal(r.json().error.code, 'SLUICE_UNAUTHORIZED');
      assert.equal((await call('GET', path, { token: 'wrong' })).status, 401, path);
    }
    const sse = await openEvents(sluice.adminUrl, { token: null });
    assert.equal(sse.status, 401);
    sse.close();
    assert.equal((await call('POST', '/experiments/ab/pause', { token: null })).status, 401);
    assert.equal((await call('GET', '/dashboard/state?experiment=%3Cscript%3E')).status, 400);
  });

  test('the first events hold the whole state; the experiment event follows its iterations; no topic is sent more than once a second', async () => {
    const sse = await openEvents(sluice.adminUrl, { token: TOKEN, experiment: 'ab' });
    try {
      assert.equal(sse.status, 200);
      assert.match(String(sse.headers['content-type']), /^text\/event-stream/);
      assert.equal(sse.headers['cache-control'], 'no-store');
      const overview = (await sse.next('overview')).data;
      assert.equal(overview.process.kind, 'all-in-one');
      assert.equal(overview.process.readOnly, false);
      assert.equal(overview.process.weightEdits, true);
      assert.deepEqual(overview.experiments.map((e: { name: string }) => e.name), ['ab']);
      const shop = overview.routes.find((r: { name: string }) => r.name === 'shop');
      assert.equal(shop.owner, 'ab');
      assert.deepEqual(shop.mirrors, [{ version: 'v2', percent: 50, compare: true }]);
      assert.equal(overview.routes.find((r: { name: string }) => r.name === 'quiet').owner, null);

      const first = (await sse.next('experiment')).data;
      assert.equal(first.name, 'ab');
      const later = (await sse.next('experiment', (d) => d.summary.iteration >= first.summary.iteration + 2, 10_000)).data;
      assert.ok(later.timeline.length >= 2);
      assert.equal(later.timeline[0].iteration, later.summary.iteration, 'the timeline is newest first');
      assert.deepEqual(later.charts.map((c: { id: string }) => c.id), ['weights', 'pbest']);
      assert.match(later.charts[0].svg, /<title>Traffic weight per iteration<\/title>/);
      assert.equal(later.charts[0].table.rows.length, later.summary.iteration + 1, 'a table row per iteration and the start');
      assert.deepEqual(later.versions.map((v: { name: string }) => v.name), ['v1', 'v2']);
      assert.equal(later.versions[0].objectives.length, 1);
      assert.deepEqual(later.appliedWeights, { v1: 70, v2: 30 });

      const live = (await sse.next('live', (d) => d.routes.shop?.versions.v1?.rps > 0, 10_000)).data;
      assert.ok(live.windowS > 0);
      const v2 = live.routes.shop.versions.v2;
      assert.ok(v2.p95 > 0 && v2.errorRate === 0, JSON.stringify(v2));
      assert.ok(v2.mirror !== null && v2.mirror.compared > 0, 'the mirror outcomes of v2');
      assert.equal(live.routes.quiet.versions.v1.rps, 0);

      // Past the first burst, each topic at most once per tick (1 s; 700 ms apart allows for the
      // reads' own jitter on a busy machine), and no more events than seconds.
      const since = Date.now();
      const counted = sse.events.length;
      await new Promise((r) => setTimeout(r, 2500));
      const seconds = (Date.now() - since) / 1000;
      for (const topic of ['overview', 'live', 'experiment']) {
        const n = sse.events.slice(counted).filter((e) => e.event === topic).length;
        assert.ok(n <= Math.ceil(seconds) + 1, `${n} ${topic} events in ${seconds.toFixed(1)} s`);
      }
      const burst = new Set<string>();
      const byTopic = new Map<string, number[]>();
      for (const e of sse.events) {
        if (!burst.has(e.event)) {
          burst.add(e.event);
          continue;
        }
        byTopic.set(e.event, [...(byTopic.get(e.event) ?? []), e.at]);
      }
      assert.ok((byTopic.get('live') ?? []).length >= 3, 'live figures flow under load');
      for (const [topic, times] of byTopic) {
        for (let i = 1; i < times.length; i++) assert.ok(times[i]! - times[i - 1]! >= 700, `${topic} events ${times[i]! - times[i - 1]!} ms apart`);
      }
    } finally {
      sse.close();
    }
  });

  test('GET /dashboard/state: the same views as one document, with an ETag', async () => {
    const r = await call('GET', '/dashboard/state?experiment=ab');
    assert.equal(r.status, 200);
    const state = r.json();
    assert.equal(state.experiment.name, 'ab');
    assert.ok(Array.isArray(state.overview.routes));
    assert.ok(state.live.routes.shop);
    assert.equal(r.headers['cache-control'], 'private, no-cache');
    // Unchanged state answers 304; the quiet route with no experiment stays the same between two polls.
    const missing = await call('GET', '/dashboard/state?experiment=nope');
    assert.deepEqual(missing.json().experiment, { name: 'nope', missing: true, reason: 'no experiment named "nope"' });
  });

  test('the next iteration is estimated from the last one, cleared while paused, and counted from the resume', async () => {
    const sse = await openEvents(sluice.adminUrl, { token: TOKEN, experiment: 'ab' });
    try {
      const running = (await sse.next('experiment', (d) => d.summary.iteration >= 1)).data;
      const last = Date.parse(running.timeline[0].at);
      assert.ok(Math.abs(running.summary.nextIterationAt - (last + 1000)) < 50, `${running.summary.nextIterationAt - last} ms after the last iteration`);
      assert.equal((await call('POST', '/experiments/ab/pause')).status, 200);
      const paused = (await sse.next('experiment', (d) => d.summary.state === 'Paused')).data;
      assert.equal(paused.summary.nextIterationAt, null);
      const resumedAt = Date.now();
      assert.equal((await call('POST', '/experiments/ab/resume')).status, 200);
      const resumed = (await sse.next('experiment', (d) => d.summary.state === 'Running' && d.summary.reason === 'resumed')).data;
      const due = resumed.summary.nextIterationAt - resumedAt;
      assert.ok(due >= 900 && due <= 2600, `due ${due} ms after the resume`);
    } finally {
      sse.close();
    }
  });

  test('50 open streams: the feed reads and builds once per tick as for one (compared in one run), and sends each an event', async () => {
    const feed = dashboardFeedOf(sluice.admin)!;
    assert.ok(feed);
    const measure = async (n: number) => {
      const streams = await Promise.all(Array.from({ length: n }, () => openEvents(sluice.adminUrl, { token: TOKEN, experiment: 'ab' })));
      await Promise.all(streams.map((s) => s.next('live')));
      const before = { ...feed.stats };
      const received = streams.map((s) => s.events.length);
      await new Promise((r) => setTimeout(r, 3000));
      const delta = { ticks: feed.stats.ticks - before.ticks, overviewBuilds: feed.stats.overviewBuilds - before.overviewBuilds, experimentBuilds: feed.stats.experimentBuilds - before.experimentBuilds };
      const got = streams.map((s, i) => s.events.length - received[i]!);
      for (const s of streams) s.close();
      return { delta, got };
    };
    const one = await measure(1);
    const fifty = await measure(50);
    assert.ok(fifty.delta.ticks <= one.delta.ticks + 1, `ticks: ${JSON.stringify({ one: one.delta, fifty: fifty.delta })}`);
    assert.ok(fifty.delta.overviewBuilds <= one.delta.overviewBuilds + 1, `overview builds: ${JSON.stringify({ one: one.delta, fifty: fifty.delta })}`);
    assert.ok(fifty.delta.experimentBuilds <= one.delta.experimentBuilds + 1, `experiment builds: ${JSON.stringify({ one: one.delta, fifty: fifty.delta })}`);
    assert.ok(fifty.delta.ticks <= 4, `${fifty.delta.ticks} ticks in 3 s`);
    assert.ok(fifty.got.every((n) => n >= 2), `every stream was updated: ${fifty.got.join(',')}`);
    await waitFor('the streams closed on the server', () => feed.subscribers === 0, 5000);
  });
});

describe('the dashboard modes', () => {
  test('off: no page and no feed; read-only: the page says so; no token: the page needs none', async (t) => {
    const u = await startUpstream('v1', undefined, { record: false });
    t.after(() => u.close());
    const routes = [{ name: 'r', versions: [{ name: 'v1', url: u.url }] }];
    const off = await startSluice({ admin: { listen: '127.0.0.1:0', dashboard: 'off' }, routes });
    const ro = await startSluice({ admin: { listen: '127.0.0.1:0', dashboard: 'read-only' }, routes });
    t.after(() => Promise.all([off.close(), ro.close()]));
    const get = async (base: string, path: string) => {
      const r = await fetch(base + path);
      return { status: r.status, text: await r.text() };
    };
    assert.equal((await get(off.adminUrl, '/')).status, 404);
    assert.equal((await get(off.adminUrl, '/dashboard/events')).status, 404);
    assert.equal((await get(off.adminUrl, '/dashboard/state')).status, 404);
    assert.equal(dashboardFeedOf(off.admin), undefined);
    const page = await get(ro.adminUrl, '/');
    assert.match(page.text, /<meta name="sluice-dashboard" content="read-only">/);
    assert.match(page.text, /<meta name="sluice-token" content="none">/);
    const state = JSON.parse((await get(ro.adminUrl, '/dashboard/state')).text);
    assert.equal(state.overview.process.readOnly, true);
  });

  test('admin.dashboard is on by default and refuses other values', () => {
    const routes = [{ name: 'r', versions: [{ name: 'v1', url: 'http://127.0.0.1:1' }] }];
    assert.equal(validateConfig({ routes }, { env: {} }).admin.dashboard, 'on');
    assert.equal(validateConfig({ admin: { dashboard: 'read-only' }, routes }, { env: {} }).admin.dashboard, 'read-only');
    assert.throws(() => validateConfig({ admin: { dashboard: 'yes' }, routes }, { env: {} }), (err: { details?: Array<{ path: string; message: string }> }) =>
      err.details?.some((d) => d.path === 'admin.dashboard' && /one of on, read-only, off/.test(d.message)) === true,
    );
  });

  test('an idle process sends nothing after the first events; the loop stops when nobody has watched for the grace period', async () => {
    const counters = [{ route: 'r', versions: { v1: snapshot(0, 0, []) } }];
    const port = {
      routes: async () => [{ name: 'r', generation: 1, weights: { v1: 100 }, versions: [{ name: 'v1', url: 'http://127.0.0.1:1' }] }],
      route: async () => null,
      setWeights: async () => {
        throw new Error('no');
      },
      counters: async () => counters,
    };
    const feed = new DashboardFeed(
      { kind: 'proxy', routes: port, experiments: null, weightEdits: false, readOnly: false },
      { log: silentLogger(), tickMs: 50, graceMs: 200, heartbeatMs: 100, rateWindowMs: 100 },
    );
    const sent: string[] = [];
    let pings = 0;
    const unsubscribe = await feed.subscribe('ab', { send: (e) => sent.push(e), ping: () => pings++ });
    assert.deepEqual(sent, ['overview', 'live', 'experiment']);
    // Warming up: the rates' window fills (live events); then nothing changes.
    await new Promise((r) => setTimeout(r, 300));
    const warm = sent.length;
    const ticks = feed.stats.ticks;
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(sent.slice(warm), [], 'nothing changed, nothing sent');
    assert.ok(feed.stats.ticks >= ticks + 5, `${feed.stats.ticks - ticks} ticks`);
    assert.ok(pings >= 3, `${pings} heartbeats`);
    unsubscribe();
    assert.ok(feed.running);
    await waitFor('the loop to stop', () => !feed.running, 2000);
    const stopped = feed.stats.ticks;
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(feed.stats.ticks, stopped, 'no read while nobody watches');
    feed.close();
  });
});

describe('live rates from counter snapshots', () => {
  test('rates, error rate and percentiles over the window; a counter that went down starts over', () => {
    const rates = new RateTracker(10_000);
    const at = (s: number) => 1_000_000 + s * 1000;
    const first = rates.update([{ route: 'r', versions: { v1: snapshot(100, 1, Array(100).fill(5)) } }], at(0));
    assert.equal(first.windowS, null);
    assert.equal(first.routes.r!.versions.v1!.rps, null);
    assert.equal(first.routes.r!.versions.v1!.requests, 100);
    // 200 more requests in 2 s, 10 errors among them, all at 50 ms: the window sees those only.
    const second = rates.update([{ route: 'r', versions: { v1: snapshot(300, 11, [...Array(100).fill(5), ...Array(200).fill(50)]) } }], at(2));
    const v1 = second.routes.r!.versions.v1!;
    assert.equal(second.windowS, 2);
    assert.equal(v1.rps, 100);
    assert.equal(v1.errorRate, 0.05);
    assert.ok(Math.abs(v1.p50! - 50) <= 1 && Math.abs(v1.p99! - 50) <= 1, JSON.stringify(v1));
    // Past the window, the reference moves on: 12 s later, 100 requests in the last 10 s.
    rates.update([{ route: 'r', versions: { v1: snapshot(300, 11, [...Array(100).fill(5), ...Array(200).fill(50)]) } }], at(4));
    const quiet = rates.update([{ route: 'r', versions: { v1: snapshot(400, 11, [...Array(100).fill(5), ...Array(300).fill(50)]) } }], at(14));
    assert.equal(quiet.routes.r!.versions.v1!.rps, 10);
    const restarted = rates.update([{ route: 'r', versions: { v1: snapshot(5, 0, Array(5).fill(5)) } }], at(15));
    assert.equal(restarted.routes.r!.versions.v1!.rps, null);
  });
});

/** A version's counters with these latencies (ms). */
function snapshot(requests: number, errors: number, latencies: number[]): VersionSnapshot {
  const sketch = new LatencySketch();
  for (const l of latencies) sketch.add(l);
  return {
    requests,
    errors,
    keyless: requests,
    latencySumMs: latencies.reduce((a, b) => a + b, 0),
    latencySumSqMs: 0,
    latencySketch: sketch.snapshot(),
    statusCounts: {},
    upstreamErrors: {},
    mirror: {},
    mirrorCompared: 0,
    rewards: 0,
    rewardSum: 0,
    rewardSumSq: 0,
    conversions: 0,
  };
}
