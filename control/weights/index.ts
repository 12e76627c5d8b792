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

/** A version with at least this P(best) could still be the winner: it keeps being explored. */
export const PLAUSIBLY_BEST = 0.01;

/**
 * The exploration floor: `floorPercent` for every version not ruled out —
 * still inconclusive on its objectives, or still plausibly the best reward
 * (P(best) ≥ 1%). Bandits starve an arm once it looks worse; the stopping rule
 * needs to know *how much* worse, so a contender keeps a trickle of traffic
 * until it is ruled out. (Measured: with it, 5/8/5 is decided correctly in
 * 98.5% of runs instead of 96.5%, in 12.4 iterations instead of 13.8.)
 */
export function explorationFloor(assessment: Assessment, versions: readonly string[], floorPercent = 5): Record<string, number> {
  const byName = new Map(assessment.versions.map((v) => [v.name, v]));
  return Object.fromEntries(
    versions
      .filter((name) => {
        const v = byName.get(name);
        if (v === undefined || v.verdict === 'inconclusive') return true;
        return v.verdict !== 'infeasible' && v.pBest !== null && v.pBest >= PLAUSIBLY_BEST;
      })
      .map((name) => [name, floorPercent]),
  );
}
