/**
 * The metric sources: one line per source. Each source's file owns its spec
 * type (added to MetricSpecs, base.ts), its keys, its reader, its apply-time
 * checks and its query (types.ts, MetricSourceImpl); adding a source is its
 * file and a line here. MetricSpec derives from MetricSpecs, METRIC_SOURCES
 * from this table; the table's type requires one entry per source in
 * MetricSpecs, and no other.
 */
import type { MetricSpec } from './base.js';
import { mockSource } from './mock-source.js';
import { prometheusSource } from './prometheus-source.js';
import { restSource } from './rest-source.js';
import type { MetricSourceImpl } from './types.js';

export type MetricSourceName = MetricSpec['source'];

/** The spec of source K. */
export type MetricSpecOf<K extends MetricSourceName> = Extract<MetricSpec, { source: K }>;

export const SOURCES: { readonly [K in MetricSourceName]: MetricSourceImpl<MetricSpecOf<K>> } = {
  mock: mockSource,
  rest: restSource,
  prometheus: prometheusSource,
};

/** The sources' names, in the table's order. */
export const METRIC_SOURCES: readonly MetricSourceName[] = Object.freeze(Object.keys(SOURCES) as MetricSourceName[]);

/** The source `source`, typed so that it accepts that source's spec (for a spec: `metricSource(spec.source)`). */
export function metricSource<K extends MetricSourceName>(source: K): MetricSourceImpl<MetricSpecOf<K>> {
  return SOURCES[source];
}
