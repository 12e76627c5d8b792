/**
 * The validated shape of a `kind: Experiment` document (see docs/contract.md
 * and docs/experiments.md). `validateExperiment` (spec.ts) produces it, deeply frozen;
 * the decision functions and the scheduler trust it.
 */
import type { MetricSpec } from './metrics/base.js';
import type { TaskSpec } from './tasks/base.js';

export const TESTING_PATTERNS = ['Conformance', 'Canary', 'A/B', 'A/B/n', 'Hybrid'] as const;
export type TestingPattern = (typeof TESTING_PATTERNS)[number];

export const DEPLOYMENT_PATTERNS = ['Progressive', 'FixedSplit', 'BlueGreen'] as const;
export type DeploymentPattern = (typeof DEPLOYMENT_PATTERNS)[number];

export const ALGORITHMS = ['thompson', 'top-two', 'ucb', 'epsilon-greedy'] as const;
export type Algorithm = (typeof ALGORITHMS)[number];

/** Built-in per-version metrics, measured in the request path. */
export const BUILTIN_METRICS = [
  'request-count',
  'error-count',
  'error-rate',
  'latency-mean',
  'latency-p50',
  'latency-p90',
  'latency-p95',
  'latency-p99',
  'mirror-mismatch-rate',
  'conversion-rate',
  'reward-mean',
] as const;
export type BuiltinMetric = (typeof BUILTIN_METRICS)[number];

export interface Objective {
  /** A built-in metric or the name of one of `spec.metrics`. */
  readonly metric: string;
  readonly upperLimit: number | null;
  readonly lowerLimit: number | null;
  /** 'baseline': the limits are factors of the baseline's value (1.2 = at most 20% above it). */
  readonly relativeTo: 'baseline' | null;
}

export interface Reward {
  /** conversion-rate, reward-mean, or a custom rate/mean metric with a posterior (see spec.ts). */
  readonly metric: string;
  readonly preferredDirection: 'High' | 'Low';
}

export interface Criteria {
  readonly objectives: readonly Objective[];
  readonly reward: Reward | null;
  /** Posterior probability needed for every verdict; 0.5 < confidence < 1. */
  readonly confidence: number;
  /** Requests per version before anything is judged about it. */
  readonly minSamples: number;
}

export interface WeightsSpec {
  /** Integer percents per version name summing to 100; null = all to the baseline... see spec.ts defaults. */
  readonly initial: Readonly<Record<string, number>>;
  /** Most a candidate (any non-baseline version) may get, in percent. */
  readonly maxCandidateWeight: number;
  /** Most a candidate's weight may grow in one iteration, in percent. */
  readonly maxCandidateWeightIncrement: number;
}

export interface ExperimentVersion {
  readonly name: string;
  /** When set, the version is added to the route when the experiment starts. */
  readonly url: string | null;
}

export interface ExperimentSpec {
  readonly route: string;
  /** The first is the baseline. */
  readonly versions: readonly ExperimentVersion[];
  readonly testingPattern: TestingPattern;
  readonly deploymentPattern: DeploymentPattern;
  readonly algorithm: Algorithm;
  readonly criteria: Criteria;
  readonly weights: WeightsSpec;
  readonly duration: { readonly intervalSeconds: number; readonly maxIterations: number };
  /** FixedSplit: whether a winner gets all traffic at the end (Progressive/BlueGreen always promote). */
  readonly promote: boolean;
  /** Seed of the experiment's random number generator: runs are reproducible. */
  readonly seed: number;
  /** Custom metrics (mock, rest, prometheus), usable by name in objectives and the reward. */
  readonly metrics: readonly MetricSpec[];
  readonly tasks: TasksSpec;
}

// ---------------------------------------------------------------- custom metrics and tasks

// Each source's and kind's spec type lives in its own file (control/metrics/
// *-source.ts, control/tasks/<kind>.ts), joined into MetricSpec and TaskSpec
// through the registries in control/metrics/base.ts and control/tasks/base.ts.
export { METRIC_TYPES } from './metrics/base.js';
export type { HttpQuerySpec, MetricSpec, MetricType } from './metrics/base.js';
export { TASK_CONDITIONS } from './tasks/base.js';
export type { TaskCondition, TaskKind, TaskSpec } from './tasks/base.js';

export interface TasksSpec {
  readonly start: readonly TaskSpec[];
  readonly loop: readonly TaskSpec[];
  readonly finish: readonly TaskSpec[];
}

export interface ExperimentDoc {
  readonly kind: 'Experiment';
  readonly name: string;
  readonly spec: ExperimentSpec;
}
