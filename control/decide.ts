/**
 * decide: assessment → winner and whether the experiment ends now. Pure.
 *
 *  - Conformance: the version, once feasible.
 *  - Canary: the candidate once feasible (Progressive: once it also holds
 *    the most traffic it may get), the baseline when the candidate fails.
 *  - A/B, A/B/n, Hybrid: the version the always-valid winner test leaves
 *    standing (sequential.ts: every other version's interval against it
 *    lies wholly on the worse side), once it meets its objectives. A failing
 *    candidate is rolled back at once and the others go on; when every
 *    candidate has failed, the experiment fails.
 * At the last iteration, whatever is not decided ends without a winner.
 */
import type { Assessment, VersionAssessment } from './analysis-types.js';
import type { ExperimentSpec } from './spec-types.js';

export interface Decision {
  readonly winner: string | null;
  /** Null while the experiment goes on. */
  readonly end: { readonly state: 'Completed' | 'Failed'; readonly reason: string } | null;
  /** Versions to take out of traffic now (they failed their objectives). */
  readonly rollback: readonly string[];
  /** Why things stand as they do, for status and history. */
  readonly reason: string;
}

export interface DecideContext {
  readonly iteration: number;
  /** Weights in force now, by version. */
  readonly weights: Readonly<Record<string, number>>;
  /** Each version's P(feasible) at the previous iteration (absent or null: not judged then). */
  readonly previousPFeasible: Readonly<Record<string, number | null>>;
}

/**
 * Whether a version has failed for good. Judging every iteration gives noise
 * many chances to look like a violation, so a failure must be overwhelming —
 * P(violated) ≥ 1 − (1 − confidence)/10 — or be infeasible now after already
 * leaning that way (P(violated) > 1/2) at the previous iteration: two
 * consecutive looks, as Flagger counts failed checks. A bad version is still
 * out within one iteration of being judged.
 */
export function failed(v: VersionAssessment, ctx: DecideContext, confidence: number): boolean {
  if (v.verdict !== 'infeasible' || v.pFeasible === null) return false;
  if (v.pFeasible <= (1 - confidence) / 10) return true;
  const before = ctx.previousPFeasible[v.name];
  return before !== undefined && before !== null && before < 0.5;
}

export function decide(spec: ExperimentSpec, a: Assessment, ctx: DecideContext): Decision {
  const last = ctx.iteration >= spec.duration.maxIterations;
  const [baseline, ...candidates] = a.versions;
  const isFailed = (v: VersionAssessment) => failed(v, ctx, spec.criteria.confidence);
  switch (spec.testingPattern) {
    case 'Conformance':
      return decideConformance(baseline!, isFailed, last);
    case 'Canary':
      return decideCanary(spec, baseline!, candidates[0]!, ctx, isFailed, last);
    default:
      return decideReward(spec, a, isFailed, last);
  }
}

function decideConformance(v: VersionAssessment, isFailed: (v: VersionAssessment) => boolean, last: boolean): Decision {
  if (v.verdict === 'feasible') return ended('Completed', v.name, `${v.name} meets every objective${p(v.pFeasible)}`);
  if (isFailed(v)) return ended('Failed', null, `${v.name} violates its objectives: ${violations(v)}`);
  return last ? ended('Completed', null, undecided([v])) : running(null, undecided([v]));
}

function decideCanary(
  spec: ExperimentSpec,
  base: VersionAssessment,
  cand: VersionAssessment,
  ctx: DecideContext,
  isFailed: (v: VersionAssessment) => boolean,
  last: boolean,
): Decision {
  if (isFailed(cand)) {
    return { ...ended('Failed', base.name, `candidate ${cand.name} violates its objectives: ${violations(cand)}; traffic back to ${base.name}`), rollback: [cand.name] };
  }
  if (cand.verdict === 'feasible') {
    const reason = `candidate ${cand.name} meets every objective${p(cand.pFeasible)}`;
    // Progressive delivery steps traffic up while the candidate stays healthy, and promotes at the top.
    const atTop = (ctx.weights[cand.name] ?? 0) >= Math.min(spec.weights.maxCandidateWeight, 100);
    if (spec.deploymentPattern !== 'Progressive' || atTop || last) return ended('Completed', cand.name, reason);
    return running(null, `${reason}; shifting traffic to it`);
  }
  const why = undecided([base, cand]);
  return last ? ended('Completed', null, `${why}; traffic stays on ${base.name}`) : running(null, why);
}

