/**
 * Turns a policy's raw shares into the weights a route can carry: integer
 * percents summing to exactly 100 within the experiment's limits. Every
 * policy goes through this one function, so the guarantees hold for all.
 */

export interface WeightLimits {
  /** Version names, baseline first. */
  readonly versions: readonly string[];
  /** Weights in force now; the increment limit is relative to them. */
  readonly previous: Readonly<Record<string, number>>;
  readonly maxCandidateWeight: number;
  readonly maxCandidateWeightIncrement: number;
  /** Minimum percent per version (e.g. the exploration floor); may be empty. */
  readonly floor: Readonly<Record<string, number>>;
  /** Versions that must get 0 (e.g. infeasible). The baseline is never zeroed: it is where traffic goes back to. */
  readonly zero: ReadonlySet<string>;
}

/** Anything that is not a finite, non-negative number counts as 0. */
const sane = (x: number | undefined): number => (x !== undefined && Number.isFinite(x) && x > 0 ? x : 0);
// Float noise such as 29.999999999 must not cost a whole percent when floored.
const snap = (x: number): number => Math.round(x * 1e9) / 1e9;
const pct = (x: number): number => (Number.isNaN(x) ? 0 : Math.min(100, Math.max(0, x)));

/**
 * Candidates get their proposed share clamped to [floor, cap], where
 * cap = min(maxCandidateWeight, previous + increment) (decreases are free),
 * and the baseline takes the rest. Limits win over floors; if the floors
 * alone exceed 100 they are scaled down. Rounding is largest-remainder, ties
 * to the earlier version, so the result is deterministic.
 */
export function applyWeightLimits(proposed: Readonly<Record<string, number>>, ctx: WeightLimits): Record<string, number> {
  const versions = [...new Set(ctx.versions)];
  const baseline = versions[0];
  if (baseline === undefined) throw new RangeError('applyWeightLimits needs at least one version');

  const target = normalise(versions, proposed) ?? normalise(versions, ctx.previous) ?? { [baseline]: 100 };
  const maxWeight = Math.floor(pct(ctx.maxCandidateWeight));
  const increment = pct(ctx.maxCandidateWeightIncrement);
  const caps = versions.map((v, i) =>
    i === 0 ? 100 : ctx.zero.has(v) ? 0 : Math.min(maxWeight, Math.floor(snap(pct(sane(ctx.previous[v]) + increment)))),
  );

  let lo = versions.map((v, i) => Math.min(Math.ceil(snap(pct(sane(ctx.floor[v])))), caps[i]!));
  const loSum = lo.reduce((a, b) => a + b, 0);
  if (loSum > 100) lo = lo.map((l) => Math.floor((l * 100) / loSum));

  const x = versions.map((v, i) => (i === 0 ? 0 : Math.min(Math.max(target[v] ?? 0, lo[i]!), caps[i]!)));
  x[0] = 100 - x.reduce((a, b) => a + b, 0);
  // The baseline is below its floor (or negative): candidates give back what they hold above theirs.
  const need = lo[0]! - x[0];
  if (need > 0) {
    const slack = x.reduce((s, xi, i) => (i === 0 ? s : s + xi - lo[i]!), 0);
    for (let i = 1; i < x.length; i++) x[i] = x[i]! - ((x[i]! - lo[i]!) * need) / slack;
    x[0] = lo[0]!;
  }
  return roundTo100(versions, x.map(snap), caps);
}

/** Shares of the known versions as percents summing to 100; undefined when they sum to 0. */
function normalise(versions: readonly string[], shares: Readonly<Record<string, number>>): Record<string, number> | undefined {
  const total = versions.reduce((s, v) => s + sane(shares[v]), 0);
  if (!(total > 0) || !Number.isFinite(total)) return undefined;
  return Object.fromEntries(versions.map((v) => [v, (sane(shares[v]) / total) * 100]));
}

/**
 * Largest-remainder rounding. Caps and floors are integers and every x lies
 * between them, so flooring never breaks a floor and rounding up (only below
 * the cap) never breaks a cap.
 */
function roundTo100(versions: readonly string[], x: readonly number[], caps: readonly number[]): Record<string, number> {
  const out = x.map((xi) => Math.max(0, Math.floor(xi)));
  const order = x.map((_, i) => i).sort((a, b) => x[b]! - out[b]! - (x[a]! - out[a]!) || a - b);
  let left = 100 - out.reduce((a, b) => a + b, 0);
  for (let k = 0; left > 0 && k < order.length; k++) {
    const i = order[k]!;
    if (out[i]! < caps[i]!) {
      out[i] = out[i]! + 1;
      left--;
    }
  }
  out[0] = out[0]! + left; // never reached in exact arithmetic; the baseline is uncapped
  return Object.fromEntries(versions.map((v, i) => [v, out[i]!]));
}
