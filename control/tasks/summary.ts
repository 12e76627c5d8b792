/**
 * What tasks say about an experiment: the JSON summary (`notify` posts it,
 * `github` sends it as client_payload, `exec` gets it in SLUICE_SUMMARY) and
 * the template variables of task templates. Both are views of one
 * ExperimentStatus, so every task reports the same numbers.
 */
import type { Verdict } from '../analysis-types.js';
import type { TemplateVars } from '../metrics/template.js';
import type { ExperimentDoc } from '../spec-types.js';
import type { ExperimentState, ExperimentStatus } from '../status.js';

export interface VersionSummary {
  readonly samples: number;
  /** null before the version was first assessed. */
  readonly verdict: Verdict | null;
  /** Metrics with a value; those without one yet are left out. */
  readonly metrics: Readonly<Record<string, number>>;
  readonly pBest: number | null;
}

export interface ExperimentSummary {
  readonly experiment: string;
  readonly route: string;
  readonly state: ExperimentState;
  readonly winner: string | null;
  readonly reason: string;
  readonly iteration: number;
  readonly weights: Readonly<Record<string, number>>;
  /** Every version of the experiment, in spec order (the baseline first). */
  readonly versions: Readonly<Record<string, VersionSummary>>;
}

export function experimentSummary(doc: ExperimentDoc, status: ExperimentStatus): ExperimentSummary {
  const versions: Record<string, VersionSummary> = {};
  for (const { name } of doc.spec.versions) {
    const v = status.versions[name];
    const metrics: Record<string, number> = {};
    for (const [m, x] of Object.entries(v?.metrics ?? {})) if (x !== null && Number.isFinite(x)) metrics[m] = x;
    versions[name] = { samples: v?.samples ?? 0, verdict: v?.verdict ?? null, metrics, pBest: v?.pBest ?? null };
  }
  return {
    experiment: doc.name,
    route: doc.spec.route,
    state: status.state,
    winner: status.winner,
    reason: status.reason,
    iteration: status.iteration,
    weights: { ...status.weights },
    versions,
  };
}

/** Variables of task templates: experiment, route, state, winner ('' when none), iteration, reason, weights.<version>. */
export function taskTemplateVars(doc: ExperimentDoc, status: ExperimentStatus): TemplateVars {
  return {
    experiment: doc.name,
    route: doc.spec.route,
    state: status.state,
    winner: status.winner ?? '',
    iteration: status.iteration,
    reason: status.reason,
    weights: { ...status.weights },
  };
}

/** The summary as Markdown lines (a pull request's body, a Slack message): one line per version. */
export function versionLines(s: ExperimentSummary, bold: (t: string) => string): string[] {
  return Object.entries(s.versions).map(([name, v]) => {
    const parts = [`${s.weights[name] ?? 0}%`, `${v.samples} samples`, v.verdict ?? 'not judged yet'];
    if (v.pBest !== null) parts.push(`P(best) ${v.pBest.toFixed(2)}`);
    const metrics = Object.entries(v.metrics).map(([m, x]) => `${m} ${round(x)}`);
    return `${bold(name)}${name === s.winner ? ' (winner)' : ''}: ${parts.join(' · ')}${metrics.length > 0 ? ` — ${metrics.join(', ')}` : ''}`;
  });
}

function round(x: number): string {
  return Number.isInteger(x) ? String(x) : String(Number(x.toPrecision(4)));
}
