/**
 * Reference policies, written only for the benchmark, to put Sluice's
 * figures in context:
 *  - `uniform`: the same verdict rules as Sluice, with traffic split evenly
 *    and never moved (a FixedSplit experiment): what allocation alone buys.
 *  - `iter8-v2`: Iter8 v2's published analytics. Point estimates, no
 *    posterior: ε-greedy weights (ε = 10%) limited by the per-candidate
 *    maxCandidateWeightIncrement (Iter8's default, 10), objectives checked
 *    on observed values, the winner is the best observed reward among
 *    versions meeting their objectives, declared when the run ends.
 */
import type { VersionMeasurement } from '../control/analysis-types.js';
import type { ExperimentStatus, VersionStatus } from '../control/status.js';
import { metricValues } from '../control/builtin-metrics.js';
import { metricDef } from '../control/metric-defs.js';
import type { ExperimentDoc, ExperimentSpec, Objective } from '../control/spec-types.js';
import { applyWeightLimits } from '../control/weights/limits.js';
import { EMPTY_MEASUREMENT } from '../control/assess.js';
import type { Step } from './simulate.js';

const EPSILON = 0.1;
const ITER8_INCREMENT = 10;

function pointHolds(spec: ExperimentSpec, o: Objective, m: VersionMeasurement, baseline: VersionMeasurement): boolean {
  const def = metricDef(spec, o.metric);
  let v = def.value(m);
  if (v === null) return false;
  if (o.relativeTo === 'baseline') {
    const b = def.value(baseline);
    if (b === null || b === 0) return false;
    v = v / b;
  }
  return (o.lowerLimit === null || v >= o.lowerLimit) && (o.upperLimit === null || v <= o.upperLimit);
}

export const iter8v2: Step = (doc: ExperimentDoc, s: ExperimentStatus, { measurements }, now) => {
  const spec = doc.spec;
  const names = spec.versions.map((v) => v.name);
  const ms = names.map((n) => measurements[n] ?? EMPTY_MEASUREMENT);
  const iteration = s.iteration + 1;
  const last = iteration >= spec.duration.maxIterations;
  const feasible = ms.map((m) => spec.criteria.objectives.every((o) => pointHolds(spec, o, m, ms[0]!)));
  const reward = spec.criteria.reward;
  const value = (m: VersionMeasurement) => {
    if (reward === null) return 0;
    const v = metricDef(spec, reward.metric).value(m) ?? Number.NEGATIVE_INFINITY;
    return reward.preferredDirection === 'High' ? v : -v;
  };
  // The best observed version among the feasible; for a canary, the candidate when feasible.
  let best = -1;
  if (reward === null) best = feasible[1] ? 1 : 0;
  else names.forEach((_, i) => (feasible[i] && (best < 0 || value(ms[i]!) > value(ms[best]!)) ? (best = i) : undefined));
  const proposed: Record<string, number> = {};
  names.forEach((n, i) => (proposed[n] = (i === best ? 1 - EPSILON : 0) + EPSILON / names.length));
  const weights = applyWeightLimits(proposed, {
    versions: names,
    previous: s.weights,
    maxCandidateWeight: spec.weights.maxCandidateWeight,
    maxCandidateWeightIncrement: ITER8_INCREMENT,
    floor: {},
    zero: new Set(),
  });
  const versions: Record<string, VersionStatus> = {};
  names.forEach((n, i) => {
    versions[n] = {
      samples: ms[i]!.requests,
      metrics: metricValues(ms[i]!),
      metricErrors: {},
      verdict: feasible[i] ? 'feasible' : 'infeasible',
      pFeasible: null,
      pBest: null,
      expectedLoss: null,
      objectives: [],
    };
  });
  const winner = last && best >= 0 ? names[best]! : null;
  const failedCanary = last && reward === null && best === 0;
  const state = !last ? s.state : failedCanary ? 'Failed' : 'Completed';
  const finalWeights = !last ? weights : Object.fromEntries(names.map((n) => [n, n === (winner ?? names[0]) ? 100 : 0]));
  const reason = last ? `iter8-v2: ${winner ?? 'none'} best observed` : 'running';
  return {
    ...s,
    state,
    iteration,
    winner: failedCanary ? names[0]! : winner,
    reason,
    weights: finalWeights,
    versions,
    history: [...s.history, { iteration, at: now, weightsMeasured: s.weights, weights: finalWeights, versions, winner, reason, srm: null }],
    finishedAt: last ? now : null,
  };
};
