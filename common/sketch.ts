/**
 * A mergeable quantile sketch for latencies (the DDSketch idea with a fixed,
 * dense bin layout): a value x > 0 lands in bin ceil(log_γ x), γ = (1+α)/(1-α),
 * so every quantile read back is within a relative error α of the true one.
 *
 * Why our own instead of @datadog/sketches-js: recording must not allocate on
 * the request path, and replicas' sketches must sum *exactly*. With one fixed
 * layout shared by every process, merging is adding two arrays, and the
 * serialised form is just (offset, counts).
 */

/** Relative accuracy of quantiles: 1%. */
export const SKETCH_ALPHA = 0.01;
const GAMMA = (1 + SKETCH_ALPHA) / (1 - SKETCH_ALPHA);
const LOG_GAMMA = Math.log(GAMMA);
/** Smallest value kept apart from zero: 1 µs (values are milliseconds). */
const MIN_VALUE = 1e-3;
/** Largest distinguishable value: ~1.2 h; larger ones go to the last bin. */
const MAX_VALUE = 4.5e6;
const MIN_INDEX = Math.ceil(Math.log(MIN_VALUE) / LOG_GAMMA);
const MAX_INDEX = Math.ceil(Math.log(MAX_VALUE) / LOG_GAMMA);
/** Bin 0 holds values <= MIN_VALUE; bin i>0 holds (γ^(k-1), γ^k] for k = MIN_INDEX + i. */
export const SKETCH_BINS = MAX_INDEX - MIN_INDEX + 2;

export interface SketchSnapshot {
  /** Index of the first non-empty bin. */
  readonly offset: number;
  /** Counts from `offset` on, up to the last non-empty bin. */
  readonly counts: number[];
}

export class LatencySketch {
  readonly bins = new Float64Array(SKETCH_BINS);
  count = 0;

  add(valueMs: number): void {
    this.bins[binOf(valueMs)]! += 1;
    this.count += 1;
  }

  merge(other: LatencySketch): void {
    const a = this.bins;
    const b = other.bins;
    for (let i = 0; i < a.length; i++) a[i]! += b[i]!;
    this.count += other.count;
  }

  /** Adds a snapshot's counts; `sign` -1 subtracts them (counts since an earlier snapshot). */
  mergeSnapshot(s: SketchSnapshot, sign: 1 | -1 = 1): void {
    for (let i = 0; i < s.counts.length; i++) {
      const c = sign * s.counts[i]!;
      const at = s.offset + i;
      if (at >= 0 && at < SKETCH_BINS) this.bins[at]! += c;
      this.count += c;
    }
  }

  /** The q-quantile (0..1), within relative error α; NaN when empty. */
  quantile(q: number): number {
    if (this.count === 0) return Number.NaN;
    const rank = q * (this.count - 1);
    let seen = 0;
    for (let i = 0; i < SKETCH_BINS; i++) {
      seen += this.bins[i]!;
      if (seen > rank) return valueOf(i);
    }
    return valueOf(SKETCH_BINS - 1);
  }

  /**
   * Replaces each q in `qs` (0..1) by its quantile, in one pass over the bins
   * however many there are: what posterior sampling of percentiles needs.
   */
  quantilesInPlace(qs: Float64Array): void {
    if (this.count === 0) return void qs.fill(Number.NaN);
    const order = Array.from(qs.keys()).sort((a, b) => qs[a]! - qs[b]!);
    let bin = 0;
    let seen = this.bins[0]!;
    for (const i of order) {
      const rank = qs[i]! * (this.count - 1);
      while (seen <= rank && bin < SKETCH_BINS - 1) seen += this.bins[++bin]!;
      qs[i] = valueOf(bin);
    }
  }

  /**
   * How many recorded values are <= limitMs (the empirical F(limit) times
   * count). Bins straddling the limit count as at-or-under only when their
   * representative value is, so the answer is exact up to the α bin width.
   */
  countAtOrBelow(limitMs: number): number {
    let n = 0;
    for (let i = 0; i < SKETCH_BINS; i++) {
      if (valueOf(i) > limitMs) break;
      n += this.bins[i]!;
    }
    return n;
  }

  snapshot(): SketchSnapshot {
    let first = -1;
    let last = -1;
    for (let i = 0; i < SKETCH_BINS; i++) {
      if (this.bins[i]! !== 0) {
        if (first < 0) first = i;
        last = i;
      }
    }
    if (first < 0) return { offset: 0, counts: [] };
    return { offset: first, counts: Array.from(this.bins.subarray(first, last + 1)) };
  }

  static fromSnapshot(s: SketchSnapshot): LatencySketch {
    const k = new LatencySketch();
    k.mergeSnapshot(s);
    return k;
  }
}

function binOf(x: number): number {
  if (!(x > MIN_VALUE)) return 0; // also catches NaN
  const k = Math.ceil(Math.log(x) / LOG_GAMMA);
  return k >= MAX_INDEX ? SKETCH_BINS - 1 : k - MIN_INDEX + 1;
}

/** The value reported for a bin: the midpoint (in relative terms) of its interval. */
function valueOf(bin: number): number {
  if (bin === 0) return 0;
  const k = bin + MIN_INDEX - 1;
  return (2 * Math.pow(GAMMA, k)) / (GAMMA + 1);
}
