/**
 * assess: measurements → per-version verdicts and reward posteriors. Pure:
 * the same spec, measurements and RNG give the same assessment.
 */
import type {
  ArmPosterior,
  Assessment,
  Measurements,
  ObjectiveAssessment,
  Rng,
  Verdict,
  VersionAssessment,
  VersionMeasurement,
} from './analysis-types.js';
import { displayValues, metricDef, metricErrors, rewardStats, samplesOf, type MetricDef } from './metric-defs.js';
import type { PeriodRecord } from './periods.js';
import { meanPosterior, ratePosterior } from './posterior.js';
import { analyseReward } from './reward-analysis.js';
import type { ExperimentSpec, Objective } from './spec-types.js';
import { LatencySketch } from '../common/sketch.js';

/** Monte Carlo draws for P(best), expected loss and relative objectives. */
export const DRAWS = 2000;

export const EMPTY_MEASUREMENT: VersionMeasurement = Object.freeze({
  requests: 0,
  errors: 0,
  keyless: 0,
  latencySumMs: 0,
  latencySumSqMs: 0,
  latency: new LatencySketch(),
  rewards: 0,
  rewardSum: 0,
  rewardSumSq: 0,
  conversions: 0,
  mirrorCompared: 0,
  mirrorMismatch: 0,
});

/**
 * `periods`: the experiment's traffic per routing generation (periods.ts),
 * for the winner test; without them (no period known yet) the totals are one period.
 */
export function assess(spec: ExperimentSpec, measurements: Measurements, rng: Rng, periods: readonly PeriodRecord[] = []): Omit<Assessment, 'srm'> {
  const { criteria } = spec;
  const names = spec.versions.map((v) => v.name);
  const ms = names.map((n) => measurements[n] ?? EMPTY_MEASUREMENT);
  const baseline = ms[0]!;
  const samples = ms.map((m) => samplesOf(spec, m));
  const baselineReady = samples[0]! >= criteria.minSamples;
  const defs = criteria.objectives.map((o) => metricDef(spec, o.metric));

  const judged = names.map((name, i) => {
    const m = ms[i]!;
    const enough = samples[i]! >= criteria.minSamples;
    const objectives = criteria.objectives.map((o, k) =>
      assessObjective(o, defs[k]!, m, i === 0, baseline, enough && (o.relativeTo === null || baselineReady), rng),
    );
    const pFeasible = !enough ? null : objectives.reduce<number | null>((p, o) => (p === null || o.pHolds === null ? null : p * o.pHolds), 1);
    return { name, m, enough, objectives, pFeasible, verdict: verdictOf(pFeasible, criteria.confidence) };
  });

  // Rewards are judged only when every version has its minimum: weights never move on no data.
  const allReady = judged.every((j) => j.enough);
  // Two views of the same data: the always-valid test decides the winner (reward-analysis.ts,
  // sequential.ts); Bayesian P(best) drives the bandit's weights (exploit early, low regret).
  const analysis = analyseReward(spec, ms, periods, judged.map((j) => j.verdict !== 'infeasible'), allReady);
  const rewards = rewardPosteriors(spec, ms, names, analysis?.designEffect ?? 1);
  const eligible = judged.map((j) => allReady && j.verdict !== 'infeasible' && rewards !== null);
  const best = rewards !== null && allReady ? bestOf(rewards, eligible, rng) : null;

  const versions: VersionAssessment[] = judged.map((j, i) => ({
    name: j.name,
    samples: samples[i]!,
    enoughSamples: j.enough,
    verdict: j.verdict,
    pFeasible: j.pFeasible,
    objectives: j.objectives,
    pBest: best === null ? null : best.pBest[i]!,
    comparison: analysis?.comparisons[i] ?? null,
    expectedLoss: best === null || !eligible[i] ? null : best.expectedLoss[i]!,
    reward: rewards?.[i] ?? null,
    metrics: displayValues(spec, j.m),
    metricErrors: metricErrors(spec, j.m),
  }));
  return {
    versions,
    sequential: analysis === null ? null : { designEffect: analysis.designEffect, pairAlpha: analysis.pairAlpha, baselineLevel: analysis.baselineLevel },
    sequentialWinner: analysis !== null && analysis.winner >= 0 ? names[analysis.winner]! : null,
  };
}

function verdictOf(pFeasible: number | null, confidence: number): Verdict {
  if (pFeasible === null) return 'inconclusive';
  if (pFeasible >= confidence) return 'feasible';
  if (1 - pFeasible >= confidence) return 'infeasible';
  return 'inconclusive';
}

