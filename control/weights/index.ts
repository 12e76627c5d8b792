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
 * The exploration floor: `floorPercent` for every version still in
 * contention — inconclusive on its objectives, or not yet eliminated by the
 * winner test (no other version's always-valid interval beats it). Bandits
 * starve an arm once it looks worse; the winner test needs to know *how
 * much* worse, so a contender keeps a trickle of traffic until the test
 * rules it out, and a leader is never kept from being declared by an arm
 * starved of the data that would settle it. Eliminated versions go to 0.
 */
export function explorationFloor(assessment: Assessment, versions: readonly string[]): Record<string, number> {
  const byName = new Map(assessment.versions.map((v) => [v.name, v]));
  const contenders = versions.filter((name) => {
    const v = byName.get(name);
    if (v === undefined || v.verdict === 'inconclusive') return true;
    return v.verdict !== 'infeasible' && (v.comparison?.eliminatedBy ?? null) === null;
  });
  const floor = contenders.length < 2 ? 0 : Math.max(EXPLORATION_FLOOR, CHALLENGER_SHARE / (contenders.length - 1));
  return Object.fromEntries(contenders.map((name) => [name, floor]));
}

/** Least percent of traffic a contender keeps. */
export const EXPLORATION_FLOOR = 5;
/**
 * Percent the contenders other than the leader share at least (as top-two
 * Thompson sampling gives challengers half): the winner test compares the
 * leader with each of them, and an interval narrows only as fast as its
 * smaller side grows. Measured on 5/8/5 (bench/README.md): a 5% floor left
 * the test short of data for 70% of runs at 40 iterations.
 */
export const CHALLENGER_SHARE = 50;

/** Candidates the winner test has ruled out: they get no more traffic (the baseline always keeps some). */
export function eliminated(assessment: Assessment): string[] {
  return assessment.versions.filter((v) => (v.comparison?.eliminatedBy ?? null) !== null).map((v) => v.name);
}
