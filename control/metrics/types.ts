/**
 * Custom metric sources: one interface, one file per source (mock-source.ts,
 * rest-source.ts, prometheus-source.ts). The scheduler reads every custom
 * metric for every version once per iteration (index.ts) and hands the
 * readings to the pure analysis, which turns them into posteriors.
 */
import type { MetricErrorCode } from '../../common/errors.js';
import type { MetricSpec } from '../spec-types.js';

/** One metric of one version at one iteration. */
export interface MetricReading {
  /** Null when the source failed or had no data: then `error` says why. A failed read never reuses an older value. */
  readonly value: number | null;
  /** Observations behind the value when the source itself knows them (mock); else null (see the spec's sampleSize). */
  readonly count: number | null;
  /** Standard deviation of one observation when the source knows it (mock); else null (see the spec's stdDev). */
  readonly stdDev: number | null;
  readonly error: { readonly code: MetricErrorCode; readonly message: string } | null;
}

/** What a query may refer to: the template variables and the environment for {{env.NAME}}. */
export interface QueryContext {
  readonly experiment: string;
  readonly route: string;
  readonly version: string;
  /** Seconds since the experiment started. */
  readonly elapsedSeconds: number;
  /** The experiment's intervalSeconds. */
  readonly intervalSeconds: number;
  /** The iteration being decided (1-based). */
  readonly iteration: number;
  /** The experiment's seed (mock noise is a function of seed, iteration, metric and version). */
  readonly seed: number;
  readonly env: Readonly<Record<string, string | undefined>>;
}

/** A request as sent, with every {{env.NAME}} value masked: safe to print, log and store. */
export interface RenderedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string | null;
}

export interface MetricQueryResult {
  readonly reading: MetricReading;
  /** Null for sources that send nothing (mock). */
  readonly request: RenderedRequest | null;
  /** The start of the response body (masked), for `sluice metrics test`. */
  readonly response: string | null;
}

export interface MetricSourceImpl<S extends MetricSpec> {
  read(spec: S, ctx: QueryContext): Promise<MetricQueryResult>;
}
