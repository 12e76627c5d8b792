/**
 * The winner test: always-valid confidence sequences on the difference
 * between every two versions, estimated period by period. Pure.
 *
 * Estimate. Traffic is split anew at every iteration (a routing generation,
 * a "period"), so versions are compared *within* each period and the
 * per-period differences are combined with weights fixed by the period's
 * sample sizes, not by its outcomes (the "epoch" estimator of Optimizely's
 * bandit statistics):
 *
 *   d_k = ȳ_ku − ȳ_kv      H_k = n_ku·n_kv / (n_ku + n_kv)
 *   Δ̂  = Σ H_k d_k / Σ H_k      Var(Δ̂) = deff · Σ H_k σ²_k / (Σ H_k)²
 *
 * σ²_k is the pooled within-version variance of period k (every version of
 * the period, so it is stable even for an arm with few requests). A change
 * in the base rate that hits every version alike cancels in every d_k; a
 * bandit that moves traffic between periods cannot favour the version that
 * got its traffic later (the Simpson's paradox of pooled counts). `deff`
 * (design-effect.ts) widens the variance when the randomised unit is a
 * sticky user rather than a request.
 *
 * Guarantee. Over information I = 1/Var(Δ̂), I·(Δ̂ − Δ) behaves as a
 * Brownian motion; the normal-mixture martingale (Robbins 1970; Howard,
 * Ramdas, McAuliffe & Sekhon 2021) bounds it at every I at once, which gives
 * the asymptotic confidence sequence of Waudby-Smith, Arbour, Sinha, Kennedy
 * & Ramdas (2024, "Time-uniform central limit theory and asymptotic
 * confidence sequences", Prop. 2.5 — GrowthBook's sequential engine):
 *
 *   Δ̂ ± sqrt( 2(Iρ² + 1) / (I²ρ²) · log( sqrt(Iρ² + 1) / α ) )
 *
 * which covers Δ at every look with probability ≥ 1 − α, however often and
 * however long anyone looks. Every pair of versions gets α / (number of
 * pairs) (Bonferroni), so with all versions equal the probability that any
 * interval ever excludes 0 — that any winner is ever declared — is at most
 * α = 1 − confidence.
 *
 * Decision (successive elimination). A version is *eliminated* once another
 * version's interval against it lies wholly on the better side. The winner
 * is the one version left. On the event that every interval covers (≥ 1 − α),
 * the truly best version is never eliminated, so a declared winner is the
 * best one.
 */

/** One version's totals in one period: n units, Σy and Σy² of the reward per unit. */
export interface PeriodArm {
  readonly n: number;
  readonly sum: number;
  readonly sumSq: number;
}

/** The normal-mixture parameter ρ² tuned for `targetInformation` (Waudby-Smith et al., eq. for ρ*). */
export function mixtureRho2(alpha: number, targetInformation: number): number {
  const l = -2 * Math.log(alpha);
  return (l + Math.log(l + 1)) / targetInformation;
}

/** ρ² for a pair tested at `alpha`, tuned for `tuning.unitsPerArm` units on each side at the per-unit variance. */
export function tunedRho2(alpha: number, tuning: { readonly variance: number; readonly unitsPerArm: number }): number {
  return mixtureRho2(alpha, tuning.unitsPerArm / (2 * Math.max(tuning.variance, 1e-12)));
}

/** Half-width of the asymptotic confidence sequence at information `info` (1/variance); Infinity without information. */
export function csHalfWidth(info: number, alpha: number, rho2: number): number {
  if (!(info > 0) || !Number.isFinite(info)) return info === Number.POSITIVE_INFINITY ? 0 : Number.POSITIVE_INFINITY;
  const x = info * rho2 + 1;
  return Math.sqrt(((2 * x) / (info * info * rho2)) * Math.log(Math.sqrt(x) / alpha));
}

/** Pooled within-version variance of one period over the given arms (unbiased; 0 when undefined). */
export function pooledVariance(arms: readonly PeriodArm[]): number {
  let ss = 0;
  let df = 0;
  for (const a of arms) {
    if (a.n < 1) continue;
    ss += Math.max(0, a.sumSq - (a.sum * a.sum) / a.n);
    df += a.n - 1;
  }
  return df > 0 ? ss / df : 0;
}

export interface PairEstimate {
  /** Δ̂ = mean(u) − mean(v), stratified by period. */
  readonly estimate: number;
  /** Var(Δ̂) before the design effect. */
  readonly variance: number;
  /** Σ H_k: the effective number of units per arm behind the comparison. */
  readonly weight: number;
  /** Units of u and v in the periods that compared them. */
  readonly nU: number;
  readonly nV: number;
  readonly sumU: number;
  readonly sumV: number;
}

