/**
 * Issue 11 (from reading the code): rule regexes run on client header values.
 * A backtracking pattern must not let one request stall the proxy, patterns
 * that cannot run in linear time are refused at load, and over-long values
 * never match. Real Sluice and upstreams on loopback.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { RunningSluice } from '../cli/run-sluice.js';
import { validateConfig } from '../config/config.js';
import { backtrackingHazard, MAX_REGEX_INPUT } from '../proxy/match.js';
import { get, Pool, startSluice, startUpstream, type Upstream } from './support/helpers.js';

function withRegex(regex: string) {
  return {
    routes: [{
      name: 'r', versions: [{ name: 'v1', url: 'http://127.0.0.1:1' }, { name: 'v2', url: 'http://127.0.0.1:2' }],
      rules: [{ match: { headers: { 'x-a': { regex } } }, version: 'v2' }],
    }],
  };
}

test('regexes that cannot run in linear time are refused at load, by path', () => {
  for (const regex of ['^(a)\\1$', '(?<x>a)\\k<x>', '(?=a)a', '(?<!a)b']) {
    assert.throws(
      () => validateConfig(withRegex(regex), { env: {} }),
      (e: { details: Array<{ path: string; message: string }> }) =>
        e.details.some((d) => d.path === 'routes[0].rules[0].match.headers.x-a.regex' && /not allowed|linear/.test(d.message)),
      regex,
    );
  }
  for (const regex of ['Mobile', '^u[0-9]+$', '^(a+)+$', '.*.*.*x', '^(?:ab|cd){2,4}$']) {
    assert.doesNotThrow(() => validateConfig(withRegex(regex), { env: {} }), regex);
  }
});

test('without the linear engine, the static check refuses nested quantifiers', () => {
  for (const bad of ['(a+)+$', '((ab)*c)+', '(\\d+)*', '(a)\\1', '(?=x)']) assert.notEqual(backtrackingHazard(bad), null, bad);
  for (const ok of ['^u[0-9]+$', '(ab)+', '[(]a+[)]+', '\\(a+\\)+', '(?:ab|cd){2}']) assert.equal(backtrackingHazard(ok), null, ok);
});

describe('rule regexes on the request path', () => {
  let v1: Upstream;
  let v2: Upstream;
  let sluice: RunningSluice;
  let pool: Pool;

  before(async () => {
    [v1, v2] = await Promise.all([startUpstream('v1', undefined, { record: false }), startUpstream('v2', undefined, { record: false })]);
    sluice = await startSluice({
      routes: [{
        name: 'r', versions: [{ name: 'v1', url: v1.url }, { name: 'v2', url: v2.url }],
        rules: [
          { match: { headers: { 'x-evil': { regex: '^(a+)+$' } } }, version: 'v2' },
          { match: { headers: { 'x-long': { regex: '^a+$' } } }, version: 'v2' },
        ],
      }],
    });
    pool = new Pool(sluice.trafficUrl, { connections: 2 });
  });

  after(async () => {
    await pool.close();
    await sluice.close();
    await Promise.all([v1.close(), v2.close()]);
  });

  test('a catastrophic-backtracking input costs no more than a few ordinary requests', async () => {
    await get(pool, '/warm');
    let t = performance.now();
    for (let i = 0; i < 20; i++) assert.equal((await get(pool, '/', { 'x-evil': 'b'.repeat(29) })).body, 'v1');
    const twentyOrdinary = performance.now() - t;
    t = performance.now();
    // 2^28 backtracking steps (seconds) for a backtracking engine; linear for Sluice.
    const r = await get(pool, '/', { 'x-evil': 'a'.repeat(28) + 'b' });
    const evil = performance.now() - t;
    assert.equal(r.body, 'v1');
    assert.ok(evil < twentyOrdinary, `the evil value took ${evil.toFixed(1)} ms, 20 ordinary requests ${twentyOrdinary.toFixed(1)} ms`);
    assert.equal((await get(pool, '/', { 'x-evil': 'aaaa' })).body, 'v2');
  });

  test(`a value longer than ${MAX_REGEX_INPUT} characters never matches`, async () => {
    assert.equal((await get(pool, '/', { 'x-long': 'a'.repeat(MAX_REGEX_INPUT) })).body, 'v2');
    assert.equal((await get(pool, '/', { 'x-long': 'a'.repeat(MAX_REGEX_INPUT + 1) })).body, 'v1');
  });
});
