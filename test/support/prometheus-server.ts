/**
 * A real `prometheus` (Debian package prometheus) for the tests: on a free
 * loopback port, with its config and TSDB in a temporary directory, scraping
 * the given targets every second. Resolves once /-/ready answers and every
 * target has been scraped successfully (`up == 1`); stopped (SIGTERM, then
 * SIGKILL) and cleaned up after the test.
 *
 *   const prom = await startPrometheus(t, ['127.0.0.1:9901']);   // null: skipped
 *   if (!prom) return;
 *   … prom.url …; await prom.query('sum(up)');
 *
 * Missing binary: under CI the test fails, elsewhere it is skipped with what
 * to install (requireBinary in helpers.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { request } from 'undici';
import { freePort, requireBinary, waitFor } from './helpers.js';

export interface PrometheusServer {
  /** http://127.0.0.1:PORT — the base URL a `prometheus` metric's `url` takes. */
  readonly url: string;
  /** An instant query's `data` (resultType, result); throws when Prometheus answers with an error. */
  query(promql: string): Promise<{ resultType: string; result: unknown }>;
  /** What it wrote so far (the last 4000 characters), for failure messages. */
  output(): string;
}

export interface PrometheusOptions {
  /** Path scraped on every target (default /metrics). */
  readonly metricsPath?: string;
  /** Milliseconds to wait for readiness and the first successful scrape of every target (default 15 000). */
  readonly startTimeoutMs?: number;
}

const JOB = 'sluice-test';

/** Prometheus processes still running, killed if the test process exits without stopping them. */
const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export async function startPrometheus(t: TestContext, targets: readonly string[], opts: PrometheusOptions = {}): Promise<PrometheusServer | null> {
  const bin = requireBinary(t, 'prometheus', 'prometheus');
  if (bin === null) return null;
  const dir = mkdtempSync(join(tmpdir(), 'sluice-prometheus-'));
  const config = join(dir, 'prometheus.yml');
  writeFileSync(
    config,
    `global: { scrape_interval: 1s, evaluation_interval: 1s }
scrape_configs:
  - job_name: ${JOB}
    scrape_interval: 1s
    scrape_timeout: 1s
    metrics_path: ${opts.metricsPath ?? '/metrics'}
    static_configs:
      - targets: [${targets.map((x) => JSON.stringify(x)).join(', ')}]
`,
  );
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const proc = spawn(
    bin,
    [
      `--config.file=${config}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--storage.tsdb.retention.time=1h',
      '--log.level=warn',
    ],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  running.add(proc);
  let output = '';
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString('utf8')).slice(-4000);
  };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  void exited.then(() => running.delete(proc));
  t.after(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  });

  const query = async (promql: string) => {
    const res = await request(`${url}/api/v1/query?${new URLSearchParams({ query: promql })}`);
    const body = (await res.body.json()) as { status: string; error?: string; data: { resultType: string; result: unknown } };
    if (body.status !== 'success') throw new Error(`Prometheus: ${body.error ?? res.statusCode}`);
    return body.data;
  };
  const deadline = opts.startTimeoutMs ?? 15_000;
  const started = Date.now();
  const alive = () => {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`prometheus exited: ${output}`);
  };
  await waitFor(
    `prometheus ready on ${url}`,
    async () => {
      alive();
      const res = await request(`${url}/-/ready`);
      await res.body.dump();
      return res.statusCode === 200;
    },
    deadline,
    100,
  );
  // Every target scraped successfully at least once: only then do queries see its series.
  await waitFor(
    `prometheus to scrape ${targets.join(', ')}`,
    async () => {
      alive();
      const data = await query(`up{job="${JOB}"} == 1`);
      return Array.isArray(data.result) && data.result.length === targets.length;
    },
    Math.max(1000, deadline - (Date.now() - started)),
    100,
  );
  return { url, query, output: () => output };
}
