/**
 * A seeded simulation of one experiment: synthetic traffic per iteration,
 * split by the weights in force, fed to the real `iterate` (the same pure
 * function the scheduler calls). No HTTP: thousands of runs in seconds.
 */
import { seededRandom } from '../../common/random.js';
import type { Measurements, VersionMeasurement } from '../../control/analysis-types.js';
import { iterate, pendingStatus, start, FINAL_STATES, type ExperimentStatus } from '../../control/lifecycle.js';
import { validateExperiment } from '../../control/spec.js';
import type { ExperimentDoc } from '../../control/spec-types.js';
import { LatencySketch } from '../../proxy/sketch.js';

export interface Arm {
  readonly name: string;
  readonly conversion?: number;
  readonly errorRate?: number;
  /** Median latency in ms; latencies are log-normal with sigma 0.5 around it. */
  readonly latencyMs?: number;
}

export interface Scenario {
  readonly arms: readonly Arm[];
  readonly requestsPerIteration: number;
  /** Share of each non-baseline arm's keyless traffic that is misrouted to the baseline (SRM). */
  readonly misroute?: number;
  /** The experiment document (kind, name, spec), before defaults. */
  readonly experiment: Record<string, unknown>;
}

/** One iteration of a controller: Sluice's `iterate`, or a reference policy written for the benchmark. */
export type Step = (
  doc: ExperimentDoc,
  status: ExperimentStatus,
  measurements: Measurements,
  keylessDelta: Readonly<Record<string, number>>,
  now: string,
) => ExperimentStatus;

export interface RunResult {
  readonly status: ExperimentStatus;
  readonly winner: string | null;
  readonly state: string;
  readonly iterations: number;
  /** Requests served per version over the whole run. */
  readonly served: Readonly<Record<string, number>>;
  /** Expected conversions lost against always serving the best arm. */
  readonly regret: number;
  readonly srmFlagged: number;
  /** Whether the weights ever moved before every version had minSamples. */
  readonly movedBeforeMinSamples: boolean;
  /** Iteration at which every version first had minSamples (null: never). */
  readonly minSamplesAt: number | null;
  /** Per version: iteration at which it first had minSamples (absent: never). */
  readonly minSamplesAtByVersion: Readonly<Record<string, number>>;
}

function binomial(n: number, p: number, rand: () => number): number {
  if (p <= 0 || n === 0) return 0;
  if (p >= 1) return n;
  if (p > 0.5) return n - binomial(n, 1 - p, rand);
  if (n * p < 30) {
    // Inversion: walk the exact CDF. O(n·p) steps, exact tails (the SRM test lives in them).
    const q = 1 - p;
    let pmf = Math.pow(q, n);
    let cdf = pmf;
    const u = rand();
    let k = 0;
    while (u > cdf && k < n) {
      pmf *= ((n - k) / (k + 1)) * (p / q);
      k++;
      cdf += pmf;
    }
    return k;
  }
  // Large n·p: the normal approximation with continuity correction is accurate here.
  const z = Math.sqrt(-2 * Math.log(Math.max(rand(), 1e-300))) * Math.cos(2 * Math.PI * rand());
  return Math.min(n, Math.max(0, Math.round(n * p + Math.sqrt(n * p * (1 - p)) * z)));
}

/** Splits n requests over versions by integer-percent weights (a multinomial draw, as the proxy's slots do). */
function split(n: number, weights: readonly number[], rand: () => number): number[] {
  const out = weights.map(() => 0);
  let left = n;
  let mass = 100;
  for (let i = 0; i < weights.length; i++) {
    const w = weights[i]!;
    const k = i === weights.length - 1 ? left : binomial(left, mass > 0 ? w / mass : 0, rand);
    out[i] = k;
    left -= k;
    mass -= w;
  }
  return out;
}

interface Acc {
  requests: number;
  errors: number;
  keyless: number;
  latencySumMs: number;
  latencySumSqMs: number;
  latency: LatencySketch;
  rewards: number;
}

