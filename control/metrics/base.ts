/**
 * What every metric source's spec shares, and the registry of the sources'
 * spec types. A source's file declares its spec type (extending
 * MetricSpecBase) and adds it to MetricSpecs under its name (`declare module
 * './base.js'`); sources.ts registers its implementation by one line, and the
 * SOURCES table's type requires exactly one entry per source in MetricSpecs.
 * MetricSpec is derived from MetricSpecs. Imports nothing: spec-types.ts and
 * the source files import it (spec-types.ts cannot import the table, whose
 * sources import ExperimentDoc from it).
 */

/**
 * rate: a share in 0..1 of `sampleSize` trials (posterior: Beta);
 * mean: an average over `sampleSize` observations (posterior: Student-t when
 * a `stdDev` is known, else a point check); count: known exactly.
 */
export const METRIC_TYPES = ['rate', 'mean', 'count'] as const;
export type MetricType = (typeof METRIC_TYPES)[number];

export interface MetricSpecBase {
  /** Unique among built-in and custom metrics. */
  readonly name: string;
  readonly type: MetricType;
  /** Name of the metric (built-in such as request-count, or custom) giving the number of observations behind this one. */
  readonly sampleSize: string | null;
  /** mean only: name of the metric giving the standard deviation of one observation. */
  readonly stdDev: string | null;
}

/** Shared by rest and prometheus: how to ask and how long to wait. */
export interface HttpQuerySpec {
  /** Template (see control/metrics/template.ts). */
  readonly url: string;
  readonly method: 'GET' | 'POST';
  /** Templates by header name. */
  readonly headers: Readonly<Record<string, string>>;
  /** Template; null = no body. */
  readonly body: string | null;
  /** Per-version template variables: {{params.NAME}}. */
  readonly params: Readonly<Record<string, Readonly<Record<string, string>>>>;
  readonly timeoutSeconds: number;
  /** Further attempts after a failed one, with exponential backoff. */
  readonly retries: number;
}

/** Each source's spec by source name; every source's file adds its own entry. */
export interface MetricSpecs {}

export type MetricSpec = MetricSpecs[keyof MetricSpecs];
