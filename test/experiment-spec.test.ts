import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SluiceError } from '../common/errors.js';
import { defaultSeed, loadExperimentFile, parseExperiment, validateExperiment } from '../control/spec.js';

// The contract's example (docs/contract.md, Examples), verbatim but for three comments.
const PRODUCT_EXAMPLE = `
kind: Experiment
name: checkout-v2
spec:
  route: checkout
  versions:                         # the first is the baseline
    - name: v1
    - name: v2
      url: http://127.0.0.1:3002    # optional: adds the version to the route when the experiment starts
  testingPattern: Canary            # Conformance | Canary | A/B | A/B/n | Hybrid
  deploymentPattern: Progressive    # Progressive (bandit) | FixedSplit | BlueGreen
  algorithm: thompson               # Progressive only; the default is documented
  criteria:
    objectives:                     # SLOs, judged per version
      - { metric: error-rate, upperLimit: 0.01 }
      - { metric: latency-p95, upperLimit: 200 }          # milliseconds
      - { metric: latency-mean, upperLimit: 1.2, relativeTo: baseline }   # at most 20% worse than the baseline
    reward: { metric: conversion-rate, preferredDirection: High }
    confidence: 0.95
    minSamples: 100                 # per version, before any verdict
  weights: { initial: { v1: 90, v2: 10 }, maxCandidateWeight: 80, maxCandidateWeightIncrement: 20 }
  duration: { intervalSeconds: 10, maxIterations: 30 }
  metrics: []                       # custom metrics: mock, REST/Prometheus query (see the issues)
  tasks: { start: [], finish: [] }  # readiness, load, notify, github, exec (see the issues)
`;

const CANARY_MINIMAL = `
kind: Experiment
name: canary
spec:
  route: checkout
  versions: [{ name: v1 }, { name: v2 }]
  testingPattern: Canary
  criteria:
    objectives:
      - { metric: error-rate, upperLimit: 0.01 }
`;

type Doc = Record<string, unknown> & { spec: Record<string, unknown> };

/** A valid A/B/n document as a plain object, for tweaking one field at a time. */
function abn(): Doc {
  return {
    kind: 'Experiment',
    name: 'abn',
    spec: {
      route: 'checkout',
      versions: [{ name: 'v1' }, { name: 'v2', url: 'http://127.0.0.1:3002' }, { name: 'v3', url: 'https://v3.internal/app' }],
      testingPattern: 'A/B/n',
      criteria: { reward: { metric: 'reward-mean' } },
    },
  };
}

/** Runs `fn`, expects SLUICE_EXPERIMENT_INVALID, returns its details. */
function problems(fn: () => unknown): ReadonlyArray<{ path: string; message: string }> {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof SluiceError, `expected a SluiceError, got ${String(err)}`);
    assert.equal(err.code, 'SLUICE_EXPERIMENT_INVALID');
    assert.equal(err.status, 400);
    return err.details;
  }
  assert.fail('expected SLUICE_EXPERIMENT_INVALID, but the document was accepted');
}

function assertProblemAt(fn: () => unknown, path: string, message?: RegExp): void {
  const details = problems(fn);
  const hit = details.find((d) => d.path === path);
  assert.ok(hit, `expected a problem at ${JSON.stringify(path)}, got ${JSON.stringify(details)}`);
  if (message) assert.match(hit.message, message);
}

