/**
 * The reward side of an assessment: per-period arms for the winner test,
 * the design effect, and what the status shows per version (stratified
 * estimate, always-valid interval, lift over the baseline). Pure.
 *
 * Built-in rewards (conversion-rate, reward-mean) are measured per routing
 * generation and compared within periods. A custom reward read from outside
 * (REST, Prometheus, mock) arrives as one cumulative value per version, so
 * it is one period: drift protection needs per-period data the source does
 * not give (docs/statistics.md).
 */
import type { VersionComparison, VersionMeasurement } from './analysis-types.js';
import { designEffect } from './design-effect.js';
import { rewardStats } from './metric-defs.js';
import type { PeriodRecord } from './periods.js';
import { csHalfWidth, pairEstimate, sequentialTest, tunedRho2, type PeriodArm, type SequentialResult } from './sequential.js';
import type { ExperimentSpec } from './spec-types.js';

/** Units per arm the confidence sequence is tightest at (its ρ; the width changes little over decades). */
const TUNING_MIN_UNITS = 1000;
/** A pair of versions is tested once each has this many units (besides minSamples). */
const MIN_UNITS = 30;
/** …and, for a rate, this many successes and failures between them: the normal approximation needs events. */
const MIN_EVENTS = 30;

export interface RewardAnalysis {
  readonly comparisons: readonly VersionComparison[];
  readonly designEffect: number;
  readonly pairAlpha: number;
  readonly baselineLevel: number | null;
  /** Index of the version the test leaves standing, or -1. */
  readonly winner: number;
}

/** Per-period arms of the reward, baseline first; one period from the totals when periods are not known. */
export function rewardPeriods(spec: ExperimentSpec, ms: readonly VersionMeasurement[], periods: readonly PeriodRecord[]): { arms: PeriodArm[][]; kind: 'rate' | 'mean' } | null {
  const reward = spec.criteria.reward;
  if (reward === null) return null;
  const names = spec.versions.map((v) => v.name);
  const builtin = reward.metric === 'conversion-rate' || reward.metric === 'reward-mean';
  if (builtin && periods.length > 0) {
    const rate = reward.metric === 'conversion-rate';
    const arms = periods.map((p) =>
      names.map((n) => {
        const t = p.versions[n];
        if (t === undefined) return { n: 0, sum: 0, sumSq: 0 };
        const conv = Math.min(t.conversions, t.requests);
        return rate ? { n: t.requests, sum: conv, sumSq: conv } : { n: t.requests, sum: t.rewardSum, sumSq: t.rewardSumSq };
      }),
    );
    return { arms, kind: rate ? 'rate' : 'mean' };
  }
  let kind: 'rate' | 'mean' = 'mean';
  const one = ms.map((m) => {
    const s = rewardStats(spec, m);
    if (s === null) return { n: 0, sum: 0, sumSq: 0 };
    if (s.kind === 'rate') {
      kind = 'rate';
      return { n: s.n, sum: s.successes, sumSq: s.successes };
    }
    return { n: s.n, sum: s.sum, sumSq: s.sumSq };
  });
  return { arms: [one], kind };
}

