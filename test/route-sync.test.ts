/**
 * Shared routing state against a real redis-server: one control-plane writer
 * (RedisRouter), three proxy replicas following it (RouteSync). Weights reach
 * every replica fast (pub/sub), also one whose subscription was cut (poll),
 * older generations never win, a writer with a stale fencing token changes
 * nothing, and replicas serve through a Redis outage and re-seed an empty
 * Redis with the state they serve.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import type { RunningSluice } from '../cli/run-sluice.js';
import { SluiceError } from '../common/errors.js';
import { pino } from 'pino';
import { seededRandom } from '../common/random.js';
import { createRedis } from '../common/redis.js';
import { RedisKeys } from '../common/redis-keys.js';
import { RedisRouter } from '../control/redis-router.js';
import type { ProxyServer } from '../proxy/proxy-server.js';
import { parseRouteState, type StoredRouteState } from '../common/route-state.js';
import { RouteSync } from '../proxy/route-sync.js';
import { slotOfKey } from '../common/slots.js';
import { Pool, startSluice, startUpstream, waitFor } from './support/helpers.js';
import { startRedis } from './support/redis-server.js';

const ROUTE = 'shop';

async function client(t: TestContext, url: string, connect = true) {
  const c = createRedis(url);
  t.after(() => c.disconnect());
  if (connect) await c.connect();
  return c;
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

/** Random integer weights over three versions summing to 100. */
function randomWeights(rnd: () => number): Record<string, number> {
  const a = Math.floor(rnd() * 101);
  const b = Math.floor(rnd() * (101 - a));
  return { v1: a, v2: b, v3: 100 - a - b };
}

function layout(p: ProxyServer) {
  const s = p.route(ROUTE);
  return { generation: s.generation, weights: { ...s.weights }, slots: Array.from(s.slots), versions: s.route.versions.map((v) => v.name) };
}

/** A logger whose lines are kept, parsed. */
function captureLog() {
  const lines: Array<{ level: number; msg: string }> = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { log, lines };
}

function isFenced(err: unknown): boolean {
  return err instanceof SluiceError && err.code === 'SLUICE_FENCED';
}

