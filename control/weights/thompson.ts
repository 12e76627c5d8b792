/**
 * Thompson sampling as probability matching: each version's share is its
 * posterior probability of having the best reward. The analysis already
 * computed P(best), so this needs no sampling and no RNG.
 */
import type { WeightPolicy } from '../analysis-types.js';
import { eligible, unchanged } from './arms.js';

export const thompson: WeightPolicy = (input) => {
  const judged = eligible(input).filter((v) => v.pBest !== null && Number.isFinite(v.pBest));
  if (judged.length === 0) return unchanged(input);
  return Object.fromEntries(judged.map((v) => [v.name, Math.max(0, v.pBest!)]));
};
