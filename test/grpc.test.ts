/**
 * gRPC through Sluice, end to end: real @grpc/grpc-js servers (two versions,
 * cleartext h2c upstreams) behind Sluice, real grpc-js clients in front
 * (h2c prior knowledge on the traffic port).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test, type TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { RunningSluice } from '../cli/run-sluice.js';
import type { ExperimentStatus } from '../control/status.js';
import { chunkData, echoClient, loadEcho, startEchoServer, type EchoClient, type EchoServer, type EchoServerOptions } from './support/grpc.js';
import { refusingUrl, startSluice, waitFor } from './support/helpers.js';

interface Setup {
  readonly sluice: RunningSluice;
  readonly servers: EchoServer[];
  readonly client: EchoClient;
  readonly target: string;
  admin(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }>;
  metric(name: string, labels: Record<string, string>): Promise<number>;
}

async function setup(t: TestContext, versions: EchoServerOptions[], route: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Promise<Setup> {
  const servers = await Promise.all(versions.map((v) => startEchoServer(v)));
  const sluice = await startSluice({
    ...extra,
    routes: [{ name: 'echo', versions: servers.map((s) => ({ name: s.version, url: `http://${s.address}`, protocol: 'h2c' })), ...route }],
  });
  const target = new URL(sluice.trafficUrl).host;
  const client = echoClient(target);
  t.after(async () => {
    client.close();
    await sluice.close();
    await Promise.all(servers.map((s) => s.close()));
  });
  const admin = async (method: string, path: string, body?: unknown) => {
    const r = await fetch(sluice.adminUrl + path, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    return { status: r.status, json: text ? JSON.parse(text) : null };
  };
  const metric = async (name: string, labels: Record<string, string>) => {
    const text = await (await fetch(`${sluice.adminUrl}/metrics`)).text();
    for (const line of text.split('\n')) {
      if (!line.startsWith(`${name}{`)) continue;
      const got = Object.fromEntries([...line.slice(name.length + 1, line.lastIndexOf('}')).matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
      if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return 0;
  };
  return { sluice, servers, client, target, admin, metric };
}

/** Runs `calls` unary calls, `concurrency` at a time; returns the versions that answered (or `error:<code>`). */
async function sayMany(client: EchoClient, calls: number, concurrency: number, metadata: (i: number) => Record<string, string> = () => ({})): Promise<string[]> {
  const out: string[] = new Array(calls);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < calls) {
        const i = next++;
        try {
          out[i] = (await client.say(`call ${i}`, metadata(i))).version;
        } catch (err) {
          out[i] = `error:${(err as grpc.ServiceError).code}`;
        }
      }
    }),
  );
  return out;
}

function count(list: readonly string[]): Record<string, number> {
  const c: Record<string, number> = {};
  for (const x of list) c[x] = (c[x] ?? 0) + 1;
  return c;
}

/** Background unary load until stopped (experiments need traffic during their iterations). */
function load(client: EchoClient, concurrency = 8): { stop(): Promise<string[]> } {
  let running = true;
  const seen: string[] = [];
  const workers = Array.from({ length: concurrency }, async () => {
    while (running) {
      try {
        seen.push((await client.say('load')).version);
      } catch (err) {
        seen.push(`error:${(err as grpc.ServiceError).code}`);
      }
    }
  });
  return {
    async stop() {
      running = false;
      await Promise.all(workers);
      return seen;
    },
  };
}

