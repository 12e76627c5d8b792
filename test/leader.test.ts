/**
 * Control-plane leader election against a real redis-server: one leader at a
 * time, failover within ttl + one renew interval, a paused former leader
 * fenced by its stale epoch, step-down while Redis is away, and epochs that
 * keep growing across an empty Redis restart.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import type { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { SluiceError } from '../common/errors.js';
import { silentLogger } from '../common/logger.js';
import { createRedis } from '../common/redis.js';
import { fencedExec } from '../common/redis-fence.js';
import { RedisKeys } from '../common/redis-keys.js';
import { LeaderElection } from '../control/leader.js';
import { waitFor } from './support/helpers.js';
import { startRedis } from './support/redis-server.js';

const TTL = 600;
const RENEW = 200;
/** Scheduling slack on a shared 2-core machine. */
const MARGIN = 400;

let counter = 0;

function keysFor(): RedisKeys {
  return new RedisKeys(`leadertest${process.pid}-${++counter}:`);
}

async function client(t: TestContext, url: string): Promise<Redis> {
  const c = createRedis(url, { commandTimeoutMs: 300 });
  t.after(() => c.disconnect());
  await c.connect();
  return c;
}

interface Elector {
  readonly election: LeaderElection;
  readonly redis: Redis;
  /** Holds the election's Redis commands unsent, like a GC pause or SIGSTOP (its lease is not renewed, nothing is acquired). */
  pause(): void;
  /** Sends the held commands, and the next ones, at once. */
  resume(): void;
  /** How many of the election's commands Redis has answered (its renewals, acquisition attempts and fenced writes). */
  answered(): number;
  /** Every epoch this elector was handed, in order. */
  readonly epochs: number[];
  /** performance.now() of every change, with its direction. */
  readonly changes: { leader: boolean; at: number }[];
}

/**
 * The election's port to Redis with a pause injected from outside the product
 * (it has no test hook): while paused, `eval` (every command the election
 * sends) waits unsent until resume.
 */
function pausable(redis: Redis): { readonly redis: Redis; pause(): void; resume(): void; answered(): number } {
  let gate: { readonly opened: Promise<void>; readonly open: () => void } | null = null;
  let answered = 0;
  const held = new Proxy(redis, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      if (prop !== 'eval') return value.bind(target);
      return async (...args: unknown[]) => {
        while (gate !== null) await gate.opened;
        try {
          return await value.apply(target, args);
        } finally {
          answered++;
        }
      };
    },
  });
  return {
    redis: held,
    answered: () => answered,
    pause() {
      if (gate !== null) return;
      let open!: () => void;
      const opened = new Promise<void>((r) => (open = r));
      gate = { opened, open };
    },
    resume() {
      const g = gate;
      gate = null;
      g?.open();
    },
  };
}

async function elector(t: TestContext, url: string, keys: RedisKeys, id: string, opts: { ttlMs?: number; renewEveryMs?: number; registry?: Registry } = {}): Promise<Elector> {
  const redis = await client(t, url);
  const port = pausable(redis);
  const election = new LeaderElection(port.redis, keys, { id, ttlMs: opts.ttlMs ?? TTL, renewEveryMs: opts.renewEveryMs ?? RENEW, log: silentLogger(), ...(opts.registry ? { registry: opts.registry } : {}) });
  const e: Elector = { election, redis, pause: port.pause, resume: port.resume, answered: port.answered, epochs: [], changes: [] };
  election.onChange((leader, epoch) => {
    e.changes.push({ leader, at: performance.now() });
    if (leader) e.epochs.push(epoch!);
  });
  t.after(() => {
    // A held command would keep stop() waiting for it.
    port.resume();
    return election.stop();
  });
  election.start();
  return e;
}

function leaders(electors: readonly Elector[]): Elector[] {
  return electors.filter((e) => e.election.isLeader);
}

async function oneLeader(electors: readonly Elector[], timeoutMs: number): Promise<Elector> {
  return waitFor('exactly one leader', () => {
    const l = leaders(electors);
    return l.length === 1 ? l[0]! : null;
  }, timeoutMs, 5);
}

const isFenced = (err: unknown): boolean => err instanceof SluiceError && err.code === 'SLUICE_FENCED';

test('two electors: exactly one leader at a time', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const keys = keysFor();
  const registries = [new Registry(), new Registry()];
  const all = [await elector(t, redis.url, keys, 'a', { registry: registries[0]! }), await elector(t, redis.url, keys, 'b', { registry: registries[1]! })];
  const first = await oneLeader(all, 2000);

  const end = performance.now() + 2000;
  let samples = 0;
  while (performance.now() < end) {
    assert.equal(leaders(all).length, 1, 'exactly one leader in every sample');
    samples++;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.ok(samples > 50);
  // Nobody paused: the first leader kept renewing, and the lease in Redis names it.
  assert.equal(leaders(all)[0], first);
  assert.equal(first.epochs.length, 1);
  assert.equal(await first.redis.get(keys.leader()), first.election.id);
  assert.equal(await first.redis.get(keys.leaderEpoch()), String(first.election.epoch));
  const gauge = async (r: Registry) => (await r.getSingleMetric('sluice_leader')!.get()).values[0]!.value;
  const [ga, gb] = [await gauge(registries[0]!), await gauge(registries[1]!)];
  assert.deepEqual(first.election.id === 'a' ? [ga, gb] : [gb, ga], [1, 0]);
});

