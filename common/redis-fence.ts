/**
 * Fenced writes. The control-plane leader holds an epoch (a fencing token,
 * incremented at every acquisition of the lease). Every state write it makes
 * goes through one Lua script that first checks the epoch in Redis is still
 * its own, and applies the writes only then — atomically, so a former leader
 * that was paused (GC, VM stall) and wakes up after a failover cannot
 * overwrite the new leader's decisions.
 *
 * Single-instance or Sentinel Redis only: the keys travel in ARGV, which
 * Redis Cluster would not route.
 */
import type { Redis } from 'ioredis';
import { SluiceError } from './errors.js';

/** One write: ['SET', key, value] | ['HSET', key, field, value] | ['PUBLISH', channel, message] | ['SADD'|'SREM', key, member] | ['DEL', key]. */
export type FencedOp = readonly string[];

const ALLOWED = new Set(['SET', 'HSET', 'PUBLISH', 'SADD', 'SREM', 'DEL', 'INCR']);

const FENCED_EXEC = `
local current = redis.call('GET', KEYS[1])
if current ~= ARGV[1] then
  return redis.error_reply('SLUICE_FENCED epoch is ' .. tostring(current) .. ', writer has ' .. ARGV[1])
end
local ops = cjson.decode(ARGV[2])
for _, op in ipairs(ops) do redis.call(unpack(op)) end
return #ops
`;

/**
 * Applies `ops` atomically if and only if `epochKey` still holds `epoch`.
 * Rejects with SLUICE_FENCED when another leader has taken over, and with
 * SLUICE_STORE_UNAVAILABLE when Redis cannot be reached.
 */
export async function fencedExec(redis: Redis, epochKey: string, epoch: number, ops: readonly FencedOp[]): Promise<number> {
  for (const op of ops) {
    if (!ALLOWED.has(op[0] ?? '')) throw new Error(`fencedExec: ${op[0]} is not an allowed write`);
  }
  try {
    return (await redis.eval(FENCED_EXEC, 1, epochKey, String(epoch), JSON.stringify(ops))) as number;
  } catch (err) {
    const message = (err as Error).message ?? '';
    if (message.includes('SLUICE_FENCED')) throw new SluiceError('SLUICE_FENCED', message.replace(/^.*SLUICE_FENCED /, 'fenced: '));
    throw new SluiceError('SLUICE_STORE_UNAVAILABLE', `Redis: ${message}`);
  }
}
