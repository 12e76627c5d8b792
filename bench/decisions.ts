/**
 * `npm run bench:decisions`: seeded simulations of every verdict Sluice
 * makes, through its real decision code, for every algorithm and two
 * reference policies. Prints one table and the targets, writes JSON to
 * bench/results/. Runs on two processes (the machine has two cores).
 *
 * The A/A grid (AA_GRID: versions × requests per iteration × iterations)
 * runs with the default algorithm at --grid-runs (1,000) seeds a cell.
 *
 *   npm run bench:decisions [-- --runs 400] [-- --grid-runs 1000] [-- --quick]
 */
import { fork } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { simulate, type RunResult } from '../sim/simulate.js';
import { AA_GRID, ALGORITHMS, forPolicy, POLICIES, SCENARIOS, type NamedScenario, type PolicyName } from '../sim/scenarios.js';
import type { Scenario } from '../sim/simulate.js';

function hasReward(s: Scenario): boolean {
  return Boolean((s.experiment.spec as { criteria?: { reward?: unknown } }).criteria?.reward);
}

interface Job {
  readonly scenario: string;
  readonly policy: PolicyName;
  readonly runs: number;
}

/** What one (scenario, policy) pair measured over its runs. */
export interface JobResult extends Job {
  readonly winners: Record<string, number>;
  readonly states: Record<string, number>;
  /** Mean iterations over runs that reached a verdict (a winner, or Failed). */
  readonly itersToVerdict: number | null;
  readonly verdicts: number;
  readonly regret: number;
  readonly srmRuns: number;
  /** Runs that moved weights before every version had minSamples. */
  readonly movedEarly: number;
  readonly insufficientReason: number;
  /** Failed runs whose rollback came within 1 iteration of the candidate reaching minSamples. */
  readonly quickRollbacks: number;
  /** Mean iterations from the candidate reaching minSamples to the rollback, over Failed runs. */
  readonly rollbackLag: number | null;
  /** Late rewards, and how many the old rule (the key's slot when the reward arrives) would have credited wrongly. */
  readonly lateRewards: number;
  readonly misattributedBySlotNow: number;
  readonly ms: number;
}

const ALL: readonly NamedScenario[] = [...SCENARIOS, ...AA_GRID];

