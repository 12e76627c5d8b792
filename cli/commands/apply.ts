/**
 * `sluice validate -f exp.yaml` (offline) and `sluice apply -f exp.yaml`.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { parse as parseYaml } from 'yaml';
import { SluiceError } from '../../common/errors.js';
import { formatDetails } from '../../common/errors.js';
import { checkMetricQueries } from '../../control/metrics/index.js';
import { parseExperiment } from '../../control/spec.js';
import type { ExperimentDoc } from '../../control/spec-types.js';
import { CliError, EXIT } from '../client.js';
import { stateLine } from '../format.js';
import { type ClientOptions, type OutputOptions, print, printJson, run, runWithClient, withClientOptions, withOutputOption } from './common.js';

export function registerApplyCommands(program: Command): void {
  program
    .command('validate')
    .description('check an experiment file offline; lists every problem (exit 0 valid, 1 invalid)')
    .requiredOption('-f, --file <file>', 'experiment YAML or JSON ("-" for stdin)')
    .action((opts: { file: string }) =>
      run(async () => {
        const { label, text } = readInput(opts.file);
        let doc: ExperimentDoc;
        try {
          doc = parseExperiment(text);
        } catch (err) {
          if (err instanceof SluiceError && err.code === 'SLUICE_EXPERIMENT_INVALID') {
            const n = err.details.length;
            process.stderr.write(`${label}: invalid (${n} ${n === 1 ? 'problem' : 'problems'})\n${formatDetails(err.details)}\n`);
            return EXIT.failed;
          }
          throw err;
        }
        // jq is compiled here too, as `apply` would: a syntax error is found before anything is sent.
        const jqProblems = await checkMetricQueries(doc);
        if (jqProblems.length > 0) {
          const n = jqProblems.length;
          process.stderr.write(`${label}: invalid (${n} ${n === 1 ? 'problem' : 'problems'})\n${formatDetails(jqProblems)}\n`);
          return EXIT.failed;
        }
        print(`${label}: valid (${summary(doc)})`);
        return EXIT.ok;
      }),
    );

  withOutputOption(
    withClientOptions(
      program
        .command('apply')
        .description('create (or re-create, once finished) the experiment in a file and start it: PUT /experiments/NAME')
        .requiredOption('-f, --file <file>', 'experiment YAML or JSON ("-" for stdin)'),
    ),
  ).action((opts: ClientOptions & OutputOptions & { file: string }) =>
    runWithClient(opts, async (client) => {
      const { text } = readInput(opts.file);
      const name = nameOf(text);
      if (name === null) {
        // Without a name there is no URL to PUT to: report the file's problems as the server would.
        parseExperiment(text);
        throw new CliError([`sluice: the experiment has no name`]);
      }
      const e = await client.applyExperiment(name, text);
      if (opts.output === 'json') printJson(e);
      else print(`applied ${stateLine(e)}`);
    }),
  );
}

function readInput(file: string): { label: string; text: string } {
  try {
    return file === '-' ? { label: 'stdin', text: readFileSync(0, 'utf8') } : { label: file, text: readFileSync(file, 'utf8') };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new CliError([`sluice: cannot read ${file}: ${e.code ?? e.message}`]);
  }
}

/** The document's `name`, when it has a usable one. */
function nameOf(text: string): string | null {
  try {
    const doc = parseYaml(text) as unknown;
    const name = doc !== null && typeof doc === 'object' ? (doc as { name?: unknown }).name : undefined;
    return typeof name === 'string' && name !== '' ? name : null;
  } catch {
    return null;
  }
}

function summary(doc: ExperimentDoc): string {
  const s = doc.spec;
  const pattern = s.deploymentPattern === 'Progressive' ? `Progressive/${s.algorithm}` : s.deploymentPattern;
  const versions = s.versions.map((v, i) => (i === 0 ? `${v.name} baseline` : v.name)).join(', ');
  const parts = [
    `${s.testingPattern}, ${pattern}`,
    `${s.versions.length} ${s.versions.length === 1 ? 'version' : 'versions'}: ${versions}`,
    `route ${s.route}`,
  ];
  const crit = [];
  if (s.criteria.objectives.length > 0) crit.push(`${s.criteria.objectives.length} ${s.criteria.objectives.length === 1 ? 'objective' : 'objectives'}`);
  if (s.criteria.reward) crit.push(`reward ${s.criteria.reward.metric}`);
  if (crit.length > 0) parts.push(crit.join(', '));
  parts.push(`every ${s.duration.intervalSeconds}s, at most ${s.duration.maxIterations} iterations`);
  return parts.join('; ');
}
