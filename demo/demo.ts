/**
 * `sluice demo` (`npm start`): three sample versions on loopback, Sluice
 * all-in-one in front of them, synthetic load through Sluice, and a live
 * per-version view of what the proxy measures.
 */
import { Pool } from 'undici';
import { createLogger } from '../common/logger.js';
import { seededRandom } from '../common/random.js';
import { validateConfig } from '../proxy/config.js';
import { describeVersionStats } from '../admin/routes-api.js';
import { runSluice } from '../cli/run-sluice.js';
import { startSampleApp, type SampleApp } from './sample-app.js';

export interface DemoOptions {
  readonly durationSeconds: number;
  readonly keep: boolean;
  /** Print a table every this many ms. */
  readonly reportEveryMs?: number;
  readonly out?: (line: string) => void;
}

export async function runDemo(opts: DemoOptions): Promise<void> {
  const out = opts.out ?? ((l: string) => process.stdout.write(l + '\n'));
  const apps: SampleApp[] = await Promise.all([
    startSampleApp({ name: 'v1', latencyMs: 8, errorRate: 0.002, conversionRate: 0.05, seed: 1 }),
    startSampleApp({ name: 'v2', latencyMs: 10, errorRate: 0.002, conversionRate: 0.08, seed: 2 }),
    startSampleApp({ name: 'v3', latencyMs: 8, errorRate: 0.06, conversionRate: 0.05, seed: 3 }),
  ]);
  const config = validateConfig({
    listen: '127.0.0.1:8080',
    admin: { listen: '127.0.0.1:9901' },
    logLevel: 'warn',
    routes: [
      {
        name: 'shop',
        versions: apps.map((a) => ({ name: a.name, url: a.url })),
        weights: { v1: 80, v2: 10, v3: 10 },
        rules: [{ match: { headers: { 'x-canary': 'true' } }, version: 'v2' }],
        sticky: { header: 'x-user-id' },
        mirror: [{ version: 'v3', percent: 10, compare: true }],
      },
    ],
  });
  const log = createLogger(config.logLevel);
  const sluice = await runSluice(config, log);
  out(`Sluice is proxying ${sluice.trafficUrl} → v1 ${apps[0]!.url}, v2 ${apps[1]!.url}, v3 ${apps[2]!.url}`);
  out(`admin API: ${sluice.adminUrl}  (try: curl ${sluice.adminUrl}/stats, curl ${sluice.adminUrl}/metrics)`);
  out('route "shop": weights v1=80 v2=10 v3=10, sticky on x-user-id, x-canary: true → v2, 10% mirrored to v3\n');

  const load = startLoad(sluice.trafficUrl, 40);
  const every = opts.reportEveryMs ?? 2000;
  const started = Date.now();
  const endAt = started + opts.durationSeconds * 1000;
  let shifted = false;
  while (Date.now() < endAt) {
    await new Promise((r) => setTimeout(r, Math.min(every, endAt - Date.now())));
    // Halfway through, move weights the way an experiment would, to show sticky users staying put.
    if (!shifted && Date.now() - started > (opts.durationSeconds * 1000) / 2) {
      shifted = true;
      sluice.proxy.setWeights('shop', { v1: 50, v2: 50, v3: 0 }, 'demo');
      out('→ weights moved to v1=50 v2=50 v3=0 (only the moved share of sticky users changes version)');
    }
    printTable(sluice, out, ((Date.now() - started) / 1000).toFixed(0));
  }
  await load.stop();
  out(`\nsent ${load.sent} requests through Sluice (${load.failed} failed at the client).`);
  if (opts.keep) {
    out(`still serving on ${sluice.trafficUrl}; Ctrl-C to stop`);
    await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
  }
  await sluice.close();
  await Promise.all(apps.map((a) => a.close()));
}

function printTable(sluice: Awaited<ReturnType<typeof runSluice>>, out: (l: string) => void, t: string): void {
  const st = sluice.proxy.route('shop');
  const rows = st.route.versions.map((v) => {
    const s = describeVersionStats(v.stats.snapshot(), false);
    const conv = s.requests > 0 ? (100 * s.rewards) / s.requests : 0;
    return `  ${v.name}  weight ${String(st.weights[v.name]).padStart(3)}%  requests ${String(s.requests).padStart(6)}  errors ${(100 * (s.errorRate ?? 0)).toFixed(2).padStart(5)}%  p95 ${String(s.latencyMs.p95 ?? '-').padStart(7)} ms  conversion ${conv.toFixed(2).padStart(5)}%  mirrored ${s.mirror.ok + s.mirror.mismatch + s.mirror.error}`;
  });
  out(`t=${t}s\n${rows.join('\n')}`);
}

/** A closed-loop load of `concurrency` workers, each with its own sticky user id. */
function startLoad(url: string, concurrency: number) {
  const pool = new Pool(url, { connections: concurrency });
  const rand = seededRandom(42);
  let running = true;
  const state = { sent: 0, failed: 0 };
  const worker = async () => {
    while (running) {
      const user = `user-${Math.floor(rand() * 5000)}`;
      try {
        const r = await pool.request({ path: '/checkout', method: 'GET', headers: { 'x-user-id': user } });
        await r.body.dump();
        state.sent++;
      } catch {
        state.failed++;
      }
    }
  };
  const workers = Array.from({ length: concurrency }, worker);
  return {
    get sent() {
      return state.sent;
    },
    get failed() {
      return state.failed;
    },
    async stop() {
      running = false;
      await Promise.all(workers);
      await pool.close();
    },
  };
}
