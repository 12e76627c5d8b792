/**
 * The design effect of sticky routing. When a sticky key keeps a user on one
 * version, the randomised unit is the user, not the request: one user's
 * requests convert (or not) together, and treating them as independent makes
 * every interval too narrow. Keyed requests are counted into USER_BUCKETS
 * hashed buckets per version (proxy/stats.ts); a bucket holds whole users,
 * so bucket totals are independent. The variance of a version's ratio
 * estimate across buckets (the delta method, clusters = buckets) divided by
 * the variance the per-request analysis assumes is the design effect
 * (Kish's deff), pooled over versions:
 *
 *   R = ΣY_b / ΣN_b     deff = Σ_v m/(m−1)·Σ_b (Y_b − R·N_b)²  /  Σ_v ΣN_b·σ²_v
 *
 * Pure. Computed on the experiment's cumulative buckets, so correlation
 * across periods (a user returning in later iterations) is in it.
 */
import type { BucketSnapshot } from '../common/snapshots.js';

/** Below this share of keyed requests the unit is the request (keyless traffic dominates). */
const KEYED_SHARE = 0.1;
/** Fewer non-empty buckets than this over all versions: too few users to estimate anything. */
export const MIN_USER_BUCKETS = 8;

export interface DesignEffectInput {
  readonly requests: number;
  /** Σy and Σy² per request of the reward (conversions, or reward values). */
  readonly sum: number;
  readonly sumSq: number;
  readonly buckets: BucketSnapshot | undefined;
}

/** 1 for keyless traffic; ≥ 1 for sticky traffic; Infinity when too few users were seen to judge. */
export function designEffect(versions: readonly DesignEffectInput[], kind: 'rate' | 'mean'): number {
  let num = 0;
  let den = 0;
  let keyed = 0;
  let total = 0;
  let nonEmpty = 0;
  for (const v of versions) {
    total += v.requests;
    const b = v.buckets;
    if (b === undefined) continue;
    let n = 0;
    let y = 0;
    let m = 0;
    for (let i = 0; i < b.requests.length; i++) {
      const nb = b.requests[i]!;
      if (nb <= 0) continue;
      n += nb;
      y += kind === 'rate' ? b.conversions[i]! : b.rewardSum[i]!;
      m++;
    }
    keyed += n;
    nonEmpty += m;
    if (m < 2 || n === 0) continue;
    const r = y / n;
    let ss = 0;
    for (let i = 0; i < b.requests.length; i++) {
      const nb = b.requests[i]!;
      if (nb <= 0) continue;
      const e = (kind === 'rate' ? b.conversions[i]! : b.rewardSum[i]!) - r * nb;
      ss += e * e;
    }
    num += (m / (m - 1)) * ss;
    const perUnit = v.requests > 0 ? Math.max(0, v.sumSq / v.requests - (v.sum / v.requests) ** 2) : 0;
    den += n * perUnit;
  }
  if (total === 0 || keyed < KEYED_SHARE * total) return 1;
  if (nonEmpty < MIN_USER_BUCKETS) return Number.POSITIVE_INFINITY;
  if (!(den > 0)) return 1;
  // Never narrower than the per-request analysis: a deff below 1 is noise, not anti-correlated users.
  return Math.max(1, num / den);
}