describe('valid experiments', () => {
  it('parses the contract example as written', () => {
    const doc = parseExperiment(PRODUCT_EXAMPLE);
    assert.equal(doc.kind, 'Experiment');
    assert.equal(doc.name, 'checkout-v2');
    assert.deepEqual(doc.spec.versions, [
      { name: 'v1', url: null },
      { name: 'v2', url: 'http://127.0.0.1:3002' },
    ]);
    assert.deepEqual(doc.spec.criteria.objectives[2], { metric: 'latency-mean', upperLimit: 1.2, lowerLimit: null, relativeTo: 'baseline' });
    assert.deepEqual(doc.spec.criteria.reward, { metric: 'conversion-rate', preferredDirection: 'High' });
    assert.deepEqual(doc.spec.weights, { initial: { v1: 90, v2: 10 }, maxCandidateWeight: 80, maxCandidateWeightIncrement: 20 });
  });

  it('fills a Canary with its defaults', () => {
    const doc = parseExperiment(CANARY_MINIMAL);
    const s = doc.spec;
    assert.equal(s.route, 'checkout');
    assert.equal(s.testingPattern, 'Canary');
    assert.equal(s.deploymentPattern, 'Progressive');
    assert.equal(s.algorithm, 'thompson');
    assert.deepEqual(s.criteria, {
      objectives: [{ metric: 'error-rate', upperLimit: 0.01, lowerLimit: null, relativeTo: null }],
      reward: null,
      confidence: 0.95,
      minSamples: 100,
    });
    assert.deepEqual(s.weights, { initial: { v1: 90, v2: 10 }, maxCandidateWeight: 100, maxCandidateWeightIncrement: 20 });
    assert.deepEqual(s.duration, { intervalSeconds: 10, maxIterations: 30 });
    assert.equal(s.promote, true);
    assert.equal(s.seed, defaultSeed('canary'));
  });

  it('fills an A/B/n with its defaults: equal split, remainder to the baseline', () => {
    const doc = validateExperiment(abn());
    assert.deepEqual(doc.spec.weights, { initial: { v1: 34, v2: 33, v3: 33 }, maxCandidateWeight: 100, maxCandidateWeightIncrement: 100 });
    assert.deepEqual(doc.spec.criteria.reward, { metric: 'reward-mean', preferredDirection: 'High' });
    assert.deepEqual(doc.spec.criteria.objectives, []);
    assert.equal(doc.spec.versions[2]?.url, 'https://v3.internal/app', 'URLs are stored as written');
  });

  it('parses a Hybrid with FixedSplit, promote: false and a seed', () => {
    const doc = parseExperiment(`
kind: Experiment
name: hybrid.1
spec:
  route: r
  versions: [{ name: a }, { name: b }, { name: c }, { name: d }]
  testingPattern: Hybrid
  deploymentPattern: FixedSplit
  criteria:
    objectives: [{ metric: latency-p99, lowerLimit: 0, upperLimit: 500 }]
    reward: { metric: conversion-rate, preferredDirection: Low }
    confidence: 0.99
    minSamples: 5
  weights: { maxCandidateWeight: 20 }
  duration: { intervalSeconds: 0.05, maxIterations: 3 }
  promote: false
  seed: 42
`);
    const s = doc.spec;
    assert.equal(s.testingPattern, 'Hybrid');
    assert.equal(s.deploymentPattern, 'FixedSplit');
    assert.equal(s.algorithm, 'thompson');
    assert.deepEqual(s.weights.initial, { a: 40, b: 20, c: 20, d: 20 }, 'equal split capped at maxCandidateWeight 20');
    assert.deepEqual(s.criteria.reward, { metric: 'conversion-rate', preferredDirection: 'Low' });
    assert.equal(s.criteria.confidence, 0.99);
    assert.deepEqual(s.duration, { intervalSeconds: 0.05, maxIterations: 3 });
    assert.equal(s.promote, false);
    assert.equal(s.seed, 42);
  });

  it('caps a default candidate share at maxCandidateWeight', () => {
    const d = abn();
    d.spec.weights = { maxCandidateWeight: 10 };
    assert.deepEqual(validateExperiment(d).spec.weights.initial, { v1: 80, v2: 10, v3: 10 });
  });

  it('defaults Conformance to all traffic on its one version and BlueGreen to 100/0', () => {
    const conf = parseExperiment(`
kind: Experiment
name: conf
spec: { route: r, versions: [{ name: v1 }], testingPattern: Conformance, criteria: { objectives: [{ metric: error-rate, upperLimit: 0 }] } }
`);
    assert.deepEqual(conf.spec.weights.initial, { v1: 100 });
    const bg = parseExperiment(CANARY_MINIMAL.replace('testingPattern: Canary', 'testingPattern: Canary\n  deploymentPattern: BlueGreen'));
    assert.deepEqual(bg.spec.weights.initial, { v1: 100, v2: 0 });
    assert.equal(bg.spec.weights.maxCandidateWeightIncrement, 100);
  });

  it('refuses a version that would start at 0% (it would never be measured), except in BlueGreen', () => {
    const d = abn();
    d.spec.weights = { initial: { v1: 50, v2: 50, v3: 0 } };
    assert.throws(
      () => validateExperiment(d),
      (e: SluiceError) => e.code === 'SLUICE_EXPERIMENT_INVALID' && e.details.some((x) => x.path === 'spec.weights.initial.v3' && /never be measured/.test(x.message)),
    );
    const zeroCap = abn();
    zeroCap.spec.weights = { maxCandidateWeight: 0 };
    assert.throws(() => validateExperiment(zeroCap), (e: SluiceError) => e.details.some((x) => x.path === 'spec.weights.maxCandidateWeight'));
    const bg = parseExperiment(CANARY_MINIMAL.replace('testingPattern: Canary', 'testingPattern: Canary\n  deploymentPattern: BlueGreen'));
    assert.equal(bg.spec.weights.initial.v2, 0);
  });

  it('accepts JSON as well as YAML, with the same result', () => {
    const fromObject = validateExperiment(abn());
    const fromJson = parseExperiment(JSON.stringify(abn(), null, '\t'));
    assert.deepEqual(fromJson, fromObject);
  });

  it('returns a deeply frozen document and a deterministic seed', () => {
    const doc = parseExperiment(PRODUCT_EXAMPLE);
    assert.ok(Object.isFrozen(doc) && Object.isFrozen(doc.spec.weights.initial) && Object.isFrozen(doc.spec.criteria.objectives[0]));
    assert.equal(doc.spec.seed, parseExperiment(PRODUCT_EXAMPLE).spec.seed);
    assert.ok(Number.isInteger(doc.spec.seed) && doc.spec.seed >= 0 && doc.spec.seed <= 0xffffffff);
    assert.notEqual(defaultSeed('checkout-v2'), defaultSeed('checkout-v3'));
  });

  it('loads a file, and names an unreadable one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-exp-'));
    const file = join(dir, 'exp.yaml');
    writeFileSync(file, CANARY_MINIMAL);
    assert.equal(loadExperimentFile(file).name, 'canary');
    const missing = join(dir, 'nope.yaml');
    assert.throws(() => loadExperimentFile(missing), (err: unknown) => {
      assert.ok(err instanceof SluiceError);
      assert.equal(err.code, 'SLUICE_CONFIG_READ');
      assert.match(err.message, /nope\.yaml/);
      return true;
    });
  });
});

