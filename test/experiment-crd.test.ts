/**
 * The Experiment CRD and the validator agree: the same fields at every level,
 * the same enumerations; every example Experiment passes both; the chart's
 * CRD file is what the code generates.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { Ajv } from 'ajv';
import YAML from 'yaml';
import { SluiceError } from '../common/errors.js';
import { experimentCrd, experimentCrdYaml, experimentSpecSchema, type Schema } from '../control/experiment-crd.js';
import { validateExperiment } from '../control/spec.js';
import { METRIC_SOURCES } from '../control/metrics/sources.js';
import { TASK_KINDS } from '../control/tasks/kinds.js';

const CRD_FILE = 'deploy/helm/sluice/crds/experiments.sluice.dev.yaml';

/** A document using every section, valid for the validator: the base each probe changes one thing in. */
function fullDoc(): any {
  return {
    kind: 'Experiment',
    name: 'probe',
    spec: {
      route: 'shop',
      versions: [{ name: 'v1' }, { name: 'v2', url: 'http://127.0.0.1:3002' }],
      testingPattern: 'Hybrid',
      deploymentPattern: 'Progressive',
      algorithm: 'thompson',
      criteria: {
        objectives: [{ metric: 'error-rate', upperLimit: 0.01 }],
        reward: { metric: 'conversion-rate', preferredDirection: 'High' },
        confidence: 0.95,
        minSamples: 50,
      },
      weights: { initial: { v1: 50, v2: 50 }, maxCandidateWeight: 100, maxCandidateWeightIncrement: 20 },
      duration: { intervalSeconds: 5, maxIterations: 10 },
      promote: true,
      seed: 7,
      metrics: [{ name: 'revenue', type: 'mean', source: 'mock', values: { v1: 1, v2: 2 } }],
      tasks: { start: [{ task: 'notify', url: 'http://127.0.0.1:9/hook' }], loop: [], finish: [] },
    },
  };
}

function problems(doc: unknown): ReadonlyArray<{ path: string; message: string }> {
  try {
    validateExperiment(doc);
    return [];
  } catch (err) {
    assert.ok(err instanceof SluiceError, String(err));
    return err.details;
  }
}

/** Sets `value` at a dotted path with [i] indexes, creating nothing: the path must exist in the base. */
function at(doc: any, path: string): any {
  let o = doc;
  for (const part of path.split('.').flatMap((p) => p.split(/\[(\d+)\]/).filter((x) => x !== ''))) o = o[/^\d+$/.test(part) ? Number(part) : part];
  return o;
}

/** What the validator allows at an object path: read from its "unknown field (allowed: …)" answer. */
function allowedAt(doc: any, path: string): string[] {
  const target = path === '' ? doc : at(doc, path);
  target.zzBogus = 1;
  const where = path === '' ? 'zzBogus' : `${path}.zzBogus`;
  const p = problems(doc).find((d) => d.path === where);
  assert.ok(p, `the validator took an unknown field at ${where}`);
  const m = /allowed: ([^)]*)\)/.exec(p.message);
  assert.ok(m, p.message);
  return m[1]!.split(', ').sort();
}

const props = (s: Schema | undefined): string[] => Object.keys(s?.properties ?? {}).sort();

describe('the CRD schema and the validator', () => {
  const spec = experimentSpecSchema();

  test('the same fields at every level of the spec', () => {
    const paths: Array<[string, Schema]> = [
      ['spec', spec],
      ['spec.versions[0]', spec.properties!.versions!.items!],
      ['spec.criteria', spec.properties!.criteria!],
      ['spec.criteria.objectives[0]', spec.properties!.criteria!.properties!.objectives!.items!],
      ['spec.criteria.reward', spec.properties!.criteria!.properties!.reward!],
      ['spec.weights', spec.properties!.weights!],
      ['spec.duration', spec.properties!.duration!],
      ['spec.tasks', spec.properties!.tasks!],
    ];
    for (const [path, schema] of paths) assert.deepEqual(allowedAt(fullDoc(), path), props(schema), path);
    assert.deepEqual(allowedAt(fullDoc(), ''), ['kind', 'name', 'spec']);
  });

  test('tasks and metrics: each kind\'s and source\'s fields are in the schema, and the schema has no others', () => {
    const taskSchema = spec.properties!.tasks!.properties!.start!.items!;
    const union = new Set<string>();
    const minimal: Record<string, any> = {
      notify: { url: 'http://127.0.0.1:9/h' }, exec: { command: ['true'] }, github: { repository: 'o/r', token: '${GITHUB_TOKEN}', files: [] },
      load: { qps: 1 }, readiness: {}, summary: {},
    };
    for (const kind of TASK_KINDS) {
      const doc = fullDoc();
      doc.spec.tasks = { start: [{ task: kind, ...(minimal[kind] ?? {}) }] };
      const allowed = allowedAt(doc, 'spec.tasks.start[0]');
      for (const k of allowed) union.add(k);
      for (const k of allowed) assert.ok(props(taskSchema).includes(k), `task ${kind}: ${k} is missing from the CRD schema`);
    }
    assert.deepEqual([...union].sort(), props(taskSchema));
    const metricSchema = spec.properties!.metrics!.items!;
    const metricUnion = new Set<string>();
    for (const source of METRIC_SOURCES) {
      const doc = fullDoc();
      doc.spec.metrics = [{ name: 'm', type: 'mean', source }];
      for (const k of allowedAt(doc, 'spec.metrics[0]')) metricUnion.add(k);
    }
    assert.deepEqual([...metricUnion].sort(), props(metricSchema));
  });

  test('the same enumerations', () => {
    const enums: Array<[string, string, readonly (string | number)[]]> = [
      ['spec', 'testingPattern', spec.properties!.testingPattern!.enum!],
      ['spec', 'deploymentPattern', spec.properties!.deploymentPattern!.enum!],
      ['spec', 'algorithm', spec.properties!.algorithm!.enum!],
      ['spec.criteria.reward', 'preferredDirection', spec.properties!.criteria!.properties!.reward!.properties!.preferredDirection!.enum!],
    ];
    for (const [path, field, values] of enums) {
      const bad = fullDoc();
      at(bad, path)[field] = 'Bogus';
      assert.ok(problems(bad).some((d) => d.path === `${path}.${field}`), `${path}.${field}: Bogus accepted`);
      for (const v of values) {
        const doc = fullDoc();
        at(doc, path)[field] = v;
        assert.ok(!problems(doc).some((d) => d.path === `${path}.${field}` && d.message.startsWith('expected one of')), `${path}.${field}: ${v} refused`);
      }
    }
    assert.deepEqual(spec.properties!.tasks!.properties!.start!.items!.properties!.task!.enum, [...TASK_KINDS]);
    assert.deepEqual(spec.properties!.metrics!.items!.properties!.source!.enum, [...METRIC_SOURCES]);
  });
});

