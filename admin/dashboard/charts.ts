/**
 * The dashboard's charts of one experiment, drawn by the same SVG code as
 * `sluice report --html` (common/svg-chart.ts) on the server, once per
 * change of the experiment, however many pages watch it. Each chart comes
 * with its data as a table: what a screen reader (or anyone who wants the
 * numbers) reads instead of the picture.
 */
import { lineChart, type Series, seriesStyle } from '../../common/svg-chart.js';
import type { ExperimentRecord } from '../../control/ports.js';

export interface ChartView {
  readonly id: string;
  readonly title: string;
  /** What the chart shows, in words (the figure's caption). */
  readonly caption: string;
  readonly svg: string;
  /** The same data as a table. */
  readonly table: { readonly headers: readonly string[]; readonly rows: readonly (readonly string[])[] };
}

/** Applied weights: the version's colour, thin and dotted. */
const APPLIED_DASH = '2 3';
const CAP_STYLE = { colour: '#6b6b6b', dash: '8 4', width: 1.25 } as const;

/**
 * Weights over time, per version: the weights each iteration recommended
 * (solid steps), the weights the route actually served with (dotted: the
 * weights measured by the next iteration, and the route's current weights for
 * the latest), and the maxCandidateWeight cap when it binds (< 100).
 * x = 0 is the start (the initial weights).
 */
export function weightsChart(r: ExperimentRecord, routeWeights: Readonly<Record<string, number>> | null): ChartView {
  const names = r.doc.spec.versions.map((v) => v.name);
  const history = r.status.history;
  const active = r.status.state === 'Running' || r.status.state === 'Paused' || r.status.state === 'Pending';
  const x = [0, ...history.map((h) => h.iteration)];
  const recommended = (k: number): Readonly<Record<string, number>> =>
    k === 0 ? (history[0]?.weightsMeasured ?? r.doc.spec.weights.initial ?? r.status.weights) : history[k - 1]!.weights;
  const applied = (k: number): Readonly<Record<string, number>> | null =>
    history[k]?.weightsMeasured ?? (active ? routeWeights : r.status.weights);
  const series: Series[] = [];
  names.forEach((name, i) => {
    const style = seriesStyle(i);
    series.push({ name, label: `${name}${i === 0 ? ' (baseline)' : ''} recommended`, ...style, values: x.map((_, k) => recommended(k)[name] ?? 0) });
  });
  names.forEach((name, i) => {
    series.push({ name: `${name}:applied`, label: `${name} applied`, ...seriesStyle(i), dash: APPLIED_DASH, width: 1.5, values: x.map((_, k) => applied(k)?.[name] ?? null) });
  });
  const cap = r.doc.spec.weights.maxCandidateWeight;
  const capped = names.length > 1 && cap < 100;
  if (capped) series.push({ name: 'cap', label: `cap (maxCandidateWeight ${cap}%)`, ...CAP_STYLE, values: x.map(() => cap) });
  const svg = lineChart({
    title: 'Traffic weight per iteration',
    xLabel: 'iteration (0: the start)',
    yLabel: 'weight (%)',
    x,
    series,
    y: { max: 100, step: 25, label: (v) => `${v}%` },
    shape: 'step',
  });
  const headers = ['ITERATION', ...names.map((n) => `${n} RECOMMENDED`), ...names.map((n) => `${n} APPLIED`), ...(capped ? ['CAP'] : [])];
  const rows = x.map((it, k) => [
    String(it),
    ...names.map((n) => `${recommended(k)[n] ?? 0}%`),
    ...names.map((n) => {
      const w = applied(k)?.[n];
      return w === undefined ? '-' : `${w}%`;
    }),
    ...(capped ? [`${cap}%`] : []),
  ]);
  return {
    id: 'weights',
    title: 'Traffic weight per iteration',
    caption:
      'Solid: the weights each iteration recommended for the next. Dotted: the weights the route served with (measured by the next iteration; the route now, for the latest).' +
      (capped ? ` Grey dashes: the cap on each candidate (maxCandidateWeight ${cap}%).` : ''),
    svg,
    table: { headers, rows },
  };
}

/** P(best) per iteration and version (null without a reward). */
export function pBestChart(r: ExperimentRecord): ChartView | null {
  const reward = r.doc.spec.criteria.reward;
  const history = r.status.history;
  if (reward === null || history.length === 0) return null;
  const names = r.doc.spec.versions.map((v) => v.name);
  const x = history.map((h) => h.iteration);
  const series: Series[] = names.map((name, i) => ({
    name,
    label: i === 0 ? `${name} (baseline)` : name,
    ...seriesStyle(i),
    values: history.map((h) => h.versions[name]?.pBest ?? null),
  }));
  const svg = lineChart({
    title: 'P(best) per iteration',
    xLabel: 'iteration',
    yLabel: 'P(best)',
    x,
    series,
    y: { max: 1, step: 0.25, label: (v) => v.toFixed(2) },
    shape: 'line',
  });
  const fmt = (p: number | null | undefined) => (p === null || p === undefined ? '-' : p.toFixed(3));
  return {
    id: 'pbest',
    title: 'P(best) per iteration',
    caption: `The probability that each version is the best on the reward ${reward.metric} (${reward.preferredDirection}); none until every version has minSamples.`,
    svg,
    table: { headers: ['ITERATION', ...names], rows: history.map((h) => [String(h.iteration), ...names.map((n) => fmt(h.versions[n]?.pBest))]) },
  };
}

/** Each version's colour, the same as its lines in every chart (and its bar segments on the page). */
export function versionColours(names: readonly string[]): Record<string, string> {
  return Object.fromEntries(names.map((n, i) => [n, seriesStyle(i).colour]));
}
