import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { RunningSluice } from '../cli/run-sluice.js';
import { get, inParallel, Pool, startSluice, startUpstream, type Upstream } from './support/helpers.js';

/** Chi-square critical values at p = 0.001 by degrees of freedom. */
const CHI2_CRIT_P001: Record<number, number> = { 1: 10.828, 2: 13.816, 3: 16.266 };

function chiSquare(observed: number[], expectedShares: number[]): number {
  const n = observed.reduce((a, b) => a + b, 0);
  return observed.reduce((sum, o, i) => {
    const e = n * expectedShares[i]!;
    return sum + ((o - e) * (o - e)) / e;
  }, 0);
}

describe('routing', () => {
  let ups: Upstream[];
  let sluice: RunningSluice;
  let pool: Pool;
  let admin: Pool;

  before(async () => {
    ups = await Promise.all(['v1', 'v2', 'v3'].map((n) => startUpstream(n, undefined, { record: false })));
    const versions = ups.map((u, i) => ({ name: `v${i + 1}`, url: u.url }));
    sluice = await startSluice({
      routes: [
        {
          name: 'rules',
          match: { pathPrefix: '/rules' },
          versions,
          weights: { v1: 100 },
          rules: [
            { match: { headers: { 'x-canary': 'true' } }, version: 'v2' },
            { match: { cookies: { beta: '1' } }, version: 'v3' },
            { match: { query: { version: 'v2' } }, version: 'v2' },
            { match: { headers: { 'x-user-agent': { regex: '^Mobile/[0-9]+$' } } }, version: 'v3' },
            { match: { headers: { 'x-debug': { present: true } }, query: { v: 'three' } }, version: 'v3' },
          ],
        },
        { name: 'sticky', match: { pathPrefix: '/sticky' }, versions: versions.slice(0, 2), weights: { v1: 90, v2: 10 }, sticky: { header: 'x-user-id' } },
        { name: 'stickycookie', match: { pathPrefix: '/cookie' }, versions: versions.slice(0, 2), weights: { v1: 50, v2: 50 }, sticky: { cookie: 'sid' } },
        { name: 'split', match: { host: 'split.example.com' }, versions, weights: { v1: 70, v2: 20, v3: 10 } },
      ],
    });
    pool = new Pool(sluice.trafficUrl, { connections: 50 });
    admin = new Pool(sluice.adminUrl, { connections: 4 });
  });

  after(async () => {
    await pool.close();
    await admin.close();
    await sluice.close();
    await Promise.all(ups.map((u) => u.close()));
  });

  async function setWeights(route: string, weights: Record<string, number>): Promise<void> {
    const r = await admin.request({ path: `/routes/${route}/weights`, method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(weights) });
    const text = await r.body.text();
    assert.equal(r.statusCode, 200, text);
  }

  test('10,000 requests at 70/20/10 split within a chi-square test at p = 0.001', async () => {
    const counts: Record<string, number> = { v1: 0, v2: 0, v3: 0 };
    await inParallel(10_000, 50, async () => {
      const r = await get(pool, '/anything', { host: 'split.example.com' });
      assert.equal(r.status, 200);
      counts[r.body]!++;
    });
    const observed = [counts.v1!, counts.v2!, counts.v3!];
    const chi2 = chiSquare(observed, [0.7, 0.2, 0.1]);
    assert.ok(chi2 < CHI2_CRIT_P001[2]!, `chi2 ${chi2.toFixed(2)} for ${observed.join('/')}`);
    // The header says who served, and matches the body.
    const one = await get(pool, '/x', { host: 'split.example.com' });
    assert.equal(one.headers['x-sluice-version'], one.body);
  });

  test('header, cookie, query and regex rules route as configured and take precedence over weights', async () => {
    const cases: Array<[string, Record<string, string>, string]> = [
      ['/rules/a', {}, 'v1'],
      ['/rules/a', { 'x-canary': 'true' }, 'v2'],
      ['/rules/a', { 'x-canary': 'false' }, 'v1'],
      ['/rules/a', { cookie: 'other=2; beta=1' }, 'v3'],
      ['/rules/a', { cookie: 'beta=10' }, 'v1'],
      ['/rules/a?x=1&version=v2', {}, 'v2'],
      ['/rules/a?version=v3', {}, 'v1'],
      ['/rules/a', { 'x-user-agent': 'Mobile/42' }, 'v3'],
      ['/rules/a', { 'x-user-agent': 'Mobile/42x' }, 'v1'],
      ['/rules/a?v=three', { 'x-debug': '' }, 'v3'],
      ['/rules/a?v=three', {}, 'v1'],
      // Rules are tried in order: the first match wins.
      ['/rules/a?version=v2', { cookie: 'beta=1' }, 'v3'],
    ];
    for (const [path, headers, expected] of cases) {
      for (let i = 0; i < 5; i++) {
        const r = await get(pool, path, headers);
        assert.equal(r.body, expected, `${path} ${JSON.stringify(headers)}`);
      }
    }
  });

  test('an unknown route gets 404 with a JSON error', async () => {
    const r = await get(pool, '/nowhere');
    assert.equal(r.status, 404);
    const body = JSON.parse(r.body);
    assert.equal(body.error.code, 'SLUICE_ROUTE_NOT_FOUND');
    assert.match(String(r.headers['content-type']), /application\/json/);
  });

  test('sticky keys: 90/10 → 80/20 moves only v1 → v2, about 10% of keys', async () => {
    const keys = Array.from({ length: 2000 }, (_, i) => `user-${i}`);
    const before = await inParallel(keys.length, 50, async (i) => (await get(pool, '/sticky', { 'x-user-id': keys[i]! })).body);
    // Sticky means stable: the same key again gets the same version.
    const again = await inParallel(200, 50, async (i) => (await get(pool, '/sticky', { 'x-user-id': keys[i]! })).body);
    assert.deepEqual(again, before.slice(0, 200));
    const v2Before = before.filter((v) => v === 'v2').length / keys.length;
    assert.ok(Math.abs(v2Before - 0.1) < 0.025, `v2 share before: ${v2Before}`);

    await setWeights('sticky', { v1: 80, v2: 20 });
    const afterMove = await inParallel(keys.length, 50, async (i) => (await get(pool, '/sticky', { 'x-user-id': keys[i]! })).body);
    let moved = 0;
    for (let i = 0; i < keys.length; i++) {
      if (before[i] !== afterMove[i]) {
        assert.equal(before[i], 'v1', `key ${keys[i]} moved away from v2`);
        assert.equal(afterMove[i], 'v2');
        moved++;
      }
    }
    const share = moved / keys.length;
    assert.ok(Math.abs(share - 0.1) <= 0.025, `changed share ${share}`);
  });

  test('sticky cookie keeps a user on one version; requests without the key split by weight', async () => {
    const first = await get(pool, '/cookie', { cookie: 'sid=abc123' });
    for (let i = 0; i < 20; i++) assert.equal((await get(pool, '/cookie', { cookie: 'lang=en; sid=abc123' })).body, first.body);
    const seen = new Set<string>();
    for (let i = 0; i < 200 && seen.size < 2; i++) seen.add((await get(pool, '/cookie')).body);
    assert.equal(seen.size, 2, 'keyless requests should reach both versions at 50/50');
  });

  test('50 weight changes under load: no request fails', async () => {
    let failed = 0;
    let done = 0;
    const load = inParallel(6000, 64, async (i) => {
      try {
        const r = await get(pool, '/anything', { host: 'split.example.com', 'x-user-id': `u${i}` });
        if (r.status !== 200 || !['v1', 'v2', 'v3'].includes(r.body)) failed++;
      } catch {
        failed++;
      }
      done++;
    });
    const weights = [
      { v1: 0, v2: 50, v3: 50 },
      { v1: 100, v2: 0, v3: 0 },
      { v1: 33, v2: 33, v3: 34 },
      { v1: 10, v2: 0, v3: 90 },
      { v1: 70, v2: 20, v3: 10 },
    ];
    for (let k = 0; k < 50; k++) {
      await setWeights('split', weights[k % weights.length]!);
      // Spread the changes over the run rather than all at the start.
      while (done < ((k + 1) * 6000) / 55) await new Promise((r) => setImmediate(r));
    }
    await load;
    assert.equal(failed, 0);
    const route = JSON.parse(await (await admin.request({ path: '/routes/split', method: 'GET' })).body.text());
    assert.equal(route.generation, 51);
    assert.deepEqual(route.weights, { v1: 70, v2: 20, v3: 10 });
  });

  test('bad weights are refused with every problem listed, and change nothing', async () => {
    const r = await admin.request({
      path: '/routes/split/weights',
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ v1: 50, v9: 20, v2: -5 }),
    });
    assert.equal(r.statusCode, 400);
    const body = (await r.body.json()) as { error: { code: string; details: Array<{ path: string }> } };
    assert.equal(body.error.code, 'SLUICE_WEIGHTS_INVALID');
    const paths = body.error.details.map((d) => d.path);
    assert.ok(paths.includes('weights.v9'), JSON.stringify(paths));
    assert.ok(paths.includes('weights.v2'), JSON.stringify(paths));
    const unknown = await admin.request({ path: '/routes/nope/weights', method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{"v1":100}' });
    assert.equal(unknown.statusCode, 404);
    await unknown.body.dump();
  });
});

