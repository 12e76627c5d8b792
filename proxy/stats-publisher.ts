/**
 * A proxy replica's share of the shared measurements. Every interval it
 * writes, per route, its *absolute* cumulative per-version snapshot into one
 * hash field named by its replica id (a G-counter per replica): a write that
 * is lost, repeated or late changes nothing, and the next one carries
 * everything counted meanwhile. The control plane sums the fields.
 *
 * Nothing here runs on the request path: requests only bump in-process
 * counters, and Redis being slow or away costs them nothing.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { Gauge, Histogram, type Registry } from 'prom-client';
import type { Logger } from '../common/logger.js';
import type { RedisKeys } from '../common/redis-keys.js';
import type { ProxyServer } from './proxy-server.js';

export interface StatsPublisherOptions {
  readonly proxy: ProxyServer;
  readonly redis: Redis;
  readonly keys: RedisKeys;
  readonly log: Logger;
  readonly intervalMs?: number;
  readonly replicaId?: string;
  readonly registry?: Registry;
}

export function defaultReplicaId(): string {
  return `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

/** Exposure writes per pipeline: bounded so one flush after a long outage does not build one huge reply. */
const EXPOSURE_BATCH = 1000;

export class StatsPublisher {
  readonly replicaId: string;
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;
  #up = false;
  readonly #upGauge: Gauge | null;
  readonly #flushSeconds: Histogram | null;

  constructor(private readonly opts: StatsPublisherOptions) {
    this.replicaId = opts.replicaId ?? defaultReplicaId();
    const registers = opts.registry ? [opts.registry] : [];
    this.#upGauge = opts.registry
      ? new Gauge({ name: 'sluice_store_up', help: '1 while the shared store (Redis) answers, else 0.', registers })
      : null;
    this.#flushSeconds = opts.registry
      ? new Histogram({
          name: 'sluice_store_flush_seconds',
          help: "Time to write this replica's measurements to the shared store.",
          buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2],
          registers,
        })
      : null;
    this.#upGauge?.set(0);
    // From now on the proxy queues exposure changes for #flushExposures.
    opts.proxy.exposures.publishChanges();
  }

  get up(): boolean {
    return this.#up;
  }

  start(): void {
    const every = this.opts.intervalMs ?? 1000;
    const tick = () => {
      this.#timer = setTimeout(() => {
        void this.flush().finally(() => {
          if (this.#timer !== null) tick();
        });
      }, every);
      this.#timer.unref();
    };
    tick();
  }

  /** One write of every route's snapshot. Never throws: a failure is retried by the next flush. */
  flush(): Promise<void> {
    this.#running ??= this.#flush().finally(() => (this.#running = null));
    return this.#running;
  }

  async #flush(): Promise<void> {
    const t0 = performance.now();
    try {
      const pipeline = this.opts.redis.multi();
      for (const state of this.opts.proxy.table.states) {
        const versions: Record<string, unknown> = {};
        for (const v of state.route.versions) versions[v.name] = v.stats.snapshot();
        const generations = state.route.counters.snapshot(state.route.versions.map((v) => v.name));
        pipeline.hset(this.opts.keys.stats(state.route.name), this.replicaId, JSON.stringify({ at: Date.now(), versions, generations }));
      }
      await pipeline.exec();
      await this.#flushExposures();
      this.#flushSeconds?.observe((performance.now() - t0) / 1000);
      this.#setUp(true);
    } catch (err) {
      this.#setUp(false, err);
    }
  }

  /**
   * Sticky keys whose exposure changed since the last flush (new key, new
   * version), for the control plane to credit rewards by key. Not in the
   * stats transaction: there may be many, and each write stands alone.
   * Changes not written go back in the queue for the next flush.
   */
  async #flushExposures(): Promise<void> {
    const ttl = this.opts.proxy.config.rewards.exposureRetentionMs;
    for (const state of this.opts.proxy.table.states) {
      const log = state.route.exposures;
      if (log === null) continue;
      const changes = log.takeChanges();
      const names = state.route.versions;
      for (let i = 0; i < changes.length; i += EXPOSURE_BATCH) {
        const batch = changes.slice(i, i + EXPOSURE_BATCH);
        const pipeline = this.opts.redis.pipeline();
        for (const [key, e] of batch) {
          // g: the generation of the key's latest request, where a late reward is counted (control/periods.ts).
          const x: Record<string, string> = { v: names[e.version]!.name, s: String(e.since), g: String(e.generation) };
          if (e.prevVersion >= 0) {
            x.pv = names[e.prevVersion]!.name;
            x.ps = String(e.prevSince);
            x.pg = String(e.prevGeneration);
          }
          pipeline.set(this.opts.keys.exposure(state.route.name, key), JSON.stringify(x), 'PX', ttl);
        }
        try {
          const results = await pipeline.exec();
          if (results?.some(([err]) => err !== null)) throw results.find(([err]) => err !== null)![0];
        } catch (err) {
          log.requeue(changes.slice(i));
          throw err;
        }
      }
    }
  }

  #setUp(up: boolean, err?: unknown): void {
    if (up !== this.#up) {
      if (up) this.opts.log.info({ replica: this.replicaId }, 'store reachable: measurements flushed');
      else this.opts.log.warn({ replica: this.replicaId, err: (err as Error)?.message }, 'store unreachable: counting locally, will flush when it returns');
    }
    this.#up = up;
    this.#upGauge?.set(up ? 1 : 0);
  }

  /** Stops the timer after a last flush, so a replica that shuts down leaves its final counts. */
  async stop(): Promise<void> {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    await this.flush();
  }
}
