/**
 * The decision functions driven by seeded simulations (no HTTP): the same
 * `iterate` the scheduler calls, fed synthetic measurements.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { simulate, type Scenario } from '../sim/simulate.js';
import { seededRandom } from '../common/random.js';
import { drawBeta, drawGamma, meanPosterior, ratePosterior } from '../control/posterior.js';
import { checkSrm, EMPTY_SRM_STATE } from '../control/srm.js';

function abn(conversions: number[], maxIterations = 40): Scenario {
  const versions = conversions.map((_, i) => ({ name: `v${i + 1}` }));
  return {
    arms: conversions.map((c, i) => ({ name: `v${i + 1}`, conversion: c })),
    requestsPerIteration: 300,
    experiment: {
      kind: 'Experiment',
      name: 'abn',
      spec: { route: 'r', versions, testingPattern: 'A/B/n', criteria: { reward: { metric: 'conversion-rate' } }, duration: { intervalSeconds: 1, maxIterations } },
    },
  };
}

test('A/B/n at 5% / 8% / 5%: the 8% version wins in at least 19 of 20 seeded runs, and gets more than a third of the traffic', () => {
  let wins = 0;
  let share = 0;
  for (let seed = 1; seed <= 20; seed++) {
    const r = simulate(abn([0.05, 0.08, 0.05]), seed);
    if (r.winner === 'v2') wins++;
    const total = Object.values(r.served).reduce((a, b) => a + b, 0);
    share += r.served.v2! / total / 20;
  }
  assert.ok(wins >= 19, `v2 won ${wins} of 20`);
  // Averaged over the runs: a run decided in its first iterations has had little time to exploit.
  assert.ok(share > 1 / 3, `v2's mean share of the traffic: ${share.toFixed(3)}`);
});

test('the same seed reproduces the same run exactly', () => {
  const a = simulate(abn([0.05, 0.08, 0.05]), 7);
  const b = simulate(abn([0.05, 0.08, 0.05]), 7);
  assert.deepEqual(a.status.history.map((h) => h.weights), b.status.history.map((h) => h.weights));
  assert.equal(a.winner, b.winner);
});

test('low traffic: no winner, no weight movement, reason "insufficient samples"', () => {
  for (let seed = 1; seed <= 10; seed++) {
    const s = { ...abn([0.05, 0.08, 0.05], 20), requestsPerIteration: 10 };
    const spec = (s.experiment.spec as Record<string, unknown>);
    const r = simulate({ ...s, experiment: { ...s.experiment, spec: { ...spec, criteria: { reward: { metric: 'conversion-rate' }, minSamples: 100 } } } }, seed);
    assert.equal(r.winner, null);
    assert.equal(r.movedBeforeMinSamples, false);
    assert.match(r.status.reason, /insufficient samples/);
  }
});

test('Beta and Gamma draws have the right moments', () => {
  const rng = seededRandom(11);
  const n = 40_000;
  for (const [a, b] of [[2, 5], [0.5, 0.5], [30, 970]] as const) {
    let sum = 0;
    let sq = 0;
    for (let i = 0; i < n; i++) {
      const x = drawBeta(a, b, rng);
      sum += x;
      sq += x * x;
    }
    const mean = sum / n;
    const variance = sq / n - mean * mean;
    const m = a / (a + b);
    const v = (a * b) / ((a + b) ** 2 * (a + b + 1));
    // Tolerance: 5 standard errors of the sample mean.
    assert.ok(Math.abs(mean - m) < 5 * Math.sqrt(v / n), `Beta(${a},${b}) mean ${mean} vs ${m}`);
    assert.ok(Math.abs(variance - v) / v < 0.05, `Beta(${a},${b}) variance ${variance} vs ${v}`);
  }
  let g = 0;
  for (let i = 0; i < n; i++) g += drawGamma(3.5, rng);
  assert.ok(Math.abs(g / n - 3.5) < 5 * Math.sqrt(3.5 / n));
});

test('posterior CDFs: rates and means', () => {
  // 5 errors in 100 requests: P(rate <= 1%) is tiny, P(rate <= 20%) is near 1.
  const r = ratePosterior(5, 100);
  assert.ok(r.cdf(0.01) < 0.01);
  assert.ok(r.cdf(0.2) > 0.999);
  assert.ok(Math.abs(r.mean - 6 / 102) < 1e-12);
  // A mean of 10 with sd 2 over 100 values: P(mu <= 10) = 0.5, P(mu <= 10.4) ≈ P(t99 <= 2) ≈ 0.976.
  const n = 100;
  const m = meanPosterior(n, n * 10, n * (100 + 4 * (n - 1) / n));
  assert.ok(Math.abs(m.cdf(10) - 0.5) < 1e-9);
  assert.ok(Math.abs(m.cdf(10.4) - 0.9759) < 0.002, String(m.cdf(10.4)));
});

test('SRM: a 50/50 split observed as 60/40 over 1000 requests is flagged; 510/490 is not; traffic to a 0% version is', () => {
  const one = (keyless: Record<string, number>, weights: Record<string, number>) => checkSrm(EMPTY_SRM_STATE, { keyless, newKeys: {}, weights }).check;
  assert.equal(one({ v1: 600, v2: 400 }, { v1: 50, v2: 50 })!.flagged, true);
  assert.equal(one({ v1: 510, v2: 490 }, { v1: 50, v2: 50 })!.flagged, false);
  assert.equal(one({ v1: 990, v2: 10 }, { v1: 100, v2: 0 })!.flagged, true, 'traffic to a 0% version');
  assert.equal(one({ v1: 990, v3: 10 }, { v1: 50, v2: 50 })!.flagged, true, 'traffic to a version outside the weights');
  assert.equal(one({}, { v1: 50, v2: 50 }), null, 'no traffic: nothing to judge');
});

test('SRM is sequential: a small misroute no single period shows is caught as evidence accumulates', () => {
  // 5% of v2's traffic lands on v1, 200 requests a period: one period is far from significant.
  let state = EMPTY_SRM_STATE;
  let flaggedAt = -1;
  const rand = seededRandom(3);
  for (let k = 1; k <= 400 && flaggedAt < 0; k++) {
    let v2 = 0;
    for (let i = 0; i < 200; i++) if (rand() < 0.5 * 0.95) v2++;
    const r = checkSrm(state, { keyless: { v1: 200 - v2, v2 }, newKeys: {}, weights: { v1: 50, v2: 50 } });
    state = r.state;
    if (k === 1) assert.equal(r.check!.flagged, false, 'one period is not enough');
    if (r.check!.flagged) flaggedAt = k;
  }
  assert.ok(flaggedAt > 1, `flagged at period ${flaggedAt}`);
});

test('SRM: sound routing with a 1% arm raises no alarm in 200 experiments of 200 periods (exact, not chi-square)', () => {
  // Expected counts of 1–3 per period: where the chi-square approximation cried wolf 4–20× too often.
  const rand = seededRandom(17);
  let alarms = 0;
  for (let e = 0; e < 200; e++) {
    let state = EMPTY_SRM_STATE;
    let flagged = false;
    for (let k = 0; k < 200; k++) {
      const n = 100 + Math.floor(rand() * 200);
      let small = 0;
      for (let i = 0; i < n; i++) if (rand() < 0.01) small++;
      const r = checkSrm(state, { keyless: { v1: n - small, v2: small }, newKeys: {}, weights: { v1: 99, v2: 1 } });
      state = r.state;
      flagged ||= r.check?.flagged === true;
    }
    if (flagged) alarms++;
  }
  // The guarantee is 0.1% per experiment; 200 experiments expect 0.2 alarms. Three would be p < 0.002.
  assert.ok(alarms <= 2, `${alarms} of 200 sound experiments flagged`);
});
