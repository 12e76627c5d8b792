/**
 * What the end-to-end tests that run Sluice as operators do share: free
 * loopback ports, `node bin/sluice.js …` child processes stopped after the
 * test, the `shop` route of two sample apps in a config file, and JSON calls
 * to an admin or control API.
 *
 *   const port = await freePort();
 *   const { apps, config } = await startShop(t, [{ errorRate: 0 }, { errorRate: 0.05 }]);
 *   const proxy = sluice(t, ['proxy', '-c', config, '--listen', `127.0.0.1:${port}`, …]);
 *   const { status, body } = await json(admin, 'GET', '/readyz');
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { startSampleApp, type SampleApp, type SampleAppOptions } from '../../demo/sample-app.js';
import type { Pool } from './helpers.js';


/** A `sluice` child process started by {@link sluice}. */
export interface SluiceProcess {
  readonly process: ChildProcess;
  /** Everything it wrote so far (stdout and stderr, interleaved). */
  output(): string;
  /** Resolves with the signal or exit code once it has exited. */
  readonly exited: Promise<NodeJS.Signals | number | null>;
}

/**
 * `node bin/sluice.js ...args` with SLUICE_LOG_LEVEL=warn (overridden by
 * `env`, or by a `--log-level` argument), its whole output kept. After the
 * test it is stopped: SIGTERM, then SIGKILL if it is still there 5 s later.
 * An exit other than 0 (or a SIGKILL the test sent itself) is reported as a
 * diagnostic with the end of its output.
 */
export function sluice(t: TestContext, args: string[], env: Record<string, string> = {}): SluiceProcess {
  const child = spawn('node', ['bin/sluice.js', ...args], { env: { ...process.env, SLUICE_LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.once('exit', (code, signal) => resolve(signal ?? code)));
  t.after(async () => {
    // A child killed by a signal has exitCode null too: look at signalCode as well.
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  });
  void exited.then((how) => {
    if (how !== 0 && how !== 'SIGKILL') t.diagnostic(`sluice ${args[0]} exited ${String(how)}: ${output.slice(-4000)}`);
  });
  return { process: child, output: () => output, exited };
}

/** A call to an admin or control API: the JSON body sent (if any) and the JSON answer (null when empty). */
export async function json(pool: Pool, method: string, path: string, body?: unknown) {
  const r = await pool.request({ method: method as 'GET', path, headers: body ? { 'content-type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined });
  const text = await r.body.text();
  return { status: r.statusCode, body: text ? JSON.parse(text) : null };
}

/** Whether a `sluice control` API is the leader and sees the `shop` route a proxy seeded (false while it is not listening yet). */
export async function controlLeading(control: Pool): Promise<boolean> {
  try {
    if ((await json(control, 'GET', '/leader')).body?.leader !== true) return false;
    return (await json(control, 'GET', '/routes')).body?.routes?.length === 1;
  } catch {
    return false;
  }
}

/**
 * The route the process tests send traffic to: `shop`, with versions v1 and
 * v2 served by two sample apps (given these options; closed after the test)
 * and the `weights` (default all on v1), written as sluice.yaml in a
 * temporary directory (removed after the test).
 */
export async function startShop(
  t: TestContext,
  versions: readonly [Omit<SampleAppOptions, 'name'>, Omit<SampleAppOptions, 'name'>],
  weights: Readonly<Record<string, number>> = { v1: 100 },
): Promise<{ apps: SampleApp[]; config: string }> {
  const apps = await Promise.all(versions.map((opts, i) => startSampleApp({ ...opts, name: `v${i + 1}` })));
  t.after(() => Promise.all(apps.map((a) => a.close())));
  const dir = mkdtempSync(join(tmpdir(), 'sluice-processes-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, 'sluice.yaml');
  writeFileSync(
    config,
    `routes:
  - name: shop
    versions:
      - { name: v1, url: ${apps[0]!.url} }
      - { name: v2, url: ${apps[1]!.url} }
    weights: { ${Object.entries(weights).map(([name, w]) => `${name}: ${w}`).join(', ')} }
`,
  );
  return { apps, config };
}

/**
 * An experiment on `shop` that iterates every `intervalSeconds` and never
 * decides (A/B, FixedSplit 50/50, minSamples out of reach): for tests of what
 * happens around iterations — failovers, outages.
 */
export function endlessAb(name: string, intervalSeconds: number, maxIterations = 10_000) {
  return {
    kind: 'Experiment',
    name,
    spec: {
      route: 'shop',
      versions: [{ name: 'v1' }, { name: 'v2' }],
      testingPattern: 'A/B',
      deploymentPattern: 'FixedSplit',
      criteria: { reward: { metric: 'conversion-rate' }, minSamples: 10_000_000 },
      weights: { initial: { v1: 50, v2: 50 } },
      duration: { intervalSeconds, maxIterations },
    },
  };
}

export interface SteadyLoad {
  /** Answers with status 200 so far. */
  readonly ok: number;
  /** Every other outcome: `HTTP <status>` or the error's message. */
  readonly failures: readonly string[];
  /** Stops the workers and waits for their last request (also done after the test). */
  stop(): Promise<void>;
}

/** `workers` loops of keyless GETs through `pool` until stopped, `pauseMs` apart. */
export function steadyLoad(t: TestContext, pool: Pool, workers: number, pauseMs = 0): SteadyLoad {
  let running = true;
  let ok = 0;
  const failures: string[] = [];
  const done = Promise.all(
    Array.from({ length: workers }, async () => {
      while (running) {
        try {
          const r = await pool.request({ path: '/', method: 'GET' });
          await r.body.dump();
          if (r.statusCode === 200) ok++;
          else failures.push(`HTTP ${r.statusCode}`);
        } catch (err) {
          failures.push((err as Error).message);
          // A closed pool rejects at once: never spin without yielding to the event loop.
          await new Promise((r) => setTimeout(r, 10));
        }
        if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
      }
    }),
  );
  const stop = async () => {
    running = false;
    await done;
  };
  t.after(stop);
  return {
    get ok() {
      return ok;
    },
    failures,
    stop,
  };
}
