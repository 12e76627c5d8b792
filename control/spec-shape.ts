/**
 * The shape of an Experiment document — which fields each part has, its
 * enumerations and bounds — in one place. The validators (spec.ts,
 * tasks/validate.ts, metrics/validate.ts) read their field lists from here,
 * and so does the Kubernetes CRD schema (experiment-crd.ts): a field added to
 * one is in the other, and test/experiment-crd.test.ts fails when they drift.
 */
export const EXPERIMENT_KEYS = ['kind', 'name', 'spec'] as const;
export const SPEC_KEYS = [
  'route', 'versions', 'testingPattern', 'deploymentPattern', 'algorithm', 'criteria',
  'weights', 'duration', 'promote', 'seed', 'metrics', 'tasks',
] as const;
export const VERSION_KEYS = ['name', 'url'] as const;
export const CRITERIA_KEYS = ['objectives', 'reward', 'confidence', 'minSamples'] as const;
export const OBJECTIVE_KEYS = ['metric', 'upperLimit', 'lowerLimit', 'relativeTo'] as const;
export const REWARD_KEYS = ['metric', 'preferredDirection'] as const;
export const WEIGHTS_KEYS = ['initial', 'maxCandidateWeight', 'maxCandidateWeightIncrement'] as const;
export const DURATION_KEYS = ['intervalSeconds', 'maxIterations'] as const;

export const TASK_PHASES = ['start', 'loop', 'finish'] as const;
export const TASK_BASE_KEYS = ['task', 'name', 'if', 'onError', 'every', 'timeoutSeconds'] as const;
export const TASK_ON_ERROR = ['fail', 'continue'] as const;
export const METRIC_BASE_KEYS = ['name', 'type', 'source', 'sampleSize', 'stdDev'] as const;

export const REWARD_METRICS = ['conversion-rate', 'reward-mean'] as const;
export const DIRECTIONS = ['High', 'Low'] as const;
export const RELATIVE_TO = ['baseline'] as const;

/** Names (experiments, versions, routes, tasks, metrics): a DNS label, so an Experiment's name is a Kubernetes name too. */
export const MAX_NAME = 63;
export const MAX_INTERVAL_SECONDS = 86_400; // setTimeout overflows (and fires at once) past ~24.8 days
export const MAX_ITERATIONS = 10_000;
export const MAX_SEED = 0xffff_ffff;
/** criteria.confidence lies strictly between these. */
export const CONFIDENCE_RANGE = [0.5, 1] as const;
