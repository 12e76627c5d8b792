/**
 * Issue 11, "Also": the pin token (x-sluice-pin) is compared in constant
 * time (crypto.timingSafeEqual over the whole `<token>:` prefix, through
 * common/pin.ts's PinMatcher) and only an exact token pins. Constant time is
 * by construction, not measured: a timing test on a shared 2-core machine
 * would be noise. What is tested is that every near miss is refused —
 * including the prefixes a byte-by-byte attacker would try — end to end.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PinMatcher, pinValue } from '../common/pin.js';
import { get, Pool, startSluice, startUpstream } from './support/helpers.js';

describe('pin token', () => {
  it('PinMatcher takes exactly <token>:<version>', () => {
    const m = new PinMatcher('s3cret-token:');
    assert.equal(m.version(pinValue('s3cret-token', 'v2')), 'v2');
    assert.equal(m.version('s3cret-token:'), null, 'no version');
    for (const wrong of ['s3cret-tokeX:v2', 'X3cret-token:v2', 's3cret-token;v2', 's3cret-toke:v2', 's3cret-token-longer:v2', ':v2', '', 's3cret']) {
      assert.equal(m.version(wrong), null, wrong);
    }
  });

  it('a token that cannot be sent in a header never matches', () => {
    const m = new PinMatcher('tök€n:');
    assert.equal(m.version('tök¬n:v2'), null, 'U+20AC must not compare as its low byte 0xAC');
    assert.equal(m.version('tök€n:v2'), null);
  });

  it('through the proxy: the exact token pins; a wrong byte anywhere in it or a truncated token does not', async (t) => {
    const [v1, v2] = await Promise.all([startUpstream('v1'), startUpstream('v2')]);
    const sluice = await startSluice({ routes: [{ name: 'p', versions: [{ name: 'v1', url: v1.url }, { name: 'v2', url: v2.url }] }] });
    const pool = new Pool(sluice.trafficUrl, { connections: 2 });
    t.after(async () => {
      await pool.close();
      await sluice.close();
      await Promise.all([v1.close(), v2.close()]);
    });
    const token = sluice.proxy.pinToken;
    assert.equal((await get(pool, '/', { 'x-sluice-pin': pinValue(token, 'v2') })).body, 'v2');
    const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === 'a' ? 'b' : 'a') + s.slice(i + 1);
    const misses = [flip(token, 0), flip(token, token.length - 1), token.slice(0, -1), `${token}x`];
    for (const wrong of misses) assert.equal((await get(pool, '/', { 'x-sluice-pin': `${wrong}:v2` })).body, 'v1', `pinned with ${wrong}`);
    for (const u of [v1, v2]) for (const r of u.seen) assert.equal(r.headers['x-sluice-pin'], undefined, 'the pin reached an upstream');
  });
});