describe('pinning (synthetic load)', () => {
  test('x-sluice-pin with the process token routes to the named version, is stripped, and is ignored with a wrong token', async (t) => {
    const ups = await Promise.all(['v1', 'v2'].map((n) => startUpstream(n)));
    const sluice = await startSluice({ routes: [{ name: 'r', versions: ups.map((u, i) => ({ name: `v${i + 1}`, url: u.url })), weights: { v1: 100 } }] });
    const pool = new Pool(sluice.trafficUrl, { connections: 4 });
    t.after(async () => {
      await pool.close();
      await sluice.close();
      await Promise.all(ups.map((u) => u.close()));
    });
    const token = sluice.proxy.pinToken;
    for (let i = 0; i < 20; i++) {
      assert.equal((await get(pool, '/p', { 'x-sluice-pin': `${token}:v2` })).body, 'v2');
      assert.equal((await get(pool, '/p', { 'x-sluice-pin': `wrong:v2` })).body, 'v1');
      // An unknown version falls back to normal routing.
      assert.equal((await get(pool, '/p', { 'x-sluice-pin': `${token}:v9` })).body, 'v1');
    }
    for (const u of ups) for (const r of u.seen) assert.equal(r.headers['x-sluice-pin'], undefined, 'the pin reached an upstream');
    assert.equal(ups[1]!.seen.length, 20);
    // Pinned requests are not keyless: they stay out of the sample-ratio check.
    const v2 = sluice.proxy.table.get('r')!.route.byName.get('v2')!.stats.snapshot();
    assert.equal(v2.requests, 20);
    assert.equal(v2.keyless, 0);
  });
});
