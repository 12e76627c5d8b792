/**
 * Per-version measurements, counted on the request path into preallocated
 * arrays (no label objects, no allocation per request). Prometheus reads them
 * at scrape time (metrics.ts); the control plane reads `snapshot()`.
 *
 * Every field is a cumulative counter, so a snapshot is an absolute state:
 * two snapshots of different replicas add up, and re-sending one is harmless.
 */
import { LatencySketch, type SketchSnapshot } from './sketch.js';

export const UPSTREAM_ERROR_REASONS = ['connect', 'connect-timeout', 'timeout', 'reset', 'protocol', 'other'] as const;
export type UpstreamErrorReason = (typeof UPSTREAM_ERROR_REASONS)[number];
export const REASON_INDEX: Readonly<Record<UpstreamErrorReason, number>> = Object.freeze(
  Object.fromEntries(UPSTREAM_ERROR_REASONS.map((r, i) => [r, i])) as Record<UpstreamErrorReason, number>,
);

export const MIRROR_OUTCOMES = ['ok', 'error', 'dropped', 'mismatch'] as const;
export type MirrorOutcome = (typeof MIRROR_OUTCOMES)[number];
export const MIRROR_OK = 0;
export const MIRROR_ERROR = 1;
export const MIRROR_DROPPED = 2;
export const MIRROR_MISMATCH = 3;

/** Upper bounds (seconds) of `sluice_request_duration_seconds`. */
export const DURATION_BUCKETS: readonly number[] = Object.freeze([
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
]);
const BUCKETS_MS = DURATION_BUCKETS.map((s) => s * 1000);

/** Status codes are counted in a flat array indexed by code; 499 = client closed first (nginx's convention). */
const STATUS_SLOTS = 600;
export const STATUS_CLIENT_CLOSED = 499;

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
  readonly mirror: Readonly<Record<string, number>>;
  /** Mirrored requests whose shadow answer was compared with the primary's. */
  readonly mirrorCompared: number;
  readonly rewards: number;
  readonly rewardSum: number;
  readonly rewardSumSq: number;
}

export class VersionStats {
  requests = 0;
  errors = 0;
  keyless = 0;
  latencySumMs = 0;
  latencySumSqMs = 0;
  readonly byStatus = new Float64Array(STATUS_SLOTS);
  readonly durationBuckets = new Float64Array(DURATION_BUCKETS.length);
  readonly sketch = new LatencySketch();
  readonly upstreamErrors = new Float64Array(UPSTREAM_ERROR_REASONS.length);
  readonly mirror = new Float64Array(MIRROR_OUTCOMES.length);
  mirrorCompared = 0;
  rewards = 0;
  rewardSum = 0;
  rewardSumSq = 0;

  constructor(
    readonly route: string,
    readonly version: string,
  ) {}

  /** One finished request. `failed`: the upstream broke after its headers went out. */
  record(status: number, latencyMs: number, failed: boolean): void {
    this.requests++;
    if (status >= 500 || failed) this.errors++;
    this.byStatus[status > 0 && status < STATUS_SLOTS ? status : 0]! += 1;
    this.latencySumMs += latencyMs;
    this.latencySumSqMs += latencyMs * latencyMs;
    this.sketch.add(latencyMs);
    const b = this.durationBuckets;
    for (let i = 0; i < b.length; i++) {
      if (latencyMs <= BUCKETS_MS[i]!) {
        b[i]! += 1;
        break;
      }
    }
  }

  /**
   * Counted when the version is *chosen*, not when the request ends: a weight
   * change then splits the count exactly where the routing changed, which the
   * per-iteration sample-ratio check relies on.
   */
  countKeyless(): void {
    this.keyless++;
  }

  recordUpstreamError(reason: number): void {
    this.upstreamErrors[reason]! += 1;
  }

  recordReward(value: number): void {
    this.rewards++;
    this.rewardSum += value;
    this.rewardSumSq += value * value;
  }

  snapshot(): VersionSnapshot {
    const statusCounts: Record<string, number> = {};
    for (let s = 0; s < STATUS_SLOTS; s++) if (this.byStatus[s]! > 0) statusCounts[String(s)] = this.byStatus[s]!;
    return {
      requests: this.requests,
      errors: this.errors,
      keyless: this.keyless,
      latencySumMs: this.latencySumMs,
      latencySumSqMs: this.latencySumSqMs,
      latencySketch: this.sketch.snapshot(),
      statusCounts,
      upstreamErrors: named(UPSTREAM_ERROR_REASONS, this.upstreamErrors),
      mirror: named(MIRROR_OUTCOMES, this.mirror),
      mirrorCompared: this.mirrorCompared,
      rewards: this.rewards,
      rewardSum: this.rewardSum,
      rewardSumSq: this.rewardSumSq,
    };
  }
}

function named(names: readonly string[], values: Float64Array): Record<string, number> {
  const out: Record<string, number> = {};
  names.forEach((n, i) => (out[n] = values[i]!));
  return out;
}

/**
 * Owns every VersionStats by (route, version). Routing tables come and go on
 * every weight change; the counters outlive them here.
 */
export class StatsRegistry {
  readonly #byKey = new Map<string, VersionStats>();

  get(route: string, version: string): VersionStats {
    const key = `${route}\u0000${version}`;
    let s = this.#byKey.get(key);
    if (!s) {
      s = new VersionStats(route, version);
      this.#byKey.set(key, s);
    }
    return s;
  }

  all(): IterableIterator<VersionStats> {
    return this.#byKey.values();
  }
}

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
    sketch.mergeSnapshot(s.latencySketch);
    add(statusCounts, s.statusCounts);
    add(upstreamErrors, s.upstreamErrors);
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
    mirror,
    mirrorCompared,
    rewards,
    rewardSum,
    rewardSumSq,
  };
}
