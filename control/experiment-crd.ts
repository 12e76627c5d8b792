/**
 * The `Experiment` custom resource (sluice.dev/v1alpha1): its
 * CustomResourceDefinition, with an openAPIV3Schema built from the field
 * lists, enumerations and bounds the validator itself reads (spec-shape.ts,
 * the task kinds' and metric sources' `keys`). The validator stays the
 * judge — it checks what a schema cannot (cross-references, pattern rules) —
 * and the schema lets `kubectl apply` refuse a misspelt field at once.
 * `npm run gen:crd` writes it to deploy/helm/sluice/crds/; a test fails when
 * the file and this code differ.
 */
import { stringify as stringifyYaml } from 'yaml';
import { METRIC_TYPES } from './metrics/base.js';
import { METRIC_SOURCES, SOURCES } from './metrics/sources.js';
import {
  CONFIDENCE_RANGE, CRITERIA_KEYS, DIRECTIONS, DURATION_KEYS, MAX_INTERVAL_SECONDS, MAX_ITERATIONS, MAX_NAME, MAX_SEED, METRIC_BASE_KEYS,
  OBJECTIVE_KEYS, RELATIVE_TO, REWARD_KEYS, SPEC_KEYS, TASK_BASE_KEYS, TASK_ON_ERROR, TASK_PHASES, VERSION_KEYS, WEIGHTS_KEYS,
} from './spec-shape.js';
import { ALGORITHMS, DEPLOYMENT_PATTERNS, TESTING_PATTERNS } from './spec-types.js';
import { TASK_CONDITIONS } from './tasks/base.js';
import { TASK_KINDS, TASKS } from './tasks/kinds.js';

export const CRD_GROUP = 'sluice.dev';
export const CRD_VERSION = 'v1alpha1';
export const CRD_KIND = 'Experiment';
export const CRD_PLURAL = 'experiments';
export const CRD_NAME = `${CRD_PLURAL}.${CRD_GROUP}`;

export interface Schema {
  type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  description?: string;
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  enum?: readonly (string | number)[];
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: boolean;
  exclusiveMaximum?: boolean;
  maxLength?: number;
  pattern?: string;
  additionalProperties?: Schema | boolean;
  'x-kubernetes-preserve-unknown-fields'?: boolean;
  'x-kubernetes-int-or-string'?: boolean;
  'x-kubernetes-list-type'?: string;
  'x-kubernetes-list-map-keys'?: string[];
}

const NAME: Schema = { type: 'string', maxLength: MAX_NAME, pattern: '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$' };
const str = (description?: string): Schema => ({ type: 'string', ...(description ? { description } : {}) });
const num = (description?: string): Schema => ({ type: 'number', ...(description ? { description } : {}) });
const int = (minimum: number, maximum: number, description?: string): Schema => ({ type: 'integer', minimum, maximum, ...(description ? { description } : {}) });
const oneOf = (values: readonly string[], description?: string): Schema => ({ type: 'string', enum: [...values], ...(description ? { description } : {}) });
/** A field whose type depends on the task kind or metric source: the validator checks it. */
const ANY: Schema = { 'x-kubernetes-preserve-unknown-fields': true };

/** Properties of `keys`, each from `known` or, failing that, `fallback`: the keys decide which fields exist. */
function fields(keys: readonly string[], known: Record<string, Schema>, fallback?: Schema): Record<string, Schema> {
  const out: Record<string, Schema> = {};
  for (const k of keys) {
    const s = known[k] ?? fallback;
    if (s === undefined) throw new Error(`experiment-crd: no schema for field ${k}`);
    out[k] = s;
  }
  return out;
}

/**
 * No `additionalProperties: false`: a structural schema may not say it.
 * Kubernetes prunes unknown fields, and kubectl's strict field validation
 * (its default since 1.27) refuses them at apply, naming the field.
 */
function object(keys: readonly string[], known: Record<string, Schema>, extra: Omit<Schema, 'type' | 'properties'> = {}, fallback?: Schema): Schema {
  return { type: 'object', properties: fields(keys, known, fallback), ...extra };
}

/** Every key any task kind may have: the schema cannot tell kinds apart, the validator does. */
function taskKeys(): string[] {
  return [...new Set([...TASK_BASE_KEYS, ...TASK_KINDS.flatMap((k) => TASKS[k].keys)])];
}

function metricKeys(): string[] {
  return [...new Set([...METRIC_BASE_KEYS, ...METRIC_SOURCES.flatMap((s) => SOURCES[s].keys)])];
}