export function analyseReward(
  spec: ExperimentSpec,
  ms: readonly VersionMeasurement[],
  periods: readonly PeriodRecord[],
  /** Per version: may it still win (not rolled back, not infeasible). */
  contender: readonly boolean[],
  /** Every version has minSamples: only then may anything be eliminated or declared. */
  ready: boolean,
): RewardAnalysis | null {
  const reward = spec.criteria.reward;
  const data = rewardPeriods(spec, ms, periods);
  if (reward === null || data === null) return null;
  const names = spec.versions.map((v) => v.name);
  const k = names.length;
  const sign = reward.preferredDirection === 'High' ? 1 : -1;
  const alpha = 1 - spec.criteria.confidence;
  const builtin = reward.metric === 'conversion-rate' || reward.metric === 'reward-mean';
  const deff = builtin
    ? designEffect(
        ms.map((m) => ({
          requests: m.requests,
          sum: data.kind === 'rate' ? Math.min(m.conversions, m.requests) : m.rewardSum,
          sumSq: data.kind === 'rate' ? Math.min(m.conversions, m.requests) : m.rewardSumSq,
          buckets: m.buckets,
        })),
        data.kind,
      )
    : 1;

  // Per-unit variance of the pooled data: what the mixture's ρ is tuned with.
  let n = 0;
  let sum = 0;
  let sumSq = 0;
  for (const arms of data.arms) for (const a of arms) ((n += a.n), (sum += a.sum), (sumSq += a.sumSq));
  const variance = n > 1 ? Math.max(0, (sumSq - (sum * sum) / n) / (n - 1)) : 0;
  const options = {
    alpha,
    sign: sign as 1 | -1,
    deff,
    tuning: { variance, unitsPerArm: Math.max(TUNING_MIN_UNITS, 10 * spec.criteria.minSamples) },
    minUnits: MIN_UNITS,
    minEvents: MIN_EVENTS,
    isRate: data.kind === 'rate',
  };
  const contenders = names.map((_, i) => i).filter((i) => contender[i]);
  const test: SequentialResult = ready
    ? sequentialTest(data.arms, k, contenders, options)
    : { pairs: [], eliminatedBy: names.map(() => -1), winner: -1, pairAlpha: alpha / Math.max(1, (k * (k - 1)) / 2) };

  // The baseline's level: its per-period means weighted by each period's whole traffic (not its own share).
  let lw = 0;
  let ls = 0;
  for (const arms of data.arms) {
    const b = arms[0]!;
    if (b.n < 1) continue;
    const total = arms.reduce((t, a) => t + a.n, 0);
    lw += total;
    ls += total * (b.sum / b.n);
  }
  const level = lw > 0 ? ls / lw : null;
  const rho2 = tunedRho2(test.pairAlpha, options.tuning);
  const widen = Number.isFinite(deff) ? deff : 1;

  const comparisons = names.map((_, i): VersionComparison => {
    const units = data.arms.reduce((t, arms) => t + (arms[i]?.n ?? 0), 0);
    const eliminatedBy = test.eliminatedBy[i]! >= 0 ? names[test.eliminatedBy[i]!]! : null;
    if (i === 0) {
      const half = level === null ? null : baselineHalfWidth(data.arms, test.pairAlpha, rho2, widen);
      return {
        estimate: level,
        interval: level === null || half === null ? null : [level - half, level + half],
        difference: level === null ? null : 0,
        differenceInterval: level === null ? null : [0, 0],
        lift: level === null ? null : 0,
        liftInterval: level === null ? null : [0, 0],
        eliminatedBy,
        units,
      };
    }
    const e = pairEstimate(data.arms, i, 0);
    if (e === null || level === null) {
      return { estimate: null, interval: null, difference: null, differenceInterval: null, lift: null, liftInterval: null, eliminatedBy, units };
    }
    const v = e.variance * widen;
    const half = v > 0 ? csHalfWidth(1 / v, test.pairAlpha, rho2) : Number.POSITIVE_INFINITY;
    const lo = e.estimate - half;
    const hi = e.estimate + half;
    const rel = (x: number) => (level !== 0 ? x / Math.abs(level) : Number.NaN);
    return {
      estimate: level + e.estimate,
      interval: [level + lo, level + hi],
      difference: e.estimate,
      differenceInterval: [lo, hi],
      lift: rel(e.estimate),
      liftInterval: [rel(lo), rel(hi)],
      eliminatedBy,
      units,
    };
  });
  return { comparisons, designEffect: deff, pairAlpha: test.pairAlpha, baselineLevel: level, winner: test.winner };
}

/** Always-valid half-width of the baseline's level, from its per-period variance, for display. */
function baselineHalfWidth(arms: readonly (readonly PeriodArm[])[], alpha: number, rho2: number, deff: number): number | null {
  let lw = 0;
  let lv = 0;
  for (const p of arms) {
    const b = p[0]!;
    if (b.n < 2) continue;
    const total = p.reduce((t, a) => t + a.n, 0);
    const s2 = Math.max(0, (b.sumSq - (b.sum * b.sum) / b.n) / (b.n - 1));
    lw += total;
    lv += total * total * (s2 / b.n);
  }
  if (lw === 0) return null;
  const variance = (deff * lv) / (lw * lw);
  // One arm's mean has about twice the information of a difference between two at the same units:
  // ρ² tuned for a pair is halved in information units, so doubled here.
  return variance > 0 ? csHalfWidth(1 / variance, alpha, rho2 * 2) : 0;
}
