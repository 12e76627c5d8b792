/**
 * The contract every ExperimentStore keeps, as one node:test suite run
 * against each implementation (store.test.ts): the in-memory store and the
 * Redis store must be interchangeable behind control/ports.ts.
 *
 * Records are real ones: documents validated by control/spec.ts and statuses
 * made by control/lifecycle.ts — including an iterated one whose history
 * holds non-finite numbers (a baseline ratio of Infinity) and the running
 * SRM test's state, which a store must give back unchanged.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { VersionMeasurement } from '../../control/analysis-types.js';
import { iterate, pendingStatus, start, withGeneration } from '../../control/lifecycle.js';
import type { ExperimentRecord, ExperimentStore } from '../../control/ports.js';
import { validateExperiment } from '../../control/spec.js';
import type { VersionSnapshot } from '../../common/snapshots.js';
import { LatencySketch } from '../../common/sketch.js';

export interface StoreUnderTest {
  readonly store: ExperimentStore;
  cleanup(): Promise<void>;
}

export interface StoreContractOptions {
  /** Skip the whole suite with this reason (e.g. a missing redis-server outside CI). */
  readonly skip?: string | false;
}

const CREATED = '2025-03-01T10:00:00.000Z';

function canaryDoc(name: string) {
  return validateExperiment({
    kind: 'Experiment',
    name,
    spec: {
      route: 'checkout',
      versions: [{ name: 'v1' }, { name: 'v2', url: 'http://127.0.0.1:3002' }],
      testingPattern: 'Canary',
      criteria: {
        objectives: [
          { metric: 'error-rate', upperLimit: 0.05 },
          { metric: 'error-rate', upperLimit: 1.5, relativeTo: 'baseline' },
          { metric: 'latency-p95', upperLimit: 200 },
        ],
        minSamples: 50,
      },
      weights: { initial: { v1: 90, v2: 10 }, maxCandidateWeight: 50, maxCandidateWeightIncrement: 10 },
      duration: { intervalSeconds: 5, maxIterations: 20 },
    },
  });
}

function measurement(requests: number, errors: number): VersionMeasurement {
  const latency = new LatencySketch();
  for (let i = 0; i < requests; i++) latency.add(5 + (i % 40));
  return {
    requests, errors, keyless: requests, latencySumMs: 0, latencySumSqMs: 0, latency,
    rewards: 0, rewardSum: 0, rewardSumSq: 0, conversions: 0, mirrorCompared: 0, mirrorMismatch: 0,
  };
}

function snapshot(requests: number): VersionSnapshot {
  return {
    requests, errors: 1, keyless: requests - 1, latencySumMs: 12.5 * requests, latencySumSqMs: 180.25 * requests,
    latencySketch: { offset: 3, counts: [1, 0, 2, requests - 3] },
    statusCounts: { '200': requests - 1, '503': 1 }, upstreamErrors: { timeout: 1 }, mirror: {}, mirrorCompared: 0,
    rewards: 0, rewardSum: 0, rewardSumSq: 0, conversions: 0,
  };
}

/** A freshly created experiment, as the scheduler first stores it. */
export function pendingRecord(name = 'checkout-v2', createdAt = CREATED): ExperimentRecord {
  const doc = canaryDoc(name);
  return { doc, status: pendingStatus(doc, createdAt), start: null };
}

/**
 * An experiment after one iteration: the candidate failed against a baseline
 * with no errors (ratio Infinity), with its routing generation's counts in the SRM test.
 */
export function iteratedRecord(name = 'checkout-v2'): ExperimentRecord {
  const doc = canaryDoc(name);
  const running = withGeneration(start(pendingStatus(doc, CREATED), '2025-03-01T10:00:01.000Z'), 7);
  const counts = (v1: number, v2: number) => ({ v1, v2 });
  const generations = [
    {
      replica: 'r1',
      generations: [
        {
          generation: 7, requests: counts(200, 60), keyless: counts(200, 60), newKeys: counts(0, 0),
          rewards: counts(0, 0), conversions: counts(0, 0), rewardSum: counts(0, 0), rewardSumSq: counts(0, 0),
        },
      ],
    },
  ];
  const status = iterate(doc, running, { measurements: { v1: measurement(200, 0), v2: measurement(60, 3) }, generations }, '2025-03-01T10:00:06.000Z');
  return { doc, status, start: { v1: snapshot(40), v2: snapshot(4) } };
}

