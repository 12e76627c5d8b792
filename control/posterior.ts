/**
 * Posterior distributions of the metrics Sluice judges, with uniform or
 * uninformative priors. Each answers "how likely is the true value at most
 * x" exactly (CDFs from @stdlib) and draws samples with the experiment's
 * seeded RNG (for P(best) and relative objectives). Formulas: docs/statistics.md.
 */
import betaCdf from '@stdlib/stats-base-dists-beta-cdf';
import tCdf from '@stdlib/stats-base-dists-t-cdf';
import type { Rng } from './analysis-types.js';
import type { LatencySketch } from '../common/sketch.js';

export interface Posterior {
  readonly mean: number;
  readonly sd: number;
  /** P(true value <= x). */
  cdf(x: number): number;
  draw(rng: Rng): number;
  /** Fills `out` with independent draws: the fast path for P(best) and relative objectives. */
  fill(rng: Rng, out: Float64Array): void;
}

/**
 * Standard normal draws by Marsaglia's polar method, two per accepted pair:
 * one log and one square root for two normals, no trigonometry.
 */
export class NormalStream {
  #spare = 0;
  #hasSpare = false;

  constructor(private readonly rng: Rng) {}

  next(): number {
    if (this.#hasSpare) {
      this.#hasSpare = false;
      return this.#spare;
    }
    let u: number;
    let v: number;
    let s: number;
    do {
      u = 2 * this.rng() - 1;
      v = 2 * this.rng() - 1;
      s = u * u + v * v;
    } while (s >= 1 || s === 0);
    const m = Math.sqrt((-2 * Math.log(s)) / s);
    this.#spare = v * m;
    this.#hasSpare = true;
    return u * m;
  }
}

/** Gamma(shape, 1) by Marsaglia and Tsang (2000); shape < 1 via the boost Gamma(a+1)·U^(1/a). */
function gammaFrom(shape: number, normal: NormalStream, rng: Rng): number {
  if (shape < 1) return gammaFrom(shape + 1, normal, rng) * Math.pow(rng(), 1 / shape);
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = normal.next();
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = rng();
    if (u < 1 - 0.0331 * x * x * x * x) return d * v;
    if (Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
  }
}

export function drawGamma(shape: number, rng: Rng): number {
  return gammaFrom(shape, new NormalStream(rng), rng);
}

export function drawBeta(a: number, b: number, rng: Rng): number {
  const n = new NormalStream(rng);
  const x = gammaFrom(a, n, rng);
  return x / (x + gammaFrom(b, n, rng));
}

function fillBeta(a: number, b: number, rng: Rng, out: Float64Array): void {
  const n = new NormalStream(rng);
  for (let i = 0; i < out.length; i++) {
    const x = gammaFrom(a, n, rng);
    out[i] = x / (x + gammaFrom(b, n, rng));
  }
}

/** A rate (errors per request, conversions per request): Beta(1 + successes, 1 + failures). */
export function ratePosterior(successes: number, trials: number, prior: { a: number; b: number } = { a: 1, b: 1 }): Posterior {
  const s = Math.min(Math.max(successes, 0), trials);
  const a = prior.a + s;
  const b = prior.b + trials - s;
  return {
    mean: a / (a + b),
    sd: Math.sqrt((a * b) / ((a + b) * (a + b) * (a + b + 1))),
    cdf: (x) => (x < 0 ? 0 : x >= 1 ? 1 : betaCdf(x, a, b)),
    draw: (rng) => drawBeta(a, b, rng),
    fill: (rng, out) => fillBeta(a, b, rng, out),
  };
}

/**
 * A mean from n values with sum and sum of squares: with the uninformative
 * prior, (μ − x̄)/(s/√n) follows Student's t with n − 1 degrees of freedom.
 * Fewer than 2 values say nothing about the spread: the posterior is flat.
 */
export function meanPosterior(n: number, sum: number, sumSq: number, prior?: { mean: number; strength: number }): Posterior {
  if (n < 2) {
    const m = n === 1 ? sum : 0;
    return { mean: m, sd: Number.POSITIVE_INFINITY, cdf: () => 0.5, draw: () => m, fill: (_rng, out) => out.fill(m) };
  }
  const sampleMean = sum / n;
  const variance = Math.max((sumSq - n * sampleMean * sampleMean) / (n - 1), 0);
  // A prior of k pseudo-values at `prior.mean` (same spread as the data): the mean shrinks toward it.
  const k = prior?.strength ?? 0;
  const mean = k > 0 ? (sum + k * prior!.mean) / (n + k) : sampleMean;
  // A spread of exactly zero would make every verdict certain at once; floor it at a hair.
  const se = Math.max(Math.sqrt(variance / (n + k)), 1e-9 * Math.max(1, Math.abs(mean)));
  const df = n - 1;
  return {
    mean,
    sd: df > 2 ? se * Math.sqrt(df / (df - 2)) : se,
    cdf: (x) => tCdf((x - mean) / se, df),
    draw: (rng) => mean + se * drawStudentT(df, rng),
    fill: (rng, out) => {
      const n = new NormalStream(rng);
      for (let i = 0; i < out.length; i++) {
        const z = n.next();
        out[i] = mean + se * (df > 200 ? z : z / Math.sqrt((2 * gammaFrom(df / 2, n, rng)) / df));
      }
    },
  };
}

function drawStudentT(df: number, rng: Rng): number {
  const n = new NormalStream(rng);
  if (df > 200) return n.next(); // indistinguishable, and much cheaper
  return n.next() / Math.sqrt((2 * gammaFrom(df / 2, n, rng)) / df);
}

/**
 * The q-quantile of latency (q = 0.95 for p95), from the mergeable sketch.
 * With k of n requests at or under L, the share F(L) of requests under L has
 * posterior Beta(1 + k, 1 + n − k), and pq <= L exactly when F(L) >= q, so
 * P(pq <= L) = 1 − BetaCDF(q; 1 + k, 1 + n − k). Draws take the value at a
 * rank drawn from the order-statistic posterior Beta(1 + qn, 1 + (1 − q)n).
 */
export function quantilePosterior(sketch: LatencySketch, q: number): Posterior {
  const n = sketch.count;
  const a = 1 + q * n;
  const b = 1 + (1 - q) * n;
  return {
    mean: sketch.quantile(q),
    sd: Number.NaN,
    cdf: (x) => {
      const k = sketch.countAtOrBelow(x);
      return 1 - betaCdf(q, 1 + k, 1 + n - k);
    },
    draw: (rng) => sketch.quantile(drawBeta(a, b, rng)),
    fill: (rng, out) => {
      fillBeta(a, b, rng, out);
      sketch.quantilesInPlace(out);
    },
  };
}