export function simulate(scenario: Scenario, seed: number, step: Step = iterate): RunResult {
  const doc: ExperimentDoc = validateExperiment({
    ...scenario.experiment,
    spec: { ...(scenario.experiment.spec as object), seed },
  });
  const rand = seededRandom(seed ^ 0x5bd1e995);
  const names = scenario.arms.map((a) => a.name);
  const acc: Acc[] = scenario.arms.map(() => ({ requests: 0, errors: 0, keyless: 0, latencySumMs: 0, latencySumSqMs: 0, latency: new LatencySketch(), rewards: 0 }));
  const bestConversion = Math.max(...scenario.arms.map((a) => a.conversion ?? 0));
  const served: Record<string, number> = Object.fromEntries(names.map((n) => [n, 0]));
  let status = start(pendingStatus(doc, 't0'), 't0');
  let regret = 0;
  let movedEarly = false;
  let minSamplesAt: number | null = null;
  const minSamplesAtByVersion: Record<string, number> = {};
  const minSamples = doc.spec.criteria.minSamples;

  while (!FINAL_STATES.has(status.state) && status.iteration < doc.spec.duration.maxIterations) {
    const weights = names.map((n) => status.weights[n] ?? 0);
    const counts = split(scenario.requestsPerIteration, weights, rand);
    if (scenario.misroute) {
      for (let i = 1; i < counts.length; i++) {
        const moved = binomial(counts[i]!, scenario.misroute, rand);
        counts[i]! -= moved;
        counts[0]! += moved;
      }
    }
    const keylessDelta: Record<string, number> = {};
    counts.forEach((n, i) => {
      const arm = scenario.arms[i]!;
      const a = acc[i]!;
      a.requests += n;
      a.keyless += n;
      a.errors += binomial(n, arm.errorRate ?? 0, rand);
      a.rewards += binomial(n, arm.conversion ?? 0, rand);
      const median = arm.latencyMs ?? 10;
      for (let r = 0; r < n; r++) {
        const z = Math.sqrt(-2 * Math.log(Math.max(rand(), 1e-300))) * Math.cos(2 * Math.PI * rand());
        const ms = median * Math.exp(0.5 * z);
        a.latency.add(ms);
        a.latencySumMs += ms;
        a.latencySumSqMs += ms * ms;
      }
      served[arm.name]! += n;
      keylessDelta[arm.name] = n;
      regret += n * (bestConversion - (arm.conversion ?? 0));
    });
    const measurements: Measurements = Object.fromEntries(names.map((n, i) => [n, toMeasurement(acc[i]!)]));
    const before = status.weights;
    const ready = acc.every((a) => a.requests >= minSamples);
    status = step(doc, status, measurements, keylessDelta, `t${status.iteration + 1}`);
    acc.forEach((a, i) => {
      if (a.requests >= minSamples && minSamplesAtByVersion[names[i]!] === undefined) minSamplesAtByVersion[names[i]!] = status.iteration;
    });
    if (!ready && !FINAL_STATES.has(status.state) && JSON.stringify(before) !== JSON.stringify(status.weights)) movedEarly = true;
    if (ready && minSamplesAt === null) minSamplesAt = status.iteration;
  }
  return {
    status,
    winner: status.winner,
    state: status.state,
    iterations: status.iteration,
    served,
    regret,
    srmFlagged: status.srmFlagged,
    movedBeforeMinSamples: movedEarly,
    minSamplesAt,
    minSamplesAtByVersion,
  };
}

function toMeasurement(a: Acc): VersionMeasurement {
  return {
    requests: a.requests,
    errors: a.errors,
    keyless: a.keyless,
    latencySumMs: a.latencySumMs,
    latencySumSqMs: a.latencySumSqMs,
    latency: a.latency,
    rewards: a.rewards,
    rewardSum: a.rewards,
    rewardSumSq: a.rewards,
    mirrorCompared: 0,
    mirrorMismatch: 0,
  };
}
