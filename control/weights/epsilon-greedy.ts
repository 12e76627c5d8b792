/**
 * ε-greedy: 1-ε to the best posterior mean (ties share), ε spread evenly over
 * every eligible version, including those with no reward data yet. Simple and
 * predictable; it ignores uncertainty, so it explores the same amount forever.
 */
import type { WeightPolicy } from '../analysis-types.js';
import { argmaxAll, eligible, evenly, scoredArms, unchanged } from './arms.js';

const EPSILON = 0.1;

export const epsilonGreedy: WeightPolicy = (input) => {
  const arms = scoredArms(input);
  if (arms.length === 0) return unchanged(input);
  const shares = evenly(eligible(input).map((v) => v.name), EPSILON);
  const best = evenly(argmaxAll(arms.map((a) => a.mean)).map((i) => arms[i]!.name), 1 - EPSILON);
  for (const [name, share] of Object.entries(best)) shares[name] = (shares[name] ?? 0) + share;
  return shares;
};