function assessObjective(
  o: Objective,
  def: MetricDef,
  m: VersionMeasurement,
  isBaseline: boolean,
  baseline: VersionMeasurement,
  judge: boolean,
  rng: Rng,
): ObjectiveAssessment {
  const lower = o.lowerLimit ?? Number.NEGATIVE_INFINITY;
  const upper = o.upperLimit ?? Number.POSITIVE_INFINITY;
  if (o.relativeTo === 'baseline') {
    // The baseline meets a limit relative to itself by definition.
    if (isBaseline) return { metric: o.metric, value: 1, pHolds: judge ? 1 : null };
    const v = def.value(m);
    const b = def.value(baseline);
    const value = v === null || b === null ? null : ratio(v, b);
    // A metric that could not be read is not judged: neither held nor violated.
    if (!judge || value === null) return { metric: o.metric, value, pHolds: null };
    const pc = def.posterior(m);
    const pb = def.posterior(baseline);
    if (pc === null || pb === null) {
      return { metric: o.metric, value, pHolds: value !== null && value >= lower && value <= upper ? 1 : 0 };
    }
    const c = new Float64Array(DRAWS);
    const b0 = new Float64Array(DRAWS);
    pc.fill(rng, c);
    pb.fill(rng, b0);
    let holds = 0;
    for (let d = 0; d < DRAWS; d++) {
      const r = ratio(c[d]!, b0[d]!);
      if (r >= lower && r <= upper) holds++;
    }
    return { metric: o.metric, value, pHolds: holds / DRAWS };
  }
  const value = def.value(m);
  if (!judge || value === null) return { metric: o.metric, value, pHolds: null };
  const post = def.posterior(m);
  if (post === null) return { metric: o.metric, value, pHolds: value !== null && value >= lower && value <= upper ? 1 : 0 };
  const pAtMostUpper = Number.isFinite(upper) ? post.cdf(upper) : 1;
  const pBelowLower = Number.isFinite(lower) ? post.cdf(lower) : 0;
  return { metric: o.metric, value, pHolds: clamp01(pAtMostUpper - pBelowLower) };
}

function ratio(a: number, b: number): number {
  if (b === 0) return a === 0 ? 1 : Number.POSITIVE_INFINITY;
  return a / b;
}

function clamp01(x: number): number {
  return x < 0 ? 0 : x > 1 ? 1 : x;
}

/**
 * Reward posteriors per version, for P(best) and the bandit. `deff` (the
 * design effect of sticky users, ≥ 1) shrinks every count to its effective
 * size, so correlated requests of one user do not make them overconfident.
 */
function rewardPosteriors(spec: ExperimentSpec, ms: VersionMeasurement[], names: string[], deff: number): ArmPosterior[] | null {
  const reward = spec.criteria.reward;
  if (reward === null) return null;
  const sign = reward.preferredDirection === 'High' ? 1 : -1;
  const stats = ms.map((m) => rewardStats(spec, m));
  const f = Number.isFinite(deff) && deff > 1 ? 1 / deff : 1;
  return stats.map((x, i) => {
    let post;
    if (x === null) post = ratePosterior(0, 0);
    else if (x.kind === 'rate') post = ratePosterior(x.successes * f, x.n * f);
    else post = meanPosterior(x.n * f, x.sum * f, x.sumSq * f);
    const hasData = x !== null && x.n > 0;
    return {
      name: names[i]!,
      samples: x?.n ?? 0,
      mean: hasData ? sign * post.mean : null,
      sd: hasData ? post.sd : null,
      draw: (rng: Rng) => sign * post.draw(rng),
      fill: (rng: Rng, out: Float64Array) => {
        post.fill(rng, out);
        if (sign < 0) for (let i = 0; i < out.length; i++) out[i] = -out[i]!;
      },
    };
  });
}

/**
 * P(best) and expected loss per eligible arm, from joint posterior draws:
 * P(best_i) = share of draws where arm i is the largest; loss_i = E[max_j θ_j − θ_i].
 */
function bestOf(arms: ArmPosterior[], eligible: boolean[], rng: Rng): { pBest: number[]; expectedLoss: number[] } | null {
  const idx = arms.map((_, i) => i).filter((i) => eligible[i]);
  if (idx.length === 0) return null;
  const draws = idx.map((i) => {
    const out = new Float64Array(DRAWS);
    const arm = arms[i]!;
    if (arm.fill) arm.fill(rng, out);
    else for (let d = 0; d < DRAWS; d++) out[d] = arm.draw(rng);
    return out;
  });
  const wins = new Float64Array(idx.length);
  const loss = new Float64Array(idx.length);
  for (let d = 0; d < DRAWS; d++) {
    let max = Number.NEGATIVE_INFINITY;
    let arg = 0;
    for (let k = 0; k < idx.length; k++) {
      const x = draws[k]![d]!;
      if (x > max) {
        max = x;
        arg = k;
      }
    }
    wins[arg]!++;
    for (let k = 0; k < idx.length; k++) loss[k]! += max - draws[k]![d]!;
  }
  const pBest = arms.map(() => 0);
  const expectedLoss = arms.map(() => 0);
  idx.forEach((i, k) => {
    pBest[i] = wins[k]! / DRAWS;
    expectedLoss[i] = loss[k]! / DRAWS;
  });
  return { pBest, expectedLoss };
}
