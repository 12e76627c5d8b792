/**
 * The experiment stores: the shared contract (store-contract.ts) against the
 * in-memory store and the Redis store on a real redis-server, then what only
 * Redis has — several processes sharing it, and Redis going away.
 */
import assert from 'node:assert/strict';
import { after, describe, it, type TestContext } from 'node:test';
import type { Redis } from 'ioredis';
import { SluiceError } from '../common/errors.js';
import { createRedis } from '../common/redis.js';
import { RedisKeys } from '../common/redis-keys.js';
import { MemoryStore } from '../control/store/memory-store.js';
import { RedisStore } from '../control/store/redis-store.js';
import { waitFor } from './support/helpers.js';
import { redisSkipReason, startRedis, type RedisServer } from './support/redis-server.js';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

// A full collection on demand without starting the test runner with --expose-gc.
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;
import { pendingRecord, storeContract } from './support/store-contract.js';

const skip = redisSkipReason();

storeContract('MemoryStore', async () => ({ store: new MemoryStore(), cleanup: async () => {} }));

// One redis-server for the whole contract; every store gets its own key prefix, so tests never see each other's keys.
let shared: Promise<RedisServer> | null = null;
let stores = 0;
after(async () => {
  const server = await shared?.catch(() => null); // a failed start is reported by the tests
  await server?.stop();
});

storeContract(
  'RedisStore',
  async () => {
    const server = await (shared ??= startRedis());
    const client = createRedis(server.url, { connectionName: 'sluice-test-contract' });
    return {
      store: new RedisStore(client, new RedisKeys(`contract-${++stores}:`)),
      cleanup: async () => {
        client.disconnect();
      },
    };
  },
  { skip },
);

function isUnavailable(err: unknown): boolean {
  assert.ok(err instanceof SluiceError, `expected a SluiceError, got ${String(err)}`);
  assert.equal(err.code, 'SLUICE_STORE_UNAVAILABLE');
  assert.equal(err.status, 503);
  return true;
}

/** A client for the test, disconnected when it ends. */
function client(t: TestContext, url: string, commandTimeoutMs?: number): Redis {
  const c = createRedis(url, commandTimeoutMs === undefined ? {} : { commandTimeoutMs });
  t.after(() => c.disconnect());
  return c;
}

/** Commands held by the client: sent and unanswered, or waiting for a connection. */
function queued(c: Redis): number {
  const offline = (c as unknown as { offlineQueue?: { length: number } }).offlineQueue;
  return (c.commandQueue?.length ?? 0) + (offline?.length ?? 0);
}

async function elapsed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

