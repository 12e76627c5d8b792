/**
 * Top-two Thompson sampling (Russo 2016). Plain Thompson starves the
 * runner-up once a leader emerges; top-two keeps a share 1-β on the strongest
 * challenger, which identifies the best arm faster. Play frequencies are
 * estimated by Monte Carlo with the experiment's seeded RNG.
 */
import type { Rng, WeightPolicy } from '../analysis-types.js';
import { argmaxAll, scoredArms, unchanged, type ScoredArm } from './arms.js';

const BETA = 0.5;
const ROUNDS = 1000;
// Russo redraws until another arm leads; against a dominant leader that can take
// very long, so after a few tries the challenger is the runner-up of the last draw.
const REDRAWS = 10;

export const topTwo: WeightPolicy = (input) => {
  const arms = scoredArms(input);
  if (arms.length === 0) return unchanged(input);
  if (arms.length === 1) return { [arms[0]!.name]: 1 };
  const plays = arms.map(() => 0);
  const draws = new JointDraws(arms, input.rng);
  for (let r = 0; r < ROUNDS; r++) {
    const leader = leaderOf(draws.next());
    const played = input.rng() < BETA ? leader : challenger(draws, leader);
    plays[played]!++;
  }
  return Object.fromEntries(arms.map((a, i) => [a.name, plays[i]!]));
};

/** Joint posterior draws, generated a block at a time (arm.fill is much cheaper than repeated draw). */
class JointDraws {
  static readonly BLOCK = 4096;
  readonly #buffers: Float64Array[];
  #at = JointDraws.BLOCK;
  readonly #row: number[];

  constructor(
    private readonly arms: readonly ScoredArm[],
    private readonly rng: Rng,
  ) {
    this.#buffers = arms.map(() => new Float64Array(JointDraws.BLOCK));
    this.#row = arms.map(() => 0);
  }

  next(): number[] {
    if (this.#at === JointDraws.BLOCK) {
      this.arms.forEach((a, i) => {
        const buf = this.#buffers[i]!;
        if (a.fill) a.fill(this.rng, buf);
        else for (let k = 0; k < buf.length; k++) buf[k] = a.draw(this.rng);
      });
      this.#at = 0;
    }
    for (let i = 0; i < this.arms.length; i++) {
      const x = this.#buffers[i]![this.#at]!;
      this.#row[i] = Number.isFinite(x) ? x : x === Infinity ? Number.MAX_VALUE : -Number.MAX_VALUE;
    }
    this.#at++;
    return this.#row;
  }
}

const leaderOf = (draws: readonly number[]): number => argmaxAll(draws)[0] ?? 0;

function challenger(draws: JointDraws, leader: number): number {
  let row: number[] = [];
  for (let k = 0; k < REDRAWS; k++) {
    row = draws.next();
    const j = leaderOf(row);
    if (j !== leader) return j;
  }
  row[leader] = -Infinity;
  return leaderOf(row);
}
