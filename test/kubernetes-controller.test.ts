/**
 * The Experiment controller end to end, kubectl-shaped: the real
 * @kubernetes/client-node against a test API server
 * (test/support/fake-kube-api.ts: list/watch/resourceVersion, 409, 410,
 * the status subresource, Events, Leases — not a real kube-apiserver, which
 * cannot be had on these machines), and a real all-in-one Sluice with
 * sample apps behind it.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import type { RunningSluice } from '../cli/run-sluice.js';
import { clientNodeApi } from '../control/kubernetes/client-node-api.js';
import { startSampleApp, type SampleApp } from '../demo/sample-app.js';
import { FakeKubeApi } from './support/fake-kube-api.js';
import { Pool, startSluice, waitFor } from './support/helpers.js';

const NS = 'team';

function kubeConfig(api: FakeKubeApi): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'fake', server: api.url, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'test' }],
    contexts: [{ name: 'c', cluster: 'fake', user: 'u', namespace: NS }],
    currentContext: 'c',
  });
  return kc;
}

interface Setup {
  readonly api: FakeKubeApi;
  readonly apps: SampleApp[];
  start(identity: string): Promise<RunningSluice>;
}

async function setup(t: TestContext, allowExec = false): Promise<Setup> {
  const api = new FakeKubeApi();
  await api.start();
  const apps = await Promise.all([startSampleApp({ name: 'v1', seed: 1 }), startSampleApp({ name: 'v2', seed: 2 })]);
  const running: RunningSluice[] = [];
  t.after(async () => {
    for (const s of running) await s.close();
    await Promise.all(apps.map((a) => a.close()));
    await api.close();
  });
  return {
    api,
    apps,
    async start(identity: string) {
      const s = await startSluice(
        { routes: [{ name: 'shop', versions: apps.map((a) => ({ name: a.name, url: a.url })) }] },
        { kubernetes: { api: clientNodeApi({ config: kubeConfig(api), namespace: NS }), identity, leaseSeconds: 1, allowExec } },
      );
      running.push(s);
      return s;
    },
  };
}

function load(s: RunningSluice, concurrency = 6): { stop(): Promise<void> } {
  const pool = new Pool(s.trafficUrl, { connections: concurrency });
  let running = true;
  const workers = Array.from({ length: concurrency }, async () => {
    while (running) {
      try {
        const r = await pool.request({ path: '/', method: 'GET' });
        await r.body.dump();
      } catch {
        // the process is closing
      }
    }
  });
  return {
    async stop() {
      running = false;
      await Promise.all(workers);
      await pool.close();
    },
  };
}

const canary = (iterations = 12) => ({
  route: 'shop',
  versions: [{ name: 'v1' }, { name: 'v2' }],
  testingPattern: 'Canary',
  criteria: { objectives: [{ metric: 'error-rate', upperLimit: 0.05 }], minSamples: 40 },
  weights: { initial: { v1: 50, v2: 50 } },
  duration: { intervalSeconds: 0.2, maxIterations: iterations },
});

const condition = (r: any, type: string) => (r.status?.conditions ?? []).find((c: any) => c.type === type);

async function weightsOf(s: RunningSluice): Promise<Record<string, number>> {
  return ((await (await fetch(`${s.adminUrl}/routes/shop`)).json()) as any).weights;
}

describe('the Experiment controller', () => {
  test('create → applied, status and conditions each iteration, Events, Completed with a winner; a stale write is retried and a 410 relists, and no iteration is skipped or repeated', async (t) => {
    const k = await setup(t);
    const sluice = await k.start('ctl-a');
    const traffic = load(sluice);
    t.after(() => traffic.stop());
    k.api.create(NS, 'checkout-canary', canary(14));
    await waitFor('the controller to apply it', () => condition(k.api.get(NS, 'checkout-canary'), 'Accepted')?.status === 'True');
    // Mid-run: another writer wins two status writes (409), then etcd compacts (the watch gets 410 Gone).
    await waitFor('iteration 3', () => (k.api.get(NS, 'checkout-canary')?.status?.iteration ?? 0) >= 3);
    k.api.failStatusWrites(2);
    await waitFor('the conflicts to be served', () => k.api.conflictsServed === 2);
    const watches = k.api.watchesOpened;
    const lists = k.api.listsServed;
    k.api.compact();
    await waitFor('a relist and a new watch after 410', () => k.api.listsServed > lists && k.api.watchesOpened > watches + 1);
    k.api.bookmark();
    const done = await waitFor('Completed', () => {
      const r = k.api.get(NS, 'checkout-canary');
      return r?.status?.state === 'Completed' ? r : null;
    }, 30_000);
    assert.equal(done.status.winner, 'v2');
    assert.equal(done.status.weightsText, 'v1=0,v2=100');
    assert.equal(done.status.observedGeneration, 1);
    assert.equal(condition(done, 'Progressing')?.status, 'False');
    assert.equal(condition(done, 'Completed')?.status, 'True');
    for (const c of done.status.conditions) {
      assert.ok(c.lastTransitionTime && c.reason && typeof c.message === 'string' && c.observedGeneration === 1, JSON.stringify(c));
    }
    // Status was written every iteration, in order, none missing.
    const iterations = k.api.statusWrites.filter((w) => w.metadata.name === 'checkout-canary').map((w) => w.status.iteration as number);
    for (let i = 1; i < iterations.length; i++) assert.ok(iterations[i]! >= iterations[i - 1]!, `status went back: ${iterations.join(',')}`);
    const final = done.status.iteration as number;
    for (let i = 1; i <= final; i++) assert.ok(iterations.includes(i), `iteration ${i} never written: ${iterations.join(',')}`);
    // Sluice ran the experiment once: one history, consecutive iterations, one apply.
    const sx = (await (await fetch(`${sluice.adminUrl}/experiments/checkout-canary`)).json()) as any;
    assert.deepEqual(sx.status.history.map((h: any) => h.iteration), Array.from({ length: final }, (_, i) => i + 1));
    const reasons = k.api.events.filter((e) => e.involvedObject.name === 'checkout-canary').map((e) => e.reason);
    assert.equal(reasons.filter((r) => r === 'Applied').length, 1, reasons.join(','));
    assert.ok(reasons.includes('Running') && reasons.includes('Completed'), reasons.join(','));
  });

  test('delete mid-run: the experiment goes and traffic is back on the baseline', async (t) => {
    const k = await setup(t);
    const sluice = await k.start('ctl-a');
    const traffic = load(sluice);
    t.after(() => traffic.stop());
    k.api.create(NS, 'long', canary(1000));
    await waitFor('running with traffic on the candidate', async () => (await weightsOf(sluice)).v2! > 0 && k.api.get(NS, 'long')?.status?.state === 'Running');
    k.api.delete(NS, 'long');
    await waitFor('weights back to the baseline', async () => (await weightsOf(sluice)).v2 === 0);
    assert.deepEqual(await weightsOf(sluice), { v1: 100, v2: 0 });
    await waitFor('the experiment to be gone', async () => (await fetch(`${sluice.adminUrl}/experiments/long`)).status === 404);
  });

  test('a spec changed while running is reported, not applied; an invalid spec and exec tasks are refused with a reason', async (t) => {
    const k = await setup(t);
    const sluice = await k.start('ctl-a');
    const traffic = load(sluice);
    t.after(() => traffic.stop());
    k.api.create(NS, 'running', canary(1000));
    await waitFor('running', () => k.api.get(NS, 'running')?.status?.state === 'Running');
    k.api.updateSpec(NS, 'running', { ...canary(1000), duration: { intervalSeconds: 0.2, maxIterations: 5 } });
    await waitFor('SpecChanged', () => condition(k.api.get(NS, 'running'), 'SpecChanged')?.status === 'True');
    const r = k.api.get(NS, 'running')!;
    assert.equal(r.status.observedGeneration, 1, 'the running spec is generation 1');
    assert.equal(r.status.maxIterations, 1000);

    k.api.create(NS, 'broken', { ...canary(), testingPattern: 'AB' });
    await waitFor('Accepted=False Invalid', () => condition(k.api.get(NS, 'broken'), 'Accepted')?.reason === 'Invalid');
    assert.match(condition(k.api.get(NS, 'broken'), 'Accepted').message, /spec\.testingPattern/);

    k.api.create(NS, 'shell', { ...canary(), route: 'other', tasks: { finish: [{ task: 'exec', command: ['sh', '-c', 'id'] }] } });
    await waitFor('Accepted=False ExecNotAllowed', () => condition(k.api.get(NS, 'shell'), 'Accepted')?.reason === 'ExecNotAllowed');
    assert.equal((await fetch(`${sluice.adminUrl}/experiments/shell`)).status, 404);
    assert.ok(k.api.events.some((e) => e.involvedObject.name === 'shell' && e.type === 'Warning' && e.reason === 'ExecNotAllowed'));
    // The admin API keeps working beside the controller.
    assert.equal((await fetch(`${sluice.adminUrl}/experiments`)).status, 200);
  });

  test('two controller replicas: one holds the Lease and writes; the other takes over when it stops', async (t) => {
    const k = await setup(t);
    const a = await k.start('ctl-a');
    await waitFor('ctl-a to lead', () => k.api.lease(NS, 'sluice-controller')?.spec?.holderIdentity === 'ctl-a');
    const b = await k.start('ctl-b');
    const traffic = load(a);
    t.after(() => traffic.stop());
    k.api.create(NS, 'exp', canary(1000));
    await waitFor('running', () => k.api.get(NS, 'exp')?.status?.state === 'Running');
    assert.ok(k.api.events.every((e) => e.reportingInstance === 'ctl-a'), 'only the leader records');
    assert.equal((await fetch(`${b.adminUrl}/experiments/exp`)).status, 404, 'the follower applies nothing');
    const writes = k.api.statusWrites.length;
    await a.close();
    await waitFor('ctl-b to lead', () => k.api.lease(NS, 'sluice-controller')?.spec?.holderIdentity === 'ctl-b', 10_000);
    // The new leader's Sluice has no such experiment: it applies the resource (its own proxy's traffic).
    await waitFor('ctl-b to run it', async () => (await fetch(`${b.adminUrl}/experiments/exp`)).status === 200);
    await waitFor('ctl-b to write status', () => k.api.statusWrites.length > writes);
  });
});
