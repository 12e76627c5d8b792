/**
 * `sluice assert EXP [--completed] [--winner V] [--no-failure] [--timeout 5m]`:
 * for CI pipelines. Polls the experiment until every condition holds (exit 0),
 * the experiment ends with one that does not (exit 1), or the timeout passes
 * (exit 1). One line per failed condition.
 */
import type { Command } from 'commander';
import { parseDuration } from '../../config/duration.js';
import { type Experiment, EXIT, FINAL_STATES, usageError } from '../client.js';
import { weightsText } from '../format.js';
import { type ClientOptions, print, runWithClient, withClientOptions } from './common.js';

export interface AssertConditions {
  readonly completed: boolean;
  readonly winner: string | null;
  readonly noFailure: boolean;
}

export type ConditionResult = { readonly condition: string; readonly outcome: 'pass' | 'fail' | 'pending'; readonly why: string };

const MAX_POLL_MS = 500;
const MIN_POLL_MS = 50;
const DEFAULT_TIMEOUT = '5m';

/**
 * Each condition against the experiment as it is now: 'pending' while it
 * can still come true (the experiment is not final yet), else pass or fail.
 */
export function evaluate(e: Experiment, c: AssertConditions): ConditionResult[] {
  const s = e.status;
  const final = FINAL_STATES.has(s.state);
  const out: ConditionResult[] = [];
  if (c.completed) {
    if (s.state === 'Completed') out.push({ condition: 'completed', outcome: 'pass', why: 'state is Completed' });
    else out.push({ condition: 'completed', outcome: final ? 'fail' : 'pending', why: `state is ${s.state}, expected Completed (${s.reason})` });
  }
  if (c.winner !== null) {
    const cond = `winner ${c.winner}`;
    if (s.winner === c.winner) out.push({ condition: cond, outcome: 'pass', why: `winner is ${c.winner}` });
    else {
      const got = s.winner === null ? 'there is no winner' : `the winner is ${s.winner}`;
      out.push({ condition: cond, outcome: final ? 'fail' : 'pending', why: `${got}, expected ${c.winner} (state ${s.state}: ${s.reason})` });
    }
  }
  if (c.noFailure) {
    const failed = s.state === 'Failed' || s.state === 'Aborted';
    out.push({ condition: 'no failure', outcome: failed ? 'fail' : 'pass', why: failed ? `state is ${s.state} (${s.reason})` : `state is ${s.state}` });
  }
  return out;
}

/** How often to poll: every 500 ms, or twice per iteration when iterations are shorter. */
export function pollInterval(e: Experiment | null): number {
  const seconds = e?.spec.duration.intervalSeconds;
  if (typeof seconds !== 'number' || !Number.isFinite(seconds)) return MAX_POLL_MS;
  return Math.max(MIN_POLL_MS, Math.min(MAX_POLL_MS, (seconds * 1000) / 2));
}

export function registerAssertCommand(program: Command): void {
  withClientOptions(
    program
      .command('assert')
      .description('wait until the experiment meets the conditions (exit 0), ends without them or times out (exit 1); for CI')
      .argument('<experiment>', 'experiment name')
      .option('--completed', 'the experiment ends Completed')
      .option('--winner <version>', 'the experiment\'s winner is VERSION')
      .option('--no-failure', 'the experiment is not Failed or Aborted')
      .option('--timeout <duration>', 'how long to wait, e.g. 30s, 5m, 500ms', DEFAULT_TIMEOUT),
  ).action((name: string, opts: ClientOptions & { completed?: boolean; winner?: string; failure?: boolean; timeout: string }) =>
    runWithClient(opts, async (client) => {
      const conditions: AssertConditions = { completed: opts.completed === true, winner: opts.winner ?? null, noFailure: opts.failure === false };
      if (!conditions.completed && conditions.winner === null && !conditions.noFailure) {
        throw usageError('give at least one condition: --completed, --winner VERSION, --no-failure', 'sluice assert EXP [--completed] [--winner V] [--no-failure] [--timeout 5m]');
      }
      const timeoutMs = parseDuration(opts.timeout);
      if (timeoutMs === null) throw usageError(`--timeout: expected a duration such as 30s, 5m or 500ms, got ${JSON.stringify(opts.timeout)}`);
      const deadline = Date.now() + timeoutMs;
      let lastState = '';
      for (;;) {
        const e = await client.getExperiment(name);
        const s = e.status;
        if (s.state !== lastState) {
          if (lastState !== '') process.stderr.write(`${name}: ${lastState} -> ${s.state} at iteration ${s.iteration}\n`);
          lastState = s.state;
        }
        const results = evaluate(e, conditions);
        const final = FINAL_STATES.has(s.state);
        if (results.every((r) => r.outcome === 'pass')) {
          print(`${name}: ${s.state}${s.winner !== null ? `, winner ${s.winner}` : ''}, weights ${weightsText(s.weights)}: ${results.map((r) => r.condition).join(', ')}: ok`);
          return EXIT.ok;
        }
        const timedOut = Date.now() >= deadline;
        if (final || timedOut || results.some((r) => r.outcome === 'fail')) {
          const head = final
            ? `${name}: ${s.state} at iteration ${s.iteration}/${e.spec.duration.maxIterations}`
            : `${name}: timed out after ${opts.timeout}, still ${s.state} at iteration ${s.iteration}/${e.spec.duration.maxIterations} (${s.reason})`;
          print([head, ...results.filter((r) => r.outcome !== 'pass').map((r) => `FAILED ${r.condition}: ${r.why}`)].join('\n'));
          return EXIT.failed;
        }
        await sleep(Math.min(pollInterval(e), Math.max(0, deadline - Date.now())));
      }
    }),
  );
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