describe('gRPC routing', () => {
  test('2,000 unary calls at 70/30 split within a chi-square test at p = 0.001', async (t) => {
    const s = await setup(t, [{ version: 'v1' }, { version: 'v2' }], { weights: { v1: 70, v2: 30 } });
    const got = count(await sayMany(s.client, 2000, 16));
    assert.equal((got.v1 ?? 0) + (got.v2 ?? 0), 2000, JSON.stringify(got));
    const chi2 = (got.v1! - 1400) ** 2 / 1400 + (got.v2! - 600) ** 2 / 600;
    // One degree of freedom: P(χ² > 10.828) = 0.001.
    assert.ok(chi2 < 10.828, `χ² = ${chi2.toFixed(2)} for ${JSON.stringify(got)}`);
    assert.equal(await s.metric('sluice_grpc_calls_total', { version: 'v1', grpc_status: 'OK' }), got.v1);
  });

  test('sticky on a metadata key: each user keeps one version; a metadata rule routes to v2', async (t) => {
    const s = await setup(t, [{ version: 'v1' }, { version: 'v2' }], {
      weights: { v1: 50, v2: 50 },
      sticky: { header: 'x-user' },
      rules: [{ match: { headers: { 'x-tier': 'beta' } }, version: 'v2' }],
    });
    const users = Array.from({ length: 40 }, (_, i) => `user-${i}`);
    const first = await sayMany(s.client, users.length, 8, (i) => ({ 'x-user': users[i]! }));
    for (let round = 0; round < 3; round++) {
      const again = await sayMany(s.client, users.length, 8, (i) => ({ 'x-user': users[i]! }));
      assert.deepEqual(again, first, 'a sticky user moved');
    }
    assert.ok(first.includes('v1') && first.includes('v2'), `40 users at 50/50 should reach both versions: ${JSON.stringify(count(first))}`);
    const beta = await sayMany(s.client, 50, 8, (i) => ({ 'x-tier': 'beta', 'x-user': users[i % users.length]! }));
    assert.deepEqual(count(beta), { v2: 50 });
    // Metadata reaches the version (the rule header too: rules route, they do not strip).
    assert.equal(s.servers[1]!.metadataSeen['x-tier'], 'beta');
  });

  test('Sluice\'s own errors are gRPC statuses: a dead version is UNAVAILABLE, an unknown path UNIMPLEMENTED', async (t) => {
    const dead = await refusingUrl();
    const v1 = await startEchoServer({ version: 'v1' });
    const sluice = await startSluice({
      routes: [{ name: 'echo', match: { pathPrefix: '/sluice.test.Echo/' }, versions: [{ name: 'v1', url: dead, protocol: 'h2c' }, { name: 'v2', url: `http://${v1.address}`, protocol: 'h2c' }], weights: { v1: 100, v2: 0 } }],
    });
    const client = echoClient(new URL(sluice.trafficUrl).host);
    t.after(async () => {
      client.close();
      await sluice.close();
      await v1.close();
    });
    await assert.rejects(client.say('x'), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.UNAVAILABLE);
      assert.match(err.details, /version v1 of route echo/);
      return true;
    });
    const { Client } = loadEcho();
    const other = new grpc.Client(new URL(sluice.trafficUrl).host, grpc.credentials.createInsecure());
    t.after(() => other.close());
    const code = await new Promise<number>((resolve) => {
      other.makeUnaryRequest('/other.Service/Method', (x: Buffer) => x, (x: Buffer) => x, Buffer.alloc(0), (err) => resolve(err?.code ?? 0));
    });
    assert.equal(code, grpc.status.UNIMPLEMENTED);
    void Client;
  });

  test('rewards from a response trailer or header are credited to the version', async (t) => {
    const s = await setup(t, [{ version: 'v1', rewardTrailer: '2.5' }, { version: 'v2', rewardHeader: '4' }], { weights: { v1: 50, v2: 50 } });
    const got = count(await sayMany(s.client, 200, 8));
    assert.equal(await s.metric('sluice_rewards_total', { version: 'v1' }), got.v1);
    assert.equal(await s.metric('sluice_rewards_total', { version: 'v2' }), got.v2);
    assert.equal(await s.metric('sluice_reward_sum', { version: 'v1' }), 2.5 * got.v1!);
    // The reward is Sluice's: the client does not see it.
    const r = await s.client.say('x');
    assert.equal(r.trailers['x-sluice-reward'], undefined);
    assert.equal(r.metadata['x-sluice-reward'], undefined);
  });

  test('unary calls are mirrored to a dark version and compared; streaming calls are not', async (t) => {
    const s = await setup(t, [{ version: 'v1' }, { version: 'v2' }], {
      weights: { v1: 100, v2: 0 },
      // gRPC calls are POSTs, which mirrors leave out unless listed (they may change state).
      mirror: [{ version: 'v2', percent: 100, compare: true, methods: ['POST'] }],
    });
    await sayMany(s.client, 50, 4);
    // Each Say reply names its version: a compared shadow differs from the primary's reply.
    await waitFor('50 compared shadow calls', async () => (await s.metric('sluice_mirror_requests_total', { version: 'v2', outcome: 'mismatch' })) === 50);
    assert.equal(s.servers[1]!.calls, 50);
    await s.client.streamAll(10, 16);
    await waitFor('the streaming call counted as dropped', async () => (await s.metric('sluice_mirror_requests_total', { version: 'v2', outcome: 'dropped' })) === 1);
    // The shadow's calls are not the dark version's traffic.
    assert.equal(await s.metric('sluice_grpc_calls_total', { version: 'v2', grpc_status: 'OK' }), 0);
  });
});

