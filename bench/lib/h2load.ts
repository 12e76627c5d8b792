/**
 * Running h2load (nghttp2-client) for the gRPC cases and parsing what it says.
 * h2load prints min/max/mean/sd of request time but no percentiles, so every
 * run writes `--log-file` (one line per finished request: start µs, status,
 * duration µs) and p50/p99 are computed from it.
 */
import fs from 'node:fs';
import { runCaptured } from './procs.js';

export interface H2loadParams {
  /** h2load -c: connections (clients). */
  clients: number;
  /** h2load -m: concurrent streams per connection. */
  streams: number;
  durationS: number;
  /** Request headers, `name: value`. */
  headers: readonly string[];
  /** The request body file (-d: every request is a POST of it). */
  dataFile: string;
}

export interface H2loadResult {
  /** Requests that finished with a 2xx/3xx status (h2load's "succeeded"): the figure rps is made of. */
  requests: number;
  /** h2load's counters: `total` is `done` in timing mode; started − done were in flight when it stopped. */
  started: number;
  done: number;
  failed: number;
  errored: number;
  timeout: number;
  status: { '2xx': number; '3xx': number; '4xx': number; '5xx': number };
  durationS: number;
  /** succeeded / duration. */
  rps: number;
  /** h2load's own req/s figure (for reference). */
  h2loadRps: number;
  latencyMs: { mean: number; max: number };
  /** From the per-request log (requests with status 2xx/3xx). */
  percentilesMs: { p50: number; p75: number; p90: number; p99: number };
  /** failed + errored + timeout: requests that did not succeed. */
  errors: number;
  /** Application protocol h2load negotiated ("h2c", "h2"). */
  protocol: string | null;
}

export function h2loadArgs(p: H2loadParams, url: string, logFile: string | null): string[] {
  const args = [`-c${p.clients}`, `-m${p.streams}`, '-t1', `-D${p.durationS}`];
  for (const h of p.headers) args.push('-H', h);
  args.push('-d', p.dataFile);
  if (logFile !== null) args.push(`--log-file=${logFile}`);
  args.push(url);
  return args;
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000 };
function timeMs(text: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(text);
  if (!m) throw new Error(`h2load: cannot parse time "${text}"`);
  return Number(m[1]) * UNIT_MS[m[2]!]!;
}

/** Percentiles (nearest rank) of the durations of the successful requests in an h2load log file. */
export function percentilesFromLog(logFile: string): { p50: number; p75: number; p90: number; p99: number; count: number } {
  const text = fs.readFileSync(logFile, 'latin1');
  const durations: number[] = [];
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    const t1 = text.indexOf('\t', start);
    const t2 = t1 < 0 ? -1 : text.indexOf('\t', t1 + 1);
    if (t2 > 0 && t2 < end) {
      const status = Number(text.slice(t1 + 1, t2));
      if (status >= 200 && status < 400) durations.push(Number(text.slice(t2 + 1, end)));
    }
    start = end + 1;
  }
  const sorted = Float64Array.from(durations).sort();
  const at = (q: number): number => (sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]! / 1000);
  return { p50: at(0.5), p75: at(0.75), p90: at(0.9), p99: at(0.99), count: sorted.length };
}

export function parseH2load(out: string, logFile: string | null): H2loadResult {
  const need = (re: RegExp, what: string): RegExpExecArray => {
    const m = re.exec(out);
    if (!m) throw new Error(`h2load output has no ${what}:\n${out}`);
    return m;
  };
  const fin = need(/^finished in ([\d.]+)(us|ms|s), ([\d.]+) req\/s/m, '"finished in" line');
  const req = need(
    /^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/m,
    'requests line',
  );
  const st = need(/^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/m, 'status codes line');
  const T = '([\\d.]+(?:us|ms|s))';
  const lat = need(new RegExp(`^time for request:\\s+${T}\\s+${T}\\s+${T}`, 'm'), 'time for request line');
  const proto = /^Application protocol: (\S+)/m.exec(out);
  const durationS = timeMs(`${fin[1]}${fin[2]}`) / 1000;
  const n = (i: number): number => Number(req[i]);
  const succeeded = n(4);
  const pct = logFile !== null ? percentilesFromLog(logFile) : null;
  return {
    requests: succeeded,
    started: n(2),
    done: n(3),
    failed: n(5),
    errored: n(6),
    timeout: n(7),
    status: { '2xx': Number(st[1]), '3xx': Number(st[2]), '4xx': Number(st[3]), '5xx': Number(st[4]) },
    durationS,
    rps: durationS > 0 ? succeeded / durationS : 0,
    h2loadRps: Number(fin[3]),
    latencyMs: { mean: timeMs(lat[3]!), max: timeMs(lat[2]!) },
    percentilesMs: pct ? { p50: pct.p50, p75: pct.p75, p90: pct.p90, p99: pct.p99 } : { p50: Number.NaN, p75: Number.NaN, p90: Number.NaN, p99: Number.NaN },
    errors: n(5) + n(6) + n(7),
    protocol: proto?.[1] ?? null,
  };
}

/** One h2load run; `logFile` (deleted afterwards) gives the percentiles. */
export async function runH2load(p: H2loadParams, url: string, logFile: string | null): Promise<{ result: H2loadResult; raw: string }> {
  const r = await runCaptured('h2load', h2loadArgs(p, url, logFile));
  try {
    if (r.code !== 0) throw new Error(`h2load exited with ${r.code ?? r.signal}: ${r.stderr.trim() || r.stdout.trim()}`);
    const result = parseH2load(r.stdout, logFile);
    // Keep the summary, not h2load's progress lines.
    const raw = r.stdout.slice(Math.max(0, r.stdout.indexOf('finished in')));
    return { result, raw };
  } finally {
    if (logFile !== null) fs.rmSync(logFile, { force: true });
  }
}
