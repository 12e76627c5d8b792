/**
 * nextWeights: the traffic split for the next iteration (or the final one).
 * Pure. Every result passes through `applyWeightLimits`, so whatever the
 * pattern or algorithm, weights are integers summing to 100 that respect
 * maxCandidateWeight and maxCandidateWeightIncrement.
 */
import type { Assessment, Rng } from './analysis-types.js';
import type { Decision } from './decide.js';
import type { ExperimentSpec } from './spec-types.js';
import { eliminated, explorationFloor, policyFor } from './weights/index.js';
import { applyWeightLimits } from './weights/limits.js';

export function finalWeights(spec: ExperimentSpec, decision: Decision): Record<string, number> {
  const baseline = spec.versions[0]!.name;
  const promote = decision.end?.state === 'Completed' && decision.winner !== null && (spec.deploymentPattern !== 'FixedSplit' || spec.promote);
  return allTo(spec, promote ? decision.winner! : baseline);
}

export function allTo(spec: ExperimentSpec, version: string): Record<string, number> {
  return Object.fromEntries(spec.versions.map((v) => [v.name, v.name === version ? 100 : 0]));
}

export function nextWeights(
  spec: ExperimentSpec,
  a: Assessment,
  decision: Decision,
  previous: Readonly<Record<string, number>>,
  iteration: number,
  rng: Rng,
): Record<string, number> {
  if (decision.end !== null) return finalWeights(spec, decision);
  const names = spec.versions.map((v) => v.name);
  const zero = new Set(decision.rollback);
  const limits = {
    versions: names,
    previous,
    maxCandidateWeight: spec.weights.maxCandidateWeight,
    maxCandidateWeightIncrement: spec.weights.maxCandidateWeightIncrement,
    floor: {} as Record<string, number>,
    zero,
  };
  // Weights never move on no data: until every version has minSamples, only rollbacks change them.
  const ready = a.versions.every((v) => v.enoughSamples);
  if (!ready || spec.deploymentPattern !== 'Progressive') return applyWeightLimits(previous, limits);

  if (spec.criteria.reward === null) {
    // Progressive canary: step toward the candidate while it is feasible, hold while unsure.
    const cand = a.versions[1];
    const proposed = cand?.verdict === 'feasible' ? allTo(spec, cand.name) : previous;
    return applyWeightLimits(proposed, limits);
  }
  const proposed = policyFor(spec.algorithm)({ versions: names, assessment: a, previous, iteration, rng });
  return applyWeightLimits(proposed, { ...limits, floor: explorationFloor(a, names), zero: new Set([...zero, ...eliminated(a)]) });
}
