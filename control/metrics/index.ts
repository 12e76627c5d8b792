/**
 * The custom metrics of an experiment: reading one by its source (sources.ts,
 * chosen by `source:`), reading every metric × version of an iteration, the
 * one-shot run behind `sluice metrics test`, and the sources' apply-time
 * checks.
 */
import type { ErrorDetail } from '../../common/errors.js';
import type { ExperimentDoc, MetricSpec } from '../spec-types.js';
import { failedReading } from './reading.js';
import { metricSource } from './sources.js';
import type { MetricQueryResult, MetricReading, QueryContext } from './types.js';

export type { MetricQueryResult, MetricReading, QueryContext } from './types.js';

/** Queries in flight at once per iteration: enough to overlap slow backends, few enough not to hammer one. */
export const MAX_CONCURRENT_QUERIES = 8;

/** One metric of one version, by the spec's source. Never rejects. */
export async function readMetric(spec: MetricSpec, ctx: QueryContext): Promise<MetricQueryResult> {
  try {
    return await metricSource(spec.source).query(spec, ctx);
  } catch (err) {
    // The sources turn their failures into readings; this is for the unforeseen.
    return { reading: failedReading(err, []), request: null, response: null };
  }
}

/**
 * Every custom metric for every version of the experiment, by version then
 * metric. Never rejects: a failure is a reading with `error` and no value.
 */
export async function readAllMetrics(
  doc: ExperimentDoc,
  base: Omit<QueryContext, 'version'>,
): Promise<Record<string, Record<string, MetricReading>>> {
  const results = await runAll(pairs(doc), base);
  const out: Record<string, Record<string, MetricReading>> = {};
  for (const v of doc.spec.versions) out[v.name] = {};
  for (const r of results) out[r.version]![r.metric] = r.result.reading;
  return out;
}

/**
 * Every query once per version (or only metric `only`), with the rendered
 * (masked) request and the start of the answer: `sluice metrics test`.
 * In the spec's order: metric by metric, version by version.
 */
export function testMetrics(
  doc: ExperimentDoc,
  base: Omit<QueryContext, 'version'>,
  only?: string,
): Promise<Array<{ metric: string; version: string; result: MetricQueryResult }>> {
  return runAll(
    pairs(doc).filter((x) => only === undefined || x.spec.name === only),
    base,
  );
}

/**
 * The apply-time checks of every metric's source (rest: every jq expression
 * compiles; a JSONPath is checked when the spec is read). Problems are at
 * `spec.metrics[i].<field>`.
 */
export async function checkMetricQueries(doc: ExperimentDoc): Promise<ErrorDetail[]> {
  const out: ErrorDetail[] = [];
  for (const [i, m] of doc.spec.metrics.entries()) {
    const source = metricSource(m.source);
    if (source.check !== undefined) out.push(...(await source.check(m, doc, `spec.metrics[${i}]`)));
  }
  return out;
}

function pairs(doc: ExperimentDoc): Array<{ spec: MetricSpec; version: string }> {
  return doc.spec.metrics.flatMap((spec) => doc.spec.versions.map((v) => ({ spec, version: v.name })));
}

/** Runs the reads with at most MAX_CONCURRENT_QUERIES at once; results in input order. */
async function runAll(
  list: ReadonlyArray<{ spec: MetricSpec; version: string }>,
  base: Omit<QueryContext, 'version'>,
): Promise<Array<{ metric: string; version: string; result: MetricQueryResult }>> {
  const results = new Array<{ metric: string; version: string; result: MetricQueryResult }>(list.length);
  let next = 0;
  const worker = async () => {
    while (next < list.length) {
      const i = next++;
      const { spec, version } = list[i]!;
      results[i] = { metric: spec.name, version, result: await readMetric(spec, { ...base, version }) };
    }
  };
  await Promise.all(Array.from({ length: Math.min(MAX_CONCURRENT_QUERIES, list.length) }, worker));
  return results;
}
