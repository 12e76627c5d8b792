import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RecentIds } from '../control/in-process.js';

test('reward ids: a repeat within the ttl is refused; expired and evicted ids are admitted again; memory stays bounded', () => {
  const ids = new RecentIds(1000, 2);
  assert.equal(ids.admit('a', 0), true);
  assert.equal(ids.admit('a', 999), false, 'a repeat within the ttl');
  assert.equal(ids.admit('a', 1000), true, 'remembered for the ttl only');
  assert.equal(ids.admit('b', 1001), true);
  assert.equal(ids.admit('c', 1002), true, 'over capacity: the oldest (a) is forgotten');
  assert.equal(ids.admit('b', 1003), false);
  assert.equal(ids.admit('a', 1004), true);
});
