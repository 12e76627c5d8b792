/**
 * A fast version of `npm run bench:decisions` for CI: the A/A/A and canary
 * scenarios with fewer seeded runs. Each bound is the benchmark's target
 * plus three binomial standard errors of this run count, so the test fails
 * on a regression in the statistics, not on sampling noise.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AA_GRID, SCENARIOS } from '../sim/scenarios.js';
import { simulate } from '../sim/simulate.js';

function scenario(id: string) {
  return [...SCENARIOS, ...AA_GRID].find((s) => s.id === id)!.scenario;
}

/** Target share ± 3 standard errors of a share estimated from `runs` runs. */
function slack(target: number, runs: number): number {
  return 3 * Math.sqrt((target * (1 - target)) / runs);
}

test('A/A/A: three equal versions rarely produce a winner, despite a look every iteration', () => {
  const runs = 300;
  let winners = 0;
  for (let seed = 1; seed <= runs; seed++) if (simulate(scenario('aaa'), seed).winner !== null) winners++;
  const bound = 0.05 + slack(0.05, runs);
  assert.ok(winners / runs <= bound, `${winners} of ${runs} A/A/A runs declared a winner (bound ${(bound * 100).toFixed(1)}%)`);
});

test('bad canary: rolled back within one iteration of reaching minSamples', () => {
  const runs = 300;
  let quick = 0;
  for (let seed = 1; seed <= runs; seed++) {
    const r = simulate(scenario('canary-bad'), seed);
    const reached = r.minSamplesAtByVersion.v2;
    if (r.state === 'Failed' && reached !== undefined && r.iterations - reached <= 1) quick++;
    assert.deepEqual(r.status.weights, { v1: 100, v2: 0 });
  }
  const bound = 0.99 - slack(0.99, runs);
  assert.ok(quick / runs >= bound, `${quick} of ${runs} rolled back in time (bound ${(bound * 100).toFixed(1)}%)`);
});

test('healthy canary: almost never rolled back', () => {
  const runs = 200;
  let rolledBack = 0;
  for (let seed = 1; seed <= runs; seed++) if (simulate(scenario('canary-good'), seed).state === 'Failed') rolledBack++;
  const bound = 0.01 + slack(0.01, runs);
  assert.ok(rolledBack / runs <= bound, `${rolledBack} of ${runs} healthy canaries rolled back (bound ${(bound * 100).toFixed(1)}%)`);
});

/**
 * Equal versions under what used to fool the winner rule (issue 10's table):
 * a plain A/B, a base rate that doubles mid-run, sticky users with their own
 * rates, rewards that arrive iterations late while weights move, a 90/5/5
 * split. Each must stay within the 5% guarantee (plus 3 standard errors).
 */
for (const [id, runs] of [
  ['aa-2v-300r-40i', 300],
  ['aa-drift', 200],
  ['aa-sticky-users', 200],
  ['aa-late-rewards', 150],
  ['aa-fixed-90-5-5', 200],
] as const) {
  test(`A/A guarantee holds: ${id}`, () => {
    let winners = 0;
    let srm = 0;
    for (let seed = 1; seed <= runs; seed++) {
      const r = simulate(scenario(id), seed);
      if (r.winner !== null) winners++;
      if (r.srmFlagged > 0) srm++;
    }
    const bound = 0.05 + slack(0.05, runs);
    assert.ok(winners / runs <= bound, `${winners} of ${runs} runs of ${id} declared a winner (bound ${(bound * 100).toFixed(1)}%)`);
    // 0.1% per experiment: more than 2 alarms in ≤ 300 runs would be p < 0.004.
    assert.ok(srm <= 2, `${srm} of ${runs} runs of ${id} raised a sample-ratio alarm`);
  });
}

test('SRM: a 20% misroute is caught in ≥ 99% of runs (minus 3 standard errors)', () => {
  const runs = 150;
  let caught = 0;
  for (let seed = 1; seed <= runs; seed++) if (simulate(scenario('srm'), seed).srmFlagged > 0) caught++;
  const bound = 0.99 - slack(0.99, runs);
  assert.ok(caught / runs >= bound, `${caught} of ${runs} misrouted runs flagged (bound ${(bound * 100).toFixed(1)}%)`);
});