test('a paused leader is replaced within ttl + renew interval, and its stale epoch is fenced', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const keys = keysFor();
  const all = [await elector(t, redis.url, keys, 'a'), await elector(t, redis.url, keys, 'b')];
  const old = await oneLeader(all, 2000);
  const other = all.find((e) => e !== old)!;
  const staleEpoch = old.election.epoch!;
  const target = 'sluice-test:decision';
  await old.election.fenced([['SET', target, 'old']]);

  const pausedAt = performance.now();
  old.pause();
  await waitFor('the other elector to lead', () => other.election.isLeader, TTL + RENEW + MARGIN, 5);
  const failover = performance.now() - pausedAt;
  assert.ok(failover <= TTL + RENEW + MARGIN, `failover took ${failover.toFixed(0)} ms`);
  const newEpoch = other.election.epoch!;
  assert.ok(newEpoch > staleEpoch, `new epoch ${newEpoch} > ${staleEpoch}`);

  // The paused one's write with its stale token, straight to Redis: the Lua fence rejects it.
  await assert.rejects(fencedExec(old.redis, keys.leaderEpoch(), staleEpoch, [['SET', target, 'old-late']]), (err: unknown) => isFenced(err) && /epoch is/.test((err as Error).message));
  await other.election.fenced([['SET', target, 'new']]);

  old.resume();
  await waitFor('the resumed one to know it is not leader', () => !old.election.isLeader && old.changes.at(-1)?.leader === false, 1000, 5);
  assert.equal(old.election.epoch, null);
  await assert.rejects(old.election.fenced([['SET', target, 'old-again']]), isFenced);
  // It stays a follower: the new leader keeps renewing. Two more rounds answered on each elector (renewals, attempts).
  const answered = all.map((e) => e.answered());
  await waitFor('two more rounds on each elector', () => all.every((e, i) => e.answered() >= answered[i]! + 2), 10_000, 5);
  assert.deepEqual(leaders(all), [other]);
  assert.equal(other.election.epoch, newEpoch);
  assert.equal(await other.redis.get(target), 'new');
});

test('stop(true) releases the lease: the other takes over well under the ttl', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const keys = keysFor();
  const ttl = 3000;
  const every = 100;
  const all = [await elector(t, redis.url, keys, 'a', { ttlMs: ttl, renewEveryMs: every }), await elector(t, redis.url, keys, 'b', { ttlMs: ttl, renewEveryMs: every })];
  const old = await oneLeader(all, 2000);
  const other = all.find((e) => e !== old)!;
  const before = old.election.epoch!;

  const stoppedAt = performance.now();
  await old.election.stop(true);
  assert.equal(old.election.isLeader, false);
  await waitFor('the other elector to lead', () => other.election.isLeader, ttl / 3, 5);
  const takeover = performance.now() - stoppedAt;
  assert.ok(takeover < ttl / 3, `takeover took ${takeover.toFixed(0)} ms`);
  assert.ok(other.election.epoch! > before);
  assert.equal(await other.redis.get(keys.leader()), other.election.id);
});

test('Redis killed: the leader steps down within the ttl; restarted empty: a new leader with a higher epoch', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const keys = keysFor();
  const all = [await elector(t, redis.url, keys, 'a'), await elector(t, redis.url, keys, 'b')];
  const leader = await oneLeader(all, 2000);
  // One failover first, so there is more than one epoch to beat.
  leader.pause();
  await waitFor('a failover', () => all.find((e) => e !== leader)!.election.isLeader, TTL + RENEW + MARGIN, 5);
  leader.resume();
  const current = leaders(all)[0]!;
  const seen = () => all.flatMap((e) => e.epochs);
  const highest = Math.max(...seen());
  assert.equal(seen().length, 2);

  const killedAt = performance.now();
  await redis.kill();
  await waitFor('the leader to step down', () => !current.election.isLeader && current.changes.at(-1)?.leader === false, TTL + MARGIN, 5);
  const stepDown = current.changes.at(-1)!.at - killedAt;
  assert.ok(stepDown <= TTL + 200, `stepped down ${stepDown.toFixed(0)} ms after the kill`);
  assert.deepEqual(leaders(all), []);

  await redis.restart();
  // ioredis reconnects with a backoff capped at 2 s.
  const next = await oneLeader(all, 5000);
  const epoch = next.election.epoch!;
  assert.ok(epoch > highest, `epoch after the empty restart ${epoch} > every earlier epoch (${highest})`);
  assert.equal(await next.redis.get(keys.leaderEpoch()), String(epoch));
  // An epoch handed out before the restart no longer passes the fence.
  await assert.rejects(fencedExec(next.redis, keys.leaderEpoch(), highest, [['SET', 'sluice-test:x', 'stale']]), isFenced);
  await next.election.fenced([['SET', 'sluice-test:x', 'fresh']]);
  assert.equal(await next.redis.get('sluice-test:x'), 'fresh');
});

test('a leader that dies without releasing is replaced within ttl + renew interval', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const keys = keysFor();
  const all = [await elector(t, redis.url, keys, 'a'), await elector(t, redis.url, keys, 'b')];
  const dead = await oneLeader(all, 2000);
  const other = all.find((e) => e !== dead)!;
  const before = dead.election.epoch!;

  // SIGKILL-like: no release, the connection just goes away.
  const diedAt = performance.now();
  await dead.election.stop(false);
  dead.redis.disconnect();
  assert.equal(await other.redis.get(keys.leader()), dead.election.id, 'the lease was not released');
  await waitFor('the other elector to lead', () => other.election.isLeader, TTL + RENEW + MARGIN, 5);
  const failover = performance.now() - diedAt;
  assert.ok(failover <= TTL + RENEW + MARGIN, `failover took ${failover.toFixed(0)} ms`);
  assert.ok(other.election.epoch! > before);
});