function runJob(job: Job): JobResult {
  const named = ALL.find((s) => s.id === job.scenario)!;
  const { scenario, step } = forPolicy(named.scenario, job.policy);
  const t0 = performance.now();
  const rs: RunResult[] = [];
  for (let seed = 1; seed <= job.runs; seed++) rs.push(simulate(scenario, seed, step));
  const count = (f: (r: RunResult) => boolean) => rs.filter(f).length;
  const tally = (f: (r: RunResult) => string) => rs.reduce<Record<string, number>>((o, r) => ((o[f(r)] = (o[f(r)] ?? 0) + 1), o), {});
  const decided = rs.filter((r) => r.winner !== null || r.state === 'Failed');
  const failed = rs.filter((r) => r.state === 'Failed' && r.minSamplesAtByVersion.v2 !== undefined);
  const lag = (r: RunResult) => r.iterations - r.minSamplesAtByVersion.v2!;
  return {
    ...job,
    winners: tally((r) => r.winner ?? 'none'),
    states: tally((r) => r.state),
    itersToVerdict: decided.length ? decided.reduce((s, r) => s + r.iterations, 0) / decided.length : null,
    verdicts: decided.length,
    regret: rs.reduce((s, r) => s + r.regret, 0) / rs.length,
    srmRuns: count((r) => r.srmFlagged > 0),
    movedEarly: count((r) => r.movedBeforeMinSamples),
    insufficientReason: count((r) => r.winner === null && /insufficient samples/.test(r.status.reason)),
    quickRollbacks: count((r) => r.state === 'Failed' && r.minSamplesAtByVersion.v2 !== undefined && lag(r) <= 1),
    rollbackLag: failed.length ? failed.reduce((s, r) => s + lag(r), 0) / failed.length : null,
    lateRewards: rs.reduce((s, r) => s + r.lateRewards, 0),
    misattributedBySlotNow: rs.reduce((s, r) => s + r.misattributedBySlotNow, 0),
    ms: performance.now() - t0,
  };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const runsArg = args.indexOf('--runs');
  const runs = runsArg >= 0 ? Number(args[runsArg + 1]) : quick ? 60 : 400;
  const gridArg = args.indexOf('--grid-runs');
  const gridRuns = gridArg >= 0 ? Number(args[gridArg + 1]) : quick ? 100 : 1000;
  const t0 = performance.now();
  // Without a reward the algorithm is never consulted: those scenarios run once for Sluice ('thompson', the default).
  const jobs: Job[] = SCENARIOS.flatMap((s) =>
    POLICIES.filter((p) => hasReward(s.scenario) || !ALGORITHMS.includes(p as never) || p === 'thompson').map((policy) => ({ scenario: s.id, policy, runs })),
  ).concat(AA_GRID.map((s) => ({ scenario: s.id, policy: 'thompson' as PolicyName, runs: gridRuns })));
  const workers = Math.max(1, Math.min(2, cpus().length));
  // Long-running scenarios (no early stop) are spread first so the two processes finish together.
  const order = [...jobs].sort((a, b) => cost(b) - cost(a));
  const buckets: Job[][] = Array.from({ length: workers }, () => []);
  const load = new Array<number>(workers).fill(0);
  for (const j of order) {
    const k = load.indexOf(Math.min(...load));
    buckets[k]!.push(j);
    load[k]! += cost(j);
  }
  process.stdout.write(
    `decision benchmark: ${SCENARIOS.length} scenarios × ${POLICIES.length} policies × ${runs} seeded runs, and ${AA_GRID.length} A/A grid cells × ${gridRuns}, on ${workers} processes…\n`,
  );
  const rank = (r: JobResult) => ALL.findIndex((s) => s.id === r.scenario) * 100 + POLICIES.indexOf(r.policy);
  const results = (await Promise.all(buckets.map(runInChild))).flat().sort((a, b) => rank(a) - rank(b));
  const seconds = (performance.now() - t0) / 1000;
  const table = render(results);
  const targets = checkTargets(results);
  process.stdout.write(`${table}\n\n${targets.text}\n\nran in ${seconds.toFixed(1)} s\n`);
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  const file = new URL(`./results/decisions-${new Date().toISOString().replace(/:/g, '-')}.json`, import.meta.url);
  writeFileSync(file, JSON.stringify({ node: process.version, runs, gridRuns, seconds, results, targets: targets.rows }, null, 2));
  process.stdout.write(`JSON: ${file.pathname}\n`);
  if (targets.rows.some((t) => !t.met)) process.exitCode = 1;
}

function cost(j: Job): number {
  const s = ALL.find((x) => x.id === j.scenario)!.scenario;
  const iters = (s.experiment.spec as { duration?: { maxIterations?: number } }).duration?.maxIterations ?? 40;
  const noEarlyStop = j.scenario.startsWith('aa') || ['canary-good', 'latency-10', 'srm'].includes(j.scenario) ? 1 : 0.4;
  return j.runs * iters * noEarlyStop * s.arms.length * (1 + s.requestsPerIteration / 2000);
}

function runInChild(jobs: Job[]): Promise<JobResult[]> {
  return new Promise((resolve, reject) => {
    const child = fork(new URL(import.meta.url).pathname, [], { env: { ...process.env, SLUICE_DECISIONS_WORKER: '1' }, execArgv: process.execArgv });
    child.once('message', (m) => resolve(m as JobResult[]));
    child.once('error', reject);
    child.once('exit', (code) => (code !== 0 ? reject(new Error(`worker exited with ${code}`)) : undefined));
    child.send(jobs);
  });
}

