/**
 * `sluice demo` (`npm start`): three sample versions on loopback, Sluice
 * all-in-one in front of them, a Hybrid (A/B/n + SLO) experiment and
 * synthetic load. Prints a line per iteration and ends with the verdict:
 * v2 (better conversion) wins, v3 (higher error rate) is rolled back.
 */
import { Pool } from 'undici';
import { createLogger } from '../common/logger.js';
import { validateConfig } from '../config/config.js';
import { runSluice, type RunningSluice } from '../cli/run-sluice.js';
import { tokenOverride } from '../cli/secrets.js';
import type { ExperimentStatus } from '../control/status.js';
import { validateExperiment } from '../control/spec.js';
import { startSampleApp, type SampleApp } from './sample-app.js';

export interface DemoOptions {
  readonly keep: boolean;
  /** Requests per second of synthetic load. */
  readonly qps?: number;
  readonly intervalSeconds?: number;
  readonly out?: (line: string) => void;
}

const EXPERIMENT = 'checkout-abn';

export async function runDemo(opts: DemoOptions): Promise<ExperimentStatus> {
  const out = opts.out ?? ((l: string) => process.stdout.write(l + '\n'));
  const apps: SampleApp[] = await Promise.all([
    startSampleApp({ name: 'v1', latencyMs: 8, errorRate: 0.002, conversionRate: 0.05, seed: 1 }),
    startSampleApp({ name: 'v2', latencyMs: 9, errorRate: 0.002, conversionRate: 0.08, seed: 2 }),
    startSampleApp({ name: 'v3', latencyMs: 8, errorRate: 0.06, conversionRate: 0.05, seed: 3 }),
  ]);
  const config = validateConfig({
    listen: '127.0.0.1:8080',
    admin: { listen: '127.0.0.1:9901' },
    logLevel: 'warn',
    routes: [{ name: 'checkout', versions: apps.map((a) => ({ name: a.name, url: a.url })), weights: { v1: 100 } }],
  }, { overrides: { token: tokenOverride({}) } });
  const sluice = await runSluice(config, createLogger(config.logLevel));
  out(`Sluice: traffic ${sluice.trafficUrl}, admin ${sluice.adminUrl}`);
  out(`versions: v1 ${apps[0]!.url} (current), v2 ${apps[1]!.url}, v3 ${apps[2]!.url}`);

  const doc = validateExperiment({
    kind: 'Experiment',
    name: EXPERIMENT,
    spec: {
      route: 'checkout',
      versions: [{ name: 'v1' }, { name: 'v2' }, { name: 'v3' }],
      testingPattern: 'Hybrid',
      deploymentPattern: 'Progressive',
      algorithm: 'thompson',
      criteria: {
        objectives: [
          { metric: 'error-rate', upperLimit: 0.02 },
          { metric: 'latency-p95', upperLimit: 100 },
        ],
        reward: { metric: 'conversion-rate', preferredDirection: 'High' },
        confidence: 0.95,
        minSamples: 100,
      },
      // Progressive delivery: candidates gain at most 25 points of traffic per iteration.
      weights: { maxCandidateWeightIncrement: 25 },
      duration: { intervalSeconds: opts.intervalSeconds ?? 2, maxIterations: 40 },
    },
  });
  out(`experiment ${EXPERIMENT}: Hybrid A/B/n, reward conversion-rate, SLOs error-rate <= 2% and latency-p95 <= 100 ms`);
  out(`(follow along: ${sluice.adminUrl}/ in a browser, the live dashboard · curl ${sluice.adminUrl}/experiments/${EXPERIMENT} · curl ${sluice.adminUrl}/metrics)\n`);
  await sluice.scheduler.apply(doc);

  const load = startLoad(sluice.trafficUrl, opts.qps ?? 150);
  let final: ExperimentStatus;
  let shown = 0;
  const rolledBack = new Set<string>();
  for (;;) {
    await new Promise((r) => setTimeout(r, 100));
    const { status } = await sluice.scheduler.get(EXPERIMENT);
    for (; shown < status.history.length; shown++) {
      const h = status.history[shown]!;
      out(iterationLine(h.iteration, doc.spec.duration.maxIterations, h.weights, h.versions));
      for (const [v, vs] of Object.entries(h.versions)) {
        if (vs.verdict === 'infeasible' && !rolledBack.has(v)) {
          rolledBack.add(v);
          out(`  ↳ ${v} violates its SLOs: rolled back to 0% at once`);
        }
      }
    }
    if (['Completed', 'Failed', 'Aborted'].includes(status.state)) {
      final = status;
      break;
    }
  }
  await load.stop();
  out(`\n${final.state}: ${final.winner ? `winner ${final.winner}` : 'no winner'} — ${final.reason}`);
  out(`traffic now: ${fmtWeights(final.weights)}  (${load.sent} requests sent, ${load.failed} failed at the client)`);
  if (opts.keep) {
    out(`\nstill serving on ${sluice.trafficUrl}; Ctrl-C to stop`);
    await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
  }
  await stop(sluice, apps);
  return final;
}

