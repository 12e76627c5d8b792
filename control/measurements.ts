/**
 * Measurement preparation, pure: what an iteration hands to `iterate`
 * (lifecycle.ts) is made here from the proxies' absolute counters — each
 * version's counts since the experiment started (requests, errors, keyless
 * requests, latency, rewards, conversions, user buckets, mirror comparisons),
 * with the iteration's custom metric readings attached. The scheduler reads
 * the counters and the sources; this module only subtracts and merges.
 */
import { LatencySketch } from '../common/sketch.js';
import { addBuckets, type BucketSnapshot, type VersionSnapshot } from '../common/snapshots.js';
import type { Measurements, VersionMeasurement } from './analysis-types.js';
import { EMPTY_MEASUREMENT } from './assess.js';
import type { MetricReading } from './metrics/types.js';

/** The counters of the experiment's versions (the start record keeps only those). */
export function pick<T>(o: Readonly<Record<string, T>>, names: readonly string[]): Record<string, T> {
  const out: Record<string, T> = {};
  for (const n of names) if (o[n] !== undefined) out[n] = o[n]!;
  return out;
}

/** Counters now minus counters at the start: what each version did during the experiment. */
export function measurementsSince(
  startCounters: Readonly<Record<string, VersionSnapshot>>,
  now: Readonly<Record<string, VersionSnapshot>>,
  names: readonly string[],
): Measurements {
  const out: Record<string, VersionMeasurement> = {};
  for (const n of names) {
    const a = startCounters[n];
    const b = now[n];
    if (b === undefined) continue;
    const latency = LatencySketch.fromSnapshot(b.latencySketch);
    if (a !== undefined) latency.mergeSnapshot(a.latencySketch, -1);
    const d = (f: (s: VersionSnapshot) => number) => f(b) - (a === undefined ? 0 : f(a));
    out[n] = {
      requests: d((s) => s.requests),
      errors: d((s) => s.errors),
      keyless: d((s) => s.keyless),
      latencySumMs: d((s) => s.latencySumMs),
      latencySumSqMs: d((s) => s.latencySumSqMs),
      latency,
      rewards: d((s) => s.rewards),
      rewardSum: d((s) => s.rewardSum),
      rewardSumSq: d((s) => s.rewardSumSq),
      conversions: d((s) => s.conversions ?? 0),
      ...bucketsSince(a, b),
      mirrorCompared: d((s) => s.mirrorCompared),
      mirrorMismatch: d((s) => s.mirror.mismatch ?? 0),
    };
  }
  return out;
}

/** A version's user buckets since the start (absent when it has none). */
export function bucketsSince(a: VersionSnapshot | undefined, b: VersionSnapshot): { buckets?: BucketSnapshot } {
  if (b.buckets === undefined) return {};
  const out = addBuckets(undefined, b.buckets);
  if (a?.buckets !== undefined) addBuckets(out, a.buckets, -1);
  return { buckets: out };
}

/** Measurements with the iteration's custom metric readings attached (a version without traffic gets empty counters). */
export function withCustom(m: Measurements, names: readonly string[], custom: Record<string, Record<string, MetricReading>> | null): Measurements {
  if (custom === null) return m;
  const out: Record<string, VersionMeasurement> = {};
  for (const n of names) out[n] = { ...(m[n] ?? EMPTY_MEASUREMENT), custom: custom[n] ?? {} };
  return out;
}
