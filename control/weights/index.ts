/** The weight policies (bandits) by algorithm name, and the floor that keeps them exploring. */
import type { Assessment, WeightPolicy } from '../analysis-types.js';
import type { Algorithm } from '../spec-types.js';
import { epsilonGreedy } from './epsilon-greedy.js';
import { thompson } from './thompson.js';
import { topTwo } from './top-two.js';
import { ucb } from './ucb.js';

export { applyWeightLimits, type WeightLimits } from './limits.js';

const POLICIES: Readonly<Record<Algorithm, WeightPolicy>> = {
  thompson,
  'top-two': topTwo,
  ucb,
  'epsilon-greedy': epsilonGreedy,
};

export function policyFor(algorithm: Algorithm): WeightPolicy {
  return POLICIES[algorithm];
}

/**
 * At least floorPercent for every version not judged yet ('inconclusive', or
 * absent from the assessment), so a bandit that likes another arm early
 * cannot starve one before it has enough samples for a verdict.
 */
export function explorationFloor(assessment: Assessment, versions: readonly string[], floorPercent = 5): Record<string, number> {
  const verdicts = new Map(assessment.versions.map((v) => [v.name, v.verdict]));
  return Object.fromEntries(
    versions.filter((name) => (verdicts.get(name) ?? 'inconclusive') === 'inconclusive').map((name) => [name, floorPercent]),
  );
}
