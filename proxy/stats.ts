/**
 * Per-version measurements, counted on the request path into preallocated
 * arrays (no label objects, no allocation per request). Prometheus reads them
 * at scrape time (metrics.ts); the control plane reads `snapshot()`.
 *
 * Every field is a cumulative counter, so a snapshot is an absolute state:
 * two snapshots of different replicas add up, and re-sending one is harmless
 * (the snapshot types and their sums: common/snapshots.ts).
 */
import { GRPC_CODES } from '../common/grpc-status.js';
import { LatencySketch } from '../common/sketch.js';
import { GENERATION_FIELDS, USER_BUCKETS, type GenerationSnapshot, type VersionSnapshot } from '../common/snapshots.js';

export const UPSTREAM_ERROR_REASONS = ['connect', 'connect-timeout', 'timeout', 'reset', 'protocol', 'other'] as const;
export type UpstreamErrorReason = (typeof UPSTREAM_ERROR_REASONS)[number];
export const REASON_INDEX: Readonly<Record<UpstreamErrorReason, number>> = Object.freeze(
  Object.fromEntries(UPSTREAM_ERROR_REASONS.map((r, i) => [r, i])) as Record<UpstreamErrorReason, number>,
);

/**
 * Requests the *client* spoiled (framing the upstream client refuses to send):
 * counted apart, never in a version's requests or errors, so that no client can
 * fail a healthy version.
 */
export const CLIENT_ERROR_REASONS = ['invalid-request', 'short-deadline', 'slow-reader'] as const;
export const CLIENT_INVALID_REQUEST = 0;
/** A gRPC call whose deadline, shorter than the route's grpc.minDeadline, ran out. */
export const CLIENT_SHORT_DEADLINE = 1;
/** A gRPC call whose deadline ran out while the client was not reading what the version had sent. */
export const CLIENT_SLOW_READER = 2;

/** Requests retried once on a fresh connection after a reused one was lost before any response byte. */
export const RETRY_REASONS = ['reset'] as const;

export const MIRROR_OUTCOMES = ['ok', 'error', 'dropped', 'mismatch'] as const;
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
  readonly clientErrors = new Float64Array(CLIENT_ERROR_REASONS.length);
  readonly retries = new Float64Array(RETRY_REASONS.length);
  readonly mirror = new Float64Array(MIRROR_OUTCOMES.length);
  /** gRPC calls by grpc-status (0–16); they count in `requests`/`errors` too (errors: route grpc.errorCodes). */
  readonly byGrpcStatus = new Float64Array(GRPC_CODES.length);
  mirrorCompared = 0;
  rewards = 0;
  rewardSum = 0;
  rewardSumSq = 0;
  conversions = 0;
  /** `x-sluice-reward` values refused: empty, not a number, or beyond rewards.maxValue. */
  rewardsRejected = 0;
  /** Allocated on the first keyed request: routes without sticky keys pay nothing. */
  bucketRequests: Float64Array | null = null;
  bucketConversions: Float64Array | null = null;
  bucketRewardSum: Float64Array | null = null;

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

  /** One finished gRPC call (after `record`, which counted it as a request and maybe an error). */
  recordGrpc(code: number): void {
    this.byGrpcStatus[code]! += 1;
  }

  recordUpstreamError(reason: number): void {
    this.upstreamErrors[reason]! += 1;
  }

  /** Only connection losses are retried, hence the one reason (RETRY_REASONS). */
  recordRetry(): void {
    this.retries[0]! += 1;
  }

  recordClientError(reason: number): void {
    this.clientErrors[reason]! += 1;
  }

  /** One shadow copy's outcome (MIRROR_OUTCOMES); `compared`: its answer was compared with the primary's. */
  recordMirror(outcome: number, compared = false): void {
    this.mirror[outcome]! += 1;
    if (compared) this.mirrorCompared++;
  }

  /** A keyed request chose this version; `bucket` is its key's user bucket (see USER_BUCKETS). */
  countKeyed(bucket: number): void {
    if (this.bucketRequests === null) this.#allocBuckets();
    this.bucketRequests![bucket]! += 1;
  }

  /**
   * One reward event. `conversion`: it converts a request not converted
   * before (a value > 0, at most once per request; the caller knows).
   * `bucket`: the user bucket of the request's key, -1 when it had none.
   */
  recordReward(value: number, conversion: boolean = value > 0, bucket = -1): void {
    this.rewards++;
    this.rewardSum += value;
    this.rewardSumSq += value * value;
    if (conversion) this.conversions++;
    if (bucket >= 0) {
      if (this.bucketRequests === null) this.#allocBuckets();
      this.bucketRewardSum![bucket]! += value;
      if (conversion) this.bucketConversions![bucket]! += 1;
    }
  }

  rejectReward(): void {
    this.rewardsRejected++;
  }

  #allocBuckets(): void {
    this.bucketRequests = new Float64Array(USER_BUCKETS);
    this.bucketConversions = new Float64Array(USER_BUCKETS);
    this.bucketRewardSum = new Float64Array(USER_BUCKETS);
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
      clientErrors: named(CLIENT_ERROR_REASONS, this.clientErrors),
      mirror: named(MIRROR_OUTCOMES, this.mirror),
      mirrorCompared: this.mirrorCompared,
      rewards: this.rewards,
      rewardSum: this.rewardSum,
      rewardSumSq: this.rewardSumSq,
      conversions: this.conversions,
      ...(this.bucketRequests === null
        ? {}
        : { buckets: { requests: Array.from(this.bucketRequests), conversions: Array.from(this.bucketConversions!), rewardSum: Array.from(this.bucketRewardSum!) } }),
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
  readonly #routes = new Map<string, RouteCounters>();

  route(name: string): RouteCounters {
    let c = this.#routes.get(name);
    if (!c) {
      c = new RouteCounters();
      this.#routes.set(name, c);
    }
    return c;
  }

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
 * Requests counted under one routing generation (one set of weights and
 * slots), per version index: every request chosen under it, the keyless
 * ones and the sticky keys first seen in it, and the rewards of requests it
 * routed (a reward posted later by key counts under the generation that
 * served the key). The experiment analysis compares versions within a
 * generation and the sample-ratio check tests a generation's counts against
 * its own weights, so counts and weights always describe the same period,
 * however late the control plane reads them.
 */
