import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SluiceError } from '../common/errors.js';
import { loadConfig, parseConfig, validateConfig } from '../config/config.js';
import { validateWeights } from '../config/routes.js';
import type { LoadOptions } from '../config/config.js';
import type { RouteConfig } from '../config/types.js';
import { parseDuration, parseSize } from '../config/duration.js';

// The contract's example (docs/contract.md, Examples), verbatim but for two comments: `${SLUICE_TOKEN}` unquoted inside a flow map included.
const PRODUCT_EXAMPLE = `
listen: 0.0.0.0:8080
admin: { listen: 127.0.0.1:9901, token: \${SLUICE_TOKEN} }
store: { redis: redis://127.0.0.1:6379 }          # omit for in-memory
routes:
  - name: checkout
    match: { host: shop.example.com, pathPrefix: /checkout }   # first matching route wins
    versions:
      - { name: v1, url: http://127.0.0.1:3001 }
      - { name: v2, url: http://127.0.0.1:3002 }
      - { name: v3, url: http://127.0.0.1:3003 }
    weights: { v1: 90, v2: 10 }                    # percent; default all to the first version
    rules:                                         # in order, before weights
      - { match: { headers: { x-canary: "true" } }, version: v2 }
      - { match: { cookies: { beta: "1" } }, version: v2 }
      - { match: { query: { version: v2 } }, version: v2 }
    sticky: { header: x-user-id }                  # or { cookie: sid }
    mirror:
      - { version: v3, percent: 20, compare: true } # shadow copy
    timeouts: { connect: 2s, request: 30s }
`;

const MINIMAL = `
routes:
  - name: r
    versions:
      - { name: v1, url: http://127.0.0.1:3001 }
      - { name: v2, url: http://127.0.0.1:3002 }
`;

const ENV = { SLUICE_TOKEN: 'tok-123' };

/** Runs `fn`, expects SLUICE_CONFIG_INVALID, returns the details. */
function problems(fn: () => unknown): ReadonlyArray<{ path: string; message: string }> {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof SluiceError, `expected a SluiceError, got ${String(err)}`);
    assert.equal(err.code, 'SLUICE_CONFIG_INVALID');
    return err.details;
  }
  assert.fail('expected the config to be rejected');
}

function assertRejected(yaml: string, path: string, message?: RegExp, opts: LoadOptions = { env: {} }): void {
  const details = problems(() => parseConfig(yaml, opts));
  const hit = details.find((d) => d.path === path);
  assert.ok(hit, `no problem at ${path}; got:\n${details.map((d) => `${d.path}: ${d.message}`).join('\n')}`);
  if (message) assert.match(hit.message, message);
}

/** MINIMAL with the route's body extended by `extra` (indented as route fields). */
function route(extra: string): string {
  return MINIMAL + extra.replace(/^/gm, '    ') + '\n';
}

describe('parseDuration / parseSize', () => {
  it('parses durations to milliseconds', () => {
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('2s'), 2000);
    assert.equal(parseDuration('1.5s'), 1500);
    assert.equal(parseDuration('1.1s'), 1100);
    assert.equal(parseDuration('1m'), 60_000);
    assert.equal(parseDuration('1h'), 3_600_000);
    assert.equal(parseDuration(0), 0);
    assert.equal(parseDuration(42), 42);
    for (const bad of ['', '10', '5x', '-1s', 's', '1 m', -1, Infinity, NaN, null, true, {}]) {
      assert.equal(parseDuration(bad), null, `parseDuration(${String(bad)})`);
    }
  });

  it('parses sizes to bytes', () => {
    assert.equal(parseSize('512B'), 512);
    assert.equal(parseSize('1kB'), 1000);
    assert.equal(parseSize('64KiB'), 65_536);
    assert.equal(parseSize('1MiB'), 1_048_576);
    assert.equal(parseSize('1MB'), 1_000_000);
    assert.equal(parseSize(2048), 2048);
    for (const bad of ['1', '1mb', '1 KB', 'KiB', -1, 1.5, null]) assert.equal(parseSize(bad), null, `parseSize(${String(bad)})`);
  });
});

