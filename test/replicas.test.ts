/**
 * Many proxy replicas, one control plane, a real redis-server: the control's
 * per-version totals are exactly what the replicas served, whatever happens
 * to the flushes in between.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import type { RunningSluice } from '../cli/run-sluice.js';
import { silentLogger } from '../common/logger.js';
import { createRedis } from '../common/redis.js';
import { RedisKeys } from '../common/redis-keys.js';
import { RedisAggregates } from '../control/redis-aggregates.js';
import { StatsPublisher } from '../proxy/stats-publisher.js';
import { inParallel, Pool, startSluice, startUpstream, waitFor, type Upstream } from './support/helpers.js';
import { startRedis } from './support/redis-server.js';

async function replicas(t: TestContext, n: number, ups: Upstream[]): Promise<RunningSluice[]> {
  const all = await Promise.all(
    Array.from({ length: n }, () =>
      startSluice({
        routes: [{ name: 'shop', versions: ups.map((u, i) => ({ name: `v${i + 1}`, url: u.url })), weights: { v1: 90, v2: 10 } }],
      }),
    ),
  );
  t.after(() => Promise.all(all.map((s) => s.close())));
  return all;
}

async function connected(t: TestContext, url: string) {
  const client = createRedis(url);
  t.after(() => client.disconnect());
  await client.connect();
  return client;
}

test('3 proxy replicas, 30,000 requests: the control plane sums them exactly, per version', async (t) => {
  const redis = await startRedis(t);
  if (redis === null) return;
  const ups = await Promise.all(['v1', 'v2'].map((n) => startUpstream(n, undefined, { record: false })));
  t.after(() => Promise.all(ups.map((u) => u.close())));
  const keys = new RedisKeys(`test${process.pid}:`);
  const proxies = await replicas(t, 3, ups);
  const publishers = await Promise.all(
    proxies.map(async (p, i) => {
      const pub = new StatsPublisher({ proxy: p.proxy, redis: await connected(t, redis.url), keys, log: silentLogger(), intervalMs: 50, replicaId: `r${i}` });
      pub.start();
      t.after(() => pub.stop());
      return pub;
    }),
  );
  const served: Record<string, number> = { v1: 0, v2: 0 };
  const pools = proxies.map((p) => new Pool(p.trafficUrl, { connections: 16 }));
  t.after(() => Promise.all(pools.map((p) => p.close())));
  await inParallel(30_000, 48, async (i) => {
    const r = await pools[i % 3]!.request({ path: '/', method: 'GET' });
    served[await r.body.text()]!++;
  });
  await Promise.all(publishers.map((p) => p.flush()));

  const control = new RedisAggregates(await connected(t, redis.url), keys);
  const totals = await control.versions('shop');
  assert.equal(totals.v1!.requests + totals.v2!.requests, 30_000);
  assert.equal(totals.v1!.requests, served.v1);
  assert.equal(totals.v2!.requests, served.v2);
  assert.equal(totals.v1!.statusCounts['200'], served.v1);
  // The merged latency sketch holds every request too.
  assert.equal(totals.v1!.latencySketch.counts.reduce((a, b) => a + b, 0), served.v1);
  assert.deepEqual((await control.replicas('shop')).sort(), ['r0', 'r1', 'r2']);
});

/**
 * A TCP relay between a client and Redis that can swallow Redis's replies:
 * the commands arrive and are carried out, the client never hears back, and
 * the connection is then cut — a flush whose reply is lost.
 */
async function lossyRelay(t: TestContext, redisPort: number) {
  const state = { dropReplies: false, sockets: new Set<net.Socket>() };
  const server = net.createServer((client) => {
    const upstream = net.connect(redisPort, '127.0.0.1');
    state.sockets.add(client);
    client.on('close', () => state.sockets.delete(client));
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.pipe(upstream);
    upstream.on('data', (chunk) => {
      if (state.dropReplies) {
        // The write has reached Redis; its acknowledgement is lost with the connection.
        setTimeout(() => client.destroy(), 20);
        return;
      }
      client.write(chunk);
    });
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => {
    for (const s of state.sockets) s.destroy();
    server.close(() => r());
  }));
  return { port: (server.address() as net.AddressInfo).port, state };
}

test('a flush whose reply is lost is sent again and counted once', async (t) => {
  const redis = await startRedis(t);
  if (redis === null) return;
  const up = await startUpstream('v1', undefined, { record: false });
  t.after(() => up.close());
  const keys = new RedisKeys(`test${process.pid}lossy:`);
  const [proxy] = await replicas(t, 1, [up, up]);
  const relay = await lossyRelay(t, redis.port);
  const client = await connected(t, `redis://127.0.0.1:${relay.port}`);
  const pub = new StatsPublisher({ proxy: proxy!.proxy, redis: client, keys, log: silentLogger(), replicaId: 'lossy' });
  const traffic = new Pool(proxy!.trafficUrl, { connections: 8 });
  t.after(() => traffic.close());
  const send = (n: number) => inParallel(n, 8, async () => void (await (await traffic.request({ path: '/', method: 'GET' })).body.dump()));

  await send(500);
  relay.state.dropReplies = true;
  await pub.flush(); // written, unacknowledged: the publisher believes it failed
  assert.equal(pub.up, false);
  const control = new RedisAggregates(await connected(t, redis.url), keys);
  const afterLost = await control.versions('shop');
  const total = (s: typeof afterLost) => Object.values(s).reduce((a, v) => a + v.requests, 0);
  assert.equal(total(afterLost), 500, 'the write itself reached Redis');

  relay.state.dropReplies = false;
  await send(250);
  // The client reconnects on its own; the next flush re-sends the absolute totals.
  await waitFor('a successful flush after reconnecting', async () => {
    await pub.flush();
    return pub.up;
  });
  assert.equal(total(await control.versions('shop')), 750, 'counted once: re-sending absolute snapshots cannot double count');
});
