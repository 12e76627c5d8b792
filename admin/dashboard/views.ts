/**
 * What the dashboard's page is sent: plain JSON views built from the records
 * and route descriptions the admin API serves (GET /experiments, /routes),
 * trimmed to what the page shows. Pure functions: the feed (feed.ts) decides
 * when to build them; the page (client.ts) only lays them out.
 *
 * An experiment's spec is not sent whole: its tasks and custom metrics may
 * name URLs and templates that the page has no use for.
 */
import type { ExperimentRecord } from '../../control/ports.js';
import type { Objective } from '../../control/spec-types.js';
import type { ExperimentState, TaskRun } from '../../control/status.js';
import type { RouteDescription } from '../routes-api.js';
import { type ChartView, pBestChart, versionColours, weightsChart } from './charts.js';

/** Which process serves the page, and what it may do. */
export interface ProcessView {
  /** all-in-one (`sluice start`), proxy (`sluice proxy`, Redis mode) or control (`sluice control`, or `start --redis` on 9902). */
  readonly kind: 'all-in-one' | 'proxy' | 'control';
  /** Control plane in Redis mode: whether this replica holds the lease (null elsewhere). */
  readonly leader: boolean | null;
  /** `admin.dashboard: read-only`: the page shows no action. */
  readonly readOnly: boolean;
  /** Whether this process runs experiments (a proxy-only process does not). */
  readonly experiments: boolean;
  /** Whether weights may be set by hand here (a proxy in Redis mode follows the control plane). */
  readonly weightEdits: boolean;
  /** Why the last read of experiments or routes failed (the page keeps showing what it had), else null. */
  readonly error: string | null;
}

export interface ExperimentSummaryView {
  readonly name: string;
  readonly route: string;
  readonly testingPattern: string;
  readonly deploymentPattern: string;
  readonly state: ExperimentState;
  /** The state the experiment is finishing into while its finish tasks run. */
  readonly ending: string | null;
  readonly iteration: number;
  readonly maxIterations: number;
  readonly intervalSeconds: number;
  /** Estimated time of the next iteration (ms since the epoch), null when none is due (not Running). */
  readonly nextIterationAt: number | null;
  readonly winner: string | null;
  readonly weights: Readonly<Record<string, number>>;
  readonly versions: readonly string[];
  readonly colours: Readonly<Record<string, string>>;
  readonly reason: string;
  readonly srm: boolean;
}

export interface RouteView {
  readonly name: string;
  readonly generation: number;
  readonly weights: Readonly<Record<string, number>>;
  readonly versions: ReadonlyArray<{ readonly name: string; readonly url: string }>;
  readonly colours: Readonly<Record<string, string>>;
  /** The active experiment that owns the route's weights (hand edits answer 409 meanwhile), else null. */
  readonly owner: string | null;
  /** Where the process holds the route's config (not the control plane in Redis mode), else null. */
  readonly match: { readonly host: string | null; readonly pathPrefix: string } | null;
  readonly sticky: unknown;
  readonly rules: number | null;
  readonly mirrors: ReadonlyArray<{ readonly version: string; readonly percent: number; readonly compare: boolean }> | null;
}

export interface OverviewView {
  readonly process: ProcessView;
  readonly experiments: readonly ExperimentSummaryView[];
  readonly routes: readonly RouteView[];
}

const ACTIVE: ReadonlySet<string> = new Set(['Pending', 'Running', 'Paused']);

export function summaryView(r: ExperimentRecord, nextIterationAt: number | null): ExperimentSummaryView {
  const s = r.status;
  const names = r.doc.spec.versions.map((v) => v.name);
  return {
    name: r.doc.name,
    route: r.doc.spec.route,
    testingPattern: r.doc.spec.testingPattern,
    deploymentPattern: r.doc.spec.deploymentPattern,
    state: s.state,
    ending: s.ending?.state ?? null,
    iteration: s.iteration,
    maxIterations: r.doc.spec.duration.maxIterations,
    intervalSeconds: r.doc.spec.duration.intervalSeconds,
    nextIterationAt,
    winner: s.winner,
    weights: s.weights,
    versions: names,
    colours: versionColours(names),
    reason: s.reason,
    srm: s.srm?.flagged === true,
  };
}

export function routeView(d: RouteDescription, records: readonly ExperimentRecord[]): RouteView {
  const owner = records.find((r) => r.doc.spec.route === d.name && ACTIVE.has(r.status.state))?.doc.name ?? null;
  const match = d.match as { host?: string | null; pathPrefix?: string } | undefined;
  const mirrors = d.mirror as ReadonlyArray<{ version: string; percent: number; compare: boolean }> | undefined;
  return {
    name: d.name,
    generation: d.generation,
    weights: d.weights,
    versions: d.versions,
    colours: versionColours(d.versions.map((v) => v.name)),
    owner,
    match: match === undefined ? null : { host: match.host ?? null, pathPrefix: match.pathPrefix ?? '/' },
    sticky: d.sticky ?? null,
    rules: typeof d.rules === 'number' ? d.rules : null,
    // inFlight moves all the time: left out, so an idle route's view does not change.
    mirrors: mirrors === undefined ? null : mirrors.map((m) => ({ version: m.version, percent: m.percent, compare: m.compare })),
  };
}

