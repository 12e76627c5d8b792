/**
 * The gRPC fixtures checked on their own, grpc-js client straight to grpc-js
 * server with no Sluice between: when a proxied gRPC test fails, this says
 * whether the fixture or the proxy is wrong.
 */
import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { echoClient, expectedSha, mulberry32, startEchoServer, type EchoServerOptions } from './support/grpc.js';
import { inParallel, waitFor } from './support/helpers.js';

async function pair(t: TestContext, opts: EchoServerOptions) {
  const server = await startEchoServer(opts);
  const client = echoClient(server.address);
  t.after(async () => {
    client.close();
    await server.close();
  });
  return { server, client };
}

describe('gRPC Echo fixture', () => {
  it('answers Say with its version, counting calls', async (t) => {
    const { server, client } = await pair(t, { version: 'v1' });
    const r = await client.say('hello');
    assert.equal(r.version, 'v1');
    assert.equal(r.text, 'hello');
    assert.equal(r.status.code, grpc.status.OK);
    assert.equal(server.calls, 1);
  });

  it('fails exactly the seeded share of calls, with the code asked for', async (t) => {
    const { server, client } = await pair(t, { version: 'v1', failRate: 0.05, failCode: grpc.status.UNAVAILABLE, seed: 42 });
    // Exact, not a tolerance: one draw per call from the same seeded PRNG, whatever order the calls land in (17 for seed 42).
    const random = mulberry32(42);
    const expected = Array.from({ length: 400 }, () => random()).filter((r) => r < 0.05).length;
    const outcomes = await inParallel(400, 16, (i) =>
      client.say(`m${i}`).then(
        () => null,
        (err: grpc.ServiceError) => err,
      ),
    );
    const failures = outcomes.filter((e) => e !== null);
    assert.equal(failures.length, expected);
    // And the seed is not a freak: within 3σ of the binomial mean 20 (σ ≈ 4.36).
    assert.ok(Math.abs(expected - 20) <= 13, `${expected} failures`);
    for (const e of failures) {
      assert.equal(e!.code, grpc.status.UNAVAILABLE);
      assert.equal(e!.details, `injected ${grpc.status.UNAVAILABLE}`);
    }
    assert.equal(server.calls, 400);
  });

  it('passes 10,000 messages intact each way: server stream, client stream, bidi', async (t) => {
    const { client } = await pair(t, { version: 'v1' });
    const sha = expectedSha(10_000, 64);
    assert.deepEqual(await client.streamAll(10_000, 64), { count: 10_000, sha256: sha });
    assert.deepEqual(await client.collect(10_000, 64), { count: 10_000, sha256: sha, bytes: 640_000 });
    assert.deepEqual(await client.chat(10_000, 64), { count: 10_000, sha256: sha });
  });

  it('ends a hanging call at its deadline with DEADLINE_EXCEEDED and lets go of it', async (t) => {
    const { server, client } = await pair(t, { version: 'v1', hangRate: 1 });
    const started = Date.now();
    await assert.rejects(client.say('wait', {}, 100), (err: grpc.ServiceError) => err.code === grpc.status.DEADLINE_EXCEEDED);
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 90 && elapsed < 2_000, `${elapsed} ms`);
    await waitFor('the server to drop the hanging call', () => server.hanging === 0);
  });

  it('closes with a call hanging: the client gets an error, not a hang', async () => {
    const server = await startEchoServer({ version: 'v1', hangRate: 1 });
    const client = echoClient(server.address);
    const pending = client.say('wait');
    await waitFor('the call to reach the server', () => server.hanging === 1);
    await server.close();
    await assert.rejects(pending, (err: grpc.ServiceError) => typeof err.code === 'number' && err.code !== grpc.status.OK);
    assert.equal(server.hanging, 0);
    client.close();
  });

  it('sees the request metadata', async (t) => {
    const { server, client } = await pair(t, { version: 'v1' });
    await client.say('hi', { 'x-user-id': 'alice', 'x-canary': 'true' });
    assert.equal(server.metadataSeen['x-user-id'], 'alice');
    assert.equal(server.metadataSeen['x-canary'], 'true');
    assert.match(server.metadataSeen['user-agent'] ?? '', /^grpc-node-js\//);
  });

  it('sends the reward as a trailer, or as initial metadata', async (t) => {
    const { client } = await pair(t, { version: 'v1', rewardTrailer: '2.5' });
    const trailer = await new Promise<grpc.Metadata>((resolve, reject) => {
      const call = client.raw.Say({ text: 'buy' }, (err: Error | null) => err && reject(err));
      call.on('status', (s: grpc.StatusObject) => resolve(s.metadata));
    });
    assert.deepEqual(trailer.get('x-sluice-reward'), ['2.5']);
    const r = await client.say('buy');
    assert.equal(r.trailers['x-sluice-reward'], '2.5');
    assert.equal(r.metadata['x-sluice-reward'], undefined);

    const headed = await pair(t, { version: 'v2', rewardHeader: '1' });
    const h = await headed.client.say('buy');
    assert.equal(h.metadata['x-sluice-reward'], '1');
    assert.equal(h.trailers['x-sluice-reward'], undefined);
  });
});
