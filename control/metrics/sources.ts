/**
 * The metric sources: one line per source. Each source's file owns its keys,
 * its reader, its apply-time checks and its query (types.ts,
 * MetricSourceImpl); adding a source is its file, its spec type in
 * spec-types.ts (METRIC_SOURCES, MetricSpec) and a line here.
 */
import type { MetricSpec } from '../spec-types.js';
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

/** The source `source`, typed so that it accepts that source's spec (for a spec: `metricSource(spec.source)`). */
export function metricSource<K extends MetricSourceName>(source: K): MetricSourceImpl<MetricSpecOf<K>> {
  return SOURCES[source];
}
