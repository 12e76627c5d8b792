/**
 * The control plane's measurements in Redis mode: the sum, per version, of
 * the last snapshot every proxy replica wrote (see proxy/stats-publisher.ts).
 * A replica that died keeps its last snapshot counted: its requests happened.
 */
import type { Redis } from 'ioredis';
import { SluiceError } from '../common/errors.js';
import type { RedisKeys } from '../common/redis-keys.js';
import { addBuckets, sumSnapshots, USER_BUCKETS, type BucketSnapshot, type GenerationSnapshot, type VersionSnapshot } from '../common/snapshots.js';
import type { AggregateSource, ReplicaGenerations } from './ports.js';

/** Rewards by key carry their user bucket: added to the replicas' bucket totals (created when only rewards have any). */
function withRewardBuckets(buckets: BucketSnapshot | undefined, field: (bucket: number, f: 'sum' | 'conv') => number): { buckets?: BucketSnapshot } {
  let out: { requests: number[]; conversions: number[]; rewardSum: number[] } | undefined;
  for (let b = 0; b < USER_BUCKETS; b++) {
    const sum = field(b, 'sum');
    const conv = field(b, 'conv');
    if (sum === 0 && conv === 0) continue;
    out ??= addBuckets(undefined, buckets ?? { requests: [], conversions: [], rewardSum: [] });
    out.rewardSum[b]! += sum;
    out.conversions[b]! += conv;
  }
  return out !== undefined ? { buckets: out } : buckets !== undefined ? { buckets } : {};
}

/** The pseudo-replica that carries rewards posted to the control API, per generation (no requests of its own). */
export const POSTED_REWARDS = 'posted-rewards';

/** `{version}:g{generation}:{count|sum|sumsq|conv}` fields of the rewards hash, as generation snapshots. */
function postedByGeneration(rewards: Readonly<Record<string, string>>): GenerationSnapshot[] {
  const by = new Map<number, Record<'rewards' | 'rewardSum' | 'rewardSumSq' | 'conversions', Record<string, number>>>();
  const field = { count: 'rewards', sum: 'rewardSum', sumsq: 'rewardSumSq', conv: 'conversions' } as const;
  for (const [k, v] of Object.entries(rewards)) {
    const m = /^(.*):g(\d+):(count|sum|sumsq|conv)$/.exec(k);
    if (m === null) continue;
    const g = Number(m[2]);
    let e = by.get(g);
    if (!e) by.set(g, (e = { rewards: {}, rewardSum: {}, rewardSumSq: {}, conversions: {} }));
    e[field[m[3] as keyof typeof field]][m[1]!] = Number(v);
  }
  return [...by.entries()].map(([generation, e]) => {
    const zero = Object.fromEntries(Object.keys({ ...e.rewards, ...e.conversions }).map((v) => [v, 0]));
    return { generation, requests: zero, keyless: zero, newKeys: zero, ...e };
  });
}

export class RedisAggregates implements AggregateSource {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {}

  async versions(route: string): Promise<Record<string, VersionSnapshot>> {
    let fields: Record<string, string>;
    let rewards: Record<string, string>;
    try {
      [fields, rewards] = await Promise.all([this.redis.hgetall(this.keys.stats(route)), this.redis.hgetall(this.keys.rewards(route))]);
    } catch (err) {
      throw new SluiceError('SLUICE_STORE_UNAVAILABLE', `cannot read measurements of route ${route}: ${(err as Error).message}`);
    }
    const perVersion = new Map<string, VersionSnapshot[]>();
    for (const json of Object.values(fields)) {
      const { versions } = JSON.parse(json) as { versions: Record<string, VersionSnapshot> };
      for (const [v, s] of Object.entries(versions)) {
        const list = perVersion.get(v) ?? [];
        list.push(s);
        perVersion.set(v, list);
      }
    }
    const out: Record<string, VersionSnapshot> = {};
    for (const [v, list] of perVersion) {
      const s = sumSnapshots(list);
      // Reward events posted to the control API (not seen by any proxy) count for the version too.
      const n = (f: string) => Number(rewards[`${v}:${f}`] ?? 0);
      out[v] = {
        ...s,
        rewards: s.rewards + n('count'),
        rewardSum: s.rewardSum + n('sum'),
        rewardSumSq: s.rewardSumSq + n('sumsq'),
        conversions: (s.conversions ?? 0) + n('conv'),
        ...withRewardBuckets(s.buckets, (b, f) => n(`b${b}:${f}`)),
      };
    }
    return out;
  }

  async generations(route: string): Promise<ReplicaGenerations[]> {
    let fields: Record<string, string>;
    let rewards: Record<string, string>;
    try {
      [fields, rewards] = await Promise.all([this.redis.hgetall(this.keys.stats(route)), this.redis.hgetall(this.keys.rewards(route))]);
    } catch (err) {
      throw new SluiceError('SLUICE_STORE_UNAVAILABLE', `cannot read measurements of route ${route}: ${(err as Error).message}`);
    }
    const replicas: ReplicaGenerations[] = Object.entries(fields).map(([replica, json]) => ({
      replica,
      // Replicas from before per-generation counting publish none.
      generations: (JSON.parse(json) as { generations?: GenerationSnapshot[] }).generations ?? [],
    }));
    const posted = postedByGeneration(rewards);
    return posted.length === 0 ? replicas : [...replicas, { replica: POSTED_REWARDS, generations: posted }];
  }

  /** Replicas that have reported for a route, for status and debugging. */
  async replicas(route: string): Promise<string[]> {
    return this.redis.hkeys(this.keys.stats(route));
  }
}
