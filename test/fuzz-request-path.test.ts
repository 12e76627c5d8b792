/**
 * fast-check properties over the request path of a real Sluice (all-in-one,
 * admin on loopback) in front of a raw upstream that logs and strictly parses
 * every byte it receives (test/support/logging-upstream.ts), driven by raw `net`
 * clients: paths, header lists and bodies.
 *
 * - no crash: every request gets an answer, never a 5xx (the upstream always
 *   answers 200), and Sluice serves afterwards;
 * - no escape: no path reaches the upstream outside its version's base path,
 *   under any reading an upstream may apply (decoding every escape, `\` as `/`,
 *   dropping `;params`), nor to a route whose prefix it is not under;
 * - no desync: the upstream's byte stream parses into exactly the requests
 *   sent, each with exactly its body;
 * - no counter charged to the wrong party: refused requests are client errors,
 *   never a version's requests or errors.
 *
 * Seeded (FUZZ_SEED overrides): a failure prints the seed, the path and the
 * counterexample, and re-runs the same way.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import type { RunningSluice } from '../cli/run-sluice.js';
import { Pool, startSluice } from './support/helpers.js';
import { headerOf, LoggingUpstream, WireClient, type WireResponse } from './support/logging-upstream.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20_261_211);

// ---------------------------------------------------------------- how an upstream may read a path

function dotRemoved(segments: string[]): string[] {
  const out: string[] = [];
  for (const s of segments) {
    if (s === '' || s === '.') continue;
    if (s === '..') out.pop();
    else out.push(s);
  }
  return out;
}

/** The most permissive reading of a forwarded path: every escape decoded, `\` a separator, `;params` dropped. */
function permissiveSegments(target: string): string[] {
  const path = target.split('?')[0]!;
  const decoded = path.replace(/%([0-9a-fA-F]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
  return dotRemoved(decoded.split(/[/\\]/).map((s) => s.split(';')[0]!));
}

/** Sluice's stated reading (docs/config.md): unreserved escapes decoded, `%2F` kept, dot segments and `//` resolved. */
function policySegments(target: string): string[] {
  const path = target.split('?')[0]!;
  const decoded = path.replace(/%([0-9a-fA-F]{2})/g, (m, h: string) => {
    const c = String.fromCharCode(parseInt(h, 16));
    return /[A-Za-z0-9\-._~]/.test(c) ? c : m;
  });
  return dotRemoved(decoded.split('/'));
}

function under(segments: string[], prefix: string[]): boolean {
  return prefix.every((p, i) => segments[i] === p);
}

// ---------------------------------------------------------------- fixtures

interface VersionView {
  requests: number;
  errors: number;
  upstreamErrors: Record<string, number>;
  clientErrors?: Record<string, number>;
  statusCounts: Record<string, number>;
}
type Stats = { routes: Record<string, { versions: Record<string, VersionView> }> };

describe('fuzzing the request path (fast-check, real Sluice, logging raw upstream)', () => {
  let up: LoggingUpstream;
  let sluice: RunningSluice;
  let admin: Pool;
  let hostLine: string;
  let nextId = 0;

  before(async () => {
    up = await LoggingUpstream.start();
    sluice = await startSluice({
      routes: [
        {
          name: 'api',
          match: { pathPrefix: '/api' },
          // v2 gets no traffic by weight: only a pin could send a request there.
          versions: [
            { name: 'v1', url: `${up.url}/base-api` },
            { name: 'v2', url: `${up.url}/base-pin` },
          ],
          weights: { v1: 100, v2: 0 },
        },
        { name: 'root', versions: [{ name: 'r1', url: `${up.url}/base-root` }] },
      ],
    });
    admin = new Pool(sluice.adminUrl, { connections: 1 });
    hostLine = `Host: ${new URL(sluice.trafficUrl).host}`;
  });

  after(async () => {
    await admin.close();
    await sluice.close();
    await up.close();
  });

  async function stats(): Promise<Stats> {
    return (await (await admin.request({ path: '/stats', method: 'GET' })).body.json()) as Stats;
  }

  /** One raw request on a connection of its own; the answer, or null when the connection closed without one. */
  async function exchange(bytes: Buffer | string, method = 'GET'): Promise<WireResponse | null> {
    const c = await WireClient.connect(sluice.trafficUrl);
    try {
      await c.write(bytes, method);
      await c.until((x) => x.responses.length > 0, 5_000);
      assert.equal(c.problem, null, `malformed response: ${c.problem}`);
      return c.responses[0] ?? null;
    } finally {
      c.close();
    }
  }

  async function stillServes(): Promise<void> {
    const r = await exchange(`GET /api/alive/${nextId++} HTTP/1.1\r\n${hostLine}\r\n\r\n`);
    assert.equal(r?.status, 200, 'Sluice stopped serving');
  }

  /** Everything the upstream has seen parsed cleanly, and no request was left half-sent. */
  function upstreamClean(): void {
    assert.deepEqual(up.problems, [], 'framing problems on the upstream connections');
    assert.deepEqual(up.truncated, [], 'requests left half-sent to the upstream');
  }

  it('paths: never outside the base path or the route prefix; refusals are 4xx', async (t) => {
    const first = nextId;
    const outcomes: Record<string, number> = {};
    // Pieces an upstream may read as separators or dot segments, and clean ones; malformed ones are rarer,
    // since a single one anywhere makes the whole path a 400.
    const pieces = fc.constantFrom(
      'api', 'apiary', 'API', 'a', 'x', 'base-api', 'base-root', '..', '.', '%2e', '%2E%2e', '.%2e', '%2e.', '%2e%2e%2f', '..%2f', '..%2F..',
      '%2f', '%2F', '%5c', '..%5c', '\\', '..\\', '..;', '..;x', ';x', '%00', '%25', '%252e%252e', '%C3%A9', '~', '-', '_', '%7e', '%41pi',
      '%61%70%69', 'a?b', '',
    );
    const malformed = fc.constantFrom('%', '%zz', '%2', '#f', '\u00e9', '\u2603', 'a b', '\u0000');
    const segment = fc.oneof(
      { weight: 30, arbitrary: pieces },
      { weight: 1, arbitrary: malformed },
      { weight: 1, arbitrary: fc.string({ maxLength: 6, unit: 'grapheme' }) },
      { weight: 3, arbitrary: fc.stringMatching(/^([a-z.0-9]|%[0-9a-fA-F]{2}){1,6}$/) },
    );
    const path = fc.record({
      lead: fc.constantFrom('', '/api', '/api/', '//api', '/api/..', '/%61pi'),
      segments: fc.array(segment, { maxLength: 10 }),
      sep: fc.constantFrom('/', '/', '//'),
      query: fc.constantFrom('', '?q=1', '?x=/../api', '?%2e%2e'),
      repeat: fc.oneof({ weight: 9, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.integer({ min: 100, max: 1_500 }) }),
    });
    await fc.assert(
      fc.asyncProperty(path, async ({ lead, segments, sep, query, repeat }) => {
        const id = `f${nextId++}`;
        const body = Array.from({ length: repeat }, () => segments.join(sep)).join(sep);
        const target = `${lead}/${id}${sep}${body}${query}`;
        const bytes = Buffer.from(`GET ${target} HTTP/1.1\r\n${hostLine}\r\nConnection: close\r\n\r\n`, 'utf8');
        const mark = up.requests.length;
        const r = await exchange(bytes);
        const reached = up.requests.slice(mark);
        assert.ok(r !== null, 'no answer');
        assert.ok(r.status < 500, `answered ${r.status}`);
        const outcome = `${r.status} ${headerOf(r, 'x-sluice-version') ?? /SLUICE_[A-Z_]+/.exec(r.body.toString())?.[0] ?? ''}`;
        outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
        if (r.status >= 400) {
          assert.deepEqual(reached, [], `refused with ${r.status} yet forwarded`);
          return;
        }
        assert.equal(r.status, 200);
        assert.equal(reached.length, 1, 'answered 200 without reaching the upstream exactly once');
        const t = reached[0]!.target;
        assert.equal(headerOf(r, 'x-echo-target'), t);
        const version = headerOf(r, 'x-sluice-version');
        assert.ok(version === 'v1' || version === 'r1', `served by ${version}`);
        const base = version === 'v1' ? 'base-api' : 'base-root';
        const permissive = permissiveSegments(t);
        // However the upstream decodes it, the path stays under the version's base path…
        assert.ok(under(permissive, [base]), `${t} leaves /${base} when read as ${permissive.join('/')}`);
        const rest = policySegments(t);
        assert.ok(under(rest, [base]), `${t} leaves /${base}`);
        if (version === 'v1') {
          // …and under the route's prefix, on a segment boundary.
          assert.ok(under(permissive, [base, 'api']), `${t} left /api on route api (read as /${permissive.join('/')})`);
          assert.ok(under(policySegments(target), ['api']), `${target} is not under /api yet went to route api`);
        } else {
          assert.ok(!under(rest.slice(1), ['api']), `${t} is under /api yet went to route root`);
          assert.ok(!under(policySegments(target), ['api']), `${target} is under /api yet went to route root`);
        }
      }),
      { numRuns: 300, seed: SEED },
    );
    t.diagnostic(`${nextId - first} paths: ${JSON.stringify(outcomes)}`);
    upstreamClean();
    await stillServes();
  });

  /**
   * RFC 3986 lets an escape carry any octet; paths in latin1 (`caf%E9`) or raw
   * binary ids are not UTF-8. fastify's router decodes the URL as UTF-8 and
   * answers such paths 400 FST_ERR_BAD_URL itself (no SLUICE_* code) before
   * Sluice sees them, so they can never be proxied.
   */
  it('paths: escapes of any octet (not only UTF-8) are forwarded as sent', async () => {
    const octets = fc.uint8Array({ minLength: 1, maxLength: 6 });
    await fc.assert(
      fc.asyncProperty(octets, async (bytes) => {
        // Escapes of unreserved characters are decoded by the policy; keep to the others so the target is exact.
        const escaped = [...bytes].map((b) => (/[A-Za-z0-9\-._~]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`)).join('');
        const path = `/api/o${nextId++}/${escaped}`;
        const r = await exchange(`GET ${path} HTTP/1.1\r\n${hostLine}\r\n\r\n`);
        assert.equal(r?.status, 200, `${path}: ${r?.status} ${r?.body.toString()}`);
        assert.equal(headerOf(r!, 'x-echo-target'), `/base-api${path}`);
      }),
      { numRuns: 50, seed: SEED },
    );
  });

  it('header lists: hop-by-hop and Connection-listed never reach the upstream, no pin without the token, refusals are the client\'s', async (t) => {
    const statuses: Record<number, number> = {};
    const HOP = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'upgrade'];
    const name = fc.oneof(
      fc.stringMatching(/^[a-z][a-z0-9!#$%&'*+.^_`|~-]{0,15}$/),
      fc.constantFrom(...HOP.filter((h) => h !== 'connection'), 'x-sluice-pin', 'x-sluice-version', 'x-sluice-reward', 'x-forwarded-for', 'forwarded', 'cookie', 'expect'),
    );
    const value = fc.stringMatching(/^[\x21-\x7e]([\x20-\x7e]{0,20}[\x21-\x7e])?$/);
    const list = fc.record({
      headers: fc.array(fc.tuple(name, value), { maxLength: 30 }),
      // Names the client lists in Connection (indexes into headers, and a few hop-by-hop names).
      listed: fc.array(fc.nat(), { maxLength: 5 }),
      connectionValue: fc.constantFrom('keep-alive', 'close', 'Keep-Alive, X-A', ''),
      pin: fc.option(fc.constantFrom('v2', ':v2', 'wrong:v2', 'x'.repeat(24) + ':v2', 'v2:v2'), { nil: undefined }),
      padding: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 985, max: 1_010 }) }),
      twoHosts: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
      method: fc.constantFrom('GET', 'POST'),
    });
    const before = await stats();
    const upBefore = up.requests.length;
    let unforwardable = 0;
    await fc.assert(
      fc.asyncProperty(list, async ({ headers, listed, connectionValue, pin, padding, twoHosts, method }) => {
        const id = `h${nextId++}`;
        // Values are markers, so anything the client sent can be traced upstream.
        const lines: Array<[string, string]> = headers.map(([n, v], i) => [n, `${id}m${i}${v}`]);
        const listedNames = listed.filter((i) => i < lines.length).map((i) => lines[i]![0]);
        const conn = [connectionValue, ...listedNames].filter((x) => x !== '').join(', ');
        if (conn !== '') lines.push(['Connection', conn]);
        if (pin !== undefined) lines.push(['x-sluice-pin', pin]);
        for (let i = 0; i < padding; i++) lines.push([`p${i}`, '1']);
        if (twoHosts) lines.push(['Host', 'other.example']);
        const body = method === 'POST' ? 'hello' : '';
        if (method === 'POST') lines.push(['Content-Length', '5']);
        const path = `/api/${id}`;
        const text = `${method} ${path} HTTP/1.1\r\n${hostLine}\r\n${lines.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n${body}`;
        const total = lines.length + 1;
        const mark = up.requests.length;
        const r = await exchange(text, method);
        const reached = up.requests.slice(mark);
        assert.ok(r !== null, 'no answer');
        assert.ok(r.status < 500, `answered ${r.status}: ${r.body.toString()}`);
        statuses[r.status] = (statuses[r.status] ?? 0) + 1;
        if (r.status >= 400) {
          assert.deepEqual(reached, [], `refused with ${r.status} yet forwarded`);
          if (r.status === 400 && r.body.includes('SLUICE_REQUEST_UNFORWARDABLE')) unforwardable++;
          return;
        }
        assert.ok(total <= 1_000, `${total} header lines forwarded (past Node's header map)`);
        assert.ok(!twoHosts, 'two Host headers forwarded');
        assert.equal(reached.length, 1);
        const got = reached[0]!;
        assert.equal(got.target, `/base-api${path}`, 'went elsewhere than v1 of route api (a pin without the token?)');
        assert.equal(headerOf(r, 'x-sluice-version'), 'v1');
        assert.equal(got.body.toString(), body, 'the body did not arrive whole');
        const listedSet = new Set([...listedNames.map((n) => n.toLowerCase()), ...HOP]);
        for (const [n, v] of got.headers) {
          if (n === 'connection') assert.ok(v === 'keep-alive' || v === 'close', `connection: ${v}`);
          else assert.ok(!HOP.includes(n), `hop-by-hop ${n} reached the upstream`);
          assert.notEqual(n, 'x-sluice-pin', 'the pin header reached the upstream');
        }
        // The generated headers carry markers in their values (the Connection line, pin and padding do not).
        for (let i = 0; i < headers.length; i++) {
          const [n, v] = lines[i]!;
          if (!listedSet.has(n.toLowerCase())) continue;
          const leaked = got.headers.find(([, gv]) => gv.includes(v));
          assert.equal(leaked, undefined, `${n} (Connection-listed or hop-by-hop) reached the upstream as ${leaked?.[0]}`);
        }
      }),
      { numRuns: 200, seed: SEED },
    );
    t.diagnostic(`statuses ${JSON.stringify(statuses)}, ${unforwardable} unforwardable`);
    upstreamClean();
    await stillServes();
    const after = await stats();
    const v = (s: Stats, route: string, name: string) => s.routes[route]!.versions[name]!;
    const forwarded = up.requests.slice(upBefore).filter((r) => r.target.startsWith('/base-api/')).length;
    // The version is charged with exactly the requests that reached it, and with no error at all.
    assert.equal(v(after, 'api', 'v1').requests - v(before, 'api', 'v1').requests, forwarded);
    assert.equal(v(after, 'api', 'v1').errors, 0);
    assert.deepEqual(Object.values(v(after, 'api', 'v1').upstreamErrors).filter((n) => n > 0), []);
    assert.equal(v(after, 'api', 'v2').requests, 0, 'a request was pinned without the token');
    const ce = (s: Stats) => v(s, 'api', 'v1').clientErrors?.['invalid-request'] ?? 0;
    assert.equal(ce(after) - ce(before), unforwardable, 'client errors counted apart');
  });

  it('bodies: the upstream gets exactly the body bytes (none for GET/HEAD) and its connection never desyncs', async (t) => {
    let bytes = 0;
    const request = fc.record({
      method: fc.constantFrom('GET', 'HEAD', 'POST', 'PUT'),
      size: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 256 * 1024 })),
      chunked: fc.boolean(),
      chunkSize: fc.integer({ min: 1, max: 70_000 }),
      fill: fc.nat({ max: 255 }),
    });
    const batch = fc.record({ requests: fc.array(request, { minLength: 1, maxLength: 3 }), pieces: fc.integer({ min: 1, max: 5 }) });
    const before = await stats();
    const upBefore = up.requests.length;
    let sent = 0;
    await fc.assert(
      fc.asyncProperty(batch, async ({ requests, pieces }) => {
        const parts: Buffer[] = [];
        const expected: Array<{ path: string; method: string; body: Buffer }> = [];
        for (const q of requests) {
          const path = `/api/b${nextId++}`;
          // A body that would read as requests if it were ever mistaken for framing.
          const seedText = Buffer.from(`GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n0\r\n\r\n`);
          const body = Buffer.alloc(q.size, 0);
          for (let i = 0; i < q.size; i++) body[i] = i % 64 < seedText.length ? seedText[i % 64]! : (q.fill + i * 31) & 0xff;
          const framing = q.chunked ? 'Transfer-Encoding: chunked' : `Content-Length: ${q.size}`;
          parts.push(Buffer.from(`${q.method} ${path} HTTP/1.1\r\n${hostLine}\r\n${framing}\r\n\r\n`));
          if (q.chunked) {
            for (let at = 0; at < q.size; at += q.chunkSize) {
              const c = body.subarray(at, at + q.chunkSize);
              parts.push(Buffer.from(`${c.length.toString(16)}\r\n`), c, Buffer.from('\r\n'));
            }
            parts.push(Buffer.from('0\r\n\r\n'));
          } else parts.push(body);
          expected.push({ path, method: q.method, body: q.method === 'GET' || q.method === 'HEAD' ? Buffer.alloc(0) : body });
        }
        const all = Buffer.concat(parts);
        bytes += all.length;
        const c = await WireClient.connect(sluice.trafficUrl);
        try {
          c.methods.push(...expected.map((e) => e.method));
          // Written in a few pieces cut at arbitrary places: framing must not depend on where reads end.
          const step = Math.ceil(all.length / pieces);
          for (let at = 0; at < all.length; at += step) await c.write(all.subarray(at, at + step));
          const done = await c.until((x) => x.responses.length === expected.length, 15_000);
          assert.equal(c.problem, null, `malformed response: ${c.problem}`);
          assert.ok(done, `${c.responses.length} of ${expected.length} answers`);
        } finally {
          c.close();
        }
        sent += expected.length;
        for (let i = 0; i < expected.length; i++) {
          const e = expected[i]!;
          const r = c.responses[i]!;
          assert.equal(r.status, 200, `${e.method} ${e.path}: ${r.status} ${r.body.toString()}`);
          assert.equal(headerOf(r, 'x-echo-target'), `/base-api${e.path}`, 'an answer to another request');
          const got = up.requests.filter((x) => x.target === `/base-api${e.path}`);
          assert.equal(got.length, 1, `${e.path} reached the upstream ${got.length} times`);
          const g = got[0]!;
          assert.equal(g.method, e.method);
          assert.equal(g.body.length, e.body.length, `${e.method} body length`);
          assert.equal(createHash('sha1').update(g.body).digest('hex'), createHash('sha1').update(e.body).digest('hex'), `${e.method} body bytes`);
          if (e.body.length === 0 && (e.method === 'GET' || e.method === 'HEAD')) assert.equal(g.framing, 'none', 'a GET/HEAD carried framing upstream');
        }
        upstreamClean();
      }),
      { numRuns: 100, seed: SEED },
    );
    t.diagnostic(`${sent} requests, ${(bytes / 1024 / 1024).toFixed(1)} MiB written`);
    // Request by request, the upstream saw exactly what was sent, and every one of them was charged to v1 once.
    assert.equal(up.requests.length - upBefore, sent);
    const after = await stats();
    const v1 = (s: Stats) => s.routes.api!.versions.v1!;
    assert.equal(v1(after).requests - v1(before).requests, sent);
    assert.equal(v1(after).errors, 0);
    await stillServes();
  });
});