export class GenerationCounts {
  readonly requests: Float64Array;
  readonly keyless: Float64Array;
  readonly newKeys: Float64Array;
  readonly rewards: Float64Array;
  readonly conversions: Float64Array;
  readonly rewardSum: Float64Array;
  readonly rewardSumSq: Float64Array;

  constructor(
    readonly generation: number,
    versions: number,
  ) {
    this.requests = new Float64Array(versions);
    this.keyless = new Float64Array(versions);
    this.newKeys = new Float64Array(versions);
    this.rewards = new Float64Array(versions);
    this.conversions = new Float64Array(versions);
    this.rewardSum = new Float64Array(versions);
    this.rewardSumSq = new Float64Array(versions);
  }

  recordReward(index: number, value: number, conversion: boolean): void {
    if (index < 0 || index >= this.rewards.length) return;
    this.rewards[index]! += 1;
    this.rewardSum[index]! += value;
    this.rewardSumSq[index]! += value * value;
    if (conversion) this.conversions[index]! += 1;
  }
}

/** Generations kept per route: enough for a control plane that reads late or a replica a few changes behind. */
const KEPT_GENERATIONS = 16;

/** A route's GenerationCounts, the newest KEPT_GENERATIONS of them; outlives routing tables like VersionStats. */
export class RouteCounters {
  readonly #recent: GenerationCounts[] = [];

  /** The counts of a generation, created on first use (a generation with more versions gets a new one). */
  forGeneration(generation: number, versions: number): GenerationCounts {
    const found = this.#recent.find((c) => c.generation === generation && c.keyless.length === versions);
    if (found !== undefined) return found;
    const c = new GenerationCounts(generation, versions);
    this.#recent.push(c);
    if (this.#recent.length > KEPT_GENERATIONS) this.#recent.shift();
    return c;
  }

  /** The counts of a generation still kept (null: too old, or never seen here). */
  get(generation: number): GenerationCounts | null {
    for (let i = this.#recent.length - 1; i >= 0; i--) if (this.#recent[i]!.generation === generation) return this.#recent[i]!;
    return null;
  }

  snapshot(versionNames: readonly string[]): GenerationSnapshot[] {
    const named = (a: Float64Array) => Object.fromEntries(versionNames.slice(0, a.length).map((n, i) => [n, a[i]!]));
    return this.#recent.map((c) => {
      const out: Record<string, unknown> = { generation: c.generation };
      for (const f of GENERATION_FIELDS) out[f] = named(c[f]);
      return out as GenerationSnapshot;
    });
  }
}
