/**
 * `source: mock` — made-up per-version values, for learning the analysis and
 * for tests, in the spirit of Iter8's mock gauges: the readings are noisy
 * early and settle on the configured means as the experiment runs.
 *
 * The model (docs/metrics.md has the same): at t seconds elapsed,
 *   n = max(1, round(countPerSecond · t))                observations so far
 *   z = (z₁ + … + z_t) / √t                              a standard normal
 *   rate:  value = clamp01(mean + z · sqrt(mean(1 − mean) / n)),  count n, stdDev null
 *   mean:  value = mean + z · s / sqrt(n), s = stdDev ?? |mean| (1 when mean is 0),
 *          count n, stdDev s
 *   count: value = round(mean · t)  (mean is per second),  count null, stdDev null
 * where z_k is the noise of second k, one seeded stream per (experiment seed,
 * metric, version). Readings are therefore cumulative like real counters: the
 * error at one look carries over to the next and fades as 1/sqrt(n), instead
 * of being drawn afresh at every iteration — fresh draws would give every
 * look an independent chance to look like a difference, which no real metric
 * does. The same inputs always give the same reading.
 */
import { seededRandom } from '../../common/random.js';
import type { Problems } from '../../common/validation.js';
import { expected, join, mapping } from '../../common/validation.js';
import type { MetricSpecBase, MetricType } from './base.js';
import { byVersion, readPositive } from './fields.js';
import { failedReading, metricError, okReading } from './reading.js';
import type { MetricQueryResult, MetricReading, MetricSourceImpl, QueryContext } from './types.js';

export interface MockVersionValue {
  /** The true value the noisy readings converge to. */
  readonly mean: number;
  /** Standard deviation of one observation (mean type); default |mean|, or 1 when mean is 0. */
  readonly stdDev: number | null;
}

export interface MockMetricSpec extends MetricSpecBase {
  readonly source: 'mock';
  /** By version name. */
  readonly values: Readonly<Record<string, MockVersionValue>>;
  /** Observations per second of elapsed time: the count grows with it, the noise shrinks as 1/sqrt(count). */
  readonly countPerSecond: number;
}

declare module './base.js' {
  interface MetricSpecs {
    mock: MockMetricSpec;
  }
}

/** The source's defaults (docs/metrics.md lists the same). */
export const MOCK_DEFAULTS = { countPerSecond: 10 } as const;
const MAX_COUNT_PER_SECOND = 1_000_000;

export const mockSource: MetricSourceImpl<MockMetricSpec> = {
  keys: ['values', 'countPerSecond'],
  read: (c, o, path, base) => ({ ...base, source: 'mock', ...readMock(c.p, o, path, c.type, c.versions) }),
  query(spec: MockMetricSpec, ctx: QueryContext): Promise<MetricQueryResult> {
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
  const z = cumulativeNoise(noiseSeed(ctx.seed, 0, spec.name, ctx.version), t);
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

/** Seconds of noise summed one by one; past this, whole blocks of seconds are drawn at once. */
const MAX_NOISE_STEPS = 100_000;

/**
 * (z₁ + … + z_t)/√t for the stream `seed`: a standard normal that changes
 * little from one second to the next. Long experiments sum blocks of k
 * seconds (one draw of variance k each), which is the same distribution.
 */
function cumulativeNoise(seed: number, t: number): number {
  const seconds = Math.ceil(t);
  if (seconds <= 0) return 0;
  const block = Math.ceil(seconds / MAX_NOISE_STEPS);
  const random = seededRandom(seed);
  let sum = 0;
  for (let done = 0; done < seconds; done += block) sum += standardNormal(random) * Math.sqrt(Math.min(block, seconds - done));
  return sum / Math.sqrt(seconds);
}

/** 32-bit FNV-1a over the four inputs: one independent stream per (seed, stream, metric, version). */
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

// ---------------------------------------------------------------- reading the spec

function readMock(
  p: Problems,
  o: Record<string, unknown>,
  path: string,
  type: MetricType | null,
  versions: readonly string[],
): Pick<MockMetricSpec, 'values' | 'countPerSecond'> {
  const countPerSecond = readPositive(p, o.countPerSecond, join(path, 'countPerSecond'), MOCK_DEFAULTS.countPerSecond, MAX_COUNT_PER_SECOND);
  const valuesPath = join(path, 'values');
  if (o.values == null) {
    p.add(valuesPath, `required: a value per version, e.g. { ${versions.map((n) => `${n}: { mean: 0.05 }`).join(', ') || 'v1: { mean: 0.05 }'} }`);
    return { values: {}, countPerSecond };
  }
  const raw = byVersion(p, o.values, valuesPath, versions, 'a mapping of version name to { mean, stdDev? }');
  if (!raw) return { values: {}, countPerSecond };
  const values: Record<string, MockVersionValue> = {};
  for (const version of versions) {
    const at = join(valuesPath, version);
    if (raw[version] == null) p.add(at, 'required: every version of the experiment needs a value ({ mean: x })');
    else values[version] = readMockValue(p, raw[version], at, type);
  }
  return { values, countPerSecond };
}

/** `{ mean, stdDev? }`, or a bare number as shorthand for `{ mean }`. */
function readMockValue(p: Problems, v: unknown, path: string, type: MetricType | null): MockVersionValue {
  const o = typeof v === 'number' ? { mean: v } : mapping(p, v, path, ['mean', 'stdDev']);
  if (!o) return { mean: 0, stdDev: null };
  const meanPath = typeof v === 'number' ? path : join(path, 'mean');
  let mean = 0;
  if (o.mean == null) p.add(meanPath, 'required: the true value the readings converge to');
  else if (typeof o.mean !== 'number' || !Number.isFinite(o.mean)) expected(p, meanPath, 'a finite number', o.mean, null);
  else if (type === 'rate' && (o.mean < 0 || o.mean > 1)) p.add(meanPath, `a rate's mean is within 0..1 (0.05 = 5%), got ${o.mean}`);
  else if (type === 'count' && o.mean < 0) p.add(meanPath, `a count's mean is events per second, >= 0, got ${o.mean}`);
  else mean = o.mean;
  let stdDev: number | null = null;
  if (o.stdDev != null) {
    const at = join(path, 'stdDev');
    if (type !== null && type !== 'mean') p.add(at, `stdDev applies to type: mean only (a ${type}'s noise follows from its mean and count)`);
    else if (typeof o.stdDev !== 'number' || !Number.isFinite(o.stdDev) || o.stdDev <= 0) expected(p, at, 'a number > 0', o.stdDev, null);
    else stdDev = o.stdDev;
  }
  return { mean, stdDev };
}
