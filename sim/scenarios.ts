/**
 * The decision benchmark's scenarios and the policies each is run with.
 * Every scenario is 300 requests per iteration unless it says otherwise,
 * with Sluice's defaults: confidence 0.95, minSamples 100.
 *
 * `AA_GRID` holds the A/A cells the winner test's guarantee is measured on:
 * versions {2, 3, 5} × requests per iteration {100, 300, 3000} ×
 * iterations {40, 200}, run with the default algorithm only.
 */
import type { Scenario, Step } from './simulate.js';
import { iter8v2 } from './reference-policies.js';

export const ALGORITHMS = ['thompson', 'top-two', 'ucb', 'epsilon-greedy'] as const;
export const POLICIES = [...ALGORITHMS, 'uniform', 'iter8-v2'] as const;
export type PolicyName = (typeof POLICIES)[number];

export interface NamedScenario {
  readonly id: string;
  readonly title: string;
  readonly scenario: Scenario;
}

const versions = (n: number) => Array.from({ length: n }, (_, i) => ({ name: `v${i + 1}` }));

function abn(
  id: string,
  title: string,
  conversions: number[],
  extra: Partial<Scenario> = {},
  maxIterations = 40,
  spec: Record<string, unknown> = {},
): NamedScenario {
  return {
    id,
    title,
    scenario: {
      arms: conversions.map((c, i) => ({ name: `v${i + 1}`, conversion: c })),
      requestsPerIteration: 300,
      ...extra,
      experiment: {
        kind: 'Experiment',
        name: id,
        spec: {
          route: 'r',
          versions: versions(conversions.length),
          testingPattern: conversions.length === 2 ? 'A/B' : 'A/B/n',
          criteria: { reward: { metric: 'conversion-rate' } },
          duration: { intervalSeconds: 1, maxIterations },
          ...spec,
        },
      },
    },
  };
}

/** The A/A grid: every cell equal versions at 5%, the default algorithm. */
export const AA_GRID: readonly NamedScenario[] = [2, 3, 5].flatMap((k) =>
  [100, 300, 3000].flatMap((rpi) =>
    [40, 200].map((iters) =>
      abn(`aa-${k}v-${rpi}r-${iters}i`, `A/A grid: ${k} equal versions, ${rpi} requests per iteration, ${iters} iterations`, new Array(k).fill(0.05), { requestsPerIteration: rpi }, iters),
    ),
  ),
);

/** A/A scenarios that put something in the way of the verdict (besides the grid). */
export const AA_HARD: readonly NamedScenario[] = [
  abn('aa-drift', 'A/A/A, base rate 5% → 10% for every version at iteration 20', [0.05, 0.05, 0.05], { drift: { at: 20, factor: 2 } }),
  abn('aa-sticky-users', 'A/A/A, 300 sticky users with their own rates (Beta(1, 19), mean 5%)', [0.05, 0.05, 0.05], { users: { count: 300, a: 1, b: 19 } }),
  abn('aa-late-rewards', 'A/A/A, 3,000 sticky users, rewards posted by key 1–3 iterations later while weights move', [0.05, 0.05, 0.05], {
    users: { count: 3000, a: 1, b: 19 },
    rewardLag: [1, 3],
  }),
  abn('aa-revenue', 'A/A/A, reward-mean of skewed order values (5% convert, log-normal σ 1.5)', [0.05, 0.05, 0.05], { rewardSigma: 1.5 }, 40, {
    criteria: { reward: { metric: 'reward-mean' } },
  }),
  abn('aa-fixed-90-5-5', 'A/A/A, fixed split 90/5/5', [0.05, 0.05, 0.05], {}, 40, {
    deploymentPattern: 'FixedSplit',
    weights: { initial: { v1: 90, v2: 5, v3: 5 } },
  }),
];

function canary(id: string, title: string, candidate: { errorRate: number; latencyMs: number }, objective: Record<string, unknown>): NamedScenario {
  return {
    id,
    title,
    scenario: {
      arms: [
        { name: 'v1', errorRate: 0.005, latencyMs: 100 },
        { name: 'v2', ...candidate },
      ],
      requestsPerIteration: 300,
      experiment: {
        kind: 'Experiment',
        name: id,
        spec: {
          route: 'r',
          versions: versions(2),
          testingPattern: 'Canary',
          criteria: { objectives: [objective] },
          // 50/50: at 90/10 the candidate's 30 requests per iteration cannot settle a 30%-vs-20%
          // p95 question within 40 iterations (about 3 runs in 4 do; see bench/README.md).
          weights: { initial: { v1: 50, v2: 50 } },
          duration: { intervalSeconds: 1, maxIterations: 40 },
        },
      },
    },
  };
}

export const SCENARIOS: readonly NamedScenario[] = [
  // 200 iterations: an always-valid verdict needs ~18 of them here; the reference policies run all 200.
  abn('abn', 'A/B/n, conversion 5% / 8% / 5% (up to 200 iterations)', [0.05, 0.08, 0.05], {}, 200),
  abn('abn-40', 'A/B/n, conversion 5% / 8% / 5%, at most 40 iterations', [0.05, 0.08, 0.05]),
  abn('aaa', 'A/A/A, conversion 5% / 5% / 5%', [0.05, 0.05, 0.05]),
  canary('canary-bad', 'Canary, candidate error rate 5% vs error-rate <= 1%', { errorRate: 0.05, latencyMs: 100 }, { metric: 'error-rate', upperLimit: 0.01 }),
  canary('canary-good', 'Canary, candidate healthy (0.5% errors, same latency)', { errorRate: 0.005, latencyMs: 100 }, { metric: 'error-rate', upperLimit: 0.01 }),
  canary('latency-30', 'Canary, candidate p95 30% slower, limit 1.2 × baseline', { errorRate: 0.005, latencyMs: 130 }, { metric: 'latency-p95', upperLimit: 1.2, relativeTo: 'baseline' }),
  canary('latency-10', 'Canary, candidate p95 10% slower, limit 1.2 × baseline', { errorRate: 0.005, latencyMs: 110 }, { metric: 'latency-p95', upperLimit: 1.2, relativeTo: 'baseline' }),
  // 10 requests per iteration over 20 iterations: ~67 per version, below minSamples (100).
  abn('low-traffic', 'Low traffic: 10 requests per iteration, A/B/n 5/8/5', [0.05, 0.08, 0.05], { requestsPerIteration: 10 }, 20),
  abn('srm', 'SRM: 20% of each candidate\'s share misrouted to the baseline (5/8/5)', [0.05, 0.08, 0.05], { misroute: 0.2 }),
  ...AA_HARD,
];

/** The scenario as run by one policy: spec changes, and the step function. */
export function forPolicy(s: Scenario, policy: PolicyName): { scenario: Scenario; step?: Step } {
  const exp = s.experiment as { spec: Record<string, unknown> };
  if (policy === 'iter8-v2') return { scenario: s, step: iter8v2 };
  if (policy === 'uniform') {
    const n = s.arms.length;
    const even = Math.floor(100 / n);
    const initial = Object.fromEntries(s.arms.map((a, i) => [a.name, i === 0 ? 100 - even * (n - 1) : even]));
    const weights = { ...((exp.spec.weights as object) ?? {}), initial };
    return { scenario: { ...s, experiment: { ...exp, spec: { ...exp.spec, deploymentPattern: 'FixedSplit', weights } } } };
  }
  return { scenario: { ...s, experiment: { ...exp, spec: { ...exp.spec, deploymentPattern: 'Progressive', algorithm: policy } } } };
}
