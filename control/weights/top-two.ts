/**
 * Top-two Thompson sampling (Russo 2016). Plain Thompson starves the
 * runner-up once a leader emerges; top-two keeps a share 1-β on the strongest
 * challenger, which identifies the best arm faster. Play frequencies are
 * estimated by Monte Carlo with the experiment's seeded RNG.
 */
import type { Rng, WeightPolicy } from '../analysis-types.js';
import { argmaxAll, scoredArms, unchanged, type ScoredArm } from './arms.js';

const BETA = 0.5;
const ROUNDS = 2000;
// Russo redraws until another arm leads; against a dominant leader that can take
// very long, so after a few tries the challenger is the runner-up of the last draw.
const REDRAWS = 10;

export const topTwo: WeightPolicy = (input) => {
  const arms = scoredArms(input);
  if (arms.length === 0) return unchanged(input);
  if (arms.length === 1) return { [arms[0]!.name]: 1 };
  const plays = arms.map(() => 0);
  for (let r = 0; r < ROUNDS; r++) {
    const leader = leaderOf(sample(arms, input.rng));
    const played = input.rng() < BETA ? leader : challenger(arms, leader, input.rng);
    plays[played]!++;
  }
  return Object.fromEntries(arms.map((a, i) => [a.name, plays[i]!]));
};

function sample(arms: readonly ScoredArm[], rng: Rng): number[] {
  return arms.map((a) => {
    const x = a.draw(rng);
    return Number.isFinite(x) ? x : x === Infinity ? Number.MAX_VALUE : -Number.MAX_VALUE;
  });
}

const leaderOf = (draws: readonly number[]): number => argmaxAll(draws)[0] ?? 0;

function challenger(arms: readonly ScoredArm[], leader: number, rng: Rng): number {
  let draws: number[] = [];
  for (let k = 0; k < REDRAWS; k++) {
    draws = sample(arms, rng);
    const j = leaderOf(draws);
    if (j !== leader) return j;
  }
  draws[leader] = -Infinity;
  return leaderOf(draws);
}