describe('RedisStore on a real redis-server', { skip }, () => {
  it('connects a lazy client on first use', async (t) => {
    const redis = await startRedis(t);
    if (!redis) return;
    const c = client(t, redis.url);
    assert.equal(c.status, 'wait');
    const store = new RedisStore(c, new RedisKeys());
    assert.equal(await store.get('nothing'), null);
    await store.put(pendingRecord());
    assert.deepEqual(await store.get('checkout-v2'), pendingRecord());
  });

  it('two stores over two clients see each other’s writes; another prefix sees none of them', async (t) => {
    const redis = await startRedis(t);
    if (!redis) return;
    const a = new RedisStore(client(t, redis.url), new RedisKeys('shared:'));
    const b = new RedisStore(client(t, redis.url), new RedisKeys('shared:'));
    const other = new RedisStore(client(t, redis.url), new RedisKeys('other:'));
    await a.put(pendingRecord('one'));
    assert.deepEqual(await b.get('one'), pendingRecord('one'));
    await b.put(pendingRecord('two'));
    assert.deepEqual((await a.list()).map((r) => r.doc.name), ['one', 'two']);
    await b.delete('one');
    assert.equal(await a.get('one'), null);
    assert.deepEqual((await a.list()).map((r) => r.doc.name), ['two']);
    assert.deepEqual(await other.list(), []);
    assert.equal(await other.get('two'), null);
  });

  it('a record that is not JSON is SLUICE_INTERNAL, not a crash', async (t) => {
    const redis = await startRedis(t);
    if (!redis) return;
    const c = client(t, redis.url);
    const keys = new RedisKeys();
    const store = new RedisStore(c, keys);
    await c.connect();
    await c.set(keys.experiment('broken'), '{not json');
    await assert.rejects(store.get('broken'), (err: unknown) => err instanceof SluiceError && err.code === 'SLUICE_INTERNAL');
  });

  it('Redis never reachable: every method rejects quickly with SLUICE_STORE_UNAVAILABLE', async (t) => {
    const redis = await startRedis(t);
    if (!redis) return;
    await redis.stop();
    const store = new RedisStore(client(t, redis.url), new RedisKeys());
    for (const call of [() => store.get('x'), () => store.put(pendingRecord()), () => store.list(), () => store.delete('x')]) {
      const ms = await elapsed(() => assert.rejects(call(), isUnavailable));
      assert.ok(ms < 2000, `rejected after ${ms.toFixed(0)} ms`);
    }
  });

  it('Redis killed: calls fail fast without queueing, the store works again after a restart', async (t) => {
    const redis = await startRedis(t);
    if (!redis) return;
    const c = client(t, redis.url);
    const store = new RedisStore(c, new RedisKeys());
    await store.put(pendingRecord());
    assert.equal(c.status, 'ready');

    await redis.kill();

    // Each method, whether or not the client has noticed yet.
    for (const call of [() => store.get('checkout-v2'), () => store.put(pendingRecord()), () => store.list(), () => store.delete('x')]) {
      const ms = await elapsed(() => assert.rejects(call(), isUnavailable));
      assert.ok(ms < 2000, `rejected after ${ms.toFixed(0)} ms`);
    }

    // Many calls while it is down: none is held by the client (no offline queue), all fail.
    // Heap measured after a full collection: what is retained, not the garbage of 5,000 rejected
    // calls that the runtime has yet to collect (Node 24 collects later than Node 20).
    collectGarbage();
    const heapBefore = process.memoryUsage().heapUsed;
    for (let round = 0; round < 10; round++) {
      const calls = Array.from({ length: 500 }, (_, i) => (i % 2 === 0 ? store.get(`x${i}`) : store.put(pendingRecord(`x${i}`))));
      const settled = Promise.allSettled(calls);
      await new Promise((r) => setImmediate(r)); // every call has reached the client by now
      assert.equal(queued(c), 0, 'commands queued while Redis is down');
      const results = await settled;
      for (const r of results) {
        assert.equal(r.status, 'rejected');
        isUnavailable(r.reason);
      }
    }
    assert.equal(queued(c), 0);
    collectGarbage();
    const growthMb = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20;
    assert.ok(growthMb < 20, `heap grew ${growthMb.toFixed(1)} MB during the outage`);

    await redis.restart();
    // Redis comes back empty (no persistence); the client reconnects on its own.
    await waitFor('the store to answer again', async () => (await store.get('checkout-v2')) === null, 10_000, 50);
    await store.put(pendingRecord());
    assert.deepEqual(await store.get('checkout-v2'), pendingRecord());
    assert.deepEqual((await store.list()).map((r) => r.doc.name), ['checkout-v2']);
  });
});

describe('RedisStore with a fencing token', { skip }, () => {
  it('writes only while its epoch is the current one; a stale leader changes nothing', async (t) => {
    const server = await startRedis(t);
    if (!server) return;
    const client = createRedis(server.url);
    t.after(() => client.disconnect());
    await client.connect();
    const keys = new RedisKeys('fenced:');
    let mine: number | null = 7;
    const store = new RedisStore(client, keys, () => mine);
    await client.set(keys.leaderEpoch(), '7');
    const record = pendingRecord('fenced-exp');
    await store.put(record);
    assert.equal((await store.get('fenced-exp'))?.doc.name, 'fenced-exp');

    // Another replica takes over: the epoch moves on, this store's token is stale.
    await client.set(keys.leaderEpoch(), '8');
    await assert.rejects(store.put({ ...record, status: { ...record.status, reason: 'stale write' } }), (err: unknown) => err instanceof SluiceError && err.code === 'SLUICE_FENCED');
    await assert.rejects(store.delete('fenced-exp'), (err: unknown) => err instanceof SluiceError && err.code === 'SLUICE_FENCED');
    assert.equal((await store.get('fenced-exp'))?.status.reason, record.status.reason);

    mine = null; // not the leader at all
    await assert.rejects(store.put(record), (err: unknown) => err instanceof SluiceError && err.code === 'SLUICE_FENCED');
  });
});
