/**
 * sim/ (not bench/, not control/): the decision simulator is shared by the tests and the decision benchmark, and is not shipped (not in tsconfig.build.json).
 *
 * A seeded simulation of one experiment: synthetic traffic per iteration,
 * split by the weights in force, counted the way the proxies count it (per
 * routing generation, per user bucket) and fed to the real `iterate` (the
 * same pure function the scheduler calls). No HTTP: thousands of runs in
 * seconds.
 *
 * What it can put in the way of a verdict: a base rate that drifts for every
 * version alike, sticky users whose own conversion rates differ, rewards
 * that arrive iterations after the request (credited to the version and
 * generation that served it, as the exposure log does), and misrouting.
 */
import { seededRandom } from '../common/random.js';
import type { Measurements, VersionMeasurement } from '../control/analysis-types.js';
import { iterate, pendingStatus, start, withGeneration, FINAL_STATES, type IterationInput } from '../control/lifecycle.js';
import type { ExperimentStatus } from '../control/status.js';
import { drawBeta } from '../control/posterior.js';
import type { ReplicaGenerations } from '../control/ports.js';
import { validateExperiment } from '../control/spec.js';
import type { ExperimentDoc } from '../control/spec-types.js';
import { LatencySketch } from '../common/sketch.js';
import { hashKey, initialSlots, reassignSlots, slotOfHash } from '../common/slots.js';
import { BUCKET_MASK, USER_BUCKETS, type GenerationSnapshot } from '../common/snapshots.js';

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
  /** Every arm's conversion rate is multiplied by `factor` from iteration `at` on (the same for all). */
  readonly drift?: { readonly at: number; readonly factor: number };
  /**
   * Sticky users: each request comes from one of `count` users (uniformly),
   * routed by its key's slot; a user converts at its own rate drawn from
   * Beta(a, b), scaled by its arm's conversion relative to the baseline's.
   */
  readonly users?: { readonly count: number; readonly a: number; readonly b: number };
  /**
   * A conversion's reward value: log-normal with this σ around 1 (revenue: a few large orders), so
   * `reward-mean` is judged on skewed values. Absent: every conversion is worth 1.
   */
  readonly rewardSigma?: number;
  /** Rewards arrive this many iterations after their request (uniform in [min, max]); needs users (rewards by key). */
  readonly rewardLag?: readonly [number, number];
  /** The experiment document (kind, name, spec), before defaults. */
  readonly experiment: Record<string, unknown>;
}

/** One iteration of a controller: Sluice's `iterate`, or a reference policy written for the benchmark. */
export type Step = (doc: ExperimentDoc, status: ExperimentStatus, input: IterationInput, now: string) => ExperimentStatus;

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
  /**
   * Late rewards are credited to the version and generation that served the
   * request (the exposure log's rule); this counts how many the old rule —
   * the version the key's slot maps to when the reward arrives — would have
   * credited to another version.
   */
  readonly misattributedBySlotNow: number;
  readonly lateRewards: number;
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
  rewardSum: number;
  rewardSumSq: number;
  requests: number;
  errors: number;
  keyless: number;
  latencySumMs: number;
  latencySumSqMs: number;
  latency: LatencySketch;
  conversions: number;
  bucketRequests: number[] | null;
  bucketConversions: number[] | null;
}

/** Counts of one generation, as a proxy keeps them. */
interface Gen {
  generation: number;
  requests: number[];
  keyless: number[];
  newKeys: number[];
  conversions: number[];
  rewardSum: number[];
  rewardSumSq: number[];
}

interface User {
  readonly hash: number;
  readonly rate: number;
  seen: boolean;
}

interface PendingReward {
  readonly at: number;
  readonly version: number;
  readonly generation: number;
  readonly user: number;
}

