/**
 * `sluice weights ROUTE v1=90 v2=10`: PUT /routes/ROUTE/weights.
 */
import type { Command } from 'commander';
import { usageError, type Weights } from '../client.js';
import { routeLine } from '../format.js';
import { type ClientOptions, type OutputOptions, print, printJson, runWithClient, withClientOptions, withOutputOption } from './common.js';

const USAGE = 'sluice weights ROUTE VERSION=PERCENT... (e.g. sluice weights checkout v1=90 v2=10)';

/** `["v1=90", "v2=10"]` → `{ v1: 90, v2: 10 }`; throws a usage error on anything but NAME=INTEGER. The server checks the rest (known versions, sum 100). */
export function parseWeightArgs(args: readonly string[]): Weights {
  if (args.length === 0) throw usageError('give at least one VERSION=PERCENT', USAGE);
  const out: Weights = {};
  for (const a of args) {
    const m = /^([^=\s]+)=(\d{1,3})$/.exec(a);
    if (!m) throw usageError(`bad weight ${JSON.stringify(a)}: expected VERSION=PERCENT with an integer percent, such as v2=10`, USAGE);
    const name = m[1]!;
    if (Object.hasOwn(out, name)) throw usageError(`version ${name} is given twice`, USAGE);
    out[name] = Number(m[2]);
  }
  return out;
}

export function registerWeightsCommand(program: Command): void {
  withOutputOption(
    withClientOptions(
      program
        .command('weights')
        .description('set a route\'s weights by hand (integer percents summing to 100; versions left out get 0)')
        .argument('<route>', 'route name')
        .argument('<weights...>', 'VERSION=PERCENT, e.g. v1=90 v2=10'),
    ),
  ).action((route: string, args: string[], opts: ClientOptions & OutputOptions) =>
    runWithClient(opts, async (client) => {
      // Checked before anything is sent.
      const weights = parseWeightArgs(args);
      const r = await client.setWeights(route, weights);
      if (opts.output === 'json') printJson(r);
      else print(routeLine(r));
    }),
  );
}
