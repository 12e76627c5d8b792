/**
 * Read-only views: `sluice get experiments|routes`, `sluice describe EXP [--watch]`, `sluice report EXP [--html FILE]`.
 */
import { writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { CliError, usageError } from '../client.js';
import { describeText, experimentsTable, reportText, routesTable } from '../format.js';
import { reportHtml } from '../report-html.js';
import { watchDescribe } from './watch.js';
import { type ClientOptions, type OutputOptions, print, printJson, runWithClient, withClientOptions, withOutputOption } from './common.js';

const RESOURCES: Readonly<Record<string, 'experiments' | 'routes'>> = {
  experiments: 'experiments',
  experiment: 'experiments',
  exp: 'experiments',
  routes: 'routes',
  route: 'routes',
};

export function registerGetCommands(program: Command): void {
  withOutputOption(
    withClientOptions(
      program
        .command('get')
        .description('list experiments or routes as a table (-o json: the raw API response)')
        .argument('<resource>', 'experiments | routes')
        .argument('[name]', 'only this one'),
    ),
  ).action((resource: string, name: string | undefined, opts: ClientOptions & OutputOptions) =>
    runWithClient(opts, async (client) => {
      const what = RESOURCES[resource];
      if (what === undefined) throw usageError(`cannot get "${resource}": expected experiments or routes`, 'sluice get experiments|routes [NAME] [-o json]');
      if (what === 'experiments') {
        const { experiments } = await client.listExperiments();
        const list = name === undefined ? experiments : experiments.filter((e) => e.name === name);
        if (name !== undefined && list.length === 0) {
          // Let the API say it: the same error `describe` gives.
          await client.getExperiment(name);
        }
        if (opts.output === 'json') printJson(name === undefined ? { experiments: list } : list[0]);
        else print(experimentsTable(list));
      } else {
        const routes = name === undefined ? (await client.listRoutes()).routes : [await client.getRoute(name)];
        if (opts.output === 'json') printJson(name === undefined ? { routes } : routes[0]);
        else print(routesTable(routes));
      }
    }),
  );

  withOutputOption(
    withClientOptions(
      program
        .command('describe')
        .description('an experiment: state, iteration, reason, winner, weights, per-version metrics, verdicts, objectives and SRM')
        .argument('<experiment>', 'experiment name')
        .option('-w, --watch', 'read it again every --interval seconds and refresh the view, until it has ended (or Ctrl-C)')
        .option('--interval <seconds>', 'with --watch: seconds between reads', '2'),
    ),
  ).action((name: string, opts: ClientOptions & OutputOptions & { watch?: boolean; interval: string }) =>
    runWithClient(opts, async (client) => {
      if (opts.watch) {
        const intervalS = Number(opts.interval);
        if (!(intervalS >= 0.1)) throw usageError(`--interval must be a number of seconds >= 0.1, got ${JSON.stringify(opts.interval)}`, 'sluice describe EXP --watch [--interval 2]');
        return watchDescribe(client, name, { intervalS, json: opts.output === 'json' });
      }
      const e = await client.getExperiment(name);
      if (opts.output === 'json') printJson(e);
      else print(describeText(e));
    }),
  );

  withOutputOption(
    withClientOptions(
      program
        .command('report')
        .description(
          'a report of an experiment: the describe view plus every iteration (weights, verdicts, P(best), reason); --html: a self-contained HTML page with charts',
        )
        .argument('<experiment>', 'experiment name')
        .option('--html <file>', 'write a self-contained HTML report (tables and SVG charts) to FILE; - for stdout'),
    ),
  ).action((name: string, opts: ClientOptions & OutputOptions & { html?: string }) =>
    runWithClient(opts, async (client) => {
      if (opts.html !== undefined && opts.output === 'json') {
        throw usageError('--html and -o json cannot be combined', 'sluice report EXP [-o json | --html FILE]');
      }
      const e = await client.getExperiment(name);
      if (opts.html !== undefined) await writeHtmlReport(opts.html, reportHtml(e, new Date()));
      else if (opts.output === 'json') printJson(e);
      else print(reportText(e));
    }),
  );
}

/** To FILE (then says so on stdout, so a pipeline log shows where it went), or to stdout for `-`. */
async function writeHtmlReport(file: string, html: string): Promise<void> {
  if (file === '-') {
    process.stdout.write(html);
    return;
  }
  try {
    await writeFile(file, html);
  } catch (err) {
    throw new CliError([`sluice: cannot write the HTML report to ${file}: ${(err as Error).message}`]);
  }
  print(`wrote ${file}`);
}
