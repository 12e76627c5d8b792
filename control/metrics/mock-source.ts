/**
 * `source: mock` — made-up per-version values, for learning the analysis and
 * for tests, in the spirit of Iter8's mock gauges: the readings are noisy
 * early and settle on the configured means as the experiment runs.
 *
 * The model (docs/metrics.md has the same): at t seconds elapsed,
 *   n = max(1, round(countPerSecond · t))                observations so far
 *   rate:  value = clamp01(mean + z · sqrt(mean(1 − mean) / n)),  count n, stdDev null
 *   mean:  value = mean + z · s / sqrt(n), s = stdDev ?? |mean| (1 when mean is 0),
 *          count n, stdDev s
 *   count: value = round(mean · t)  (mean is per second),  count null, stdDev null
 * with z a standard normal draw seeded by (experiment seed, iteration, metric,
 * version): the same inputs always give the same reading, and the noise
 * shrinks as 1/sqrt(n), like the standard error of a real sample.
 */
import { seededRandom } from '../../common/random.js';
import type { MockMetricSpec } from '../spec-types.js';
import { failedReading, metricError, okReading } from './reading.js';
import type { MetricQueryResult, MetricReading, MetricSourceImpl, QueryContext } from './types.js';

export const mockSource: MetricSourceImpl<MockMetricSpec> = {
  read(spec: MockMetricSpec, ctx: QueryContext): Promise<MetricQueryResult> {
    let reading: MetricReading;
    try {
      reading = mockReading(spec, ctx);
    } catch (err) {
      reading = failedReading(err, []);
    }
    return Promise.resolve({ reading, request: null, response: null });
  },
};

/** The reading the model gives; pure. */
export function mockReading(spec: MockMetricSpec, ctx: QueryContext): MetricReading {
  const v = spec.values[ctx.version];
  // Validation requires every version; an experiment whose versions changed since is the only way here.
  if (v === undefined) throw metricError('SLUICE_METRIC_NO_DATA', `mock metric ${spec.name} has no value for version ${ctx.version}`);
  const t = Math.max(0, ctx.elapsedSeconds);
  const n = Math.max(1, Math.round(spec.countPerSecond * t));
  const z = standardNormal(seededRandom(noiseSeed(ctx.seed, ctx.iteration, spec.name, ctx.version)));
  switch (spec.type) {
    case 'rate': {
      const p = v.mean;
      return okReading(Math.min(1, Math.max(0, p + z * Math.sqrt((p * (1 - p)) / n))), n, null);
    }
    case 'mean': {
      const s = mockStdDev(v.mean, v.stdDev);
      return okReading(v.mean + (z * s) / Math.sqrt(n), n, s);
    }
    case 'count':
      return okReading(Math.round(v.mean * t), null, null);
  }
}

/** The spread of one observation of a mean metric: given, else |mean|, else 1. */
export function mockStdDev(mean: number, stdDev: number | null): number {
  return stdDev ?? (mean === 0 ? 1 : Math.abs(mean));
}

/** 32-bit FNV-1a over the four inputs: one independent stream per (seed, iteration, metric, version). */
export function noiseSeed(seed: number, iteration: number, metric: string, version: string): number {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(`${seed}\u0000${iteration}\u0000${metric}\u0000${version}`, 'utf8')) {
    h ^= byte;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Box–Muller; 1 − u keeps the logarithm's argument in (0, 1]. */
function standardNormal(random: () => number): number {
  const u = 1 - random();
  const v = random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}
