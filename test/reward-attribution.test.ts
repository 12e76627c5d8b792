/**
 * Rewards credited at exposure: a reward posted by sticky key goes to the
 * version that served that key's latest request before the reward, however
 * the weights (and the key's slot) moved since, in all-in-one and Redis mode.
 * Also what counts as a reward and as a conversion, and the bounds on values.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { RunningSluice } from '../cli/run-sluice.js';
import { silentLogger } from '../common/logger.js';
import { createRedis } from '../common/redis.js';
import { RedisKeys } from '../common/redis-keys.js';
import { RedisAggregates } from '../control/redis-aggregates.js';
import { RedisRouter } from '../control/redis-router.js';
import { startSampleApp } from '../demo/sample-app.js';
import { ExposureLog } from '../proxy/exposures.js';
import { routeState, type RouteState } from '../proxy/routing-table.js';
import { slotOfKey } from '../common/slots.js';
import { StatsPublisher } from '../proxy/stats-publisher.js';
import { RouteCounters } from '../proxy/stats.js';
import { Pool, startSluice, startUpstream, waitFor } from './support/helpers.js';
import { startRedis } from './support/redis-server.js';

const AUTH = { authorization: 'Bearer tok' };

async function call(admin: Pool, method: string, path: string, body?: unknown) {
  const r = await admin.request({
    method: method as 'GET',
    path,
    headers: { ...AUTH, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.body.text();
  return { status: r.statusCode, json: text ? JSON.parse(text) : null };
}

async function started(t: TestContext, routes: unknown[], extra: Record<string, unknown> = {}) {
  const sluice = await startSluice({ admin: { listen: '127.0.0.1:0', token: 'tok' }, routes, ...extra });
  const admin = new Pool(sluice.adminUrl, { connections: 4 });
  const traffic = new Pool(sluice.trafficUrl, { connections: 32 });
  t.after(async () => {
    await traffic.close();
    await admin.close();
    await sluice.close();
  });
  return { sluice, admin, traffic };
}

/** An experiment on `shop` that ends at once: rewards are still accepted, and the route's weights are ours to move. */
async function endedExperiment(admin: Pool, name: string) {
  const doc = {
    kind: 'Experiment',
    name,
    spec: { route: 'shop', versions: [{ name: 'v1' }, { name: 'v2' }], testingPattern: 'A/B', criteria: { reward: { metric: 'conversion-rate' } }, duration: { intervalSeconds: 3600 } },
  };
  assert.equal((await call(admin, 'PUT', `/experiments/${name}`, doc)).status, 201);
  assert.equal((await call(admin, 'POST', `/experiments/${name}/abort`)).status, 200);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function versionsOf(admin: Pool) {
  return (await call(admin, 'GET', '/stats')).json.routes.shop.versions as Record<string, { rewards: number; rewardSum: number; conversions: number }>;
}

describe('rewards by key are credited to the version that served the key', () => {
  test('all-in-one: rewards posted 2 s after the request while weights move: 0 misattributed', async (t) => {
    const apps = await Promise.all([startSampleApp({ name: 'v1', seed: 31 }), startSampleApp({ name: 'v2', seed: 32 })]);
    t.after(() => Promise.all(apps.map((a) => a.close())));
    const s = await started(t, [{ name: 'shop', versions: apps.map((a) => ({ name: a.name, url: a.url })), sticky: { header: 'x-user-id' } }]);
    await endedExperiment(s.admin, 'late');

    // Weights swing between the versions every 150 ms for the whole run, so most keys' slots change owner
    // between a user's request and its reward.
    const splits = [{ v1: 90, v2: 10 }, { v1: 10, v2: 90 }, { v1: 50, v2: 50 }, { v1: 0, v2: 100 }, { v1: 100, v2: 0 }, { v1: 30, v2: 70 }];
    let moving = true;
    let moves = 0;
    const mover = (async () => {
      while (moving) {
        const r = await call(s.admin, 'PUT', '/routes/shop/weights', splits[moves++ % splits.length]);
        assert.equal(r.status, 200);
        await sleep(150);
      }
    })();

    const users = 120;
    const expected: Record<string, { sum: number; n: number }> = { v1: { sum: 0, n: 0 }, v2: { sum: 0, n: 0 } };
    const posted: Array<{ status: number; json: { accepted: number; unattributed: number } }> = [];
    await Promise.all(
      Array.from({ length: users }, async (_, u) => {
        await sleep((u % 40) * 40);
        let last = '';
        // Two or three requests each, spread out: the key may change version between them.
        for (let i = 0; i < 2 + (u % 2); i++) {
          const r = await s.traffic.request({ path: '/', method: 'GET', headers: { 'x-user-id': `user-${u}` } });
          await r.body.dump();
          last = r.headers['x-sluice-version'] as string;
          await sleep(200);
        }
        await sleep(2000);
        const value = 1 + u / 1000; // distinct values: a swap of two rewards would not cancel out
        expected[last]!.sum += value;
        expected[last]!.n++;
        posted.push(await call(s.admin, 'POST', '/experiments/late/rewards', { key: `user-${u}`, value }));
      }),
    );
    moving = false;
    await mover;
    assert.ok(moves >= 20, `weights moved ${moves} times`);
    for (const p of posted) assert.deepEqual([p.status, p.json.accepted, p.json.unattributed], [202, 1, 0]);
    const got = await versionsOf(s.admin);
    for (const v of ['v1', 'v2']) {
      assert.equal(got[v]!.conversions, expected[v]!.n, `${v}: conversions`);
      assert.equal(got[v]!.rewards, expected[v]!.n, `${v}: rewards`);
      assert.ok(Math.abs(got[v]!.rewardSum - expected[v]!.sum) < 1e-9, `${v}: rewardSum ${got[v]!.rewardSum}, expected ${expected[v]!.sum}`);
    }
    assert.ok(expected.v1!.n > 0 && expected.v2!.n > 0, 'both versions served users');
  });

  test('Redis mode: a key served by v1 is credited to v1 after its slot moved to v2; an unknown key is unattributed', async (t) => {
    const redis = await startRedis(t);
    if (redis === null) return;
    const ups = await Promise.all(['v1', 'v2'].map((n) => startUpstream(n, undefined, { record: false })));
    t.after(() => Promise.all(ups.map((u) => u.close())));
    const s: RunningSluice = await startSluice({
      routes: [{ name: 'shop', versions: ups.map((u, i) => ({ name: `v${i + 1}`, url: u.url })), weights: { v1: 100, v2: 0 }, sticky: { header: 'x-user-id' } }],
    });
    t.after(() => s.close());
    const client = createRedis(redis.url);
    t.after(() => client.disconnect());
    await client.connect();
    const keys = new RedisKeys(`rewards${process.pid}:`);
    const publisher = new StatsPublisher({ proxy: s.proxy, redis: client, keys, log: silentLogger(), intervalMs: 100, replicaId: 'p1' });
    publisher.start();
    t.after(() => publisher.stop());
    const router = new RedisRouter(client, keys, () => null, { exposureWaitMs: 300 });
    const aggregates = new RedisAggregates(client, keys);
    const traffic = new Pool(s.trafficUrl, { connections: 4 });
    t.after(() => traffic.close());

    const served = await traffic.request({ path: '/', method: 'GET', headers: { 'x-user-id': 'alice' } });
    assert.equal(await served.body.text(), 'v1');
    await publisher.flush();
    s.proxy.setWeights('shop', { v1: 0, v2: 100 }, 'test');
    assert.equal(s.proxy.route('shop').slots[slotOfKey('alice')], 1, "alice's slot now maps to v2");

    const tally = await router.recordRewards('shop', [{ key: 'alice', value: 4 }, { key: 'nobody', value: 1 }], Date.now());
    assert.deepEqual(tally, { accepted: 1, duplicates: 0, unattributed: 1 });
    // A key whose first request is younger than one flush: found on the retry after the flush interval.
    const bob = await traffic.request({ path: '/', method: 'GET', headers: { 'x-user-id': 'bob' } });
    assert.equal(await bob.body.text(), 'v2');
    assert.deepEqual(await router.recordRewards('shop', [{ key: 'bob', value: 2 }], Date.now()), { accepted: 1, duplicates: 0, unattributed: 0 });
    // Same latest request of alice: not a second conversion.
    assert.deepEqual(await router.recordRewards('shop', [{ key: 'alice', value: 1, id: 'o-1' }], Date.now()), { accepted: 1, duplicates: 0, unattributed: 0 });
    assert.deepEqual(await router.recordRewards('shop', [{ key: 'alice', value: 1, id: 'o-1' }], Date.now()), { accepted: 0, duplicates: 1, unattributed: 0 });

    await publisher.flush();
    const totals = await waitFor('rewards in the totals', async () => {
      const v = await aggregates.versions('shop');
      return v.v1 !== undefined && v.v1.rewards === 2 ? v : null;
    });
    assert.equal(totals.v1!.rewardSum, 5);
    assert.equal(totals.v1!.conversions, 1);
    assert.equal(totals.v2!.rewardSum, 2);
    assert.equal(totals.v2!.conversions, 1);
    assert.ok(totals.v1!.buckets !== undefined, 'rewards by key carry the user bucket');
    assert.equal(totals.v1!.buckets!.rewardSum.reduce((a, b) => a + b, 0), 5);
  });
});

describe('what a reward and a conversion are', () => {
  test('x-sluice-reward: 0 is a reward but no conversion; empty, non-numeric and 1e200 are not rewards', async (t) => {
    const up = await startUpstream('v1', (req, res) => {
      const value = new URL(req.url!, 'http://x').searchParams.get('reward');
      res.writeHead(200, value === null ? {} : { 'x-sluice-reward': value });
      res.end('ok');
    });
    t.after(() => up.close());
    const s = await started(t, [{ name: 'shop', versions: [{ name: 'v1', url: up.url }, { name: 'v2', url: up.url }], weights: { v1: 100, v2: 0 }, sticky: { header: 'x-user-id' } }]);
    for (const reward of ['0', '0', '0', '', 'abc', '1e200', '-1e200', '2']) {
      const r = await s.traffic.request({ path: `/?reward=${encodeURIComponent(reward)}`, method: 'GET', headers: { 'x-user-id': 'carol' } });
      assert.equal(r.headers['x-sluice-reward'], undefined, 'stripped either way');
      await r.body.dump();
    }
    const v1 = (await versionsOf(s.admin)).v1!;
    assert.deepEqual([v1.rewards, v1.rewardSum, v1.conversions], [4, 2, 1]);
    const metrics = await (await s.admin.request({ path: '/metrics', method: 'GET' })).body.text();
    assert.match(metrics, /^sluice_rewards_rejected_total\{route="shop",version="v1"\} 4$/m);
    assert.match(metrics, /^sluice_conversions_total\{route="shop",version="v1"\} 1$/m);
  });

  test('by key: one conversion per request, a header conversion included; bounds and null are refused per event', async (t) => {
    const up = await startUpstream('v1', (req, res) => {
      res.writeHead(200, req.url === '/buy' ? { 'x-sluice-reward': '5' } : {});
      res.end('ok');
    });
    t.after(() => up.close());
    const s = await started(
      t,
      [{ name: 'shop', versions: [{ name: 'v1', url: up.url }, { name: 'v2', url: up.url }], weights: { v1: 100, v2: 0 }, sticky: { header: 'x-user-id' } }],
      { rewards: { maxValue: 1000 } },
    );
    await endedExperiment(s.admin, 'conv');
    const get = async (path: string, user: string) => (await s.traffic.request({ path, method: 'GET', headers: { 'x-user-id': user } })).body.dump();

    await get('/', 'dave');
    const twice = await call(s.admin, 'POST', '/experiments/conv/rewards', [{ key: 'dave', value: 3 }, { key: 'dave', value: 3 }]);
    assert.deepEqual(twice.json, { accepted: 2, duplicates: 0, unattributed: 0 });
    let v1 = (await versionsOf(s.admin)).v1!;
    assert.deepEqual([v1.rewards, v1.rewardSum, v1.conversions], [2, 6, 1], 'the second reward of one request is no second conversion');

    await get('/', 'dave'); // a new request: it may convert again
    await call(s.admin, 'POST', '/experiments/conv/rewards', { key: 'dave', value: 1 });
    await get('/buy', 'erin'); // converted by the upstream's header already
    await call(s.admin, 'POST', '/experiments/conv/rewards', { key: 'erin', value: 1 });
    await call(s.admin, 'POST', '/experiments/conv/rewards', { key: 'erin', value: 0 });
    v1 = (await versionsOf(s.admin)).v1!;
    assert.deepEqual([v1.rewards, v1.rewardSum, v1.conversions], [6, 13, 3]);

    const unknown = await call(s.admin, 'POST', '/experiments/conv/rewards', [{ key: 'never-seen', value: 1 }, { version: 'v2', value: 0 }]);
    assert.equal(unknown.status, 202);
    assert.deepEqual(unknown.json, { accepted: 1, duplicates: 0, unattributed: 1 });

    const bad = await call(s.admin, 'POST', '/experiments/conv/rewards', [{ version: 'v1', value: null }, { version: 'v1', value: 1001 }, { key: 'dave', value: -1e200 }, { version: 'v1' }]);
    assert.equal(bad.status, 400);
    assert.deepEqual(bad.json.error.details.map((d: { path: string }) => d.path), ['[0].value', '[1].value', '[2].value']);
    assert.match(bad.json.error.details[1].message, /1000/);
    v1 = (await versionsOf(s.admin)).v1!;
    assert.equal(v1.rewards, 6, 'a refused batch records nothing');
    for (const x of [v1.rewardSum, v1.rewards]) assert.ok(Number.isFinite(x));
  });
});

describe('exposure log', () => {
  const counters = new RouteCounters();
  const route = { versions: [{}, {}, {}], counters } as unknown as RouteState['route'];
  const gen = (g: number): RouteState => routeState(route, g, {}, new Uint8Array(100));

  test('since and previous resolve a reward posted around a change of version', () => {
    const log = new ExposureLog({ maxKeys: 10, retentionMs: 60_000 });
    const g1 = gen(1);
    log.record('k', 0, g1, true, 1000);
    log.record('k', 0, g1, true, 2000);
    assert.equal(log.attribute('k', 1500, 2500)!.version, 0);
    log.record('k', 1, g1, false, 3000);
    assert.deepEqual([log.attribute('k', 3000, 3001)!.version, log.attribute('k', 3000, 3001)!.latest], [1, true]);
    // Posted before the request that moved the key: its latest request then was v0's.
    assert.deepEqual([log.attribute('k', 2999, 3001)!.version, log.attribute('k', 2999, 3001)!.latest], [0, false]);
    // A key first seen after the reward was posted has no request to credit.
    log.record('new', 2, g1, true, 5000);
    assert.equal(log.attribute('new', 4999, 5001), null);
    assert.equal(log.attribute('unknown', 5000, 5001), null);
  });

  test('new keys count only keys never seen before, chosen by their slot: fresh draws of the hash for the sticky SRM check', () => {
    const log = new ExposureLog({ maxKeys: 10, retentionMs: 60_000 });
    const a = gen(7);
    const b = gen(8);
    log.record('k1', 0, a, true, 1);
    log.record('k1', 0, a, true, 2);
    log.record('k2', 1, a, false, 3); // a rule chose it
    log.record('k1', 1, b, true, 4); // a returning user: its slot is no new draw
    log.record('k3', 2, b, true, 5);
    assert.deepEqual([...a.counts.newKeys], [1, 0, 0]);
    assert.deepEqual([...b.counts.newKeys], [0, 0, 1]);
    // The generation of the key's latest request is kept (Redis mode counts a late reward there).
    assert.equal(log.get('k1', 6)!.generation, 8);
    assert.equal(log.get('k1', 6)!.prevGeneration, 7);
  });

  test('bounded by count (least recently seen first) and by age', () => {
    const log = new ExposureLog({ maxKeys: 3, retentionMs: 1000 });
    const g = gen(9);
    log.record('a', 0, g, true, 10);
    log.record('b', 0, g, true, 20);
    log.record('c', 0, g, true, 30);
    log.record('a', 0, g, true, 40); // a is seen again: b is now the least recently seen
    log.record('d', 0, g, true, 50);
    assert.equal(log.size, 3);
    assert.equal(log.get('b', 60), null);
    for (const k of ['a', 'c', 'd']) assert.ok(log.get(k, 60), k);
    // Age: c (last seen at 30) is gone 1000 ms later, even before the log is full.
    assert.equal(log.get('c', 1030), null);
    log.record('e', 0, g, true, 1045);
    assert.equal(log.size, 2, 'c and a (seen at 40) expired; d and e remain');
    assert.ok(log.get('d', 1045) && log.get('e', 1045));
    // A key too long to be kept is not logged.
    assert.equal(log.record('x'.repeat(300), 0, g, true, 1050), null);
  });
});

describe('rewards settings', () => {
  test('defaults, and a bound that would let squares overflow is refused', async () => {
    const { validateConfig } = await import('../config/config.js');
    const routes = [{ name: 'r', versions: [{ name: 'v1', url: 'http://127.0.0.1:1' }] }];
    assert.deepEqual(validateConfig({ routes }, { env: {} }).rewards, { maxValue: 1e9, exposureKeys: 100_000, exposureRetentionMs: 86_400_000 });
    assert.deepEqual(validateConfig({ routes, rewards: { maxValue: 5, exposureKeys: 10, exposureRetention: '1h' } }, { env: {} }).rewards, { maxValue: 5, exposureKeys: 10, exposureRetentionMs: 3_600_000 });
    assert.throws(
      () => validateConfig({ routes, rewards: { maxValue: 1e200, exposureKeys: 0, bogus: 1 } }, { env: {} }),
      (err: { details: Array<{ path: string }> }) => {
        assert.deepEqual(err.details.map((d) => d.path).sort(), ['rewards.bogus', 'rewards.exposureKeys', 'rewards.maxValue']);
        return true;
      },
    );
  });
});
