/**
 * Custom metric sources: one interface, one file per source (mock-source.ts,
 * rest-source.ts, prometheus-source.ts), each registered by one line in
 * sources.ts; a source owns its spec type, its keys, its reader, its checks and its query.
 * The scheduler reads every custom
 * metric for every version once per iteration (index.ts) and hands the
 * readings to the pure analysis, which turns them into posteriors.
 */
import type { ErrorDetail, MetricErrorCode } from '../../common/errors.js';
import type { Obj, Problems } from '../../common/validation.js';
import type { ExperimentDoc, MetricSpec, MetricType } from '../spec-types.js';

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

/** The fields every source shares (read by metrics/validate.ts before the source's own). */
export type MetricBase = Pick<MetricSpec, 'name' | 'type' | 'sampleSize' | 'stdDev'>;

/** What a source's reader sees besides the raw mapping. */
export interface MetricReadContext {
  readonly p: Problems;
  readonly versions: readonly string[];
  /** The metric's type as written; null when missing or not a type (then `mean` stands in, and no type-specific rule applies). */
  readonly type: MetricType | null;
}

/** One metric source, registered by one line in sources.ts. */
export interface MetricSourceImpl<S extends MetricSpec> {
  /** The keys of the source's own fields (besides name, type, source, sampleSize, stdDev). */
  readonly keys: readonly string[];
  /** Reads the source's fields of `o` (a mapping whose keys are checked) into a spec; every problem goes to `c.p` by path. */
  read(c: MetricReadContext, o: Obj, path: string, base: MetricBase): S;
  /** Checks that need more than the synchronous reader (apply time), for the metric at `path` (spec.metrics[i]). */
  check?(spec: S, doc: ExperimentDoc, path: string): Promise<ErrorDetail[]>;
  /** One metric of one version. */
  query(spec: S, ctx: QueryContext): Promise<MetricQueryResult>;
}
