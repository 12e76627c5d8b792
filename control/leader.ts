/**
 * Control-plane leader election: one leader among several `sluice control`
 * replicas, through a lease in Redis (`{prefix}leader`, SET NX PX ttl,
 * renewed every `renewEveryMs`) and a fencing token (`{prefix}leader:epoch`)
 * that grows at every acquisition. Every state write of the leader goes
 * through `fenced(ops)`, which Redis applies only while the epoch is still
 * ours (common/redis-fence.ts): a former leader that was paused and wakes up
 * after a failover is rejected with SLUICE_FENCED.
 *
 * Timing. The lease lapses at most `ttlMs` after the leader's last renewal;
 * a follower tries every `renewEveryMs`, so failover takes at most
 * ttl + one renew interval (plus a round trip). A released lease (stop())
 * is taken over at the followers' next try.
 *
 * Local step-down. The leader measures its lease on its own monotonic clock
 * from the moment it *sent* its last successful renewal (Redis started the
 * lease's new ttl no earlier than that), so its belief ends no later than
 * the lease in Redis. When it cannot renew for that long — Redis away,
 * partitioned, a command stuck — it steps down on its own and notifies,
 * then keeps retrying; nothing here throws or rejects into the caller.
 *
 * The epoch is monotone even across a Redis restart that lost everything:
 * a new epoch is max(INCR epoch, the acquirer's clock in ms), so after an
 * empty restart it starts at the current time, above every token handed
 * out before (assuming the replicas' clocks roughly agree).
 */