export function experimentSpecSchema(): Schema {
  const task = object(taskKeys(), {
    task: oneOf(TASK_KINDS, 'The task kind (docs/tasks.md).'),
    name: NAME,
    if: oneOf(TASK_CONDITIONS, 'Finish tasks: when they run.'),
    onError: oneOf(TASK_ON_ERROR),
    every: { type: 'integer', minimum: 1, description: 'Loop tasks: every how many iterations.' },
    timeoutSeconds: num(),
  }, { required: ['task'] }, ANY);
  const metric = object(metricKeys(), {
    name: NAME,
    type: oneOf(METRIC_TYPES),
    source: oneOf(METRIC_SOURCES),
    sampleSize: str('The metric counting this one\'s trials.'),
    stdDev: str('The metric giving this one\'s standard deviation.'),
  }, { required: ['name', 'type', 'source'] }, ANY);
  return object(SPEC_KEYS, {
    route: { ...NAME, description: 'The route (in sluice.yaml) whose versions are compared.' },
    versions: {
      type: 'array',
      description: 'The first is the baseline. A url adds the version to the route when the experiment starts.',
      items: object(VERSION_KEYS, { name: NAME, url: str('An absolute http: or https: URL.') }, { required: ['name'] }),
    },
    testingPattern: oneOf(TESTING_PATTERNS),
    deploymentPattern: oneOf(DEPLOYMENT_PATTERNS),
    algorithm: oneOf(ALGORITHMS),
    criteria: object(CRITERIA_KEYS, {
      objectives: {
        type: 'array',
        items: object(OBJECTIVE_KEYS, { metric: str(), upperLimit: num(), lowerLimit: num(), relativeTo: oneOf(RELATIVE_TO) }, { required: ['metric'] }),
      },
      reward: object(REWARD_KEYS, { metric: str(), preferredDirection: oneOf(DIRECTIONS) }, { required: ['metric'] }),
      confidence: { type: 'number', minimum: CONFIDENCE_RANGE[0], maximum: CONFIDENCE_RANGE[1], exclusiveMinimum: true, exclusiveMaximum: true },
      minSamples: { type: 'integer', minimum: 1 },
    }),
    weights: object(WEIGHTS_KEYS, {
      initial: { type: 'object', description: 'Version name → integer percent; the total is 100.', additionalProperties: int(0, 100) },
      maxCandidateWeight: int(0, 100),
      maxCandidateWeightIncrement: int(1, 100),
    }),
    duration: object(DURATION_KEYS, {
      intervalSeconds: { type: 'number', minimum: 0, exclusiveMinimum: true, maximum: MAX_INTERVAL_SECONDS },
      maxIterations: int(1, MAX_ITERATIONS),
    }),
    promote: { type: 'boolean' },
    seed: int(0, MAX_SEED),
    metrics: { type: 'array', items: metric },
    tasks: object(TASK_PHASES, {}, {}, { type: 'array', items: task }),
  }, { required: ['route', 'versions', 'testingPattern'] });
}

/** Status: Kubernetes conditions and what `kubectl get` shows; the rest of Sluice's status is kept as written. */
function statusSchema(): Schema {
  return {
    type: 'object',
    'x-kubernetes-preserve-unknown-fields': true,
    properties: {
      observedGeneration: { type: 'integer' },
      state: str(),
      iteration: { type: 'integer' },
      maxIterations: { type: 'integer' },
      winner: str(),
      weightsText: str('The route\'s weights as version=percent pairs, for kubectl get.'),
      conditions: {
        type: 'array',
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['type'],
        items: {
          type: 'object',
          required: ['type', 'status', 'lastTransitionTime', 'reason', 'message'],
          properties: {
            type: str(),
            status: oneOf(['True', 'False', 'Unknown']),
            observedGeneration: { type: 'integer', minimum: 0 },
            lastTransitionTime: { type: 'string' },
            reason: { type: 'string', maxLength: 1024, pattern: '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$' },
            message: { type: 'string', maxLength: 32768 },
          },
        },
      },
    },
  };
}

export function experimentCrd(): Record<string, unknown> {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: CRD_NAME, labels: { 'app.kubernetes.io/name': 'sluice', 'app.kubernetes.io/component': 'crd' } },
    spec: {
      group: CRD_GROUP,
      names: { kind: CRD_KIND, listKind: `${CRD_KIND}List`, plural: CRD_PLURAL, singular: 'experiment', shortNames: ['sx'], categories: ['sluice'] },
      scope: 'Namespaced',
      versions: [
        {
          name: CRD_VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            { name: 'State', type: 'string', jsonPath: '.status.state' },
            { name: 'Iteration', type: 'integer', jsonPath: '.status.iteration' },
            { name: 'Winner', type: 'string', jsonPath: '.status.winner' },
            { name: 'Weights', type: 'string', jsonPath: '.status.weightsText' },
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description: 'A Sluice experiment (docs/experiments.md). metadata.name is the experiment\'s name.',
              required: ['spec'],
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object' },
                spec: experimentSpecSchema(),
                status: statusSchema(),
              },
            },
          },
        },
      ],
    },
  };
}

/** The CRD as the YAML file `npm run gen:crd` writes (deploy/helm/sluice/crds/) and `sluice crd` prints. */
export function experimentCrdYaml(): string {
  return `# Generated by \`npm run gen:crd\` from control/experiment-crd.ts: do not edit.\n${stringifyYaml(experimentCrd(), { lineWidth: 0 })}`;
}
