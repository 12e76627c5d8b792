/**
 * What a replica's counters look like from outside: the snapshot types the
 * proxy publishes (stats.ts builds them), the control plane reads and the store
 * keeps, and the pure functions that add them up. Every field is a cumulative
 * counter, so snapshots of different replicas add up exactly.
 */
import { LatencySketch, type SketchSnapshot } from './sketch.js';

export interface VersionSnapshot {
  readonly requests: number;
  readonly errors: number;
  /** Requests routed by the weighted random pick (no rule, no sticky key): the sample for SRM checks. */
  readonly keyless: number;
  readonly latencySumMs: number;
  readonly latencySumSqMs: number;
  readonly latencySketch: SketchSnapshot;
  readonly statusCounts: Readonly<Record<string, number>>;
  readonly upstreamErrors: Readonly<Record<string, number>>;
  /** Optional: a replica of an older Sluice publishes none. */
  readonly clientErrors?: Readonly<Record<string, number>>;
  readonly mirror: Readonly<Record<string, number>>;
  /** Mirrored requests whose shadow answer was compared with the primary's. */
  readonly mirrorCompared: number;
  readonly rewards: number;
  readonly rewardSum: number;
  readonly rewardSumSq: number;
  /** Rewards with a value > 0: at most one per request (a conversion), whatever the value. */
  readonly conversions: number;
  /** Per hashed user bucket (sticky routes only; absent when no keyed request was seen). */
  readonly buckets?: BucketSnapshot;
}

/**
 * Keyed requests hashed into USER_BUCKETS buckets per version: the unit of
 * analysis when routing is sticky is the user, and a bucket holds whole
 * users, so bucket totals are independent where single requests are not.
 * Fixed size, mergeable across replicas by adding.
 */
export interface BucketSnapshot {
  readonly requests: readonly number[];
  readonly conversions: readonly number[];
  readonly rewardSum: readonly number[];
}

export const USER_BUCKETS = 64;
/** A key's bucket: the low bits of its hash (the slot takes the high ones), so buckets and versions are independent. */
export const BUCKET_MASK = USER_BUCKETS - 1;

/**
 * The sum of several replicas' snapshots of one version: every field is a
 * cumulative counter and the sketches share one bin layout, so the sum is
 * exact — what the control plane sees is what all replicas counted.
 */
export function sumSnapshots(snapshots: readonly VersionSnapshot[]): VersionSnapshot {
  const sketch = new LatencySketch();
  const add = (into: Record<string, number>, from: Readonly<Record<string, number>>) => {
    for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
  };
  const statusCounts: Record<string, number> = {};
  const upstreamErrors: Record<string, number> = {};
  const clientErrors: Record<string, number> = {};
  const mirror: Record<string, number> = {};
  let requests = 0;
  let errors = 0;
  let keyless = 0;
  let latencySumMs = 0;
  let latencySumSqMs = 0;
  let mirrorCompared = 0;
  let rewards = 0;
  let rewardSum = 0;
  let rewardSumSq = 0;
  let conversions = 0;
  let buckets: { requests: number[]; conversions: number[]; rewardSum: number[] } | undefined;
  for (const s of snapshots) {
    requests += s.requests;
    errors += s.errors;
    keyless += s.keyless;
    latencySumMs += s.latencySumMs;
    latencySumSqMs += s.latencySumSqMs;
    mirrorCompared += s.mirrorCompared;
    rewards += s.rewards;
    rewardSum += s.rewardSum;
    rewardSumSq += s.rewardSumSq;
    // Snapshots from before conversions were counted separately carry none.
    conversions += s.conversions ?? 0;
    if (s.buckets !== undefined) buckets = addBuckets(buckets, s.buckets);
    sketch.mergeSnapshot(s.latencySketch);
    add(statusCounts, s.statusCounts);
    add(upstreamErrors, s.upstreamErrors);
    if (s.clientErrors !== undefined) add(clientErrors, s.clientErrors);
    add(mirror, s.mirror);
  }
  return {
    requests,
    errors,
    keyless,
    latencySumMs,
    latencySumSqMs,
    latencySketch: sketch.snapshot(),
    statusCounts,
    upstreamErrors,
    clientErrors,
    mirror,
    mirrorCompared,
    rewards,
    rewardSum,
    rewardSumSq,
    conversions,
    ...(buckets === undefined ? {} : { buckets }),
  };
}

/** `into` + `from`, bucket by bucket (a fresh object when `into` is undefined). */
export function addBuckets(
  into: { requests: number[]; conversions: number[]; rewardSum: number[] } | undefined,
  from: BucketSnapshot,
  sign = 1,
): { requests: number[]; conversions: number[]; rewardSum: number[] } {
  const out = into ?? { requests: new Array(USER_BUCKETS).fill(0), conversions: new Array(USER_BUCKETS).fill(0), rewardSum: new Array(USER_BUCKETS).fill(0) };
  for (let b = 0; b < USER_BUCKETS; b++) {
    out.requests[b] += sign * (from.requests[b] ?? 0);
    out.conversions[b] += sign * (from.conversions[b] ?? 0);
    out.rewardSum[b] += sign * (from.rewardSum[b] ?? 0);
  }
  return out;
}

export const GENERATION_FIELDS = ['requests', 'keyless', 'newKeys', 'rewards', 'conversions', 'rewardSum', 'rewardSumSq'] as const;
export type GenerationField = (typeof GENERATION_FIELDS)[number];

export type GenerationSnapshot = { readonly generation: number } & { readonly [F in GenerationField]: Readonly<Record<string, number>> };