test('routing state shared through Redis: propagation, convergence, generations, fencing, outages', async (t) => {
  const redis = await startRedis(t);
  if (redis === null) return;
  const keys = new RedisKeys(`test${process.pid}rs:`);
  const ups = await Promise.all(['v1', 'v2', 'v3', 'v4'].map((n) => startUpstream(n, undefined, { record: false })));
  t.after(() => Promise.all(ups.map((u) => u.close())));
  const config = {
    routes: [{ name: ROUTE, versions: ups.slice(0, 3).map((u, i) => ({ name: `v${i + 1}`, url: u.url })), weights: { v1: 80, v2: 10, v3: 10 } }],
  };
  const sluices: RunningSluice[] = await Promise.all([0, 1, 2].map(() => startSluice(config)));
  t.after(() => Promise.all(sluices.map((s) => s.close())));
  const proxies = sluices.map((s) => s.proxy);

  // Every generation each replica applied, with the time it did.
  const appliedAt = proxies.map(() => new Map<number, number>());
  proxies.forEach((p, i) => p.onWeightsChange((c) => appliedAt[i]!.set(c.generation, performance.now())));

  const logs = proxies.map(() => captureLog());
  const subscribers = await Promise.all(proxies.map(() => client(t, redis.url, false)));
  const syncs = await Promise.all(
    proxies.map(async (proxy, i) => {
      const sync = new RouteSync({ proxy, redis: await client(t, redis.url, false), subscriber: subscribers[i]!, keys, log: logs[i]!.log, pollMs: 200 });
      t.after(() => sync.stop());
      return sync;
    }),
  );
  await Promise.all(syncs.map((s) => s.start()));

  const admin = await client(t, redis.url);
  await admin.set(keys.leaderEpoch(), '1');
  const router = new RedisRouter(await client(t, redis.url), keys, () => 1);

  const stored = async (): Promise<StoredRouteState | null> => {
    const json = await admin.get(keys.route(ROUTE));
    return json === null ? null : parseRouteState(json);
  };

  await t.test('seeding: the first replica stores its state, identical for all', async () => {
    const s = await stored();
    assert.ok(s);
    assert.equal(s.generation, 1);
    assert.deepEqual(s.weights, { v1: 80, v2: 10, v3: 10 });
    assert.deepEqual(s.slots, layout(proxies[0]!).slots);
    assert.deepEqual(await admin.smembers(keys.routes()), [ROUTE]);
    await router.refresh();
    const view = router.route(ROUTE)!;
    assert.deepEqual({ versions: view.versions, weights: view.weights }, { versions: ['v1', 'v2', 'v3'], weights: { v1: 80, v2: 10, v3: 10 } });
    // The version URLs come along (readiness tasks probe them).
    assert.deepEqual(Object.keys(view.urls), ['v1', 'v2', 'v3']);
    for (const url of Object.values(view.urls)) assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
  });

  /** Writes new weights and resolves with the propagation time to the last of `replicas`. */
  const change = async (weights: Record<string, number>, replicas: readonly number[]): Promise<number> => {
    const t0 = performance.now();
    await router.setWeights(ROUTE, weights, 'test');
    const generation = router.generation(ROUTE)!;
    const times = await waitFor(
      `generation ${generation} on replicas ${replicas.join(',')}`,
      () => {
        const ts = replicas.map((i) => appliedAt[i]!.get(generation));
        return ts.every((x) => x !== undefined) ? (ts as number[]) : null;
      },
      5_000,
      1,
    );
    return Math.max(...times) - t0;
  };

  const assertConverged = (replicas: readonly number[]) => {
    const want = router.state(ROUTE)!;
    for (const i of replicas) {
      const got = layout(proxies[i]!);
      assert.equal(got.generation, want.generation, `replica ${i} generation`);
      assert.deepEqual(got.weights, want.weights, `replica ${i} weights`);
      assert.deepEqual(got.slots, want.slots, `replica ${i} slots`);
      assert.equal(syncs[i]!.generation(ROUTE), want.generation);
    }
  };

  const rnd = seededRandom(4);

  await t.test('(a) 100 weight changes reach all 3 replicas; p99 propagation < 100 ms on loopback', async (st) => {
    const samples: number[] = [];
    for (let n = 0; n < 100; n++) samples.push(await change(randomWeights(rnd), [0, 1, 2]));
    assertConverged([0, 1, 2]);
    // Sticky keys land on the same version everywhere, the writer's view included.
    for (let k = 0; k < 200; k++) {
      const key = `user-${k}`;
      for (const p of proxies) {
        const s = p.route(ROUTE);
        assert.equal(s.route.versions[s.slots[slotOfKey(key)]!]!.name, router.versionOfKey(ROUTE, key));
      }
    }
    const sorted = [...samples].sort((a, b) => a - b);
    const p50 = percentile(sorted, 0.5);
    const p99 = percentile(sorted, 0.99);
    const line = `weight propagation to the last of 3 replicas over 100 changes: p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, max ${sorted.at(-1)!.toFixed(2)} ms`;
    st.diagnostic(line);
    console.log(line);
    assert.ok(p99 < 100, line);
    for (const i of [0, 1, 2]) assert.ok(syncs[i]!.lastAppliedAt(ROUTE)! > Date.now() - 60_000);
  });

  await t.test('(b) a replica whose subscriber is disconnected during 20 changes converges by polling', async (st) => {
    subscribers[2]!.disconnect();
    await waitFor('subscriber closed', () => subscribers[2]!.status === 'end');
    const before = appliedAt[2]!.size;
    for (let n = 0; n < 20; n++) await change(randomWeights(rnd), [0, 1]);
    const last = router.generation(ROUTE)!;
    const t0 = performance.now();
    await waitFor(`replica 2 at generation ${last}`, () => proxies[2]!.route(ROUTE).generation === last, 3_000);
    assert.ok(appliedAt[2]!.size - before < 20, 'the disconnected replica did miss changes');
    st.diagnostic(`disconnected replica: applied ${appliedAt[2]!.size - before} of 20 generations by polling, last one ${(performance.now() - t0).toFixed(0)} ms after the final write`);
    assertConverged([0, 1, 2]);
    // Reconnected, it follows by pub/sub again.
    await subscribers[2]!.connect();
    await waitFor('resubscribed', async () => (await admin.pubsub('NUMSUB', keys.routesChanged()))[1] === 3);
    const ms = await change(randomWeights(rnd), [0, 1, 2]);
    assert.ok(ms < 150, `after reconnecting, propagation took ${ms} ms`);
    assertConverged([0, 1, 2]);
  });

  await t.test('(c) a stale generation never overwrites a newer one', async () => {
    const g = router.generation(ROUTE)!;
    const base = router.state(ROUTE)!;
    const at = (generation: number, weights: Record<string, number>): StoredRouteState => ({
      ...base,
      generation,
      weights,
      slots: Array.from({ length: 100 }, (_, i) => (i < weights.v1! ? 0 : i < weights.v1! + weights.v2! ? 1 : 2)),
    });
    // The proxy itself: generation g+1 after g+3 is ignored.
    const scratch = await startSluice(config);
    t.after(() => scratch.close());
    assert.equal(scratch.proxy.applyRouteState(ROUTE, at(g + 3, { v1: 0, v2: 0, v3: 100 })), true);
    assert.equal(scratch.proxy.applyRouteState(ROUTE, at(g + 1, { v1: 100, v2: 0, v3: 0 })), false);
    assert.equal(scratch.proxy.route(ROUTE).generation, g + 3);
    assert.deepEqual(scratch.proxy.route(ROUTE).weights, { v1: 0, v2: 0, v3: 100 });

    // Through Redis: a newer state is followed, then an older one written behind it is not.
    const newer = at(g + 3, { v1: 0, v2: 0, v3: 100 });
    await admin.set(keys.route(ROUTE), JSON.stringify(newer));
    await admin.publish(keys.routesChanged(), ROUTE);
    await waitFor('g+3 everywhere', () => proxies.every((p) => p.route(ROUTE).generation === g + 3));
    await admin.set(keys.route(ROUTE), JSON.stringify(at(g + 1, { v1: 100, v2: 0, v3: 0 })));
    await admin.publish(keys.routesChanged(), ROUTE);
    await Promise.all(syncs.map((s) => s.poll()));
    for (const p of proxies) {
      assert.equal(p.route(ROUTE).generation, g + 3);
      assert.deepEqual(p.route(ROUTE).weights, { v1: 0, v2: 0, v3: 100 });
    }
    // …and the replicas put the newer state back: Redis does not stay behind them.
    await waitFor('stored state repaired', async () => (await stored())?.generation === g + 3);
    assert.deepEqual((await stored())!.slots, newer.slots);
    assert.ok(logs.some((l) => l.lines.some((x) => x.level === 40 && x.msg.includes('older routing state'))));
    // The writer numbers its next state above it.
    await change({ v1: 50, v2: 25, v3: 25 }, [0, 1, 2]);
    assert.equal(router.generation(ROUTE), g + 4);
    assertConverged([0, 1, 2]);
  });

  await t.test('(d) a write with a stale or missing fencing token is rejected and changes nothing', async () => {
    const before = await admin.get(keys.route(ROUTE));
    const g = router.generation(ROUTE)!;
    const stale = new RedisRouter(await client(t, redis.url), keys, () => 0);
    const follower = new RedisRouter(await client(t, redis.url), keys, () => null);
    await assert.rejects(stale.setWeights(ROUTE, { v1: 0, v2: 100, v3: 0 }, 'stale'), isFenced);
    await assert.rejects(stale.addVersion(ROUTE, 'v4', ups[3]!.url), isFenced);
    await assert.rejects(follower.setWeights(ROUTE, { v1: 0, v2: 100, v3: 0 }, 'follower'), isFenced);
    // Invalid weights are refused before anything is written.
    await assert.rejects(router.setWeights(ROUTE, { v1: 50, v2: 40, v3: 5 }, 'test'), (e: unknown) => e instanceof SluiceError && e.code === 'SLUICE_WEIGHTS_INVALID');
    await assert.rejects(router.setWeights(ROUTE, { v1: 50, v9: 50 }, 'test'), (e: unknown) => e instanceof SluiceError && e.code === 'SLUICE_WEIGHTS_INVALID');
    // Two polls on every replica (each reads Redis after the refused writes), then nothing may have moved.
    const polled = syncs.map((s) => s.polls);
    await waitFor('two polls on every replica', () => syncs.every((s, i) => s.polls >= polled[i]! + 2));
    assert.equal(await admin.get(keys.route(ROUTE)), before);
    for (const p of proxies) assert.equal(p.route(ROUTE).generation, g);
  });

  await t.test('a version added by the writer reaches every replica with weight 0, then takes traffic', async () => {
    await router.addVersion(ROUTE, 'v4', ups[3]!.url);
    const g = router.generation(ROUTE)!;
    await waitFor('v4 on every replica', () => proxies.every((p) => p.route(ROUTE).generation === g && p.route(ROUTE).route.byName.has('v4')));
    for (const p of proxies) assert.equal(p.route(ROUTE).weights.v4, 0);
    assertConverged([0, 1, 2]);
    await change({ v1: 0, v2: 0, v3: 0, v4: 100 }, [0, 1, 2]);
    assertConverged([0, 1, 2]);
    for (const s of sluices) {
      const r = await fetch(`${s.trafficUrl}/`);
      assert.equal(await r.text(), 'v4');
    }
    // Rewards posted to the control plane are kept per version.
    const one = (value: number, id?: string) => router.recordRewards(ROUTE, [{ version: 'v4', value, id }], Date.now());
    assert.deepEqual(await one(2), { accepted: 1, duplicates: 0, unattributed: 0 });
    assert.deepEqual(await one(3), { accepted: 1, duplicates: 0, unattributed: 0 });
    // An event with an id counts once: a retry after a lost reply is not a second conversion.
    assert.deepEqual(await one(0.5, 'order-17'), { accepted: 1, duplicates: 0, unattributed: 0 });
    assert.deepEqual(await one(0.5, 'order-17'), { accepted: 0, duplicates: 1, unattributed: 0 });
    // Kept per version, and per routing generation in force (a reward by version has no exposure of its own).
    const inForce = `v4:g${router.generation(ROUTE)}:`;
    assert.deepEqual(await admin.hgetall(keys.rewards(ROUTE)), {
      'v4:count': '3', 'v4:sum': '5.5', 'v4:sumsq': '13.25', 'v4:conv': '3',
      [`${inForce}count`]: '3', [`${inForce}sum`]: '5.5', [`${inForce}sumsq`]: '13.25', [`${inForce}conv`]: '3',
    });
    const ttl = await admin.pttl(keys.rewardId(ROUTE, 'order-17'));
    assert.ok(ttl > 23 * 3600_000 && ttl <= 24 * 3600_000, `id remembered for a day (pttl ${ttl})`);
  });

  await t.test('(e) Redis killed: replicas serve with their last weights, then re-seed the empty Redis and follow again', async () => {
    await change({ v1: 0, v2: 100, v3: 0, v4: 0 }, [0, 1, 2]);
    const last = layout(proxies[0]!);
    await redis.kill();
    const pools = sluices.map((s) => new Pool(s.trafficUrl, { connections: 4 }));
    t.after(() => Promise.all(pools.map((p) => p.close())));
    const serve = async () => {
      for (const pool of pools) {
        for (let n = 0; n < 5; n++) {
          const r = await pool.request({ path: '/', method: 'GET' });
          assert.equal(r.statusCode, 200);
          assert.equal(await r.body.text(), 'v2');
        }
      }
    };
    await serve();
    // Several failed polls on every replica.
    const polled = syncs.map((s) => s.polls);
    await waitFor('three failed polls on every replica', () => syncs.every((s, i) => s.polls >= polled[i]! + 3), 10_000);
    await serve();
    for (const s of syncs) assert.equal(s.up, false);
    // Logged, but not once per failed poll (~4 polls and a subscriber reconnect loop so far).
    const warned = logs.map((l) => l.lines.filter((x) => x.level === 40 && x.msg.includes('unreachable')).length);
    assert.ok(warned.every((n) => n >= 1 && n <= 2), `warnings during the outage: ${warned.join(', ')}`);
    for (const p of proxies) assert.deepEqual(layout(p), last);
    await assert.rejects(router.setWeights(ROUTE, { v1: 100, v2: 0, v3: 0, v4: 0 }, 'test'), (e: unknown) => e instanceof SluiceError && e.code === 'SLUICE_STORE_UNAVAILABLE');

    await redis.restart(); // empty
    await waitFor(
      're-seeded with the generation the replicas serve',
      async () => {
        const s = await stored();
        return s !== null && s.generation === last.generation && (await admin.sismember(keys.routes(), ROUTE)) === 1;
      },
      10_000,
      50,
    );
    const s = (await stored())!;
    assert.deepEqual(s.weights, last.weights);
    assert.deepEqual(s.slots, last.slots);
    assert.deepEqual(
      s.versions.map((v) => v.name),
      last.versions,
    );
    await waitFor('replicas report the store up', () => syncs.every((x) => x.up), 10_000);
    // The leader's epoch went with the data; the new acquisition sets it again.
    await admin.set(keys.leaderEpoch(), '1');
    await waitFor('all subscribed again', async () => (await admin.pubsub('NUMSUB', keys.routesChanged()))[1] === 3, 10_000);
    const ms = await change({ v1: 10, v2: 20, v3: 30, v4: 40 }, [0, 1, 2]);
    assert.equal(router.generation(ROUTE), last.generation + 1);
    assert.ok(ms < 150, `after the restart, propagation took ${ms} ms`);
    assertConverged([0, 1, 2]);
  });
});