describe('invalid experiments: each problem is reported at its path', () => {
  const cases: Array<{ name: string; edit: (d: Doc) => void; path: string; message?: RegExp }> = [
    { name: 'wrong kind', edit: (d) => (d.kind = 'Route'), path: 'kind', message: /"Experiment"/ },
    { name: 'missing kind', edit: (d) => delete d.kind, path: 'kind', message: /required/ },
    { name: 'bad name', edit: (d) => (d.name = '-x'), path: 'name' },
    { name: 'name too long', edit: (d) => (d.name = 'a'.repeat(64)), path: 'name', message: /63/ },
    { name: 'missing route', edit: (d) => delete d.spec.route, path: 'spec.route', message: /required/ },
    {
      name: 'Canary with 3 versions',
      edit: (d) => Object.assign(d.spec, { testingPattern: 'Canary', criteria: { objectives: [{ metric: 'error-rate', upperLimit: 0.1 }] } }),
      path: 'spec.versions',
      message: /exactly 2/,
    },
    {
      name: 'A/B without a reward',
      edit: (d) => Object.assign(d.spec, { testingPattern: 'A/B', versions: [{ name: 'v1' }, { name: 'v2' }], criteria: {} }),
      path: 'spec.criteria.reward',
    },
    { name: 'A/B/n with 1 version', edit: (d) => (d.spec.versions = [{ name: 'v1' }]), path: 'spec.versions', message: /at least 2/ },
    { name: 'Hybrid without objectives', edit: (d) => (d.spec.testingPattern = 'Hybrid'), path: 'spec.criteria.objectives' },
    { name: 'unknown testing pattern', edit: (d) => (d.spec.testingPattern = 'canary'), path: 'spec.testingPattern', message: /one of/ },
    {
      name: 'unknown metric',
      edit: (d) => (d.spec.criteria = { reward: { metric: 'reward-mean' }, objectives: [{ metric: 'latency-p42', upperLimit: 1 }] }),
      path: 'spec.criteria.objectives[0].metric',
    },
    {
      name: 'objective without limits',
      edit: (d) => (d.spec.criteria = { reward: { metric: 'reward-mean' }, objectives: [{ metric: 'error-rate' }] }),
      path: 'spec.criteria.objectives[0]',
      message: /upperLimit, lowerLimit/,
    },
    {
      name: 'lowerLimit >= upperLimit',
      edit: (d) =>
        (d.spec.criteria = {
          reward: { metric: 'reward-mean' },
          objectives: [{ metric: 'error-rate', upperLimit: 0.1 }, { metric: 'latency-mean', lowerLimit: 200, upperLimit: 200 }],
        }),
      path: 'spec.criteria.objectives[1].lowerLimit',
    },
    {
      name: 'rate limit above 1',
      edit: (d) => (d.spec.criteria = { reward: { metric: 'reward-mean' }, objectives: [{ metric: 'error-rate', upperLimit: 5 }] }),
      path: 'spec.criteria.objectives[0].upperLimit',
      message: /0\.\.1/,
    },
    {
      name: 'relative limit not a positive factor',
      edit: (d) => (d.spec.criteria = { reward: { metric: 'reward-mean' }, objectives: [{ metric: 'latency-p95', upperLimit: 0, relativeTo: 'baseline' }] }),
      path: 'spec.criteria.objectives[0].upperLimit',
    },
    {
      name: 'relativeTo with 1 version',
      edit: (d) =>
        Object.assign(d.spec, {
          testingPattern: 'Conformance',
          versions: [{ name: 'v1' }],
          criteria: { objectives: [{ metric: 'latency-mean', upperLimit: 1.2, relativeTo: 'baseline' }] },
        }),
      path: 'spec.criteria.objectives[0].relativeTo',
    },
    { name: 'reward on a non-reward metric', edit: (d) => (d.spec.criteria = { reward: { metric: 'error-rate' } }), path: 'spec.criteria.reward.metric' },
    { name: 'confidence 1.2', edit: (d) => (d.spec.criteria = { reward: { metric: 'reward-mean' }, confidence: 1.2 }), path: 'spec.criteria.confidence' },
    { name: 'minSamples 0', edit: (d) => (d.spec.criteria = { reward: { metric: 'reward-mean' }, minSamples: 0 }), path: 'spec.criteria.minSamples' },
    { name: 'weights not summing to 100', edit: (d) => (d.spec.weights = { initial: { v1: 50, v2: 20, v3: 20 } }), path: 'spec.weights.initial', message: /sum to 100/ },
    { name: 'unknown version in weights', edit: (d) => (d.spec.weights = { initial: { v1: 90, v9: 10 } }), path: 'spec.weights.initial.v9', message: /unknown version/ },
    {
      name: 'initial candidate weight above maxCandidateWeight',
      edit: (d) => (d.spec.weights = { initial: { v1: 40, v2: 30, v3: 30 }, maxCandidateWeight: 25 }),
      path: 'spec.weights.initial.v2',
      message: /maxCandidateWeight/,
    },
    { name: 'maxCandidateWeightIncrement 0', edit: (d) => (d.spec.weights = { maxCandidateWeightIncrement: 0 }), path: 'spec.weights.maxCandidateWeightIncrement' },
    { name: 'duplicate version names', edit: (d) => (d.spec.versions = [{ name: 'v1' }, { name: 'v2' }, { name: 'v1' }]), path: 'spec.versions[2].name', message: /duplicate/ },
    { name: 'version URL not http', edit: (d) => (d.spec.versions = [{ name: 'v1' }, { name: 'v2', url: 'ftp://x' }]), path: 'spec.versions[1].url' },
    { name: 'bad algorithm', edit: (d) => (d.spec.algorithm = 'greedy'), path: 'spec.algorithm', message: /thompson/ },
    {
      name: 'algorithm with FixedSplit',
      edit: (d) => Object.assign(d.spec, { deploymentPattern: 'FixedSplit', algorithm: 'ucb' }),
      path: 'spec.algorithm',
      message: /Progressive only/,
    },
    { name: 'BlueGreen with 3 versions', edit: (d) => (d.spec.deploymentPattern = 'BlueGreen'), path: 'spec.deploymentPattern', message: /exactly 2/ },
    { name: 'promote: false with Progressive', edit: (d) => (d.spec.promote = false), path: 'spec.promote' },
    { name: 'task of no known kind', edit: (d) => (d.spec.tasks = { start: [{ task: 'deploy' }] }), path: 'spec.tasks.start[0].task' },
    { name: 'objective on an undeclared metric', edit: (d) => ((d.spec.criteria as Record<string, unknown>).objectives = [{ metric: 'revenue', upperLimit: 1 }]), path: 'spec.criteria.objectives[0].metric', message: /spec\.metrics/ },
    {
      name: 'custom metric shadowing a built-in one',
      edit: (d) => (d.spec.metrics = [{ name: 'error-rate', source: 'mock', type: 'rate', values: { v1: { mean: 0.1 }, v2: { mean: 0.1 }, v3: { mean: 0.1 } } }]),
      path: 'spec.metrics[0].name',
      message: /built-in/,
    },
    {
      name: 'rest rate without sampleSize',
      edit: (d) => (d.spec.metrics = [{ name: 'm', source: 'rest', type: 'rate', url: 'http://127.0.0.1:1/x', jq: '.v' }]),
      path: 'spec.metrics[0].sampleSize',
      message: /sampleSize/,
    },
    {
      name: 'sampleSize naming no metric',
      edit: (d) => (d.spec.metrics = [{ name: 'm', source: 'rest', type: 'rate', url: 'http://127.0.0.1:1/x', jq: '.v', sampleSize: 'nope' }]),
      path: 'spec.metrics[0].sampleSize',
      message: /no metric named "nope"/,
    },
    {
      name: 'a count as the reward',
      edit: (d) => {
        d.spec.metrics = [{ name: 'sold', source: 'rest', type: 'count', url: 'http://127.0.0.1:1/x', jq: '.v' }];
        (d.spec.criteria as Record<string, unknown>).reward = { metric: 'sold' };
      },
      path: 'spec.criteria.reward.metric',
      message: /cannot be a reward/,
    },
    {
      name: 'custom rate limit above 1',
      edit: (d) => {
        d.spec.metrics = [{ name: 'conv', source: 'mock', type: 'rate', values: { v1: { mean: 0.1 }, v2: { mean: 0.1 }, v3: { mean: 0.1 } } }];
        (d.spec.criteria as Record<string, unknown>).objectives = [{ metric: 'conv', upperLimit: 5 }];
      },
      path: 'spec.criteria.objectives[0].upperLimit',
      message: /rate/,
    },
    { name: 'intervalSeconds 0', edit: (d) => (d.spec.duration = { intervalSeconds: 0 }), path: 'spec.duration.intervalSeconds' },
    { name: 'maxIterations 10001', edit: (d) => (d.spec.duration = { maxIterations: 10_001 }), path: 'spec.duration.maxIterations' },
    { name: 'seed not an integer', edit: (d) => (d.spec.seed = 1.5), path: 'spec.seed' },
    { name: 'unknown field', edit: (d) => (d.spec.criteria = { reward: { metric: 'reward-mean', direction: 'High' } }), path: 'spec.criteria.reward.direction', message: /allowed: metric, preferredDirection/ },
    { name: 'unknown top-level field', edit: (d) => (d.apiVersion = 'v2'), path: 'apiVersion', message: /allowed: kind, name, spec/ },
  ];

  for (const c of cases) {
    it(c.name, () => {
      const d = abn();
      c.edit(d);
      assertProblemAt(() => validateExperiment(d), c.path, c.message);
    });
  }

  it('a YAML syntax error: line:col and an empty path', () => {
    const details = problems(() => parseExperiment('kind: Experiment\nname: x\nspec: { route: r\n'));
    assert.equal(details[0]?.path, '');
    assert.match(details[0]?.message ?? '', /^\d+:\d+: /);
  });

  it('a document that is not a mapping', () => {
    assertProblemAt(() => parseExperiment('- kind: Experiment'), '', /mapping/);
  });

  it('an empty document lists what is required', () => {
    const details = problems(() => parseExperiment(''));
    assert.deepEqual(details.map((d) => d.path), ['kind', 'name', 'spec']);
  });

  it('lists every problem of a document at once', () => {
    let error: unknown;
    try {
      parseExperiment(`
kind: Experment
name: ok
spec:
  route: r
  versions: [{ name: v1 }, { name: v2 }, { name: v1 }]
  testingPattern: Canary
  deploymentPattern: FixedSplit
  algorithm: ucb
  criteria:
    objectives:
      - { metric: error-rate, lowerLimit: 0.5, upperLimit: 0.1 }
    confidence: 1.2
  weights: { initial: { v1: 90, v9: 10 } }
  duration: { intervalSeconds: 0 }
  tasks: { finish: [{ notify: x }] }
  colour: blue
`);
    } catch (err) {
      error = err;
    }
    assert.ok(error instanceof SluiceError);
    assert.equal(error.code, 'SLUICE_EXPERIMENT_INVALID');
    const paths = error.details.map((d) => d.path).sort();
    assert.deepEqual(paths, [
      'kind',
      'spec.algorithm',
      'spec.colour',
      'spec.criteria.confidence',
      'spec.criteria.objectives[0].lowerLimit',
      'spec.duration.intervalSeconds',
      'spec.tasks.finish[0].task',
      'spec.versions',
      'spec.versions[2].name',
      'spec.weights.initial.v9',
    ]);
    assert.equal(error.message, `experiment has ${paths.length} problems`);
  });
});