describe('gRPC experiments', () => {
  const canary = (name: string) => ({
    kind: 'Experiment',
    name,
    spec: {
      route: 'echo',
      versions: [{ name: 'v1' }, { name: 'v2' }],
      testingPattern: 'Canary',
      criteria: { objectives: [{ metric: 'error-rate', upperLimit: 0.01 }], minSamples: 100 },
      weights: { initial: { v1: 50, v2: 50 } },
      duration: { intervalSeconds: 0.15, maxIterations: 60 },
    },
  });

  async function runToEnd(s: Setup, doc: { name: string }): Promise<ExperimentStatus> {
    const put = await s.admin('PUT', `/experiments/${doc.name}`, doc);
    assert.equal(put.status, 201, JSON.stringify(put.json));
    const traffic = load(s.client);
    try {
      return await waitFor(`experiment ${doc.name} to end`, async () => {
        const st = (await s.admin('GET', `/experiments/${doc.name}`)).json.status as ExperimentStatus;
        return ['Completed', 'Failed', 'Aborted'].includes(st.state) ? st : null;
      }, 40_000, 50);
    } finally {
      await traffic.stop();
    }
  }

  test('a version answering UNAVAILABLE on 5% of calls fails error-rate <= 1% and is rolled back', async (t) => {
    const s = await setup(t, [{ version: 'v1' }, { version: 'v2', failRate: 0.05, failCode: grpc.status.UNAVAILABLE, seed: 7 }]);
    const st = await runToEnd(s, canary('grpc-bad'));
    assert.equal(st.state, 'Failed', st.reason);
    assert.match(st.reason, /error-rate/);
    assert.deepEqual(st.weights, { v1: 100, v2: 0 });
    assert.deepEqual((await s.admin('GET', '/routes/echo')).json.weights, { v1: 100, v2: 0 });
    assert.ok((await s.metric('sluice_grpc_calls_total', { version: 'v2', grpc_status: 'UNAVAILABLE' })) > 0);
  });

  test('a version answering NOT_FOUND on 5% of calls is not charged with errors and is promoted', async (t) => {
    const s = await setup(t, [{ version: 'v1' }, { version: 'v2', failRate: 0.05, failCode: grpc.status.NOT_FOUND, seed: 7 }]);
    const st = await runToEnd(s, canary('grpc-client-errors'));
    assert.equal(st.state, 'Completed', st.reason);
    assert.equal(st.winner, 'v2');
    assert.ok((await s.metric('sluice_grpc_calls_total', { version: 'v2', grpc_status: 'NOT_FOUND' })) > 0);
  });

  test('A/B between two gRPC versions: the one converting more wins, its NOT_FOUNDs not held against it', async (t) => {
    // Rewards come in trailers of OK answers; NOT_FOUND answers carry none: v1 converts ~50%, v2 ~90%.
    const s = await setup(t, [
      { version: 'v1', rewardTrailer: '1', failRate: 0.5, failCode: grpc.status.NOT_FOUND, seed: 11 },
      { version: 'v2', rewardTrailer: '1', failRate: 0.1, failCode: grpc.status.NOT_FOUND, seed: 12 },
    ]);
    const st = await runToEnd(s, {
      kind: 'Experiment',
      name: 'grpc-ab',
      spec: {
        route: 'echo',
        versions: [{ name: 'v1' }, { name: 'v2' }],
        testingPattern: 'A/B',
        criteria: {
          objectives: [{ metric: 'error-rate', upperLimit: 0.01 }],
          reward: { metric: 'conversion-rate', preferredDirection: 'High' },
          minSamples: 100,
        },
        duration: { intervalSeconds: 0.15, maxIterations: 80 },
      },
    } as { name: string });
    assert.equal(st.state, 'Completed', st.reason);
    assert.equal(st.winner, 'v2');
  });

  test('grpc.errorCodes decides: with NOT_FOUND listed, the same version fails', async (t) => {
    const s = await setup(t, [{ version: 'v1' }, { version: 'v2', failRate: 0.05, failCode: grpc.status.NOT_FOUND, seed: 7 }], {
      grpc: { errorCodes: ['UNAVAILABLE', 'NOT_FOUND'] },
    });
    const st = await runToEnd(s, canary('grpc-strict'));
    assert.equal(st.state, 'Failed', st.reason);
  });
});