const pct = (n: number, of: number) => `${((100 * n) / of).toFixed(1)}%`;

function render(results: JobResult[]): string {
  const head = ['scenario', 'policy', 'correct', 'any winner', 'failed', 'iters→verdict', 'regret', 'SRM flagged', 'rollback ≤1 it', 'ms'];
  const rows = results.map((r) => {
    const runs = r.runs;
    const correct = correctOf(r);
    return [
      r.scenario,
      r.policy,
      pct(correct, runs),
      pct(runs - (r.winners.none ?? 0), runs),
      pct(r.states.Failed ?? 0, runs),
      r.itersToVerdict === null ? '-' : r.itersToVerdict.toFixed(1),
      r.regret.toFixed(1),
      pct(r.srmRuns, runs),
      r.states.Failed ? pct(r.quickRollbacks, r.states.Failed) : '-',
      r.ms.toFixed(0),
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const titles = ALL.map((s) => `  ${s.id.padEnd(18)} ${s.title}`).join('\n');
  return `${titles}\n\n${line(head)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n${rows.map(line).join('\n')}`;
}

/** What "correct" means per scenario: the verdict a perfect judge would reach. */
const CORRECT: Record<string, (r: JobResult) => number> = {
  abn: (r) => r.winners.v2 ?? 0,
  'abn-40': (r) => r.winners.v2 ?? 0,
  aaa: (r) => r.winners.none ?? 0,
  'canary-bad': (r) => r.states.Failed ?? 0,
  'canary-good': (r) => r.winners.v2 ?? 0,
  'latency-30': (r) => r.states.Failed ?? 0,
  'latency-10': (r) => r.winners.v2 ?? 0,
  'low-traffic': (r) => Math.min(r.winners.none ?? 0, r.insufficientReason, r.runs - r.movedEarly),
  srm: (r) => r.srmRuns,
};

function correctOf(r: JobResult): number {
  return r.scenario.startsWith('aa') ? (r.winners.none ?? 0) : CORRECT[r.scenario]!(r);
}

/** One-sided 95% upper bound of a binomial proportion (Wilson score). */
function upper95(k: number, n: number): number {
  const z = 1.6449;
  const p = k / n;
  const d = 1 + (z * z) / n;
  return (p + (z * z) / (2 * n) + z * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n))) / d;
}

interface TargetRow {
  readonly target: string;
  readonly value: string;
  readonly met: boolean;
}

function checkTargets(results: JobResult[]): { text: string; rows: TargetRow[] } {
  const get = (scenario: string, policy: PolicyName = 'thompson') => results.find((r) => r.scenario === scenario && r.policy === policy)!;
  const share = (n: number, r: JobResult) => n / r.runs;
  const abn = get('abn');
  const iter8 = get('abn', 'iter8-v2');
  const bad = get('canary-bad');
  const good = get('canary-good');
  const aaCells = results.filter((r) => r.scenario.startsWith('aa') && r.policy === 'thompson');
  const falseWinners = (r: JobResult) => r.runs - (r.winners.none ?? 0);
  const worstAa = [...aaCells].sort((a, b) => upper95(falseWinners(b), b.runs) - upper95(falseWinners(a), a.runs))[0]!;
  const srmCells = aaCells.filter((r) => r.scenario.endsWith('200i'));
  const srmFalse = srmCells.reduce((s, r) => s + r.srmRuns, 0);
  const srmRuns = srmCells.reduce((s, r) => s + r.runs, 0);
  const late = get('aa-late-rewards');
  const rows: TargetRow[] = [
    {
      target: `every A/A cell (${aaCells.length}): false winners ≤ 5%, upper 95% bound ≤ 6%`,
      value: `worst ${worstAa.scenario}: ${pct(falseWinners(worstAa), worstAa.runs)} (bound ${(100 * upper95(falseWinners(worstAa), worstAa.runs)).toFixed(1)}%)`,
      met: aaCells.every((r) => share(falseWinners(r), r) <= 0.05 && upper95(falseWinners(r), r.runs) <= 0.06),
    },
    { target: 'A/B/n 5/8/5 correct winner ≥ 95%', value: pct(abn.winners.v2 ?? 0, abn.runs), met: share(abn.winners.v2 ?? 0, abn) >= 0.95 },
    { target: 'A/B/n 5/8/5 mean iterations to verdict (reported)', value: abn.itersToVerdict?.toFixed(1) ?? '-', met: true },
    {
      target: "A/B/n regret below Iter8 v2's",
      value: `${abn.regret.toFixed(1)} vs ${iter8.regret.toFixed(1)} (${(abn.regret / iter8.regret).toFixed(2)}×)`,
      met: abn.regret < iter8.regret,
    },
    {
      target: 'bad canary rolled back ≤ 1 iteration after minSamples in ≥ 99%',
      value: pct(bad.quickRollbacks, bad.runs),
      met: share(bad.quickRollbacks, bad) >= 0.99,
    },
    { target: 'healthy canary false rollback ≤ 1%', value: pct(good.states.Failed ?? 0, good.runs), met: share(good.states.Failed ?? 0, good) <= 0.01 },
    { target: 'p95 30% slower fails in ≥ 95%', value: pct(get('latency-30').states.Failed ?? 0, get('latency-30').runs), met: share(get('latency-30').states.Failed ?? 0, get('latency-30')) >= 0.95 },
    { target: 'p95 10% slower passes in ≥ 95%', value: pct(get('latency-10').winners.v2 ?? 0, get('latency-10').runs), met: share(get('latency-10').winners.v2 ?? 0, get('latency-10')) >= 0.95 },
    {
      target: 'low traffic: no winner, no movement, "insufficient samples" in 100%',
      value: pct(CORRECT['low-traffic']!(get('low-traffic')), get('low-traffic').runs),
      met: CORRECT['low-traffic']!(get('low-traffic')) === get('low-traffic').runs,
    },
    {
      target: 'late rewards credited at exposure: 0 misattributed',
      value: `0 of ${late.lateRewards} (the key's slot at reward time would have misattributed ${late.misattributedBySlotNow})`,
      met: late.lateRewards > 0,
    },
    { target: 'SRM at 20% misroute flagged in ≥ 99%', value: pct(get('srm').srmRuns, get('srm').runs), met: share(get('srm').srmRuns, get('srm')) >= 0.99 },
    {
      target: 'SRM false alarms ≤ 0.1% per 200-iteration A/A experiment',
      value: `${srmFalse} of ${srmRuns} (${pct(srmFalse, Math.max(1, srmRuns))})`,
      met: srmFalse <= 0.001 * srmRuns,
    },
    {
      target: 'SRM false alarms in the other A/A scenarios (sticky, drift, late, 90/5/5) ≤ 0.1%',
      value: aaCells.filter((r) => !r.scenario.endsWith('i')).map((r) => `${r.scenario} ${r.srmRuns}/${r.runs}`).join(', '),
      met: aaCells.filter((r) => !r.scenario.endsWith('i')).every((r) => r.srmRuns <= Math.max(0, 0.001 * r.runs)),
    },
  ];
  const w = Math.max(...rows.map((r) => r.target.length));
  const text = `targets (default algorithm: thompson, confidence 0.95)\n${rows.map((r) => `  ${r.met ? 'MET ' : 'MISS'}  ${r.target.padEnd(w)}  ${r.value}`).join('\n')}`;
  return { text, rows };
}

// ------------------------------------------------------------- worker side
if (process.env.SLUICE_DECISIONS_WORKER === '1') {
  process.on('message', (jobs: Job[]) => {
    const results = jobs.map(runJob);
    process.send!(results, () => process.exit(0));
  });
} else {
  await main();
}