function decideReward(spec: ExperimentSpec, a: Assessment, isFailed: (v: VersionAssessment) => boolean, last: boolean): Decision {
  const [baseline, ...candidates] = a.versions;
  const failed = candidates.filter(isFailed);
  const rollback = failed.map((v) => v.name);
  const failedNote = failed.length > 0 ? `; rolled back: ${failed.map((v) => `${v.name} (${violations(v)})`).join(', ')}` : '';
  if (candidates.length > 0 && failed.length === candidates.length) {
    return { ...ended('Failed', null, `every candidate violates its objectives${failedNote}`), rollback };
  }
  const standing = a.sequentialWinner ? a.versions.find((v) => v.name === a.sequentialWinner) : undefined;
  if (standing !== undefined && standing.verdict === 'feasible') {
    const beaten = a.versions.filter((v) => v.comparison?.eliminatedBy != null).map((v) => v.name);
    const lift = standing.comparison?.lift;
    const liftNote = lift != null && Number.isFinite(lift) && standing !== baseline ? `, lift ${pct(lift)} over ${baseline!.name}` : '';
    return {
      ...ended('Completed', standing.name, `${standing.name} is best: its ${conf(spec)} always-valid intervals beat ${beaten.join(', ')}${liftNote}; meets every objective${failedNote}`),
      rollback,
    };
  }
  const why = a.versions.some((v) => !v.enoughSamples) ? undecided(a.versions) : noWinnerYet(spec, a, standing);
  if (last) return { ...ended('Completed', null, `${why}; traffic back to ${baseline!.name}${failedNote}`), rollback };
  return { ...running(null, why + failedNote), rollback };
}

/** Why no winner is declared: who is still in contention, and the leader's interval. */
function noWinnerYet(spec: ExperimentSpec, a: Assessment, standing: VersionAssessment | undefined): string {
  if (standing !== undefined) return `${standing.name} is best but ${undecided([standing])}`;
  if (a.sequential?.designEffect === Number.POSITIVE_INFINITY) return 'no winner yet: too few distinct users to judge (sticky routing makes the user the unit)';
  const open = a.versions.filter((v) => v.comparison !== null && v.comparison.eliminatedBy === null && v.verdict !== 'infeasible');
  const dir = spec.criteria.reward?.preferredDirection === 'Low' ? -1 : 1;
  const lead = [...open].sort((x, y) => dir * ((y.comparison!.difference ?? -Infinity) - (x.comparison!.difference ?? -Infinity)))[0];
  const leadNote =
    lead?.comparison?.liftInterval != null && Number.isFinite(lead.comparison.lift) && lead !== a.versions[0]
      ? `; ${lead.name} leads, lift ${pct(lead.comparison.lift!)} [${pct(lead.comparison.liftInterval[0])}, ${pct(lead.comparison.liftInterval[1])}]`
      : '';
  return `no winner yet: ${open.map((v) => v.name).join(', ')} still in contention at ${conf(spec)}${leadNote}`;
}

function conf(spec: ExperimentSpec): string {
  return `${(spec.criteria.confidence * 100).toFixed(spec.criteria.confidence * 100 === Math.round(spec.criteria.confidence * 100) ? 0 : 1)}%`;
}

function pct(x: number): string {
  if (!Number.isFinite(x)) return x > 0 ? '+∞' : '−∞';
  return `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)}%`;
}

function running(winner: string | null, reason: string): Decision {
  return { winner, end: null, rollback: [], reason };
}

function ended(state: 'Completed' | 'Failed', winner: string | null, reason: string): Decision {
  return { winner, end: { state, reason }, rollback: [], reason };
}

/** Why nothing is decided: too few samples first, else what is inconclusive. */
function undecided(vs: readonly VersionAssessment[]): string {
  const short = vs.filter((v) => !v.enoughSamples);
  if (short.length > 0) return `insufficient samples: ${short.map((v) => `${v.name} has ${v.samples}`).join(', ')} (minSamples not reached)`;
  const open = vs.filter((v) => v.verdict === 'inconclusive');
  if (open.length > 0) return `inconclusive: ${open.map((v) => `${v.name}${p(v.pFeasible)}`).join(', ')}`;
  return 'inconclusive';
}

function violations(v: VersionAssessment): string {
  const bad = v.objectives.filter((o) => o.pHolds !== null && o.pHolds < 0.5);
  const list = bad.length > 0 ? bad : v.objectives;
  return list.map((o) => `${o.metric} = ${fmt(o.value)}, P(holds) = ${fmt(o.pHolds)}`).join('; ');
}

function p(x: number | null): string {
  return x === null ? '' : ` (P = ${x.toFixed(3)})`;
}

function fmt(x: number | null): string {
  if (x === null) return '-';
  return Math.abs(x) >= 100 ? x.toFixed(0) : x.toPrecision(3);
}
