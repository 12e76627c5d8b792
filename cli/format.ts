/**
 * Text rendering for the CLI: aligned tables, numbers, and the `describe`
 * and `report` views of an experiment. Pure functions of the API's JSON, so
 * they can be tested without a server.
 */
import type { Experiment, ExperimentSummary, IterationRecord, ObjectiveSpec, Route, VersionStatus, Weights } from './client.js';

// ---------------------------------------------------------------- primitives

/** Left-aligned columns separated by two spaces; the last column is not padded. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [headers, ...rows];
  const widths = headers.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all
    .map((r) =>
      r
        .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** A table's content before layout: shared by the text views and the HTML report. */
export interface Grid {
  readonly headers: readonly string[];
  readonly rows: readonly (readonly string[])[];
}

/** `Label:  value` lines with the values aligned. */
export function fields(pairs: ReadonlyArray<readonly [string, string]>): string {
  const width = Math.max(...pairs.map(([k]) => k.length)) + 1;
  return pairs.map(([k, v]) => `${`${k}:`.padEnd(width)}  ${v}`).join('\n');
}

/** `v1=90,v2=10` (no spaces, so a table cell stays one word). */
export function weightsCell(w: Weights | null | undefined): string {
  if (!w || Object.keys(w).length === 0) return '-';
  return Object.entries(w)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

/** `v1=90 v2=10`, for prose. */
export function weightsText(w: Weights | null | undefined): string {
  return weightsCell(w).replaceAll(',', ' ');
}

/** A number for display: at most 3 significant digits below 100, integers above; `-` for none. */
export function num(x: number | null | undefined): string {
  if (x === null || x === undefined) return '-';
  if (!Number.isFinite(x)) return x > 0 ? '∞' : '-∞';
  if (x === 0) return '0';
  if (Number.isInteger(x)) return String(x);
  if (Math.abs(x) >= 100) return x.toFixed(0);
  if (Math.abs(x) < 0.001) return x.toExponential(2);
  return String(Number(x.toPrecision(3)));
}

/** A probability with 3 decimals. */
export function prob(x: number | null | undefined): string {
  return x === null || x === undefined ? '-' : x.toFixed(3);
}

const LATENCY = /^latency-/;

/** A metric's value with its unit: latencies in ms, counts as integers. */
export function metricValue(metric: string, x: number | null | undefined): string {
  if (x === null || x === undefined) return '-';
  return LATENCY.test(metric) ? `${num(x)}ms` : num(x);
}

// ---------------------------------------------------------------- lists

export function experimentsTable(list: readonly ExperimentSummary[]): string {
  if (list.length === 0) return 'No experiments.';
  return table(
    ['NAME', 'ROUTE', 'PATTERN', 'STATE', 'ITERATION', 'WINNER', 'WEIGHTS'],
    list.map((e) => [e.name, e.route, e.testingPattern, e.state, `${e.iteration}/${e.maxIterations}`, e.winner ?? '-', weightsCell(e.weights)]),
  );
}

export function routesTable(list: readonly Route[]): string {
  if (list.length === 0) return 'No routes.';
  return table(
    ['NAME', 'GENERATION', 'WEIGHTS', 'VERSIONS'],
    list.map((r) => [r.name, String(r.generation), weightsCell(r.weights), r.versions.map((v) => `${v.name}=${v.url}`).join(',')]),
  );
}

/** One line after a change: `NAME: State[, winner V], iteration k/N, weights … (reason)`. */
export function stateLine(e: Experiment): string {
  const s = e.status;
  const winner = s.winner !== null && s.state !== 'Running' && s.state !== 'Pending' ? `, winner ${s.winner}` : '';
  return `${e.name}: ${s.state}${winner}, iteration ${s.iteration}/${e.spec.duration.maxIterations}, weights ${weightsText(s.weights)} (${s.reason})`;
}

export function routeLine(r: Route): string {
  return `route ${r.name}: generation ${r.generation}, weights ${weightsText(r.weights)}`;
}

// ---------------------------------------------------------------- describe

/** The metrics every describe shows, then any other metric the spec judges or rewards. */
const MAIN_METRICS = ['error-rate', 'latency-mean', 'latency-p95'];

export function describeHeader(e: Experiment): string {
  return fields(describeFields(e));
}

/** The facts at the top of `describe`, as (label, value) pairs. */
export function describeFields(e: Experiment): Array<[string, string]> {
  const s = e.status;
  const sp = e.spec;
  const pattern =
    sp.deploymentPattern === 'Progressive' ? `${sp.testingPattern}, Progressive (${sp.algorithm})` : `${sp.testingPattern}, ${sp.deploymentPattern}`;
  const pairs: Array<[string, string]> = [
    ['Name', e.name],
    ['Route', sp.route],
    ['Pattern', pattern],
    ['Versions', sp.versions.map((v, i) => `${v.name}${i === 0 ? ' (baseline)' : ''}`).join(', ')],
    ['State', s.state],
    ['Iteration', `${s.iteration}/${sp.duration.maxIterations} (every ${num(sp.duration.intervalSeconds)}s)`],
    ['Reason', s.reason],
    ['Winner', s.winner ?? '-'],
    ['Weights', weightsText(s.weights)],
    ['SRM', srmText(e)],
  ];
  if (s.startedAt) pairs.push(['Started', s.startedAt]);
  if (s.finishedAt) pairs.push(['Finished', s.finishedAt]);
  return pairs;
}

function srmText(e: Experiment): string {
  const s = e.status;
  const flagged = s.srmFlagged ?? s.history.filter((h) => h.srm?.flagged).length;
  const total = s.history.filter((h) => h.srm !== null).length;
  const tally = flagged > 0 ? `; flagged in ${flagged} of ${total} checked iterations` : '';
  if (!s.srm) return `not checked yet${tally}`;
  if (s.srm.flagged) return `MISMATCH (p = ${s.srm.pValue.toExponential(2)}): routing does not follow the weights${tally}`;
  return `ok (p = ${prob(s.srm.pValue)})${tally}`;
}

/** The metric columns of the version table: the main ones, conversion-rate once there are rewards, and whatever the spec uses. */
export function metricColumns(e: Experiment, versions: Readonly<Record<string, VersionStatus>>): string[] {
  const cols = [...MAIN_METRICS];
  const add = (m: string) => {
    if (!cols.includes(m) && m !== 'request-count') cols.push(m);
  };
  // The reward is shown period-stratified, with intervals, in its own table (rewardGrid), not as a raw pooled ratio here.
  const reward = e.spec.criteria.reward?.metric ?? null;
  const stratified = reward !== null && Object.values(versions).some((v) => v.comparison != null);
  const anyRewards = Object.values(versions).some((v) => (v.metrics['conversion-rate'] ?? 0) > 0);
  if (anyRewards && !(stratified && reward === 'conversion-rate')) add('conversion-rate');
  for (const o of e.spec.criteria.objectives) add(o.metric);
  if (reward !== null && !stratified) add(reward);
  return cols;
}

export function versionsTable(e: Experiment): string {
  const grid = versionsGrid(e);
  return grid === null ? 'No iteration yet: nothing measured.' : table(grid.headers, grid.rows);
}

/** One row per version (null before anything was measured). */
export function versionsGrid(e: Experiment): Grid | null {
  const versions = e.status.versions;
  const names = e.spec.versions.map((v) => v.name);
  if (names.every((n) => versions[n] === undefined)) return null;
  const cols = metricColumns(e, versions);
  const rows = names.map((n, i) => {
    const v = versions[n];
    const label = i === 0 ? `${n} (baseline)` : n;
    if (!v) return [label, '-', ...cols.map(() => '-'), '-', '-', '-'];
    return [label, String(v.samples), ...cols.map((c) => metricValue(c, v.metrics[c])), v.verdict, prob(v.pFeasible), prob(v.pBest)];
  });
  return { headers: ['VERSION', 'SAMPLES', ...cols.map((c) => c.toUpperCase()), 'VERDICT', 'P(FEASIBLE)', 'P(BEST)'], rows };
}

export function rewardTable(e: Experiment): string | null {
  const grid = rewardGrid(e);
  return grid === null ? null : table(grid.headers, grid.rows);
}

/**
 * The reward as the winner test sees it: per version its period-stratified
 * estimate and the lift over the baseline, each with its always-valid
 * interval, and where it stands (null without a reward or before any data).
 */
export function rewardGrid(e: Experiment): Grid | null {
  const r = e.spec.criteria.reward;
  if (!r) return null;
  const names = e.spec.versions.map((v) => v.name);
  const rows = names.map((n, i) => {
    const c = e.status.versions[n]?.comparison ?? null;
    const label = i === 0 ? `${n} (baseline)` : n;
    if (c === null || c.estimate === null) return [label, '-', '-', '-', '-', '-'];
    const standing = c.eliminatedBy !== null ? `out (beaten by ${c.eliminatedBy})` : e.status.winner === n && e.status.state === 'Completed' ? 'winner' : 'in contention';
    return [
      label,
      String(c.units),
      `${num(c.estimate)} ${interval(c.interval, num)}`,
      i === 0 ? '-' : `${signedPct(c.lift)} ${interval(c.liftInterval, signedPct)}`,
      standing,
      prob(e.status.versions[n]?.pBest),
    ];
  });
  if (rows.every((row) => row[2] === '-')) return null;
  return { headers: ['VERSION', 'UNITS', r.metric.toUpperCase(), 'LIFT', 'STANDING', 'P(BEST)'], rows };
}

function interval(x: readonly [number, number] | null, f: (n: number) => string): string {
  return x === null ? '' : `[${f(x[0])}, ${f(x[1])}]`;
}

function signedPct(x: number | null | undefined): string {
  if (x === null || x === undefined) return '-';
  if (!Number.isFinite(x)) return x > 0 ? '+∞' : '-∞';
  return `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)}%`;
}

/** `error-rate <= 0.01`, `latency-mean <= 1.2x baseline`, `0.1 <= conversion-rate <= 0.5`. */
export function objectiveText(o: ObjectiveSpec): string {
  const rel = o.relativeTo === 'baseline';
  const lim = (x: number) => (rel ? `${num(x)}x baseline` : metricValue(o.metric, x));
  if (o.upperLimit !== null && o.lowerLimit !== null) return `${lim(o.lowerLimit)} <= ${o.metric} <= ${lim(o.upperLimit)}`;
  if (o.upperLimit !== null) return `${o.metric} <= ${lim(o.upperLimit)}`;
  if (o.lowerLimit !== null) return `${o.metric} >= ${lim(o.lowerLimit)}`;
  return o.metric;
}

export function objectivesTable(e: Experiment): string | null {
  const grid = objectivesGrid(e);
  return grid === null ? null : table(grid.headers, grid.rows);
}

/** One row per version and objective (null without objectives). */
export function objectivesGrid(e: Experiment): Grid | null {
  const objectives = e.spec.criteria.objectives;
  if (objectives.length === 0) return null;
  const rows: string[][] = [];
  e.spec.versions.forEach((ver, vi) => {
    const v = e.status.versions[ver.name];
    objectives.forEach((o, oi) => {
      // The status lists the objectives in the spec's order.
      const a = v?.objectives[oi];
      const value = a?.value ?? null;
      const shown = o.relativeTo === 'baseline' ? (value === null ? '-' : `${num(value)}x`) : metricValue(o.metric, value);
      rows.push([oi === 0 ? (vi === 0 ? `${ver.name} (baseline)` : ver.name) : '', objectiveText(o), shown, prob(a?.pHolds)]);
    });
  });
  return { headers: ['VERSION', 'OBJECTIVE', 'VALUE', 'P(HOLDS)'], rows };
}

export function describeText(e: Experiment): string {
  const parts = [describeHeader(e), '', 'Versions:', indent(versionsTable(e))];
  const reward = rewardTable(e);
  if (reward !== null) parts.push('', `Reward (period-stratified, ${intervalLevel(e)} always-valid intervals):`, indent(reward));
  const objectives = objectivesTable(e);
  if (objectives !== null) parts.push('', 'Objectives:', indent(objectives));
  parts.push('', `Criteria: ${criteriaText(e)}`);
  const errors = metricErrorsText(e);
  if (errors !== null) parts.push('', 'Metric errors (last iteration):', indent(errors));
  const tasks = tasksTable(e);
  if (tasks !== null) parts.push('', 'Tasks:', indent(tasks));
  return parts.join('\n');
}

/** `95%`, and the design effect when sticky users widen the intervals. */
function intervalLevel(e: Experiment): string {
  const level = `${num(e.spec.criteria.confidence * 100)}%`;
  const deff = e.status.sequential?.designEffect;
  // JSON turns Infinity into null: too few users to judge.
  if (e.status.sequential && deff === null) return `${level}, too few users for intervals yet`;
  return deff !== undefined && deff !== null && deff > 1 ? `${level}, widened ×${num(Math.sqrt(deff))} for sticky users` : level;
}

/** `confidence 0.95, minSamples 100, reward orders (higher)`. */
export function criteriaText(e: Experiment): string {
  const r = e.spec.criteria.reward;
  return `confidence ${e.spec.criteria.confidence}, minSamples ${e.spec.criteria.minSamples}${r ? `, reward ${r.metric} (${r.preferredDirection})` : ''}`;
}

export interface MetricError {
  readonly version: string;
  readonly metric: string;
  readonly code: string;
  readonly message: string;
}

/** Custom metrics that could not be read at the last iteration, in the spec's version order. */
export function metricErrorList(e: Experiment): MetricError[] {
  return e.spec.versions.flatMap((v) =>
    Object.entries(e.status.versions[v.name]?.metricErrors ?? {}).map(([metric, err]) => ({ version: v.name, metric, code: err.code, message: err.message })),
  );
}

/** Custom metrics that could not be read at the last iteration, one line per version and metric. */
export function metricErrorsText(e: Experiment): string | null {
  const lines = metricErrorList(e).map((m) => `${m.version} ${m.metric}: ${m.code} ${m.message}`);
  return lines.length === 0 ? null : lines.join('\n');
}

/** Every task run: phase, name, kind, iteration, state, duration and what it did or why it failed. */
export function tasksTable(e: Experiment): string | null {
  const grid = tasksGrid(e);
  return grid === null ? null : table(grid.headers, grid.rows);
}

/** One row per task run (null when no task ran). */
export function tasksGrid(e: Experiment): Grid | null {
  const runs = e.status.tasks ?? [];
  if (runs.length === 0) return null;
  const rows = runs.map((t) => [
    t.phase,
    t.name,
    t.task,
    String(t.iteration),
    t.state + (t.state === 'failed' && t.onError === 'continue' ? ' (continued)' : ''),
    t.durationMs === null ? '-' : `${num(t.durationMs / 1000)}s`,
    t.error ? `${t.error.code}: ${t.error.message}` : outputText(t.output),
  ]);
  return { headers: ['PHASE', 'TASK', 'KIND', 'ITER', 'STATE', 'TOOK', 'RESULT'], rows };
}

function outputText(o: Readonly<Record<string, unknown>> | null): string {
  if (o === null) return '-';
  const n = (k: string) => (typeof o[k] === 'number' ? num(o[k] as number) : String(o[k]));
  if ('achievedQps' in o) return `${n('requests')} requests at ${n('achievedQps')} qps, ${n('errors')} errors`;
  if ('exitCode' in o) return `exit ${String(o.exitCode)}`;
  if (typeof o.reason === 'string') return o.reason;
  const text = JSON.stringify(o);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

// ---------------------------------------------------------------- report

export function historyTable(e: Experiment): string {
  const grid = historyGrid(e);
  return grid === null ? 'No iteration yet.' : table(grid.headers, grid.rows);
}

/** One row per iteration (null before the first). */
export function historyGrid(e: Experiment): Grid | null {
  const history = e.status.history;
  if (history.length === 0) return null;
  const names = e.spec.versions.map((v) => v.name);
  const rows = history.map((h: IterationRecord) => {
    const verdicts = names.map((n) => `${n}=${h.versions[n]?.verdict ?? '-'}`).join(',');
    const pBest = names.some((n) => h.versions[n]?.pBest != null) ? names.map((n) => `${n}=${prob(h.versions[n]?.pBest)}`).join(',') : '-';
    const samples = names.map((n) => `${n}=${h.versions[n]?.samples ?? 0}`).join(',');
    return [String(h.iteration), timeOf(h.at), weightsCell(h.weights), samples, verdicts, pBest, h.reason];
  });
  return { headers: ['ITER', 'TIME', 'WEIGHTS', 'SAMPLES', 'VERDICTS', 'P(BEST)', 'REASON'], rows };
}

export function reportText(e: Experiment): string {
  return [describeText(e), '', `History (${e.status.history.length} iterations; WEIGHTS are those each iteration set for the next):`, indent(historyTable(e))].join('\n');
}

function timeOf(iso: string): string {
  const m = /T(\d\d:\d\d:\d\d(?:\.\d+)?)/.exec(iso);
  return m ? m[1]!.slice(0, 12) : iso;
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => (l ? `  ${l}` : l))
    .join('\n');
}
