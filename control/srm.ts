/**
 * Sample ratio mismatch: does traffic follow the weights? Broken routing (a
 * misconfigured rule, a replica on old weights, bots pinned to one version)
 * biases every metric, so a mismatch must be flagged, not averaged over.
 * Pure.
 *
 * Counts and weights describe the same period by construction: the proxies
 * count per routing generation (proxy/stats.ts GenerationCounts), and a
 * generation's counts are tested against the weights of that generation,
 * however late the control plane reads them.
 *
 * The test is sequential and exact, so it neither cries wolf at small arms
 * nor needs a Bonferroni split over iterations. Per version, with share p_k
 * of n_k requests in period k and x_k observed, the likelihood ratio of a
 * constant shift θ in the log-odds of landing on that version,
 *
 *   L_t(θ) = Π_k [ e^{θ·x_k} / (p_k·e^θ + 1 − p_k)^{n_k} ],
 *
 * is a martingale with mean 1 under sound routing, for any weights that
 * change between periods; so is its average M_t over a grid of θ (a mixture
 * over shifts from 2% to 4 in log-odds, both directions). By Ville's
 * inequality P(M_t ever ≥ 1/a) ≤ a: an always-valid test at level a, exact
 * for binomial counts of any size (no chi-square approximation). The
 * experiment's SRM_ALPHA is split evenly: half over the versions of the
 * keyless test, half over the versions × replicas of the sticky one.
 *
 * Samples: keyless requests (drawn at random by weight), pooled over
 * replicas; and sticky keys first seen in a generation, per replica (a key
 * that reaches two replicas is new to each, so replicas are tested apart).
 * A key's version is its slot's, and each version holds exactly its weight
 * in slots, so the expected share of keys is the weight too.
 */
import type { SrmCheck } from './analysis-types.js';

/** The experiment-wide false-alarm rate, whatever its length or speed. */
export const SRM_ALPHA = 0.001;
/** Replicas the sticky test budgets for; replicas beyond it are not tested (said in the status). */
export const SRM_MAX_REPLICAS = 16;
/** Shifts in log-odds the mixture averages over (a 20% misroute of a 50% arm is θ ≈ 0.4). */
const THETAS = [0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8, 1.2, 1.6, 2.5, 4].flatMap((t) => [t, -t]);

/** Per version, the log-likelihood ratio at every θ of the grid. */
export type SrmLogL = Record<string, number[]>;

export interface SrmState {
  readonly keyless: SrmLogL;
  readonly sticky: Readonly<Record<string, SrmLogL>>;
  /** Set once a version received traffic while its weight was 0: no chance explains it. */
  readonly impossible: boolean;
}

export const EMPTY_SRM_STATE: SrmState = Object.freeze({ keyless: {}, sticky: {}, impossible: false });

/** One period's sample: requests per version, and the weights (percent) they were routed under. */
export interface SrmSample {
  readonly keyless: Readonly<Record<string, number>>;
  /** Per replica: sticky keys first seen in the period, per version. */
  readonly newKeys: Readonly<Record<string, Readonly<Record<string, number>>>>;
  readonly weights: Readonly<Record<string, number>>;
}

function update(prev: SrmLogL, counts: Readonly<Record<string, number>>, weights: Readonly<Record<string, number>>): { next: SrmLogL; impossible: boolean; n: number } {
  const names = Object.keys(weights);
  const n = names.reduce((s, v) => s + Math.max(0, counts[v] ?? 0), 0);
  const next: SrmLogL = {};
  let impossible = false;
  for (const v of names) {
    const logL = prev[v] ? [...prev[v]!] : THETAS.map(() => 0);
    const x = Math.max(0, counts[v] ?? 0);
    const p = (weights[v] ?? 0) / 100;
    if (n > 0) {
      if (p <= 0) {
        if (x > 0) impossible = true;
      } else if (p < 1) {
        for (let j = 0; j < THETAS.length; j++) {
          const t = THETAS[j]!;
          logL[j] = logL[j]! + x * t - n * Math.log(p * Math.exp(t) + 1 - p);
        }
      }
    }
    next[v] = logL;
  }
  // Traffic to a version outside the weights (weight 0 by omission) is impossible too.
  for (const [v, x] of Object.entries(counts)) if (!(v in weights) && x > 0) impossible = true;
  return { next, impossible, n };
}

/** log of the mean of exp over the grid, computed stably. */
function logMeanExp(xs: readonly number[]): number {
  let max = Number.NEGATIVE_INFINITY;
  for (const x of xs) if (x > max) max = x;
  if (!Number.isFinite(max)) return max;
  let s = 0;
  for (const x of xs) s += Math.exp(x - max);
  return max + Math.log(s / xs.length);
}

/**
 * Always-valid p-value of one test, adjusted for its `share` of SRM_ALPHA:
 * (1/M)/share, capped at 1 — at most SRM_ALPHA exactly when M ≥ 1/(SRM_ALPHA·share).
 */
function pOf(logL: SrmLogL, share: number): number {
  let p = 1;
  for (const v of Object.keys(logL)) {
    const logM = logMeanExp(logL[v]!);
    p = Math.min(p, Math.min(1, Math.exp(-logM) / share));
  }
  return p;
}

/**
 * Adds one period to the running test. `sample` null: nothing to test this
 * period (no generation known, or no traffic).
 */
export function checkSrm(state: SrmState, sample: SrmSample | null): { state: SrmState; check: SrmCheck | null } {
  if (sample === null) return { state, check: null };
  const versions = Math.max(1, Object.keys(sample.weights).length);
  const k = update(state.keyless, sample.keyless, sample.weights);
  const sticky: Record<string, SrmLogL> = { ...state.sticky };
  let impossible = state.impossible || k.impossible;
  let stickyN = 0;
  const replicas = Object.keys(sample.newKeys).sort();
  const untested: string[] = [];
  for (const r of replicas) {
    if (!(r in sticky) && Object.keys(sticky).length >= SRM_MAX_REPLICAS) {
      untested.push(r);
      continue;
    }
    const s = update(sticky[r] ?? {}, sample.newKeys[r]!, sample.weights);
    sticky[r] = s.next;
    impossible ||= s.impossible;
    stickyN += s.n;
  }
  const next: SrmState = { keyless: k.next, sticky, impossible };
  // Each test's share of SRM_ALPHA, relative (a p-value of SRM_ALPHA or less flags).
  const keylessShare = 1 / (2 * versions);
  const stickyShare = 1 / (2 * versions * SRM_MAX_REPLICAS);
  let pValue = impossible ? 0 : pOf(next.keyless, keylessShare);
  for (const r of Object.keys(sticky)) pValue = Math.min(pValue, pOf(sticky[r]!, stickyShare));
  if (k.n === 0 && stickyN === 0 && !impossible) return { state: next, check: null };
  const stickyKeys: Record<string, number> = {};
  for (const r of replicas) for (const [v, x] of Object.entries(sample.newKeys[r]!)) stickyKeys[v] = (stickyKeys[v] ?? 0) + x;
  return {
    state: next,
    check: {
      flagged: pValue <= SRM_ALPHA,
      pValue,
      observed: { ...sample.keyless },
      observedKeys: stickyKeys,
      expectedShare: Object.fromEntries(Object.entries(sample.weights).map(([v, w]) => [v, w / 100])),
      ...(untested.length > 0 ? { untestedReplicas: untested } : {}),
    },
  };
}