describe('gRPC streams', () => {
  let s: Setup;
  const ctx = { after: (fn: () => Promise<void>) => cleanups.push(fn) } as unknown as TestContext;
  const cleanups: Array<() => Promise<void>> = [];
  before(async () => {
    s = await setup(ctx, [{ version: 'v1' }]);
  });
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  test('server-, client- and bidi-streaming calls pass 10,000 messages each, intact', async () => {
    const [down, up, both] = await Promise.all([s.client.streamAll(10_000, 64), s.client.collect(10_000, 64), s.client.chat(10_000, 64)]);
    assert.equal(down.count, 10_000);
    assert.equal(up.count, 10_000);
    assert.equal(up.bytes, 640_000);
    assert.equal(both.count, 10_000);
    assert.equal(await s.metric('sluice_grpc_calls_total', { version: 'v1', grpc_status: 'OK' }), 3);
  });
});

describe('gRPC flow control', () => {
  test('a slow reader holds the server back: what the server has written stays within the flow-control windows', async (t) => {
    // A server of its own that counts what it has written: 4,000 messages of 16 KiB = 62.5 MiB.
    const { service } = loadEcho();
    let written = 0;
    const server = new grpc.Server();
    server.addService(service, {
      Say: (_c: any, cb: any) => cb(null, { version: 'v1', text: '' }),
      Stream: (call: any) => {
        const next = (): void => {
          while (written < 4000) {
            const ok = call.write({ seq: written, data: chunkData(written, 16_384) });
            written++;
            if (!ok) return void call.once('drain', next);
          }
          call.end();
        };
        next();
      },
      Collect: () => {},
      Chat: () => {},
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    const sluice = await startSluice({ routes: [{ name: 'echo', versions: [{ name: 'v1', url: `http://127.0.0.1:${port}`, protocol: 'h2c' }] }] });
    const client = echoClient(new URL(sluice.trafficUrl).host);
    t.after(async () => {
      client.close();
      await sluice.close();
      server.forceShutdown();
    });
    const call = client.raw.Stream({ count: 4000, size: 16_384 });
    let read = 0;
    call.on('data', () => {
      read++;
      if (read === 10) call.pause();
    });
    const done = new Promise<void>((resolve, reject) => {
      call.on('end', resolve);
      call.on('error', reject);
    });
    // Paused after 10 messages: the server's writes must stall, not run through all 4,000 into Sluice's memory.
    let last = -1;
    await waitFor('the server to stall', async () => {
      await new Promise((r) => setTimeout(r, 200));
      const stalled = written === last;
      last = written;
      return stalled;
    });
    // Windows on the way (client, Sluice both sides, server) and stream buffers: a few MiB, not 62.5 MiB.
    const held = (written - read) * 16_384;
    t.diagnostic(`server wrote ${written} messages while the client had read ${read}: ${(held / 1048576).toFixed(1)} MiB in flight`);
    assert.ok(held < 16 * 1048576, `${(held / 1048576).toFixed(1)} MiB in flight`);
    assert.ok(written < 4000);
    call.resume();
    await done;
    assert.equal(read, 4000);
  });
});

describe('gRPC weight changes and deadlines', () => {
  test('50 long-lived streams keep their version across a weight change; new streams follow the new weights; 0 failed', async (t) => {
    const s = await setup(t, [{ version: 'v1' }, { version: 'v2' }], { weights: { v1: 100, v2: 0 } });
    const open = (): Promise<{ call: any; version: string; echoes: () => number; done: Promise<void> }> =>
      new Promise((resolve, reject) => {
        const call = s.client.raw.Chat();
        let echoes = 0;
        const done = new Promise<void>((res, rej) => {
          call.on('end', res);
          call.on('error', rej);
        });
        call.on('data', () => echoes++);
        call.on('metadata', (md: grpc.Metadata) => resolve({ call, version: String(md.get('x-sluice-version')[0]), echoes: () => echoes, done }));
        call.on('error', reject);
        call.write({ seq: 0, data: Buffer.from('hello') });
      });
    const before = await Promise.all(Array.from({ length: 50 }, () => open()));
    assert.deepEqual(count(before.map((b) => b.version)), { v1: 50 });
    assert.equal((await s.admin('PUT', '/routes/echo/weights', { v1: 0, v2: 100 })).status, 200);
    const afterChange = await Promise.all(Array.from({ length: 20 }, () => open()));
    assert.deepEqual(count(afterChange.map((b) => b.version)), { v2: 20 });
    // The old streams go on talking to v1, then end cleanly.
    for (const b of before) for (let i = 1; i <= 20; i++) b.call.write({ seq: i, data: Buffer.from(`m${i}`) });
    await waitFor('every old stream to get its 21 echoes', () => before.every((b) => b.echoes() === 21));
    for (const b of [...before, ...afterChange]) b.call.end();
    await Promise.all([...before, ...afterChange].map((b) => b.done));
    assert.equal(await s.metric('sluice_grpc_calls_total', { version: 'v1', grpc_status: 'OK' }), 50);
    assert.equal(await s.metric('sluice_grpc_calls_total', { version: 'v2', grpc_status: 'OK' }), 20);
  });

  test('a 100 ms deadline to a version that hangs ends DEADLINE_EXCEEDED near 100 ms and counts as its timeout', async (t) => {
    const s = await setup(t, [{ version: 'v1', hangRate: 1 }]);
    const started = performance.now();
    await assert.rejects(s.client.say('x', {}, 100), (err: grpc.ServiceError) => err.code === grpc.status.DEADLINE_EXCEEDED);
    const elapsed = performance.now() - started;
    t.diagnostic(`ended after ${elapsed.toFixed(0)} ms`);
    assert.ok(elapsed >= 95, `ended after ${elapsed} ms, before its deadline`);
    await waitFor('the call to be counted as v1\'s timeout', async () => (await s.metric('sluice_upstream_errors_total', { version: 'v1', reason: 'timeout' })) === 1);
    assert.equal(await s.metric('sluice_grpc_calls_total', { version: 'v1', grpc_status: 'DEADLINE_EXCEEDED' }), 1);
    // And the version no longer holds the call.
    await waitFor('the upstream call to be cancelled', () => s.servers[0]!.hanging === 0);
  });

  test('a deadline shorter than grpc.minDeadline still ends the call but is not charged to the version', async (t) => {
    const s = await setup(t, [{ version: 'v1', hangRate: 1 }], { grpc: { minDeadline: '50ms' } });
    await assert.rejects(s.client.say('x', {}, 20), (err: grpc.ServiceError) => err.code === grpc.status.DEADLINE_EXCEEDED);
    await waitFor('the call to be counted', async () => (await s.metric('sluice_grpc_calls_total', { version: 'v1', grpc_status: 'DEADLINE_EXCEEDED' })) === 1);
    assert.equal(await s.metric('sluice_client_errors_total', { version: 'v1', reason: 'short-deadline' }), 1);
    assert.equal(await s.metric('sluice_upstream_errors_total', { version: 'v1', reason: 'timeout' }), 0);
    // Like a client's malformed request: neither a request nor an error of the version's.
    const v1 = (await s.admin('GET', '/stats')).json.routes.echo.versions.v1;
    assert.deepEqual([v1.requests, v1.errors], [0, 0]);
    await waitFor('the upstream call to be cancelled', () => s.servers[0]!.hanging === 0);
  });
});
