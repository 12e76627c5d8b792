/**
 * The winner test's parts (control/sequential.ts, design-effect.ts) against
 * the properties they promise: time-uniform coverage, drift-proof estimates,
 * a design effect that measures clustering. Seeded, no HTTP.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { seededRandom } from '../common/random.js';
import { designEffect } from '../control/design-effect.js';
import { NormalStream } from '../control/posterior.js';
import { csHalfWidth, mixtureRho2, pairEstimate, sequentialTest, type PeriodArm } from '../control/sequential.js';
import { hashKey } from '../common/slots.js';
import { BUCKET_MASK, USER_BUCKETS } from '../common/snapshots.js';

test('the confidence sequence half-width follows the normal-mixture formula', () => {
  // I = 400, α = 0.05, ρ² = 0.01: sqrt(2·5/(160000·0.01) · ln(√5/0.05)).
  const expected = Math.sqrt(((2 * 5) / (400 * 400 * 0.01)) * Math.log(Math.sqrt(5) / 0.05));
  assert.ok(Math.abs(csHalfWidth(400, 0.05, 0.01) - expected) < 1e-12);
  assert.equal(csHalfWidth(0, 0.05, 0.01), Number.POSITIVE_INFINITY);
  // Wider than the fixed-horizon interval at the same information, narrower as information grows.
  assert.ok(csHalfWidth(400, 0.05, mixtureRho2(0.05, 400)) > 1.96 / Math.sqrt(400));
  assert.ok(csHalfWidth(4000, 0.05, 0.01) < csHalfWidth(400, 0.05, 0.01));
});

test('time-uniform: with equal arms, fewer than α of 1,000 streams ever exclude 0 over 200 looks', () => {
  const rng = seededRandom(5);
  const normal = new NormalStream(rng);
  const alpha = 0.05;
  // 50 unit-variance units per arm per period, drawn as sufficient statistics: Σx ~ N(0, n), Σx² = (n − 1) + (Σx)²/n.
  const arm = (): PeriodArm => {
    const sum = normal.next() * Math.sqrt(50);
    return { n: 50, sum, sumSq: 49 + (sum * sum) / 50 };
  };
  let crossed = 0;
  for (let s = 0; s < 1000; s++) {
    const periods: PeriodArm[][] = [];
    for (let k = 0; k < 200; k++) {
      periods.push([arm(), arm()]);
      const r = sequentialTest(periods, 2, [0, 1], {
        alpha, sign: 1, deff: 1, tuning: { variance: 1, unitsPerArm: 1000 }, minUnits: 30, minEvents: 0, isRate: false,
      });
      if (r.winner >= 0) {
        crossed++;
        break;
      }
    }
  }
  assert.ok(crossed / 1000 <= alpha, `${crossed} of 1000 equal-arm streams declared a winner`);
});

test('a base rate that moves for everyone moves no estimate: stratified by period, where pooled counts are fooled', () => {
  // Period 1: rate 5%, v2 gets 10% of traffic; period 2: rate 10%, v2 gets 90%. Both versions equal.
  const periods: PeriodArm[][] = [
    [{ n: 9000, sum: 450, sumSq: 450 }, { n: 1000, sum: 50, sumSq: 50 }],
    [{ n: 1000, sum: 100, sumSq: 100 }, { n: 9000, sum: 900, sumSq: 900 }],
  ];
  const pooled = (i: number) => periods.reduce((s, p) => s + p[i]!.sum, 0) / periods.reduce((s, p) => s + p[i]!.n, 0);
  assert.ok(pooled(1) - pooled(0) > 0.03, 'pooled counts favour the version that got its traffic later');
  const e = pairEstimate(periods, 1, 0)!;
  assert.ok(Math.abs(e.estimate) < 1e-12, `stratified difference ${e.estimate}`);
});

test('a clearly better version is left standing; the others are eliminated by it', () => {
  const periods: PeriodArm[][] = [];
  for (let k = 0; k < 20; k++) {
    periods.push([
      { n: 500, sum: 25, sumSq: 25 },
      { n: 500, sum: 50, sumSq: 50 },
      { n: 500, sum: 25, sumSq: 25 },
    ]);
  }
  const r = sequentialTest(periods, 3, [0, 1, 2], {
    alpha: 0.05, sign: 1, deff: 1, tuning: { variance: 0.07, unitsPerArm: 1000 }, minUnits: 30, minEvents: 30, isRate: true,
  });
  assert.equal(r.winner, 1);
  assert.deepEqual(r.eliminatedBy, [1, -1, 1]);
  // Lower is better: the same data crown a low rate.
  const low = sequentialTest(periods, 3, [0, 1, 2], {
    alpha: 0.05, sign: -1, deff: 1, tuning: { variance: 0.07, unitsPerArm: 1000 }, minUnits: 30, minEvents: 30, isRate: true,
  });
  assert.equal(low.eliminatedBy[1], 0);
  assert.equal(low.winner, -1, 'v1 and v3 are equal: neither is left alone');
});

test('design effect: 1 for keyless traffic, ≈ 1 + (m − 1)·ICC for users with their own rates, Infinity for a handful of users', () => {
  assert.equal(designEffect([{ requests: 1000, sum: 50, sumSq: 50, buckets: undefined }], 'rate'), 1);
  const rng = seededRandom(9);
  // 2,000 users, 20 requests each; user rates 0 or 0.2 half and half (mean 0.1, ICC = 0.01/0.09).
  const buckets = { requests: new Array(USER_BUCKETS).fill(0), conversions: new Array(USER_BUCKETS).fill(0), rewardSum: new Array(USER_BUCKETS).fill(0) };
  let conv = 0;
  for (let u = 0; u < 2000; u++) {
    const b = hashKey(`u${u}`) & BUCKET_MASK;
    const rate = u % 2 === 0 ? 0 : 0.2;
    for (let r = 0; r < 20; r++) {
      buckets.requests[b]++;
      if (rng() < rate) {
        buckets.conversions[b]++;
        buckets.rewardSum[b]++;
        conv++;
      }
    }
  }
  const deff = designEffect([{ requests: 40000, sum: conv, sumSq: conv, buckets }], 'rate');
  const theory = 1 + 19 * (0.01 / 0.09);
  // 64 buckets estimate a variance with relative error about sqrt(2/63) ≈ 18%: allow 3 of those.
  assert.ok(Math.abs(deff - theory) / theory < 0.55, `deff ${deff.toFixed(2)} vs ${theory.toFixed(2)}`);
  const few = { requests: new Array(USER_BUCKETS).fill(0), conversions: new Array(USER_BUCKETS).fill(0), rewardSum: new Array(USER_BUCKETS).fill(0) };
  few.requests[3] = 500;
  few.conversions[3] = 20;
  assert.equal(designEffect([{ requests: 500, sum: 20, sumSq: 20, buckets: few }], 'rate'), Number.POSITIVE_INFINITY);
});
