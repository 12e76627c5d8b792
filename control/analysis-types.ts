/**
 * The data the experiment decisions pass between them. Every decision is a
 * pure function of (spec, measurements, previous state, seeded RNG); these
 * are its inputs and outputs.
 */
import type { LatencySketch } from '../common/sketch.js';
import type { BucketSnapshot } from '../common/snapshots.js';
import type { MetricReading } from './metrics/types.js';

/** A uniform [0,1) generator; seeded per experiment and iteration. */
export type Rng = () => number;

/** What one version did since the experiment started (cumulative). */
export interface VersionMeasurement {
  readonly requests: number;
  readonly errors: number;
  /** Requests routed by the weighted random draw: the sample the SRM check uses. */
  readonly keyless: number;
  readonly latencySumMs: number;
  readonly latencySumSqMs: number;
  readonly latency: LatencySketch;
  readonly rewards: number;
  readonly rewardSum: number;
  readonly rewardSumSq: number;
  /** Requests with a reward > 0, at most one per request (conversion-rate's numerator). */
  readonly conversions: number;
  /** Keyed requests and their rewards per user bucket since the start (sticky routes); absent otherwise. */
  readonly buckets?: BucketSnapshot;
  readonly mirrorCompared: number;
  readonly mirrorMismatch: number;
  /** Custom metrics (spec.metrics) read for this iteration, by metric name; absent when there are none. */
  readonly custom?: Readonly<Record<string, MetricReading>>;
}

/** By version name. */
export type Measurements = Readonly<Record<string, VersionMeasurement>>;

export type Verdict = 'feasible' | 'infeasible' | 'inconclusive';

export interface ObjectiveAssessment {
  readonly metric: string;
  /** The point estimate (for relative objectives: the ratio to the baseline). */
  readonly value: number | null;
  /** Posterior probability that the objective holds; null before minSamples. */
  readonly pHolds: number | null;
}

/**
 * The reward of one version as a bandit sees it, oriented so that higher is
 * always better (a `preferredDirection: Low` reward is negated).
 */
export interface ArmPosterior {
  readonly name: string;
  /** Requests measured for this version. */
  readonly samples: number;
  /** Posterior mean of the (oriented) reward; null with no data. */
  readonly mean: number | null;
  /** Posterior standard deviation of that mean; null with no data. */
  readonly sd: number | null;
  /** One draw from the posterior of the (oriented) reward. */
  draw(rng: Rng): number;
  /** Many independent draws at once (faster than repeated `draw`). */
  fill?(rng: Rng, out: Float64Array): void;
}

export interface VersionAssessment {
  readonly name: string;
  readonly samples: number;
  /** samples >= minSamples: only then is a verdict more than 'inconclusive'. */
  readonly enoughSamples: boolean;
  readonly verdict: Verdict;
  /** P(every objective holds); null before minSamples or without objectives. */
  readonly pFeasible: number | null;
  readonly objectives: readonly ObjectiveAssessment[];
  /** P(this version has the best reward) among versions not infeasible; null without a reward. */
  readonly pBest: number | null;
  /** The always-valid comparison with the other versions (sequential.ts); null without a reward. */
  readonly comparison: VersionComparison | null;
  /** Expected reward lost by choosing this version instead of the best (oriented units); null without a reward. */
  readonly expectedLoss: number | null;
  readonly reward: ArmPosterior | null;
  /** Metric values for display: built-in (request-count, error-rate, latency-p95, …) and custom. */
  readonly metrics: Readonly<Record<string, number | null>>;
  /** Custom metrics whose read failed this iteration (code and message), by metric name. */
  readonly metricErrors: Readonly<Record<string, { readonly code: string; readonly message: string }>>;
}

/**
 * A version's reward as the winner test sees it: period-stratified (drift
 * cannot move it), with always-valid intervals, relative to the baseline.
 */
export interface VersionComparison {
  /** Baseline level + this version's stratified difference to the baseline (in the metric's units). */
  readonly estimate: number | null;
  readonly interval: readonly [number, number] | null;
  /** Difference to the baseline with its always-valid interval (0 for the baseline). */
  readonly difference: number | null;
  readonly differenceInterval: readonly [number, number] | null;
  /** Relative lift over the baseline: difference / baseline level. */
  readonly lift: number | null;
  readonly liftInterval: readonly [number, number] | null;
  /** The version whose interval against this one lies wholly on the better side; null while in contention. */
  readonly eliminatedBy: string | null;
  /** Units behind the comparison (requests, or the same count when the design effect widens it). */
  readonly units: number;
}

export interface SrmCheck {
  readonly flagged: boolean;
  /** Always-valid p-value (already adjusted for the versions and replicas tested): flagged at ≤ 0.001. */
  readonly pValue: number;
  /** Keyless requests per version in the period tested. */
  readonly observed: Readonly<Record<string, number>>;
  /** Sticky keys first seen in the period, per version (all replicas). */
  readonly observedKeys?: Readonly<Record<string, number>>;
  readonly expectedShare: Readonly<Record<string, number>>;
  /** Replicas past SRM_MAX_REPLICAS, not tested. */
  readonly untestedReplicas?: readonly string[];
}

/** Per-experiment facts the winner test needs beyond per-version data. */
export interface SequentialSummary {
  /** The design effect applied (1: requests are the unit; Infinity: too few users yet). */
  readonly designEffect: number;
  /** Significance each pair of versions is tested at (1 − confidence over the pairs). */
  readonly pairAlpha: number;
  /** The baseline's level (traffic-weighted over periods): what lifts are relative to. */
  readonly baselineLevel: number | null;
}

export interface Assessment {
  /** In the spec's version order; the first is the baseline. */
  readonly versions: readonly VersionAssessment[];
  readonly srm: SrmCheck | null;
  /** Null without a reward. */
  readonly sequential?: SequentialSummary | null;
  /** The winner the always-valid test has left standing (null: none yet). */
  readonly sequentialWinner?: string | null;
}

/** What a weight policy (bandit) sees for one iteration. */
export interface PolicyInput {
  /** Version names, baseline first. */
  readonly versions: readonly string[];
  readonly assessment: Assessment;
  /** Weights in force during the iteration just measured (integer percents, by version). */
  readonly previous: Readonly<Record<string, number>>;
  /** 1-based number of the iteration being decided. */
  readonly iteration: number;
  readonly rng: Rng;
}

/**
 * A bandit: proposes a share of traffic per version (any non-negative
 * numbers; they are normalised). Limits (maxCandidateWeight, increments,
 * exploration floor, integer rounding to 100) are applied afterwards by
 * `applyWeightLimits`, the same for every policy.
 */
export type WeightPolicy = (input: PolicyInput) => Record<string, number>;
