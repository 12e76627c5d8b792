/**
 * The validated shape of a `kind: Experiment` document (see docs/contract.md
 * and docs/experiments.md). `validateExperiment` (spec.ts) produces it, deeply frozen;
 * the decision functions and the scheduler trust it.
 */

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

// ---------------------------------------------------------------- custom metrics

export const METRIC_SOURCES = ['mock', 'rest', 'prometheus'] as const;

/**
 * rate: a share in 0..1 of `sampleSize` trials (posterior: Beta);
 * mean: an average over `sampleSize` observations (posterior: Student-t when
 * a `stdDev` is known, else a point check); count: known exactly.
 */
export const METRIC_TYPES = ['rate', 'mean', 'count'] as const;
export type MetricType = (typeof METRIC_TYPES)[number];

interface MetricSpecBase {
  /** Unique among built-in and custom metrics. */
  readonly name: string;
  readonly type: MetricType;
  /** Name of the metric (built-in such as request-count, or custom) giving the number of observations behind this one. */
  readonly sampleSize: string | null;
  /** mean only: name of the metric giving the standard deviation of one observation. */
  readonly stdDev: string | null;
}

export interface MockVersionValue {
  /** The true value the noisy readings converge to. */
  readonly mean: number;
  /** Standard deviation of one observation (mean type); default |mean|, or 1 when mean is 0. */
  readonly stdDev: number | null;
}

export interface MockMetricSpec extends MetricSpecBase {
  readonly source: 'mock';
  /** By version name. */
  readonly values: Readonly<Record<string, MockVersionValue>>;
  /** Observations per second of elapsed time: the count grows with it, the noise shrinks as 1/sqrt(count). */
  readonly countPerSecond: number;
}

/** Shared by rest and prometheus: how to ask and how long to wait. */
export interface HttpQuerySpec {
  /** Template (see control/metrics/template.ts). */
  readonly url: string;
  readonly method: 'GET' | 'POST';
  /** Templates by header name. */
  readonly headers: Readonly<Record<string, string>>;
  /** Template; null = no body. */
  readonly body: string | null;
  /** Per-version template variables: {{params.NAME}}. */
  readonly params: Readonly<Record<string, Readonly<Record<string, string>>>>;
  readonly timeoutSeconds: number;
  /** Further attempts after a failed one, with exponential backoff. */
  readonly retries: number;
}

export interface RestMetricSpec extends MetricSpecBase, HttpQuerySpec {
  readonly source: 'rest';
  /** Exactly one of jq and jsonPath is set. */
  readonly jq: string | null;
  readonly jsonPath: string | null;
}

export interface PrometheusMetricSpec extends MetricSpecBase, HttpQuerySpec {
  readonly source: 'prometheus';
  /** PromQL template; the query must return one sample (an empty result is "no data"). */
  readonly query: string;
}

export type MetricSpec = MockMetricSpec | RestMetricSpec | PrometheusMetricSpec;

// ---------------------------------------------------------------- tasks

export const TASK_KINDS = ['readiness', 'load', 'notify', 'github', 'exec'] as const;
export type TaskKind = (typeof TASK_KINDS)[number];
export const TASK_CONDITIONS = ['success', 'failure', 'always'] as const;
export type TaskCondition = (typeof TASK_CONDITIONS)[number];

interface TaskSpecBase {
  /** Shown in status; default `<phase>-<index>-<task>`, e.g. finish-0-notify. */
  readonly name: string;
  /** finish tasks: success = Completed, failure = Failed or Aborted; always elsewhere. */
  readonly if: TaskCondition;
  /** fail: a failed task fails the experiment; continue: it is recorded and the experiment goes on. */
  readonly onError: 'fail' | 'continue';
  /** loop tasks: run every this many iterations (1 = each). */
  readonly every: number;
  readonly timeoutSeconds: number;
}

export interface ReadinessTaskSpec extends TaskSpecBase {
  readonly task: 'readiness';
  /** Health URL per version; default: the version's URL + `path`. */
  readonly urls: Readonly<Record<string, string>>;
  readonly path: string;
  readonly intervalSeconds: number;
}

export interface LoadTaskSpec extends TaskSpecBase {
  readonly task: 'load';
  /** Where to send: default Sluice's own proxy listener (all-in-one mode). */
  readonly url: string | null;
  /** Path and query of each request. */
  readonly path: string;
  readonly qps: number;
  /** Exactly one of durationSeconds and requests is set. */
  readonly durationSeconds: number | null;
  readonly requests: number | null;
  readonly concurrency: number;
  readonly method: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string | null;
  readonly bodyFile: string | null;
  /** Empty: through the route (split by its weights); else qps for each listed version, pinned. */
  readonly versions: readonly string[];
}

export interface NotifyTaskSpec extends TaskSpecBase {
  readonly task: 'notify';
  /** Template; may use {{env.NAME}}. */
  readonly url: string;
  readonly format: 'json' | 'slack';
  readonly headers: Readonly<Record<string, string>>;
}

export interface GithubTaskSpec extends TaskSpecBase {
  readonly task: 'github';
  /** owner/name */
  readonly repository: string;
  readonly mode: 'dispatch' | 'pullRequest';
  readonly apiUrl: string;
  /** Environment variable holding the token. */
  readonly tokenEnv: string;
  /** dispatch: event_type. */
  readonly eventType: string;
  /** pullRequest: the file to change, its new content (template), branches and texts. */
  readonly path: string | null;
  readonly content: string | null;
  readonly base: string | null;
  readonly branch: string | null;
  readonly title: string | null;
}

export interface ExecTaskSpec extends TaskSpecBase {
  readonly task: 'exec';
  /** argv; run without a shell unless `shell` is true (then command[0] is the script). */
  readonly command: readonly string[];
  readonly shell: boolean;
  readonly env: Readonly<Record<string, string>>;
  readonly cwd: string | null;
}

export type TaskSpec = ReadinessTaskSpec | LoadTaskSpec | NotifyTaskSpec | GithubTaskSpec | ExecTaskSpec;

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