import type { Redis } from 'ioredis';
import { Gauge, type Registry } from 'prom-client';
import { SluiceError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { fencedExec, type FencedOp } from '../common/redis-fence.js';
import type { RedisKeys } from '../common/redis-keys.js';

export interface LeaderElectionOptions {
  /** This replica's id, unique among the control replicas (written into the lease). */
  readonly id: string;
  /** Lease time to live in ms (default 5000). */
  readonly ttlMs?: number;
  /** How often the leader renews and followers try to acquire, in ms (default ttl/3). */
  readonly renewEveryMs?: number;
  readonly log: Logger;
  /** When given, the gauge `sluice_leader` (1 while leader, else 0) is registered here. */
  readonly registry?: Registry;
}

export type LeaderListener = (leader: boolean, epoch: number | null) => void;

/**
 * KEYS[1] lease, KEYS[2] epoch; ARGV[1] id, ARGV[2] ttl ms, ARGV[3] now ms.
 * Returns the epoch when the lease is (now) ours, nil when someone else holds it.
 */
const ACQUIRE = `
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  local current = redis.call('GET', KEYS[2])
  if current then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(current)
  end
elseif holder then
  return false
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local epoch = redis.call('INCR', KEYS[2])
local now = tonumber(ARGV[3])
if now > epoch then
  redis.call('SET', KEYS[2], ARGV[3])
  epoch = now
end
return epoch
`;

/** KEYS[1] lease, KEYS[2] epoch; ARGV[1] id, ARGV[2] ttl ms, ARGV[3] our epoch. 1 renewed, 0 lost. */
const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`;

/** KEYS[1] lease; ARGV[1] id. Deletes the lease only if it is ours. */
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`;

export class LeaderElection {
  readonly id: string;
  readonly ttlMs: number;
  readonly renewEveryMs: number;
  readonly #redis: Redis;
  readonly #keys: RedisKeys;
  readonly #log: Logger;
  readonly #gauge: Gauge | null;
  readonly #listeners = new Set<LeaderListener>();

  #running = false;
  #leader = false;
  #epoch: number | null = null;
  /** performance.now() after which our lease can no longer be trusted. */
  #validUntil = 0;
  #loopTimer: NodeJS.Timeout | null = null;
  #watchdog: NodeJS.Timeout | null = null;
  #inflight: Promise<void> | null = null;
  #storeUp: boolean | null = null;

  constructor(redis: Redis, keys: RedisKeys, opts: LeaderElectionOptions) {
    const ttl = opts.ttlMs ?? 5000;
    const every = opts.renewEveryMs ?? Math.max(1, Math.floor(ttl / 3));
    if (!opts.id) throw new SluiceError('SLUICE_CONFIG_INVALID', 'leader election needs an id', [{ path: 'leader.id', message: 'must not be empty' }]);
    if (!Number.isInteger(ttl) || ttl <= 0) {
      throw new SluiceError('SLUICE_CONFIG_INVALID', 'invalid lease ttl', [{ path: 'leader.ttlMs', message: 'must be a positive integer (ms)' }]);
    }
    if (!Number.isInteger(every) || every <= 0 || every >= ttl) {
      throw new SluiceError('SLUICE_CONFIG_INVALID', 'invalid renew interval', [
        { path: 'leader.renewEveryMs', message: 'must be a positive integer (ms) below the lease ttl' },
      ]);
    }
    this.id = opts.id;
    this.ttlMs = ttl;
    this.renewEveryMs = every;
    this.#redis = redis;
    this.#keys = keys;
    this.#log = opts.log;
    this.#gauge = opts.registry
      ? new Gauge({ name: 'sluice_leader', help: '1 while this control replica holds the leader lease, else 0.', registers: [opts.registry] })
      : null;
    this.#gauge?.set(0);
  }

  /** True while we hold the lease and it cannot have lapsed yet (checked against the local clock). */
  get isLeader(): boolean {
    return this.#leader && performance.now() < this.#validUntil;
  }

  /** Our fencing token while leader, else null. */
  get epoch(): number | null {
    return this.isLeader ? this.#epoch : null;
  }

  /** Called at every change of leadership (never twice in a row with the same `leader`). Returns an unsubscribe. */
  onChange(listener: LeaderListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Starts trying to acquire (and then renew) the lease, at once and every renewEveryMs. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#schedule(0);
  }

  /**
   * Stops electing. With `release` (default) the lease is deleted if it is
   * still ours, so another replica takes over at its next try instead of
   * after the ttl. Never rejects.
   */
  async stop(release = true): Promise<void> {
    this.#running = false;
    if (this.#loopTimer !== null) clearTimeout(this.#loopTimer);
    this.#loopTimer = null;
    await this.#inflight;
    this.#stepDown('stopped');
    if (release) {
      try {
        await this.#redis.eval(RELEASE, 1, this.#keys.leader(), this.id);
      } catch (err) {
        this.#log.warn({ leaderId: this.id, err: (err as Error).message }, 'could not release the leader lease: it lapses after its ttl');
      }
    }
  }

  /**
   * Applies `ops` atomically if we are the leader and our epoch is still
   * the current one in Redis. SLUICE_FENCED otherwise (and we step down when
   * Redis says another leader has taken over); SLUICE_STORE_UNAVAILABLE when
   * Redis cannot be reached.
   */
  async fenced(ops: readonly FencedOp[]): Promise<number> {
    const epoch = this.epoch;
    if (epoch === null) throw new SluiceError('SLUICE_FENCED', `control replica ${this.id} is not the leader`);
    try {
      return await fencedExec(this.#redis, this.#keys.leaderEpoch(), epoch, ops);
    } catch (err) {
      if (err instanceof SluiceError && err.code === 'SLUICE_FENCED' && this.#epoch === epoch) this.#stepDown('a newer epoch holds the store');
      throw err;
    }
  }

  #schedule(delayMs: number): void {
    if (!this.#running) return;
    this.#loopTimer = setTimeout(() => {
      this.#loopTimer = null;
      this.#inflight = this.#attempt().finally(() => {
        this.#inflight = null;
        this.#schedule(this.renewEveryMs);
      });
    }, delayMs);
    this.#loopTimer.unref();
  }

  /** One renewal (when leader) or acquisition attempt. Never rejects. */
  async #attempt(): Promise<void> {
    const sentAt = performance.now();
    try {
      if (this.#leader) {
        const epoch = this.#epoch!;
        const renewed = await this.#redis.eval(RENEW, 2, this.#keys.leader(), this.#keys.leaderEpoch(), this.id, String(this.ttlMs), String(epoch));
        this.#setStoreUp(true);
        // Stepped down (watchdog, fenced write, stop) while the renewal was on its way: the next attempt acquires afresh.
        if (!this.#leader || this.#epoch !== epoch) return;
        if (renewed === 1) this.#holdUntil(sentAt + this.ttlMs);
        else this.#stepDown('lost the lease to another replica');
      } else {
        const reply = await this.#redis.eval(ACQUIRE, 2, this.#keys.leader(), this.#keys.leaderEpoch(), this.id, String(this.ttlMs), String(Date.now()));
        this.#setStoreUp(true);
        if (reply === null || !this.#running) return;
        const epoch = Number(reply);
        const validUntil = sentAt + this.ttlMs;
        // A reply later than the ttl: the lease may already have lapsed. It is still ours in
        // Redis if nobody took it, and the next attempt renews it.
        if (performance.now() >= validUntil) return;
        this.#leader = true;
        this.#epoch = epoch;
        this.#holdUntil(validUntil);
        this.#gauge?.set(1);
        this.#log.info({ leaderId: this.id, epoch }, 'became control-plane leader');
        this.#notify(true, epoch);
      }
    } catch (err) {
      this.#setStoreUp(false, err);
      // Leadership ends through the watchdog if this goes on for longer than the lease.
    }
  }

  /** Trust the lease until `validUntil` (performance.now() time) and step down then, unless renewed. */
  #holdUntil(validUntil: number): void {
    this.#validUntil = validUntil;
    if (this.#watchdog !== null) clearTimeout(this.#watchdog);
    const delay = validUntil - performance.now();
    if (delay <= 0) {
      this.#watchdog = null;
      this.#stepDown('could not renew the lease within its ttl');
      return;
    }
    this.#watchdog = setTimeout(() => {
      this.#watchdog = null;
      // Timers run on the event loop's cached millisecond clock and can fire a little early: check again then.
      if (this.#leader) this.#holdUntil(this.#validUntil);
    }, Math.ceil(delay));
    this.#watchdog.unref();
  }

  #stepDown(reason: string): void {
    if (this.#watchdog !== null) clearTimeout(this.#watchdog);
    this.#watchdog = null;
    if (!this.#leader) return;
    const epoch = this.#epoch;
    this.#leader = false;
    this.#epoch = null;
    this.#validUntil = 0;
    this.#gauge?.set(0);
    this.#log.warn({ leaderId: this.id, epoch, reason }, 'no longer control-plane leader');
    this.#notify(false, null);
  }

  #notify(leader: boolean, epoch: number | null): void {
    for (const listener of this.#listeners) {
      try {
        listener(leader, epoch);
      } catch (err) {
        this.#log.error({ leaderId: this.id, err: (err as Error).message }, 'leadership listener failed');
      }
    }
  }

  #setStoreUp(up: boolean, err?: unknown): void {
    if (up === this.#storeUp) return;
    if (up) {
      if (this.#storeUp === false) this.#log.info({ leaderId: this.id }, 'store reachable again: leader election resumes');
    } else {
      this.#log.warn({ leaderId: this.id, err: (err as Error)?.message }, 'store unreachable: cannot acquire or renew the leader lease, retrying');
    }
    this.#storeUp = up;
  }
}
