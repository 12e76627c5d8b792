/**
 * The built-in metrics: for each, its point value and its posterior, read
 * from one version's measurements. One table, so that analysis, display and
 * relative objectives all agree on what a metric means.
 */
import type { VersionMeasurement } from './analysis-types.js';
import { meanPosterior, quantilePosterior, ratePosterior, type Posterior } from './posterior.js';
import type { BuiltinMetric } from './spec-types.js';

export type MetricKind = 'count' | 'rate' | 'mean' | 'quantile';

interface MetricDef {
  readonly kind: MetricKind;
  value(m: VersionMeasurement): number | null;
  /** Null for counts: they are known exactly. */
  posterior(m: VersionMeasurement): Posterior | null;
}

const perRequest = (x: (m: VersionMeasurement) => number) => (m: VersionMeasurement) => (m.requests > 0 ? x(m) / m.requests : null);

function latencyQuantile(q: number): MetricDef {
  return {
    kind: 'quantile',
    value: (m) => (m.latency.count > 0 ? m.latency.quantile(q) : null),
    posterior: (m) => (m.latency.count > 0 ? quantilePosterior(m.latency, q) : null),
  };
}

export const BUILTIN: Readonly<Record<BuiltinMetric, MetricDef>> = {
  'request-count': { kind: 'count', value: (m) => m.requests, posterior: () => null },
  'error-count': { kind: 'count', value: (m) => m.errors, posterior: () => null },
  'error-rate': { kind: 'rate', value: perRequest((m) => m.errors), posterior: (m) => ratePosterior(m.errors, m.requests) },
  'latency-mean': {
    kind: 'mean',
    value: perRequest((m) => m.latencySumMs),
    posterior: (m) => meanPosterior(m.requests, m.latencySumMs, m.latencySumSqMs),
  },
  'latency-p50': latencyQuantile(0.5),
  'latency-p90': latencyQuantile(0.9),
  'latency-p95': latencyQuantile(0.95),
  'latency-p99': latencyQuantile(0.99),
  'mirror-mismatch-rate': {
    kind: 'rate',
    value: (m) => (m.mirrorCompared > 0 ? m.mirrorMismatch / m.mirrorCompared : null),
    posterior: (m) => ratePosterior(m.mirrorMismatch, m.mirrorCompared),
  },
  // Requests with a reward > 0 (at most one per request), per request: a reward of 0 or a refund is not a conversion.
  'conversion-rate': {
    kind: 'rate',
    value: perRequest((m) => Math.min(m.conversions, m.requests)),
    posterior: (m) => ratePosterior(Math.min(m.conversions, m.requests), m.requests),
  },
  // Reward value per request, requests without a reward counting as 0 (revenue per visitor).
  'reward-mean': { kind: 'mean', value: perRequest((m) => m.rewardSum), posterior: (m) => meanPosterior(m.requests, m.rewardSum, m.rewardSumSq) },
};

/** Every built-in metric's value, for status and display. */
export function metricValues(m: VersionMeasurement): Record<string, number | null> {
  const out: Record<string, number | null> = {};
  for (const [name, def] of Object.entries(BUILTIN)) out[name] = def.value(m);
  return out;
}