/** The CRD's OpenAPI v3.0 schema as JSON Schema for ajv: boolean exclusive bounds become numbers, x-kubernetes-* go. */
function toJsonSchema(s: any): any {
  if (Array.isArray(s)) return s.map(toJsonSchema);
  if (s === null || typeof s !== 'object') return s;
  const out: any = {};
  for (const [k, v] of Object.entries(s)) {
    if (k.startsWith('x-kubernetes-')) continue;
    if (k === 'exclusiveMinimum' || k === 'exclusiveMaximum') continue;
    out[k] = k === 'properties' ? Object.fromEntries(Object.entries(v as object).map(([p, ps]) => [p, toJsonSchema(ps)])) : toJsonSchema(v);
  }
  if (s.exclusiveMinimum === true) {
    out.exclusiveMinimum = s.minimum;
    delete out.minimum;
  }
  if (s.exclusiveMaximum === true) {
    out.exclusiveMaximum = s.maximum;
    delete out.maximum;
  }
  return out;
}

/** Every `kind: Experiment` document in examples/ and in the docs' YAML blocks. */
function exampleExperiments(): Array<{ where: string; doc: any }> {
  const out: Array<{ where: string; doc: any }> = [];
  const add = (where: string, text: string) => {
    for (const d of YAML.parseAllDocuments(text)) {
      const doc = d.toJS();
      if (doc?.kind === 'Experiment') out.push({ where, doc });
    }
  };
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory()) walk(p);
      else if (/\.ya?ml$/.test(e.name)) add(p, readFileSync(p, 'utf8'));
    }
  };
  walk('examples');
  for (const f of readdirSync('docs')) {
    if (!f.endsWith('.md')) continue;
    const text = readFileSync(`docs/${f}`, 'utf8');
    let i = 0;
    for (const m of text.matchAll(/```ya?ml\n([\s\S]*?)```/g)) {
      i++;
      if (/^kind: Experiment$/m.test(m[1]!) && !m[1]!.includes('…')) add(`docs/${f} block ${i}`, m[1]!);
    }
  }
  return out;
}

describe('examples', () => {
  const ajv = new Ajv({ strict: false, allErrors: true });
  const crd = experimentCrd() as any;
  const validate = ajv.compile(toJsonSchema(crd.spec.versions[0].schema.openAPIV3Schema));

  test('every example Experiment passes the CRD schema (as a resource) and the validator', () => {
    const examples = exampleExperiments();
    assert.ok(examples.length >= 3, `only ${examples.length} examples found`);
    for (const { where, doc } of examples) {
      // Written either as a resource (apiVersion, metadata) or as Sluice's document (name): each form checked both ways.
      const resource = doc.apiVersion === undefined ? { apiVersion: 'sluice.dev/v1alpha1', kind: 'Experiment', metadata: { name: doc.name }, spec: doc.spec } : doc;
      const sluiceDoc = doc.apiVersion === undefined ? doc : { kind: 'Experiment', name: doc.metadata.name, spec: doc.spec };
      assert.ok(validate(resource), `${where}: ${JSON.stringify(validate.errors)}`);
      assert.deepEqual(problems(sluiceDoc), [], where);
    }
  });

  test('the schema refuses what it can see is wrong: a bad enum, a weight over 100, a string for a number', () => {
    const bad = (mutate: (spec: any) => void) => {
      const d = fullDoc();
      mutate(d.spec);
      return validate({ apiVersion: 'sluice.dev/v1alpha1', kind: 'Experiment', metadata: { name: 'x' }, spec: d.spec });
    };
    assert.equal(bad(() => {}), true, JSON.stringify(validate.errors));
    assert.equal(bad((s) => (s.testingPattern = 'AB')), false);
    assert.equal(bad((s) => (s.weights.initial.v2 = 101)), false);
    assert.equal(bad((s) => (s.duration.maxIterations = '10')), false);
    assert.equal(bad((s) => (s.criteria.confidence = 1)), false);
    assert.equal(bad((s) => delete s.route), false);
  });

  test(`${CRD_FILE} is what the code generates (npm run gen:crd)`, () => {
    assert.equal(readFileSync(CRD_FILE, 'utf8'), experimentCrdYaml(), `run npm run gen:crd: ${CRD_FILE} is stale`);
  });
});
