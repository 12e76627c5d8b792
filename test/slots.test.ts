import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { hashKey, initialSlots, reassignSlots, SLOT_COUNT, slotOfKey } from '../common/slots.js';

/** Integer weights for `n` versions summing to 100. */
const weightsArb = (n: number) =>
  fc.array(fc.integer({ min: 0, max: 100 }), { minLength: n - 1, maxLength: n - 1 }).map((cuts) => {
    const sorted = [0, ...cuts.sort((a, b) => a - b), 100];
    return sorted.slice(1).map((c, i) => c - sorted[i]!);
  });

function owned(slots: Uint8Array, n: number): number[] {
  const c = new Array<number>(n).fill(0);
  for (const v of slots) c[v]!++;
  return c;
}

test('every layout gives each version exactly its weight in slots', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 5 }).chain((n) => fc.tuple(fc.constant(n), weightsArb(n), fc.array(weightsArb(n), { maxLength: 8 }))), ([n, first, changes]) => {
      let slots = initialSlots(first);
      assert.deepEqual(owned(slots, n), first);
      for (const w of changes) {
        slots = reassignSlots(slots, w);
        assert.deepEqual(owned(slots, n), w);
      }
    }),
  );
});

test('a weight change moves only the slots the weights moved (the minimum)', () => {
  fc.assert(
    fc.property(fc.integer({ min: 2, max: 5 }).chain((n) => fc.tuple(weightsArb(n), weightsArb(n))), ([a, b]) => {
      const before = initialSlots(a);
      const after = reassignSlots(before, b);
      let changed = 0;
      for (let i = 0; i < SLOT_COUNT; i++) {
        if (before[i] !== after[i]) {
          changed++;
          // A slot only leaves a version that shrank, for one that grew.
          assert.ok(a[before[i]!]! > b[before[i]!]!);
          assert.ok(b[after[i]!]! > a[after[i]!]!);
        }
      }
      const minimum = a.reduce((sum, w, v) => sum + Math.max(0, b[v]! - w), 0);
      assert.equal(changed, minimum);
    }),
  );
});

test('90/10 → 80/20 moves exactly the 10 slots between 80 and 90 to v2', () => {
  const after = reassignSlots(initialSlots([90, 10]), [80, 20]);
  assert.deepEqual([...after.subarray(80, 90)], new Array(10).fill(1));
  assert.deepEqual([...after.subarray(0, 80)], new Array(80).fill(0));
});

test('sticky keys spread evenly over the slots', () => {
  const counts = new Array<number>(SLOT_COUNT).fill(0);
  const n = 100_000;
  for (let i = 0; i < n; i++) counts[slotOfKey(`user-${i}`)]!++;
  // Chi-square with 99 degrees of freedom; the p = 0.001 critical value is 148.23.
  const e = n / SLOT_COUNT;
  const chi2 = counts.reduce((s, o) => s + ((o - e) * (o - e)) / e, 0);
  assert.ok(chi2 < 148.23, `chi2 ${chi2}`);
  assert.equal(hashKey('abc'), hashKey('abc'));
  assert.notEqual(hashKey('user-1'), hashKey('user-2'));
});