describe('a valid config', () => {
  it('parses the contract example with defaults filled in', () => {
    const c = parseConfig(PRODUCT_EXAMPLE, { env: ENV });
    assert.deepEqual(c.listen, { host: '0.0.0.0', port: 8080, http2: true, tls: null });
    assert.deepEqual(c.admin, { listen: { host: '127.0.0.1', port: 9901 }, token: 'tok-123', dashboard: 'on' });
    assert.deepEqual(c.store, { redis: 'redis://127.0.0.1:6379' });
    assert.equal(c.logLevel, 'info');
    assert.deepEqual(c.proxy, {
      versionHeader: 'x-sluice-version',
      connectionsPerVersion: 128,
      upstreamKeepAliveMs: 4000,
      headersTimeoutMs: 10_000,
      requestTimeoutMs: 60_000,
      keepAliveTimeoutMs: 65_000,
      drainTimeoutMs: 30_000,
      accessLog: false,
      trustForwarded: false,
      maxUpgradesPerVersion: 10_000,
      requestBufferBytes: 1_048_576,
      responseBufferBytes: 1_048_576,
      bufferMemoryBytes: 268_435_456,
      clientBodyTimeoutMs: 10_000,
      sendTimeoutMs: 30_000,
      queueLimit: 1024,
    });
    assert.equal(c.routes.length, 1);
    const r = c.routes[0]!;
    assert.deepEqual(
      { name: r.name, host: r.host, pathPrefix: r.pathPrefix, weights: r.weights, sticky: r.sticky, timeouts: r.timeouts },
      {
        name: 'checkout',
        host: 'shop.example.com',
        pathPrefix: '/checkout',
        weights: { v1: 90, v2: 10, v3: 0 },
        sticky: { kind: 'header', name: 'x-user-id' },
        timeouts: { connectMs: 2000, requestMs: 30_000 },
      },
    );
    assert.deepEqual(r.versions, [
      { name: 'v1', url: 'http://127.0.0.1:3001', basePath: '', protocol: 'http1', tls: null },
      { name: 'v2', url: 'http://127.0.0.1:3002', basePath: '', protocol: 'http1', tls: null },
      { name: 'v3', url: 'http://127.0.0.1:3003', basePath: '', protocol: 'http1', tls: null },
    ]);
    assert.deepEqual(r.rules, [
      { match: { headers: [['x-canary', { kind: 'exact', value: 'true' }]], cookies: [], query: [] }, version: 'v2' },
      { match: { headers: [], cookies: [['beta', { kind: 'exact', value: '1' }]], query: [] }, version: 'v2' },
      { match: { headers: [], cookies: [], query: [['version', { kind: 'exact', value: 'v2' }]] }, version: 'v2' },
    ]);
    assert.deepEqual(r.mirror, [
      {
        version: 'v3',
        percent: 20,
        compare: true,
        methods: new Set(['GET', 'HEAD', 'OPTIONS']),
        maxBodyBytes: 1_048_576,
        timeoutMs: 5000,
        maxConcurrent: 100,
      },
    ]);
  });

  it('is deeply frozen', () => {
    const c = parseConfig(PRODUCT_EXAMPLE, { env: ENV });
    const r = c.routes[0]!;
    for (const o of [c, c.listen, c.admin, c.proxy, c.routes, r, r.weights, r.versions, r.versions[0], r.rules, r.rules[0]!.match,
      r.rules[0]!.match.headers, r.rules[0]!.match.headers[0], r.mirror[0], r.timeouts, r.sticky]) {
      assert.ok(Object.isFrozen(o));
    }
    assert.throws(() => {
      (r.weights as Record<string, number>)['v1'] = 1;
    }, TypeError);
  });

  it('applies route defaults and normalises names, hosts and URLs', () => {
    const c = parseConfig(
      route(`
match: { host: "*.Example.COM" }
rules:
  - match:
      headers: { X-Beta: { present: true }, X-Id: { regex: "^u[0-9]+$" } }
      cookies: { sid: { exact: abc } }
    version: v2
sticky: { header: X-User }
mirror:
  - { version: v2, percent: 0.5, methods: [get, post], maxBodyBytes: 64KiB, timeout: 250ms, maxConcurrent: 4 }
`).replace('http://127.0.0.1:3002', 'https://svc.internal:8443/api/v2/'),
      { env: {} },
    );
    const r = c.routes[0]!;
    assert.equal(r.host, '*.example.com');
    assert.equal(r.pathPrefix, '/');
    assert.deepEqual(r.weights, { v1: 100, v2: 0 });
    assert.deepEqual(r.versions[1], { name: 'v2', url: 'https://svc.internal:8443', basePath: '/api/v2', protocol: 'http1', tls: null });
    assert.deepEqual(r.timeouts, { connectMs: 2000, requestMs: 30_000 });
    assert.deepEqual(r.sticky, { kind: 'header', name: 'x-user' });
    const [beta, id] = r.rules[0]!.match.headers;
    assert.deepEqual(beta, ['x-beta', { kind: 'present', present: true }]);
    assert.equal(id?.[0], 'x-id');
    assert.ok(id?.[1].kind === 'regex' && id[1].regex.test('u42') && id[1].source === '^u[0-9]+$');
    assert.deepEqual(r.rules[0]!.match.cookies, [['sid', { kind: 'exact', value: 'abc' }]]);
    assert.deepEqual(r.mirror[0], {
      version: 'v2', percent: 0.5, compare: false, methods: new Set(['GET', 'POST']),
      maxBodyBytes: 65_536, timeoutMs: 250, maxConcurrent: 4,
    });
    assert.equal(c.store.redis, null);
    assert.equal(c.admin.token, null);
  });

  it('reads listen forms, versionHeader: false and JSON', () => {
    const json = JSON.stringify({
      listen: ':0',
      admin: { listen: '[::1]:9901', token: '' },
      proxy: { versionHeader: false, accessLog: true, drainTimeout: 0 },
      routes: [{ name: 'r', versions: [{ name: 'v1', url: 'http://h' }] }],
    });
    const c = parseConfig(json, { env: {} });
    assert.deepEqual(c.listen, { host: '0.0.0.0', port: 0, http2: true, tls: null });
    assert.deepEqual(c.admin, { listen: { host: '::1', port: 9901 }, token: null, dashboard: 'on' });
    assert.equal(c.proxy.versionHeader, null);
    assert.equal(c.proxy.accessLog, true);
    assert.equal(c.proxy.drainTimeoutMs, 0);
  });
});

