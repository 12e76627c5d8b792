/**
 * Sample ratio mismatch: does the keyless traffic of one iteration match the
 * weights that were in force? Broken routing (a misconfigured rule, a
 * replica on old weights, bots pinned to one version) biases every metric,
 * so a mismatch must be flagged, not averaged over. Pearson's chi-square
 * goodness of fit; flagged at p < 0.001.
 */
import chisquareCdf from '@stdlib/stats-base-dists-chisquare-cdf';
import type { SrmCheck } from './analysis-types.js';

/**
 * The experiment-wide false-alarm rate. Each iteration is tested at
 * SRM_P_VALUE / maxIterations (Bonferroni), so an experiment with sound
 * routing raises a false alarm at most 0.1% of the time however long it runs.
 */
export const SRM_P_VALUE = 0.001;
/** Below this many keyless requests in an iteration the test has no power worth reporting. */
export const SRM_MIN_REQUESTS = 50;

export function checkSrm(
  keyless: Readonly<Record<string, number>>,
  weights: Readonly<Record<string, number>>,
  threshold = SRM_P_VALUE,
): SrmCheck | null {
  const names = Object.keys(weights);
  const n = names.reduce((s, v) => s + (keyless[v] ?? 0), 0);
  if (n < SRM_MIN_REQUESTS) return null;
  let chi2 = 0;
  let df = -1;
  let impossible = false;
  const expectedShare: Record<string, number> = {};
  for (const v of names) {
    const share = (weights[v] ?? 0) / 100;
    expectedShare[v] = share;
    const o = keyless[v] ?? 0;
    if (share === 0) {
      // Traffic to a version with weight 0 cannot happen by chance.
      if (o > 0) impossible = true;
      continue;
    }
    df++;
    const e = n * share;
    chi2 += ((o - e) * (o - e)) / e;
  }
  const pValue = impossible ? 0 : df < 1 ? 1 : 1 - chisquareCdf(chi2, df);
  return { flagged: pValue < threshold, chi2: impossible ? Number.POSITIVE_INFINITY : chi2, pValue, observed: { ...keyless }, expectedShare };
}