/** The same record under another name (the store does not validate names: any string must work). */
export function renamed(record: ExperimentRecord, name: string): ExperimentRecord {
  return { ...record, doc: { ...record.doc, name } };
}

function byName(records: readonly ExperimentRecord[]): ExperimentRecord[] {
  return [...records].sort((a, b) => (a.doc.name < b.doc.name ? -1 : a.doc.name > b.doc.name ? 1 : 0));
}

export function storeContract(name: string, makeStore: () => Promise<StoreUnderTest>, opts: StoreContractOptions = {}): void {
  describe(name, { skip: opts.skip ?? false }, () => {
    let current: StoreUnderTest | null = null;
    const store = (): ExperimentStore => current!.store;

    beforeEach(async () => {
      current = await makeStore();
    });
    afterEach(async () => {
      await current?.cleanup();
      current = null;
    });

    it('get of an unknown name is null', async () => {
      assert.equal(await store().get('nope'), null);
    });

    it('list of an empty store is empty', async () => {
      assert.deepEqual(await store().list(), []);
    });

    it('put then get gives the record back deep-equal', async () => {
      const r = pendingRecord();
      await store().put(r);
      assert.deepEqual(await store().get('checkout-v2'), r);
    });

    it('an iterated record round-trips, history and non-finite numbers included', async () => {
      const r = iteratedRecord();
      assert.equal(r.status.history.length, 1, 'fixture: one iteration');
      assert.notEqual(r.status.srm, null, 'fixture: the SRM test ran');
      assert.equal(r.status.periods?.length, 1, 'fixture: one period');
      await store().put(r);
      const back = await store().get('checkout-v2');
      assert.deepEqual(back, r);
      assert.deepEqual(back!.status.srmState, r.status.srmState);
      assert.equal(back!.status.versions.v2!.objectives[1]!.value, Number.POSITIVE_INFINITY);
    });

    it('put overwrites a record of the same name', async () => {
      const first = pendingRecord();
      const second = iteratedRecord();
      await store().put(first);
      await store().put(second);
      assert.deepEqual(await store().get('checkout-v2'), second);
      assert.deepEqual(await store().list(), [second]);
    });

    it('list returns every record once', async () => {
      const records = [pendingRecord('a'), iteratedRecord('b'), pendingRecord('c')];
      for (const r of records) await store().put(r);
      await store().put(records[0]!); // again: still one
      assert.deepEqual(byName(await store().list()), records);
    });

    it('concurrent puts of different names are all kept', async () => {
      const records = Array.from({ length: 20 }, (_, i) => pendingRecord(`exp-${String(i).padStart(2, '0')}`));
      await Promise.all(records.map((r) => store().put(r)));
      assert.deepEqual(byName(await store().list()), records);
    });

    it('delete removes the record from get and list; others stay', async () => {
      await store().put(pendingRecord('a'));
      await store().put(pendingRecord('b'));
      await store().delete('a');
      assert.equal(await store().get('a'), null);
      assert.deepEqual(await store().list(), [pendingRecord('b')]);
    });

    it('delete of an unknown name is a no-op', async () => {
      await store().delete('never-stored');
      assert.deepEqual(await store().list(), []);
    });

    it("names with ':' and unicode are kept apart and round-trip", async () => {
      const names = ['a', 'a:b', 'a:b:c', 'team:checkout:v2', 'experiments', 'expérience-ü', '実験', 'rocket-🚀', 'with space'];
      const records = names.map((n) => renamed(pendingRecord(), n));
      for (const r of records) await store().put(r);
      for (const r of records) assert.deepEqual(await store().get(r.doc.name), r);
      assert.deepEqual(byName(await store().list()), byName(records));
      await store().delete('a:b');
      assert.equal(await store().get('a:b'), null);
      assert.deepEqual(await store().get('a'), records[0]);
      assert.deepEqual(await store().get('a:b:c'), records[2]);
      assert.equal((await store().list()).length, names.length - 1);
    });
  });
}