describe('${NAME} substitution', () => {
  const doc = (admin: string, extra = ''): string => `admin: ${admin}\n${extra}${MINIMAL}`;

  it('substitutes set variables, defaults and $${ literals', () => {
    const c = parseConfig(
      `listen: "\${HOST:-127.0.0.1}:\${PORT}"\nadmin: { token: "a$\${b}" }\nlogLevel: \${LEVEL:-warn}\n` +
        `proxy: { connectionsPerVersion: \${CONNS}, accessLog: \${LOG} }\n${MINIMAL}`,
      { env: { PORT: '8081', HOST: '', CONNS: '8', LOG: 'true' } },
    );
    assert.deepEqual(c.listen, { host: '127.0.0.1', port: 8081, http2: true, tls: null });
    assert.equal(c.admin.token, 'a${b}');
    assert.equal(c.logLevel, 'warn');
    // A substituted "8" is read as the number the author meant.
    assert.equal(c.proxy.connectionsPerVersion, 8);
    assert.equal(c.proxy.accessLog, true);
  });

  it('references need no quotes, even inside flow collections', () => {
    const c = parseConfig(doc('{ listen: ${HOST:-127.0.0.1}:9, token: $${LITERAL} }'), { env: {} });
    assert.deepEqual(c.admin, { listen: { host: '127.0.0.1', port: 9 }, token: '${LITERAL}', dashboard: 'on' });
  });

  it('`${NAME:-}` makes a variable optional', () => {
    const c = parseConfig(doc('{ token: "${MAYBE:-}" }'), { env: {} });
    assert.equal(c.admin.token, null);
  });

  it('reports a missing variable at its path', () => {
    assertRejected(doc('{ token: ${MISSING_TOKEN} }'), 'admin.token', /environment variable MISSING_TOKEN is not set \(write \$\{MISSING_TOKEN:-\}/);
  });

  it('substitutes inside lists', () => {
    assertRejected(route('mirror:\n  - { version: v2, percent: 1, methods: ["${M}"] }'), 'routes[0].mirror[0].methods[0]', /M is not set/);
  });
});

describe('precedence: flags > SLUICE_* env > file > defaults', () => {
  const file = `listen: 0.0.0.0:1000\nadmin: { listen: 127.0.0.1:2000, token: file-token }\nstore: { redis: redis://file }\nlogLevel: warn\n${MINIMAL}`;

  it('takes the file over defaults', () => {
    const c = parseConfig(file, { env: {} });
    assert.deepEqual([c.listen.port, c.admin.listen.port, c.admin.token, c.store.redis, c.logLevel], [1000, 2000, 'file-token', 'redis://file', 'warn']);
  });

  it('takes SLUICE_* over the file, ignoring empty ones', () => {
    const env = { SLUICE_LISTEN: ':1001', SLUICE_ADMIN_LISTEN: '127.0.0.1:2001', SLUICE_TOKEN: 'env-token', SLUICE_REDIS_URL: 'redis://env', SLUICE_LOG_LEVEL: '' };
    const c = parseConfig(file, { env });
    assert.deepEqual([c.listen.port, c.admin.listen.port, c.admin.token, c.store.redis, c.logLevel], [1001, 2001, 'env-token', 'redis://env', 'warn']);
  });

  it('takes overrides over SLUICE_*', () => {
    const env = { SLUICE_LISTEN: ':1001', SLUICE_TOKEN: 'env-token', SLUICE_LOG_LEVEL: 'debug' };
    const overrides = { listen: ':1002', adminListen: '127.0.0.1:2002', token: 'flag-token', redis: 'rediss://flag', logLevel: 'trace' };
    const c = parseConfig(file, { env, overrides });
    assert.deepEqual([c.listen.port, c.admin.listen.port, c.admin.token, c.store.redis, c.logLevel], [1002, 2002, 'flag-token', 'rediss://flag', 'trace']);
  });

  it('an override makes a missing variable in that field moot', () => {
    const c = parseConfig(PRODUCT_EXAMPLE, { env: {}, overrides: { token: 't' } });
    assert.equal(c.admin.token, 't');
  });

  it('says where a bad override came from', () => {
    assertRejected(MINIMAL, 'listen', /\(from SLUICE_LISTEN\)/, { env: { SLUICE_LISTEN: 'nope' } });
    assertRejected(MINIMAL, 'logLevel', /\(from --log-level\)/, { env: {}, overrides: { logLevel: 'loud' } });
  });
});

describe('rejected configs name the field', () => {
  const cases: Array<[title: string, yaml: string, path: string, message?: RegExp]> = [
    ['unknown version in weights', route('weights: { v1: 90, v9: 10 }'), 'routes[0].weights.v9', /unknown version \(known: v1, v2\)/],
    ['weights not summing to 100', route('weights: { v1: 90, v2: 5 }'), 'routes[0].weights', /must sum to 100, got 95/],
    ['non-integer weight', route('weights: { v1: 89.5, v2: 10.5 }'), 'routes[0].weights.v1', /integer 0\.\.100, got number 89\.5/],
    ['bad URL', MINIMAL.replace('http://127.0.0.1:3002', 'not a url'), 'routes[0].versions[1].url', /absolute http: or https: URL, got string "not a url"/],
    ['ftp URL', MINIMAL.replace('http://127.0.0.1:3002', 'ftp://h/x'), 'routes[0].versions[1].url', /got ftp:/],
    ['URL with a query', MINIMAL.replace('http://127.0.0.1:3002', 'http://h/?a=1'), 'routes[0].versions[1].url', /query or fragment/],
    ['duplicate route names', `${MINIMAL}  - name: r\n    versions: [{ name: v1, url: http://h }]\n`, 'routes[1].name', /duplicate route name "r"/],
    ['duplicate version names', MINIMAL.replace('name: v2', 'name: v1'), 'routes[0].versions[1].name', /duplicate version name "v1"/],
    ['bad regex', route('rules:\n  - { match: { headers: { X-A: { regex: "(" } } }, version: v2 }'), 'routes[0].rules[0].match.headers.X-A.regex', /Invalid regular expression/],
    ['rule to an unknown version', route('rules:\n  - { match: { query: { a: b } }, version: v7 }'), 'routes[0].rules[0].version', /unknown version "v7" \(known: v1, v2\)/],
    ['rule without a condition', route('rules:\n  - { match: { headers: {} }, version: v2 }'), 'routes[0].rules[0].match', /at least one condition/],
    ['unquoted boolean condition', route('rules:\n  - { match: { headers: { x-canary: true } }, version: v2 }'), 'routes[0].rules[0].match.headers.x-canary', /got boolean true \(quote it: "true"\)/],
    ['mirror to an unknown version', route('mirror: [{ version: v5, percent: 10 }]'), 'routes[0].mirror[0].version', /unknown version "v5"/],
    ['mirror percent 150', route('mirror: [{ version: v2, percent: 150 }]'), 'routes[0].mirror[0].percent', /a number 0\.\.100, got number 150/],
    ['mirror without percent', route('mirror: [{ version: v2 }]'), 'routes[0].mirror[0].percent', /required/],
    ['bad duration', route('timeouts: { connect: 5 seconds }'), 'routes[0].timeouts.connect', /duration > 0 .*got string "5 seconds"/],
    ['zero route timeout', route('timeouts: { request: 0s }'), 'routes[0].timeouts.request', /duration > 0/],
    ['unknown field', route('wieghts: { v1: 100 }'), 'routes[0].wieghts', /unknown field \(allowed: name, match, versions, weights/],
    ['unknown top-level field', `lissen: :80\n${MINIMAL}`, 'lissen', /unknown field/],
    ['sticky with both header and cookie', route('sticky: { header: x-u, cookie: sid }'), 'routes[0].sticky', /exactly one of header or cookie/],
    ['admin on 0.0.0.0 without a token', `admin: { listen: "0.0.0.0:9901" }\n${MINIMAL}`, 'admin.token', /admin listener on 0\.0\.0\.0 needs a token/],
    ['missing env var', `store: { redis: \${REDIS_URL} }\n${MINIMAL}`, 'store.redis', /environment variable REDIS_URL is not set/],
    ['empty routes', 'routes: []\n', 'routes', /at least one route/],
    ['no routes at all', '', 'routes', /at least one route/],
    ['no versions', 'routes:\n  - name: r\n    versions: []\n', 'routes[0].versions', /at least one version/],
    ['bad route name', MINIMAL.replace('name: r', 'name: -r-'), 'routes[0].name', /expected a name of/],
    ['host with a port', route('match: { host: "a.com:80" }'), 'routes[0].match.host', /must not include a port/],
    ['pathPrefix without a slash', route('match: { pathPrefix: api }'), 'routes[0].match.pathPrefix', /must start with "\/"/],
    ['port out of range', `listen: "0.0.0.0:70000"\n${MINIMAL}`, 'listen', /port must be 0\.\.65535/],
    ['redis URL with a wrong scheme', `store: { redis: "http://user:secret@h" }\n${MINIMAL}`, 'store.redis', /got scheme http:$/],
    ['bad log level', `logLevel: verbose\n${MINIMAL}`, 'logLevel', /one of fatal, error, warn, info, debug, trace, silent, got string "verbose"/],
    ['wrong type for a section', `proxy: [1]\n${MINIMAL}`, 'proxy', /expected a mapping, got a list/],
    ['connectionsPerVersion 0', `proxy: { connectionsPerVersion: 0 }\n${MINIMAL}`, 'proxy.connectionsPerVersion', /integer >= 1, got number 0/],
    ['headersTimeout above requestTimeout', `proxy: { headersTimeout: 2m }\n${MINIMAL}`, 'proxy.headersTimeout', /must not exceed proxy\.requestTimeout/],
    ['admin on the traffic port', `listen: ":9000"\nadmin: { listen: "127.0.0.1:9000" }\n${MINIMAL}`, 'admin.listen', /already used by listen/],
    ['a condition with two kinds', route('rules:\n  - { match: { query: { a: { exact: x, present: true } } }, version: v2 }'), 'routes[0].rules[0].match.query.a', /exactly one of exact, regex or present/],
  ];
  for (const [title, yaml, path, message] of cases) {
    it(title, () => assertRejected(yaml, path, message));
  }

  it('a YAML syntax error gives line:col', () => {
    const details = problems(() => parseConfig('routes:\n  - name: r\n    versions: [\n', { env: {} }));
    assert.ok(details.length >= 1);
    assert.equal(details[0]!.path, '');
    assert.match(details[0]!.message, /^\d+:\d+: /);
  });

  it('a duplicate YAML key is a syntax error', () => {
    const details = problems(() => parseConfig(`listen: ":1"\nlisten: ":2"\n${MINIMAL}`, { env: {} }));
    assert.match(details[0]!.message, /^2:1: Map keys must be unique/);
  });

  it('lists every problem of a file at once', () => {
    const yaml = `
listen: nowhere
bogus: 1
admin: { listen: "0.0.0.0:9901" }
routes:
  - name: a
    versions:
      - { name: v1, url: ftp://x }
      - { name: v1, url: http://x }
    weights: { v1: 50 }
    mirror: [{ version: v3, percent: 150 }]
  - name: a
    versions: [{ name: v1, url: http://x }]
    sticky: { header: x, cookie: y }
`;
    let err: unknown;
    try {
      parseConfig(yaml, { env: {} });
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof SluiceError);
    assert.equal(err.code, 'SLUICE_CONFIG_INVALID');
    assert.equal(err.message, `sluice.yaml has ${err.details.length} problems`);
    assert.deepEqual(
      err.details.map((d) => d.path).sort(),
      [
        'admin.token',
        'bogus',
        'listen',
        'routes[0].mirror[0].percent',
        'routes[0].mirror[0].version',
        'routes[0].versions[0].url',
        'routes[0].versions[1].name',
        'routes[0].weights',
        'routes[1].name',
        'routes[1].sticky',
      ],
    );
  });

  it('validateConfig checks an already-parsed object', () => {
    const details = problems(() => validateConfig({ routes: [{ name: 'r', versions: [{ name: 'v1', url: 'http://h' }], weights: { v1: 99 } }] }));
    assert.deepEqual(details, [{ path: 'routes[0].weights', message: 'must sum to 100, got 99' }]);
  });
});

describe('validateWeights', () => {
  const r = parseConfig(MINIMAL, { env: {} }).routes[0] as RouteConfig;

  it('fills unlisted versions with 0', () => {
    assert.deepEqual(validateWeights(r, { v2: 100 }), { weights: { v1: 0, v2: 100 } });
  });

  it('reports with the given path prefix', () => {
    assert.deepEqual(validateWeights(r, { v9: 100 }), { errors: [{ path: 'weights.v9', message: 'unknown version (known: v1, v2)' }] });
    assert.deepEqual(validateWeights(r, { v1: 50, v2: 45 }), { errors: [{ path: 'weights', message: 'must sum to 100, got 95' }] });
    assert.deepEqual(validateWeights(r, { v1: '100' }, 'body'), { errors: [{ path: 'body.v1', message: 'expected an integer 0..100, got string "100"' }] });
    assert.ok('errors' in validateWeights(r, { v1: 101, v2: -1 }));
    assert.deepEqual(validateWeights(r, [100]), { errors: [{ path: 'weights', message: 'expected a mapping of version name to percent, got a list' }] });
  });
});

describe('loadConfig', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-config-'));

  it('reads a file', () => {
    const file = join(dir, 'ok.yaml');
    writeFileSync(file, PRODUCT_EXAMPLE);
    assert.equal(loadConfig(file, { env: ENV }).routes[0]?.name, 'checkout');
  });

  it('names the file in validation errors', () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'routes: []\n');
    assert.throws(() => loadConfig(file, { env: {} }), (e: unknown) => e instanceof SluiceError && e.message === `${file} has 1 problem`);
  });

  it('a missing file is SLUICE_CONFIG_READ naming the file and the reason', () => {
    const file = join(dir, 'nope.yaml');
    assert.throws(
      () => loadConfig(file),
      (e: unknown) => e instanceof SluiceError && e.code === 'SLUICE_CONFIG_READ' && e.message.includes(file) && /no such file or directory \(ENOENT\)/.test(e.message),
    );
  });
});
