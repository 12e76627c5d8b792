/**
 * `sluice pause|resume|abort EXP` and `sluice promote EXP VERSION`: POST the
 * action, print the experiment's new state.
 */
import type { Command } from 'commander';
import { stateLine } from '../format.js';
import { type ClientOptions, type OutputOptions, print, printJson, runWithClient, withClientOptions, withOutputOption } from './common.js';

const ACTIONS = {
  pause: 'pause a Running experiment: weights stay where they are, no iteration runs',
  resume: 'resume a Paused experiment',
  abort: 'abort an experiment (Pending, Running or Paused): all traffic back to the baseline',
} as const;

export function registerLifecycleCommands(program: Command): void {
  for (const [action, description] of Object.entries(ACTIONS) as Array<[keyof typeof ACTIONS, string]>) {
    withOutputOption(withClientOptions(program.command(action).description(description).argument('<experiment>', 'experiment name'))).action(
      (name: string, opts: ClientOptions & OutputOptions) =>
        runWithClient(opts, async (client) => {
          const e = await client.action(name, action);
          if (opts.output === 'json') printJson(e);
          else print(stateLine(e));
        }),
    );
  }

  withClientOptions(
    program
      .command('delete')
      .description('delete an experiment and its history (an active one is aborted first: traffic back to the baseline)')
      .argument('<experiment>', 'experiment name'),
  ).action((name: string, opts: ClientOptions) =>
    runWithClient(opts, async (client) => {
      await client.deleteExperiment(name);
      print(`experiment ${name} deleted`);
    }),
  );

  withOutputOption(
    withClientOptions(
      program
        .command('promote')
        .description('end an experiment now with VERSION as the winner: it gets 100% of the traffic')
        .argument('<experiment>', 'experiment name')
        .argument('<version>', 'the version to promote'),
    ),
  ).action((name: string, version: string, opts: ClientOptions & OutputOptions) =>
    runWithClient(opts, async (client) => {
      const e = await client.promote(name, version);
      if (opts.output === 'json') printJson(e);
      else print(stateLine(e));
    }),
  );
}