// ---------------------------------------------------------------- one experiment

export interface ObjectiveCell {
  readonly value: number | null;
  readonly pHolds: number | null;
  /** yes: P(holds) ≥ confidence; no: P(fails) ≥ confidence; unknown otherwise (or before minSamples). */
  readonly holds: 'yes' | 'no' | 'unknown';
}

export interface VersionRow {
  readonly name: string;
  readonly baseline: boolean;
  readonly colour: string;
  readonly samples: number | null;
  readonly verdict: string | null;
  readonly pFeasible: number | null;
  readonly pBest: number | null;
  readonly metrics: Readonly<Record<string, number | null>>;
  /** The reward as the winner test sees it: estimate, lift over the baseline, always-valid intervals. */
  readonly reward: {
    readonly estimate: number | null;
    readonly interval: readonly [number, number] | null;
    readonly lift: number | null;
    readonly liftInterval: readonly [number, number] | null;
    readonly eliminatedBy: string | null;
  } | null;
  /** In the spec's objective order. */
  readonly objectives: readonly ObjectiveCell[];
}

export interface Alert {
  readonly level: 'error' | 'warning' | 'info';
  readonly text: string;
}

export interface TimelineEntry {
  readonly iteration: number;
  readonly at: string;
  readonly weights: Readonly<Record<string, number>>;
  readonly verdicts: Readonly<Record<string, string>>;
  readonly winner: string | null;
  readonly srm: boolean | null;
  readonly reason: string;
}

export interface TaskView {
  readonly phase: string;
  readonly name: string;
  readonly task: string;
  readonly iteration: number;
  readonly state: TaskRun['state'];
  readonly startedAt: string;
  readonly durationMs: number | null;
  readonly continued: boolean;
  /** The error (code: message) or what the run did, in a line. */
  readonly result: string;
}

export interface ExperimentView {
  readonly name: string;
  readonly summary: ExperimentSummaryView;
  readonly algorithm: string;
  readonly baseline: string;
  readonly criteria: {
    readonly confidence: number;
    readonly minSamples: number;
    readonly reward: { readonly metric: string; readonly preferredDirection: string } | null;
    readonly objectives: ReadonlyArray<{ readonly metric: string; readonly text: string; readonly relative: boolean }>;
  };
  readonly limits: { readonly maxCandidateWeight: number; readonly maxCandidateWeightIncrement: number };
  /** The route's weights now: what is applied (the status's `weights` are what the experiment decided). */
  readonly appliedWeights: Readonly<Record<string, number>> | null;
  readonly createdAt: string;
  readonly startedAt: string | null;
  readonly finishedAt: string | null;
  /** Columns of the versions table besides the reward: the objectives' metrics and the usual ones. */
  readonly metricColumns: readonly string[];
  readonly versions: readonly VersionRow[];
  readonly srm: { readonly flagged: boolean; readonly pValue: number } | null;
  readonly srmFlagged: number;
  readonly alerts: readonly Alert[];
  /** Newest first; at most TIMELINE_MAX entries (`timelineTotal` says how many there are). */
  readonly timeline: readonly TimelineEntry[];
  readonly timelineTotal: number;
  readonly tasks: readonly TaskView[];
  readonly charts: readonly ChartView[];
}

/** The page lists at most this many iterations (the charts and the API have them all). */
export const TIMELINE_MAX = 200;
const MAIN_METRICS = ['error-rate', 'latency-p50', 'latency-p95', 'latency-p99'];