export function simulate(scenario: Scenario, seed: number, step: Step = iterate): RunResult {
  const doc: ExperimentDoc = validateExperiment({
    ...scenario.experiment,
    spec: { ...(scenario.experiment.spec as object), seed },
  });
  const rand = seededRandom(seed ^ 0x5bd1e995);
  const names = scenario.arms.map((a) => a.name);
  const k = names.length;
  const acc: Acc[] = scenario.arms.map(() => ({
    requests: 0, errors: 0, keyless: 0, latencySumMs: 0, latencySumSqMs: 0, latency: new LatencySketch(), conversions: 0, rewardSum: 0, rewardSumSq: 0,
    bucketRequests: null, bucketConversions: null,
  }));
  const conversionOf = (i: number, iteration: number) =>
    (scenario.arms[i]!.conversion ?? 0) * (scenario.drift && iteration >= scenario.drift.at ? scenario.drift.factor : 1);
  const bestConversion = Math.max(...scenario.arms.map((a) => a.conversion ?? 0));
  const served: Record<string, number> = Object.fromEntries(names.map((n) => [n, 0]));
  const users: User[] | null = scenario.users
    ? Array.from({ length: scenario.users.count }, (_, u) => ({ hash: hashKey(`user-${seed}-${u}`), rate: drawBeta(scenario.users!.a, scenario.users!.b, rand), seen: false }))
    : null;
  const userMean = scenario.users ? scenario.users.a / (scenario.users.a + scenario.users.b) : 1;
  const pending: PendingReward[] = [];
  let misattributedBySlotNow = 0;
  let lateRewards = 0;

  const gens: Gen[] = [];
  let generation = 1;
  const openGen = (g: number): Gen => {
    const zeros = () => new Array(k).fill(0);
    const x = { generation: g, requests: zeros(), keyless: zeros(), newKeys: zeros(), conversions: zeros(), rewardSum: zeros(), rewardSumSq: zeros() };
    gens.push(x);
    if (gens.length > 16) gens.shift();
    return x;
  };
  let status = withGeneration(start(pendingStatus(doc, 't0'), 't0'), generation);
  let gen = openGen(generation);
  let slots = initialSlots(names.map((n) => status.weights[n] ?? 0));
  let regret = 0;
  let movedEarly = false;
  let minSamplesAt: number | null = null;
  const minSamplesAtByVersion: Record<string, number> = {};
  const minSamples = doc.spec.criteria.minSamples;

  const convert = (i: number, bucket: number, iteration: number, user: number) => {
    if (scenario.rewardLag) {
      const [lo, hi] = scenario.rewardLag;
      pending.push({ at: iteration + lo + Math.floor(rand() * (hi - lo + 1)), version: i, generation: gen.generation, user });
      return;
    }
    credit(i, gen, bucket);
  };
  const value = (): number => {
    if (!scenario.rewardSigma) return 1;
    const z = Math.sqrt(-2 * Math.log(Math.max(rand(), 1e-300))) * Math.cos(2 * Math.PI * rand());
    return Math.exp(scenario.rewardSigma * z);
  };
  const credit = (i: number, g: Gen | undefined, bucket: number) => {
    const a = acc[i]!;
    const v = value();
    a.conversions++;
    a.rewardSum += v;
    a.rewardSumSq += v * v;
    if (bucket >= 0 && a.bucketConversions) a.bucketConversions[bucket]!++;
    if (g) {
      g.conversions[i]!++;
      g.rewardSum[i]! += v;
      g.rewardSumSq[i]! += v * v;
    }
  };

  while (!FINAL_STATES.has(status.state) && status.iteration < doc.spec.duration.maxIterations) {
    const iteration = status.iteration + 1;
    const weights = names.map((n) => status.weights[n] ?? 0);
    // Rewards of earlier requests that arrive now: credited to the version and generation that served them.
    for (let r = pending.length - 1; r >= 0; r--) {
      const p = pending[r]!;
      if (p.at > iteration) continue;
      pending.splice(r, 1);
      lateRewards++;
      const u = users![p.user]!;
      if (slots[slotOfHash(u.hash)] !== p.version) misattributedBySlotNow++;
      credit(p.version, gens.find((g) => g.generation === p.generation), u.hash & BUCKET_MASK);
    }
    if (users !== null) {
      for (let r = 0; r < scenario.requestsPerIteration; r++) {
        const ui = Math.floor(rand() * users.length);
        const u = users[ui]!;
        const i = slots[slotOfHash(u.hash)]!;
        const a = acc[i]!;
        const bucket = u.hash & BUCKET_MASK;
        a.requests++;
        gen.requests[i]!++;
        // A key never seen before is a fresh draw of the hash: the sticky SRM sample (a returning user is not).
        if (!u.seen) {
          u.seen = true;
          gen.newKeys[i]!++;
        }
        a.bucketRequests ??= new Array(USER_BUCKETS).fill(0);
        a.bucketConversions ??= new Array(USER_BUCKETS).fill(0);
        a.bucketRequests[bucket]!++;
        served[names[i]!]!++;
        // The user's own propensity (mean 1) times its arm's rate.
        if (rand() < Math.min(1, (u.rate / userMean) * conversionOf(i, iteration))) convert(i, bucket, iteration, ui);
        regret += bestConversion - (scenario.arms[i]!.conversion ?? 0);
      }
    } else {
      const counts = split(scenario.requestsPerIteration, weights, rand);
      if (scenario.misroute) {
        for (let i = 1; i < counts.length; i++) {
          const moved = binomial(counts[i]!, scenario.misroute, rand);
          counts[i]! -= moved;
          counts[0]! += moved;
        }
      }
      counts.forEach((n, i) => {
        const arm = scenario.arms[i]!;
        const a = acc[i]!;
        a.requests += n;
        a.keyless += n;
        gen.requests[i]! += n;
        gen.keyless[i]! += n;
        a.errors += binomial(n, arm.errorRate ?? 0, rand);
        const conv = binomial(n, conversionOf(i, iteration), rand);
        if (scenario.rewardSigma) for (let c = 0; c < conv; c++) credit(i, gen, -1);
        else {
          a.conversions += conv;
          a.rewardSum += conv;
          a.rewardSumSq += conv;
          gen.conversions[i]! += conv;
          gen.rewardSum[i]! += conv;
          gen.rewardSumSq[i]! += conv;
        }
        if (arm.latencyMs !== undefined) {
          for (let r = 0; r < n; r++) {
            const z = Math.sqrt(-2 * Math.log(Math.max(rand(), 1e-300))) * Math.cos(2 * Math.PI * rand());
            const ms = arm.latencyMs * Math.exp(0.5 * z);
            a.latency.add(ms);
            a.latencySumMs += ms;
            a.latencySumSqMs += ms * ms;
          }
        }
        served[arm.name]! += n;
        regret += n * (bestConversion - (arm.conversion ?? 0));
      });
    }
    const measurements: Measurements = Object.fromEntries(names.map((n, i) => [n, toMeasurement(acc[i]!)]));
    const generations: ReplicaGenerations[] = [{ replica: 'sim', generations: gens.map((g) => snapshotOf(g, names)) }];
    const before = status.weights;
    const ready = acc.every((a) => a.requests >= minSamples);
    const decided = step(doc, status, { measurements, generations }, `t${iteration}`);
    if (FINAL_STATES.has(decided.state)) status = decided;
    else {
      generation++;
      status = withGeneration(decided, generation);
      gen = openGen(generation);
      slots = reassignSlots(slots, names.map((n) => status.weights[n] ?? 0));
    }
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
    misattributedBySlotNow,
    lateRewards,
  };
}

function snapshotOf(g: Gen, names: readonly string[]): GenerationSnapshot {
  const named = (xs: number[]) => Object.fromEntries(names.map((n, i) => [n, xs[i]!]));
  const conversions = named(g.conversions);
  return {
    generation: g.generation,
    requests: named(g.requests),
    keyless: named(g.keyless),
    newKeys: named(g.newKeys),
    rewards: conversions,
    conversions,
    rewardSum: named(g.rewardSum),
    rewardSumSq: named(g.rewardSumSq),
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
    rewards: a.conversions,
    rewardSum: a.rewardSum,
    rewardSumSq: a.rewardSumSq,
    conversions: a.conversions,
    // Bucket reward sums are counted as conversions (value 1): the user scenarios use conversion-rate.
    ...(a.bucketRequests ? { buckets: { requests: [...a.bucketRequests], conversions: [...a.bucketConversions!], rewardSum: [...a.bucketConversions!] } } : {}),
    mirrorCompared: 0,
    mirrorMismatch: 0,
  };
}
