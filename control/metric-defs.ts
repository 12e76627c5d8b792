/**
 * One lookup for every metric an experiment can name: the built-in ones
 * (measured in the request path, builtin-metrics.ts) and the custom ones
 * declared in `spec.metrics` (read by the scheduler from mock, REST or
 * Prometheus sources each iteration and carried in
 * `VersionMeasurement.custom`). The analysis sees only `MetricDef`s.
 *
 * A custom metric becomes a posterior when the numbers behind it are known:
 *   rate  — value p over n trials      → Beta(1 + p·n, 1 + (1 − p)·n)
 *   mean  — value x̄ over n, spread s   → Student-t from (n, Σ = x̄·n, Σ² = (n−1)s² + n·x̄²)
 *   count — known exactly              → a point check
 * n is the `sampleSize` metric's value (or the source's own count, mock), s
 * the `stdDev` metric's (or the source's own). Without them a rate or mean
 * is a point check too.
 */
import type { VersionMeasurement } from './analysis-types.js';
import { BUILTIN, metricValues, type MetricKind } from './builtin-metrics.js';
import type { MetricReading } from './metrics/types.js';
import { meanPosterior, ratePosterior, type Posterior } from './posterior.js';
import type { ExperimentSpec, MetricSpec } from './spec-types.js';

export interface MetricDef {
  readonly kind: MetricKind;
  value(m: VersionMeasurement): number | null;
  /** Null when the value is a point (counts, or a custom metric without sample size). */
  posterior(m: VersionMeasurement): Posterior | null;
  /** Observations behind the value: what minSamples is compared with; null for counts (exact). */
  samples(m: VersionMeasurement): number | null;
}

/** Sufficient statistics of a reward: what the bandit's and the skeptical posteriors are built from. */
export type RewardStats =
  | { readonly kind: 'rate'; readonly n: number; readonly successes: number }
  | { readonly kind: 'mean'; readonly n: number; readonly sum: number; readonly sumSq: number };

const requests = (m: VersionMeasurement) => m.requests;

function builtinDef(name: keyof typeof BUILTIN): MetricDef {
  const def = BUILTIN[name];
  return { ...def, samples: def.kind === 'count' ? () => null : requests };
}

/** The definition of a metric named in an objective or reward (validation guarantees it exists). */
export function metricDef(spec: ExperimentSpec, name: string): MetricDef {
  if (Object.hasOwn(BUILTIN, name)) return builtinDef(name as keyof typeof BUILTIN);
  const custom = spec.metrics.find((x) => x.name === name);
  if (custom === undefined) throw new Error(`unknown metric ${name}: validation should have refused it`);
  return customDef(spec, custom);
}

function customDef(spec: ExperimentSpec, c: MetricSpec): MetricDef {
  return {
    kind: c.type,
    value: (m) => m.custom?.[c.name]?.value ?? null,
    // Whole observations: Prometheus increase() extrapolates to fractions.
    samples: (m) => (c.type === 'count' ? null : Math.max(0, Math.round(observations(spec, c, m) ?? 0))),
    posterior: (m) => {
      const s = customRewardStats(spec, c, m);
      if (s === null) return null;
      return s.kind === 'rate' ? ratePosterior(s.successes, s.n) : meanPosterior(s.n, s.sum, s.sumSq);
    },
  };
}

/** n behind a custom metric: its sampleSize metric's value, else the source's own count (mock). */
function observations(spec: ExperimentSpec, c: MetricSpec, m: VersionMeasurement): number | null {
  return c.sampleSize !== null ? metricDef(spec, c.sampleSize).value(m) : (m.custom?.[c.name]?.count ?? null);
}

/** A custom metric's sufficient statistics, from its value, n and spread (its stdDev metric, else the source's own). */
function customRewardStats(spec: ExperimentSpec, c: MetricSpec, m: VersionMeasurement): RewardStats | null {
  const reading: MetricReading | undefined = m.custom?.[c.name];
  const sd = c.stdDev !== null ? metricDef(spec, c.stdDev).value(m) : (reading?.stdDev ?? null);
  return customStats(c, reading?.value ?? null, observations(spec, c, m), sd);
}

function customStats(c: MetricSpec, value: number | null, n: number | null, sd: number | null): RewardStats | null {
  if (value === null || n === null || !Number.isFinite(n) || n <= 0) return null;
  if (c.type === 'rate') {
    const trials = Math.round(n);
    const p = Math.min(1, Math.max(0, value));
    return trials > 0 ? { kind: 'rate', n: trials, successes: Math.round(p * trials) } : null;
  }
  if (c.type === 'mean' && sd !== null && Number.isFinite(sd) && sd >= 0 && n > 1) {
    return { kind: 'mean', n, sum: value * n, sumSq: (n - 1) * sd * sd + n * value * value };
  }
  return null;
}

/** The reward's statistics for one version; null when it has no data (or a failed read). */
export function rewardStats(spec: ExperimentSpec, m: VersionMeasurement): RewardStats | null {
  const reward = spec.criteria.reward;
  if (reward === null) return null;
  if (reward.metric === 'conversion-rate') return { kind: 'rate', n: m.requests, successes: Math.min(m.conversions, m.requests) };
  if (reward.metric === 'reward-mean') return { kind: 'mean', n: m.requests, sum: m.rewardSum, sumSq: m.rewardSumSq };
  return customRewardStats(spec, spec.metrics.find((x) => x.name === reward.metric)!, m);
}

/**
 * Observations behind a version's verdicts: the fewest among the metrics its
 * criteria use (requests for built-in metrics). An experiment judged only on
 * mock or REST metrics thus needs no traffic at all.
 */
export function samplesOf(spec: ExperimentSpec, m: VersionMeasurement): number {
  const names = spec.criteria.objectives.map((o) => o.metric);
  if (spec.criteria.reward !== null) names.push(spec.criteria.reward.metric);
  let min: number | null = null;
  for (const name of names) {
    const s = metricDef(spec, name).samples(m);
    if (s !== null && (min === null || s < min)) min = s;
  }
  return min ?? m.requests;
}

/** Every metric's value for status and display: the built-in ones and the experiment's custom ones. */
export function displayValues(spec: ExperimentSpec, m: VersionMeasurement): Record<string, number | null> {
  const out = metricValues(m);
  for (const c of spec.metrics) out[c.name] = m.custom?.[c.name]?.value ?? null;
  return out;
}

/** Custom metrics that could not be read for a version this iteration, by metric name. */
export function metricErrors(spec: ExperimentSpec, m: VersionMeasurement): Record<string, { code: string; message: string }> {
  const out: Record<string, { code: string; message: string }> = {};
  for (const c of spec.metrics) {
    const e = m.custom?.[c.name]?.error;
    if (e) out[c.name] = { code: e.code, message: e.message };
  }
  return out;
}