/** The period-stratified difference of u and v; null when no period has both. */
export function pairEstimate(periods: readonly (readonly PeriodArm[])[], u: number, v: number): PairEstimate | null {
  let w = 0;
  let s = 0;
  let varSum = 0;
  let nU = 0;
  let nV = 0;
  let sumU = 0;
  let sumV = 0;
  for (const arms of periods) {
    const a = arms[u];
    const b = arms[v];
    if (a === undefined || b === undefined || a.n < 1 || b.n < 1) continue;
    const h = (a.n * b.n) / (a.n + b.n);
    w += h;
    s += h * (a.sum / a.n - b.sum / b.n);
    varSum += h * pooledVariance(arms);
    nU += a.n;
    nV += b.n;
    sumU += a.sum;
    sumV += b.sum;
  }
  if (w === 0) return null;
  return { estimate: s / w, variance: varSum / (w * w), weight: w, nU, nV, sumU, sumV };
}

export interface SequentialOptions {
  /** 1 − confidence: the chance, over the whole experiment, of declaring any wrong winner. */
  readonly alpha: number;
  /** +1 when higher is better, −1 when lower is. */
  readonly sign: 1 | -1;
  /** Variance inflation for clustered units (≥ 1); Infinity: too few users to judge. */
  readonly deff: number;
  /** Per-unit variance the mixture is tuned with, and the units per arm it is tuned for. */
  readonly tuning: { readonly variance: number; readonly unitsPerArm: number };
  /** Below this many units of one arm in a pair, that pair is not tested (the normal approximation needs some). */
  readonly minUnits: number;
  /** For rates: below this many successes or failures in a pair, it is not tested either. */
  readonly minEvents: number;
  readonly isRate: boolean;
}

export interface PairResult {
  readonly u: number;
  readonly v: number;
  /** mean(u) − mean(v) and its always-valid interval (already widened by deff). */
  readonly estimate: number;
  readonly lower: number;
  readonly upper: number;
  /** Whether the test may read this pair yet (enough units and events). */
  readonly tested: boolean;
}

export interface SequentialResult {
  readonly pairs: readonly PairResult[];
  /** Per arm: eliminated by which arm (index), or -1. */
  readonly eliminatedBy: readonly number[];
  /** The one arm left among the candidates for winner, or -1. */
  readonly winner: number;
  /** Significance each pair is tested at. */
  readonly pairAlpha: number;
}

/**
 * Runs the test over `contenders` (arm indices; rolled-back versions are
 * left out). `periods[k][i]` is arm i in period k.
 */
export function sequentialTest(periods: readonly (readonly PeriodArm[])[], arms: number, contenders: readonly number[], o: SequentialOptions): SequentialResult {
  // The family is fixed by the experiment's versions, not by who is still in it: Bonferroni over every pair.
  const pairCount = Math.max(1, (arms * (arms - 1)) / 2);
  const pairAlpha = o.alpha / pairCount;
  const rho2 = tunedRho2(pairAlpha, o.tuning);
  const pairs: PairResult[] = [];
  const eliminatedBy = Array.from({ length: arms }, () => -1);
  for (let i = 0; i < contenders.length; i++) {
    for (let j = i + 1; j < contenders.length; j++) {
      const u = contenders[i]!;
      const v = contenders[j]!;
      const e = pairEstimate(periods, u, v);
      if (e === null) {
        pairs.push({ u, v, estimate: Number.NaN, lower: Number.NEGATIVE_INFINITY, upper: Number.POSITIVE_INFINITY, tested: false });
        continue;
      }
      const events = e.sumU + e.sumV;
      const tested =
        Number.isFinite(o.deff) &&
        e.nU >= o.minUnits &&
        e.nV >= o.minUnits &&
        (!o.isRate || (events >= o.minEvents && e.nU + e.nV - events >= o.minEvents));
      const variance = e.variance * (Number.isFinite(o.deff) ? o.deff : 1);
      const half = variance > 0 ? csHalfWidth(1 / variance, pairAlpha, rho2) : Number.POSITIVE_INFINITY;
      const lower = e.estimate - half;
      const upper = e.estimate + half;
      pairs.push({ u, v, estimate: e.estimate, lower, upper, tested });
      if (!tested) continue;
      // The whole interval on one side of 0: one of the two is better, the other out.
      const uBetter = o.sign > 0 ? lower > 0 : upper < 0;
      const vBetter = o.sign > 0 ? upper < 0 : lower > 0;
      if (uBetter && eliminatedBy[v] === -1) eliminatedBy[v] = u;
      if (vBetter && eliminatedBy[u] === -1) eliminatedBy[u] = v;
    }
  }
  const left = contenders.filter((i) => eliminatedBy[i] === -1);
  return { pairs, eliminatedBy, winner: left.length === 1 && contenders.length > 1 ? left[0]! : -1, pairAlpha };
}
