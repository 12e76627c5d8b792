/**
 * Issue 11, item 4: dot segments, encoded dots and doubled slashes must not
 * carry a request outside its version's base path or its route's prefix;
 * path prefixes match on segment boundaries; `*.example.org` needs a label.
 * Real Sluice, real logging upstreams on loopback.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import type { RunningSluice } from '../cli/run-sluice.js';
import { validateConfig } from '../config/config.js';
import { normalisePath } from '../proxy/path.js';
import { Pool, startSluice, startUpstream, type Upstream } from './support/helpers.js';

test('normalisePath: dot segments, encoded dots, slashes, escapes', () => {
  const cases: Array<[string, string | null]> = [
    ['/', '/'],
    ['/a/b?x=/../y', '/a/b?x=/../y'],
    ['/../private', '/private'],
    ['/%2e%2e/private', '/private'],
    ['/%2E%2E/private', '/private'],
    ['/.%2e/private', '/private'],
    ['/api/../x', '/x'],
    ['/api/./x/', '/api/x/'],
    ['/api/..', '/'],
    ['/api/.', '/api/'],
    ['/a/b/../../../../c', '/c'],
    ['//api///x', '/api/x'],
    ['/%61pi/%7Euser', '/api/~user'],
    ['/pkg/%40scope%2fname', '/pkg/%40scope%2Fname'],
    ['/a/..%2Fprivate', null],
    ['/a/%2e%2e%2fprivate', null],
    ['/a/..;jsessionid=1/x', null],
    ['/a/..\\x', null],
    ['/a/%2e%2e%5Cx', null],
    ['/a/%zz', null],
    ['/a/%2', null],
    ['/.well-known/x', '/.well-known/x'],
    ['/a/b.c/..d/...', '/a/b.c/..d/...'],
    ['/a?q=%2e%2e', '/a?q=%2e%2e'],
  ];
  for (const [input, want] of cases) assert.equal(normalisePath(input), want, input);
});

test('normalisePath returns the same string for a path that needs no work', () => {
  const p = '/api/v1/users/42?x=1';
  assert.equal(normalisePath(p), p);
});

test('a pathPrefix that could never match a normalised path is a config error', () => {
  const config = (pathPrefix: string) => ({ routes: [{ name: 'r', match: { pathPrefix }, versions: [{ name: 'v', url: 'http://127.0.0.1:1' }] }] });
  for (const ok of ['/', '/api', '/api/', '/a.b/%40x']) assert.doesNotThrow(() => validateConfig(config(ok), { env: {} }), ok);
  for (const bad of ['/a/../b', '/a//b', '/./a', '/%61pi', '/a/..%2Fb']) {
    assert.throws(() => validateConfig(config(bad), { env: {} }), (e: { details: Array<{ path: string }> }) => e.details.some((d) => d.path === 'routes[0].match.pathPrefix'), bad);
  }
});

/** Resolves a path as the most liberal upstream would: every escape decoded, `\` and `;params` honoured, dots removed. */
function upstreamView(path: string): string {
  const q = path.indexOf('?');
  let p = q === -1 ? path : path.slice(0, q);
  p = p.replace(/%([0-9a-fA-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
  const out: string[] = [];
  for (const raw of p.replace(/\\/g, '/').split('/')) {
    const seg = raw.split(';')[0]!;
    if (seg === '' || seg === '.') continue;
    if (seg === '..') out.pop();
    else out.push(seg);
  }
  return '/' + out.join('/');
}

function under(path: string, prefix: string): boolean {
  return path === prefix || path.startsWith(prefix + '/');
}

describe('path normalisation through the proxy', () => {
  let api: Upstream;
  let pub: Upstream;
  let wild: Upstream;
  let sluice: RunningSluice;
  let pool: Pool;

  before(async () => {
    [api, pub, wild] = await Promise.all([startUpstream('api'), startUpstream('pub'), startUpstream('wild')]);
    sluice = await startSluice({
      routes: [
        { name: 'wild', match: { host: '*.example.org' }, versions: [{ name: 'w', url: `${wild.url}/w` }] },
        { name: 'api', match: { pathPrefix: '/api' }, versions: [{ name: 'a', url: `${api.url}/v1` }] },
        { name: 'pub', match: { pathPrefix: '/' }, versions: [{ name: 'p', url: `${pub.url}/pub` }] },
      ],
    });
    pool = new Pool(sluice.trafficUrl, { connections: 4 });
  });

  after(async () => {
    await pool.close();
    await sluice.close();
    await Promise.all([api, pub, wild].map((u) => u.close()));
  });

  /** Sends a path verbatim; returns which upstream got it and as what, or the status when none did. */
  async function send(path: string, host = 'localhost'): Promise<{ status: number; body: string; to?: string; url?: string }> {
    const before = [api.seen.length, pub.seen.length, wild.seen.length];
    const r = await pool.request({ path, method: 'GET', headers: { host } });
    const body = await r.body.text();
    const got = [api, pub, wild].findIndex((u, i) => u.seen.length > before[i]!);
    if (got === -1) return { status: r.statusCode, body };
    const u = [api, pub, wild][got]!;
    return { status: r.statusCode, body, to: ['api', 'pub', 'wild'][got], url: u.seen[u.seen.length - 1]!.url };
  }

  test('dot segments cannot leave the base path or reach another route', async () => {
    const cases: Array<[string, string, string]> = [
      ['/../private', 'pub', '/pub/private'],
      ['/%2e%2e/private', 'pub', '/pub/private'],
      ['/.%2e/private', 'pub', '/pub/private'],
      ['/api/../x', 'pub', '/pub/x'],
      ['/api/../../../etc/passwd', 'pub', '/pub/etc/passwd'],
      ['/x/../api/y', 'api', '/v1/api/y'],
      ['//api/y', 'api', '/v1/api/y'],
      ['/%61pi/y?k=%2e%2e/../', 'api', '/v1/api/y?k=%2e%2e/../'],
    ];
    for (const [path, to, url] of cases) {
      const r = await send(path);
      assert.equal(r.status, 200, `${path}: ${r.body}`);
      assert.deepEqual([r.to, r.url], [to, url], path);
    }
  });

  test('a segment that hides a dot segment from an upstream is refused with 400', async () => {
    for (const path of ['/api/..%2F..%2Fprivate', '/api/..;x/private', '/api/..%5Cprivate', '/api/%2e%2e%5cprivate']) {
      const r = await send(path);
      assert.equal(r.to, undefined, `${path} reached ${r.to} as ${r.url}`);
      assert.equal(r.status, 400, path);
      assert.equal(JSON.parse(r.body).error.code, 'SLUICE_PATH_INVALID', path);
    }
    // fastify refuses a malformed escape before Sluice sees it; either way it goes nowhere.
    const r = await send('/api/%zz');
    assert.deepEqual([r.status, r.to], [400, undefined]);
  });

  test('pathPrefix matches whole segments only', async () => {
    for (const [path, to] of [['/api', 'api'], ['/api/', 'api'], ['/api/x', 'api'], ['/api?q=1', 'api'], ['/apiary', 'pub'], ['/api.x', 'pub']] as const) {
      const r = await send(path);
      assert.equal(r.to, to, path);
    }
  });

  test('*.example.org matches a subdomain, not example.org or .example.org', async () => {
    assert.equal((await send('/x', 'a.example.org')).to, 'wild');
    assert.equal((await send('/x', 'a.b.example.org:8080')).to, 'wild');
    assert.equal((await send('/x', 'example.org')).to, 'pub');
    assert.equal((await send('/x', '.example.org')).to, 'pub');
    assert.equal((await send('/x', 'aexample.org')).to, 'pub');
  });

  test('property: no generated path leaves its version base path or reaches the wrong route', async () => {
    const segment = fc.oneof(
      fc.constantFrom(
        'api', 'apiary', 'x', 'private', '.', '..', '%2e', '%2E', '%2e%2e', '.%2e', '%2E.', '', '..%2F', '%2f..', '..;', '..;x',
        '..%5C', '..\\', 'a%2Fb', '%61pi', '%41PI', 'API', '~', '%7E', '%25', '%2', 'a.b', '...', ';',
      ),
      fc.stringMatching(/^[a-z0-9._~%-]{0,6}$/),
    );
    const pathArb = fc
      .tuple(fc.array(segment, { maxLength: 8 }), fc.option(fc.constantFrom('?a=1', '?p=/../x', '?q=%2e%2e', '?'), { nil: '' }))
      .map(([segs, q]) => '/' + segs.join('/') + q);
    await fc.assert(
      fc.asyncProperty(pathArb, async (path) => {
        const r = await send(path);
        if (r.to === undefined) {
          assert.ok(r.status === 400, `${path}: status ${r.status} ${r.body}`);
          return;
        }
        const view = upstreamView(r.url!);
        const q = path.indexOf('?');
        if (q !== -1) assert.ok(r.url!.endsWith(path.slice(q)), `${path}: query changed: ${r.url}`);
        if (r.to === 'api') assert.ok(under(view, '/v1/api'), `${path} → api as ${r.url}`);
        else {
          assert.equal(r.to, 'pub', path);
          assert.ok(under(view, '/pub'), `${path} → pub as ${r.url}`);
          assert.ok(!under(view, '/pub/api'), `${path} → pub as ${r.url}, which is the api route's`);
        }
      }),
      { numRuns: 400, seed: 11 },
    );
  });
});
