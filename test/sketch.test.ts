import assert from 'node:assert/strict';
import { test } from 'node:test';
import { seededRandom } from '../common/random.js';
import { LatencySketch, SKETCH_ALPHA } from '../common/sketch.js';

function exactQuantile(sorted: number[], q: number): number {
  return sorted[Math.floor(q * (sorted.length - 1))]!;
}

test('quantiles are within the relative accuracy of the exact ones', () => {
  const rand = seededRandom(7);
  const values = Array.from({ length: 20_000 }, () => Math.exp(rand() * 8 - 2)); // 0.13 ms .. 400 ms, log-uniform
  const s = new LatencySketch();
  for (const v of values) s.add(v);
  const sorted = [...values].sort((a, b) => a - b);
  for (const q of [0.01, 0.5, 0.9, 0.95, 0.99, 0.999]) {
    const exact = exactQuantile(sorted, q);
    const got = s.quantile(q);
    assert.ok(Math.abs(got - exact) / exact <= SKETCH_ALPHA + 1e-9, `q${q}: ${got} vs ${exact}`);
  }
});

test('merging replicas equals one sketch over all values, exactly, also through snapshots', () => {
  const rand = seededRandom(3);
  const all = new LatencySketch();
  const parts = [new LatencySketch(), new LatencySketch(), new LatencySketch()];
  for (let i = 0; i < 9000; i++) {
    const v = rand() * 500;
    all.add(v);
    parts[i % 3]!.add(v);
  }
  const merged = new LatencySketch();
  for (const p of parts) merged.mergeSnapshot(JSON.parse(JSON.stringify(p.snapshot())));
  assert.equal(merged.count, all.count);
  assert.deepEqual([...merged.bins], [...all.bins]);
  assert.equal(merged.quantile(0.95), all.quantile(0.95));
});

test('countAtOrBelow reads the empirical CDF', () => {
  const s = new LatencySketch();
  for (let i = 1; i <= 1000; i++) s.add(i); // 1..1000 ms
  const at100 = s.countAtOrBelow(100);
  assert.ok(Math.abs(at100 - 100) <= 2, String(at100));
  assert.equal(s.countAtOrBelow(0), 0);
  assert.equal(s.countAtOrBelow(1e9), 1000);
  assert.ok(Number.isNaN(new LatencySketch().quantile(0.5)));
});

test('zero, negative, NaN and huge values are kept without throwing', () => {
  const s = new LatencySketch();
  for (const v of [0, -1, Number.NaN, 1e12, Infinity]) s.add(v);
  assert.equal(s.count, 5);
  assert.equal(s.quantile(0), 0);
});

test('quantilesInPlace agrees with quantile for every q', () => {
  const rand = seededRandom(5);
  const s = new LatencySketch();
  for (let i = 0; i < 5000; i++) s.add(1 + rand() * 300);
  const qs = Float64Array.from({ length: 500 }, () => rand());
  const expected = Array.from(qs, (q) => s.quantile(q));
  s.quantilesInPlace(qs);
  assert.deepEqual(Array.from(qs), expected);
});
