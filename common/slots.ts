/**
 * Weighted choice and stickiness on one structure: [0,1) is cut into 100
 * slots of 1%, and each slot belongs to one version (weights are integer
 * percents). A random request picks a slot at random; a sticky key hashes to a
 * fixed slot. Either way the pick is one array read.
 *
 * When weights change, `reassignSlots` moves only as many slots as the weights
 * moved: versions that shrink give up their highest slots, versions that grow
 * take exactly those. Keys in untouched slots keep their version, so 90/10 →
 * 80/20 moves 10% of keys, all of them v1 → v2 (a re-hash would move ~half).
 */

export const SLOT_COUNT = 100;

/** The first layout: versions own contiguous ranges in their listed order. */
export function initialSlots(weights: readonly number[]): Uint8Array {
  const slots = new Uint8Array(SLOT_COUNT);
  let at = 0;
  weights.forEach((w, v) => {
    slots.fill(v, at, at + w);
    at += w;
  });
  return slots;
}

/**
 * A new layout for `weights` (integer percents summing to 100, one per
 * version index) that differs from `prev` in as few slots as possible.
 */
export function reassignSlots(prev: Uint8Array, weights: readonly number[]): Uint8Array {
  const slots = Uint8Array.from(prev);
  const owned = new Array<number>(weights.length).fill(0);
  const freed: number[] = [];
  for (let i = 0; i < SLOT_COUNT; i++) {
    const v = slots[i]!;
    // A slot owned by an index that no longer exists is free.
    if (v < weights.length) owned[v]!++;
    else freed.push(i);
  }
  // Shrinking versions release their highest slots, so a version's range
  // stays as contiguous as the history of weights allows.
  for (let i = SLOT_COUNT - 1; i >= 0; i--) {
    const v = slots[i]!;
    if (v < weights.length && owned[v]! > weights[v]!) {
      owned[v]!--;
      freed.push(i);
    }
  }
  freed.sort((a, b) => a - b);
  let next = 0;
  weights.forEach((w, v) => {
    while (owned[v]! < w) {
      slots[freed[next++]!] = v;
      owned[v]!++;
    }
  });
  return slots;
}

/**
 * FNV-1a over the key's UTF-16 code units, finished with murmur3's fmix32 so
 * that similar keys (user-1, user-2, …) spread evenly over the slots.
 */
export function hashKey(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The slot a sticky key falls in: its point in [0,1), times 100. */
export function slotOfKey(key: string): number {
  return slotOfHash(hashKey(key));
}

export function slotOfHash(h: number): number {
  return Math.floor((h / 4294967296) * SLOT_COUNT);
}