async function stop(sluice: RunningSluice, apps: SampleApp[]): Promise<void> {
  await sluice.close();
  await Promise.all(apps.map((a) => a.close()));
}

function fmtWeights(w: Readonly<Record<string, number>>): string {
  return Object.entries(w)
    .map(([v, p]) => `${v}=${p}%`)
    .join(' ');
}

function iterationLine(
  i: number,
  max: number,
  weights: Readonly<Record<string, number>>,
  versions: ExperimentStatus['versions'],
): string {
  const cells = Object.entries(versions).map(([v, s]) => {
    const err = s.metrics['error-rate'];
    // The reward as the winner test sees it: stratified by period, lift over the baseline (docs/statistics.md).
    const c = s.comparison ?? null;
    const conv = c?.estimate ?? s.metrics['conversion-rate'];
    const mark = s.verdict === 'feasible' ? '✓' : s.verdict === 'infeasible' ? '✗' : '?';
    const pct = (x: number | null | undefined) => (x == null ? '  -  ' : `${(100 * x).toFixed(1).padStart(4)}%`);
    const lift = c?.lift == null || !Number.isFinite(c.lift) || c.difference === 0 ? '' : ` (${c.lift >= 0 ? '+' : ''}${(100 * c.lift).toFixed(0)}%)`;
    const out = c?.eliminatedBy ? ' out' : '';
    return `${v} ${mark} ${String(s.samples).padStart(5)} req err ${pct(err)} conv ${pct(conv)}${lift.padEnd(7)} P(best) ${s.pBest === null ? ' -  ' : s.pBest.toFixed(2)}${out}`;
  });
  return `iter ${String(i).padStart(2)}/${max}  next ${fmtWeights(weights).padEnd(22)} | ${cells.join(' | ')}`;
}

/** Open-loop load at a fixed rate, so each iteration sees about the same traffic. */
function startLoad(url: string, qps: number) {
  const pool = new Pool(url, { connections: 32 });
  const state = { sent: 0, failed: 0, inFlight: 0 };
  const tickMs = 20;
  let carry = 0;
  const timer = setInterval(() => {
    carry += (qps * tickMs) / 1000;
    for (; carry >= 1; carry--) {
      if (state.inFlight > 500) continue; // the demo's apps are local; this only guards a stall
      state.inFlight++;
      pool
        .request({ path: '/checkout', method: 'GET' })
        .then((r) => r.body.dump())
        .then(
          () => state.sent++,
          () => state.failed++,
        )
        .finally(() => state.inFlight--);
    }
  }, tickMs);
  return {
    get sent() {
      return state.sent;
    },
    get failed() {
      return state.failed;
    },
    async stop() {
      clearInterval(timer);
      while (state.inFlight > 0) await new Promise((r) => setTimeout(r, 10));
      await pool.close();
    },
  };
}
