/**
 * Optimism in the face of uncertainty: score = posterior mean + C·sd, all
 * traffic the policy controls to the top score (ties share). The sd shrinks
 * like 1/√n, playing the role of UCB1's bonus. A hard argmax is deliberate:
 * the exploration floor and the increment limit already keep other arms
 * measured and the move gradual, and a deterministic rule is easy to explain.
 */
import type { WeightPolicy } from '../analysis-types.js';
import { argmaxAll, evenly, scoredArms, unchanged } from './arms.js';

const C = 2;

export const ucb: WeightPolicy = (input) => {
  const arms = scoredArms(input);
  if (arms.length === 0) return unchanged(input);
  const scores = arms.map((a) => a.mean + C * (Number.isFinite(a.sd) && a.sd! > 0 ? a.sd! : 0));
  return evenly(argmaxAll(scores).map((i) => arms[i]!.name));
};