export function experimentView(r: ExperimentRecord, route: RouteDescription | null, nextIterationAt: number | null): ExperimentView {
  const spec = r.doc.spec;
  const s = r.status;
  const names = spec.versions.map((v) => v.name);
  const colours = versionColours(names);
  const confidence = spec.criteria.confidence;
  const metricColumns = [...MAIN_METRICS];
  for (const o of spec.criteria.objectives) if (!metricColumns.includes(o.metric)) metricColumns.push(o.metric);
  const versions: VersionRow[] = names.map((name, i) => {
    const v = s.versions[name];
    const c = v?.comparison ?? null;
    return {
      name,
      baseline: i === 0,
      colour: colours[name]!,
      samples: v?.samples ?? null,
      verdict: v?.verdict ?? null,
      pFeasible: v?.pFeasible ?? null,
      pBest: v?.pBest ?? null,
      metrics: Object.fromEntries(metricColumns.map((m) => [m, v?.metrics[m] ?? null])),
      reward: c === null ? null : { estimate: c.estimate, interval: c.interval, lift: c.lift, liftInterval: c.liftInterval, eliminatedBy: c.eliminatedBy },
      objectives: spec.criteria.objectives.map((_, oi) => {
        const a = v?.objectives[oi];
        const p = a?.pHolds ?? null;
        return { value: a?.value ?? null, pHolds: p, holds: p === null ? 'unknown' : p >= confidence ? 'yes' : 1 - p >= confidence ? 'no' : 'unknown' };
      }),
    };
  });
  const history = s.history;
  const charts = [weightsChart(r, route?.weights ?? null), pBestChart(r)].filter((c): c is ChartView => c !== null);
  return {
    name: r.doc.name,
    summary: summaryView(r, nextIterationAt),
    algorithm: spec.algorithm,
    baseline: names[0]!,
    criteria: {
      confidence,
      minSamples: spec.criteria.minSamples,
      reward: spec.criteria.reward,
      objectives: spec.criteria.objectives.map((o) => ({ metric: o.metric, text: objectiveText(o), relative: o.relativeTo === 'baseline' })),
    },
    limits: { maxCandidateWeight: spec.weights.maxCandidateWeight, maxCandidateWeightIncrement: spec.weights.maxCandidateWeightIncrement },
    appliedWeights: route?.weights ?? null,
    createdAt: s.createdAt,
    startedAt: s.startedAt,
    finishedAt: s.finishedAt,
    metricColumns,
    versions,
    srm: s.srm === null ? null : { flagged: s.srm.flagged, pValue: s.srm.pValue },
    srmFlagged: s.srmFlagged,
    alerts: alertsOf(r),
    timeline: history
      .slice(-TIMELINE_MAX)
      .reverse()
      .map((h) => ({
        iteration: h.iteration,
        at: h.at,
        weights: h.weights,
        verdicts: Object.fromEntries(names.map((n) => [n, h.versions[n]?.verdict ?? '-'])),
        winner: h.winner,
        srm: h.srm === null ? null : h.srm.flagged,
        reason: h.reason,
      })),
    timelineTotal: history.length,
    tasks: s.tasks.map(taskView),
    charts,
  };
}

/** What needs a person's eye: SRM, a finishing or failed experiment, failed tasks, custom metrics that could not be read. (Mirror mismatches come from live counters: the page adds them.) */
function alertsOf(r: ExperimentRecord): Alert[] {
  const s = r.status;
  const out: Alert[] = [];
  if (s.srm?.flagged) {
    out.push({ level: 'error', text: `Sample ratio mismatch (p = ${s.srm.pValue.toExponential(2)}): routing does not follow the weights, so the comparison is suspect.` });
  } else if (s.srmFlagged > 0) {
    out.push({ level: 'warning', text: `Sample ratio mismatch was flagged in ${s.srmFlagged} earlier iteration${s.srmFlagged === 1 ? '' : 's'}.` });
  }
  if (s.ending) out.push({ level: 'info', text: `Finishing as ${s.ending.state}: finish tasks are running (${s.ending.reason}).` });
  if (s.state === 'Failed') out.push({ level: 'error', text: `Failed: ${s.reason}` });
  for (const t of s.tasks) {
    if (t.state === 'failed') out.push({ level: t.onError === 'continue' ? 'warning' : 'error', text: `Task ${t.name} (${t.phase}) failed${t.onError === 'continue' ? ', continued' : ''}: ${t.error ? `${t.error.code}: ${t.error.message}` : 'no detail'}` });
  }
  for (const v of r.doc.spec.versions) {
    for (const [metric, e] of Object.entries(s.versions[v.name]?.metricErrors ?? {})) {
      out.push({ level: 'warning', text: `${v.name}: metric ${metric} could not be read: ${e.code}: ${e.message}` });
    }
  }
  return out;
}

function taskView(t: TaskRun): TaskView {
  return {
    phase: t.phase,
    name: t.name,
    task: t.task,
    iteration: t.iteration,
    state: t.state,
    startedAt: t.startedAt,
    durationMs: t.durationMs,
    continued: t.state === 'failed' && t.onError === 'continue',
    result: t.error ? `${t.error.code}: ${t.error.message}` : outputText(t.output),
  };
}

function outputText(o: Readonly<Record<string, unknown>> | null): string {
  if (o === null) return '-';
  const n = (k: string) => String(o[k]);
  if ('achievedQps' in o) return `${n('requests')} requests at ${n('achievedQps')} qps, ${n('errors')} errors`;
  if ('exitCode' in o) return `exit ${n('exitCode')}`;
  if (typeof o.reason === 'string') return o.reason;
  const text = JSON.stringify(o);
  return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}

/** `error-rate <= 0.02`, `latency-mean <= 1.2x baseline` (as `sluice describe` writes them). */
export function objectiveText(o: Objective): string {
  const unit = o.metric.startsWith('latency-') ? ' ms' : '';
  const lim = (x: number) => (o.relativeTo === 'baseline' ? `${x}x baseline` : `${x}${unit}`);
  if (o.upperLimit !== null && o.lowerLimit !== null) return `${lim(o.lowerLimit)} <= ${o.metric} <= ${lim(o.upperLimit)}`;
  if (o.upperLimit !== null) return `${o.metric} <= ${lim(o.upperLimit)}`;
  if (o.lowerLimit !== null) return `${o.metric} >= ${lim(o.lowerLimit)}`;
  return o.metric;
}
