/** What the policies share: which versions may get traffic, and which have a reward to compare. */
import type { ArmPosterior, PolicyInput, VersionAssessment } from '../analysis-types.js';

/** Versions not judged infeasible, baseline first; a policy never proposes traffic for the others. */
export function eligible(input: PolicyInput): VersionAssessment[] {
  const byName = new Map(input.assessment.versions.map((v) => [v.name, v]));
  return input.versions.flatMap((name) => {
    const v = byName.get(name);
    return v && v.verdict !== 'infeasible' ? [v] : [];
  });
}

export type ScoredArm = ArmPosterior & { readonly mean: number };

/**
 * Eligible versions whose reward has a posterior mean. The others have no
 * data yet: the exploration floor, not the bandit, gets them traffic.
 */
export function scoredArms(input: PolicyInput): ScoredArm[] {
  return eligible(input).flatMap((v) => (v.reward && Number.isFinite(v.reward.mean) ? [v.reward as ScoredArm] : []));
}

/** No reward data to act on: keep the weights in force. */
export const unchanged = (input: PolicyInput): Record<string, number> => ({ ...input.previous });

/** Indexes of the largest scores (ties share), ignoring NaN. */
export function argmaxAll(scores: readonly number[]): number[] {
  const best = Math.max(...scores.filter((s) => !Number.isNaN(s)));
  return scores.flatMap((s, i) => (s === best ? [i] : []));
}

/** Equal shares for the given arms. */
export const evenly = (names: readonly string[], total = 1): Record<string, number> =>
  Object.fromEntries(names.map((n) => [n, total / names.length]));
