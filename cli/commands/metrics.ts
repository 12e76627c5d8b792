/**
 * `sluice metrics test -f exp.yaml [--metric NAME] [--elapsed S] [--json]`:
 * runs every custom metric query of an experiment file once per version,
 * here, without a Sluice, and prints what was sent (secrets masked), what came
 * back and what was extracted — the debugging loop for a query.
 *
 * Exit codes: 0 every read gave a value, 1 some failed, 2 the file (or an
 * option) is unusable.
 */
import type { Command } from 'commander';
import { formatDetails, SluiceError } from '../../common/errors.js';
import { checkMetricQueries, testMetrics } from '../../control/metrics/index.js';
import type { MetricQueryResult, RenderedRequest } from '../../control/metrics/types.js';
import { loadExperimentFile } from '../../control/spec.js';
import type { ExperimentDoc, MetricSpec } from '../../control/spec-types.js';
import { EXIT } from '../client.js';
import { fields } from '../format.js';
import { print, printJson, run } from './common.js';

/** The file or an option is unusable: nothing was queried. */

interface TestOptions {
  file: string;
  metric?: string;
  elapsed?: string;
  json?: boolean;
}

export function registerMetricsCommands(program: Command): void {
  const metrics = program.command('metrics').description('custom metric sources (mock, rest, prometheus)');
  metrics
    .command('test')
    .description('run every custom metric query of an experiment once per version; print the rendered request (secrets masked), the answer and the value')
    .requiredOption('-f, --file <file>', 'experiment YAML or JSON')
    .option('--metric <name>', 'only this metric')
    .option('--elapsed <seconds>', 'elapsed time for {{elapsedSeconds}} and the mock model (default: the intervalSeconds)')
    .option('--json', 'print the results as JSON')
    .action((opts: TestOptions) => run(() => metricsTest(opts)));
}

async function metricsTest(opts: TestOptions): Promise<number> {
  const doc = load(opts.file);
  if (doc === null) return EXIT.unusable;
  const problems = await checkMetricQueries(doc);
  if (problems.length > 0) return unusable([`${opts.file}: invalid (${problems.length} ${problems.length === 1 ? 'problem' : 'problems'})`, formatDetails(problems)]);
  const names = doc.spec.metrics.map((m) => m.name);
  if (names.length === 0) return unusable([`${opts.file}: no custom metrics (spec.metrics is empty): nothing to test`]);
  if (opts.metric !== undefined && !names.includes(opts.metric)) {
    return unusable([`sluice: no custom metric named ${JSON.stringify(opts.metric)} in ${opts.file} (metrics: ${names.join(', ')})`]);
  }
  const elapsed = opts.elapsed === undefined ? doc.spec.duration.intervalSeconds : Number(opts.elapsed);
  if (!Number.isFinite(elapsed) || elapsed < 0) return unusable([`sluice: --elapsed must be a number of seconds >= 0, got ${JSON.stringify(opts.elapsed)}`]);

  const results = await testMetrics(
    doc,
    {
      experiment: doc.name,
      route: doc.spec.route,
      elapsedSeconds: elapsed,
      intervalSeconds: doc.spec.duration.intervalSeconds,
      iteration: 1,
      seed: doc.spec.seed,
      env: process.env,
    },
    opts.metric,
  );
  const failed = results.filter((r) => r.result.reading.error !== null).length;
  if (opts.json) {
    printJson(results.map((r) => ({ metric: r.metric, version: r.version, ...r.result })));
  } else {
    const specs = new Map(doc.spec.metrics.map((m) => [m.name, m]));
    print(results.map((r) => resultText(specs.get(r.metric)!, r.version, r.result)).join('\n\n'));
    print(`\n${results.length - failed} of ${results.length} reads gave a value${failed > 0 ? `; ${failed} failed` : ''}.`);
  }
  return failed > 0 ? EXIT.failed : EXIT.ok;
}

function load(file: string): ExperimentDoc | null {
  try {
    return loadExperimentFile(file);
  } catch (err) {
    if (!(err instanceof SluiceError)) throw err;
    const n = err.details.length;
    const head = err.code === 'SLUICE_EXPERIMENT_INVALID' ? `${file}: invalid (${n} ${n === 1 ? 'problem' : 'problems'})` : `sluice: ${err.message} [${err.code}]`;
    process.stderr.write(`${head}\n${n > 0 ? formatDetails(err.details) + '\n' : ''}`);
    return null;
  }
}

function unusable(lines: readonly string[]): number {
  process.stderr.write(lines.join('\n') + '\n');
  return EXIT.unusable;
}

/** One metric × version: a title line, then aligned fields. */
export function resultText(spec: MetricSpec, version: string, r: MetricQueryResult): string {
  const title = `${spec.name} (${spec.source}, ${spec.type}) — version ${version}`;
  const pairs: Array<[string, string]> = [];
  if (r.request !== null) pairs.push(...requestFields(spec, r.request));
  else if (spec.source === 'mock') pairs.push(['request', 'none (mock: values from the model in docs/metrics.md)']);
  if (r.response !== null) pairs.push(['response', oneLine(r.response)]);
  const reading = r.reading;
  if (reading.error !== null) pairs.push(['error', `${reading.error.code}: ${reading.error.message}`]);
  else {
    const extra = [reading.count !== null ? `count ${reading.count}` : '', reading.stdDev !== null ? `stdDev ${reading.stdDev}` : ''].filter(Boolean);
    pairs.push(['value', `${String(reading.value)}${extra.length > 0 ? ` (${extra.join(', ')})` : ''}`]);
  }
  return `${title}\n${indent(fields(pairs))}`;
}

function requestFields(spec: MetricSpec, req: RenderedRequest): Array<[string, string]> {
  const out: Array<[string, string]> = [['request', `${req.method} ${req.url}`]];
  // The PromQL as rendered, readable (in the URL or form body it is percent-encoded).
  if (spec.source === 'prometheus') {
    const query = req.method === 'POST' ? new URLSearchParams(req.body ?? '').get('query') : new URL(req.url).searchParams.get('query');
    if (query !== null) out.push(['query', query]);
  }
  for (const [name, value] of Object.entries(req.headers)) out.push(['header', `${name}: ${value}`]);
  if (req.body !== null && spec.source !== 'prometheus') out.push(['body', oneLine(req.body)]);
  return out;
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n');
}
