/** Running wrk and parsing its text output (with --latency). */
import { runCaptured } from './procs.js';

export interface WrkResult {
  requests: number;
  durationS: number;
  rps: number;
  latencyMs: { avg: number; stdev: number; max: number };
  /** From the --latency distribution. */
  percentilesMs: { p50: number; p75: number; p90: number; p99: number };
  socketErrors: { connect: number; read: number; write: number; timeout: number };
  /** wrk's "Non-2xx or 3xx responses" (it counts status >= 400). */
  non2xx: number;
  /** socket errors + non-2xx. */
  errors: number;
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "1.23ms" / "456.00us" / "2.00s" / "1.05m" → milliseconds. */
export function parseTimeMs(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim());
  if (!m) throw new Error(`wrk: cannot parse time "${text}"`);
  return Number(m[1]) * UNIT_MS[m[2]!]!;
}

export function parseWrk(out: string): WrkResult {
  const need = (re: RegExp, what: string): RegExpExecArray => {
    const m = re.exec(out);
    if (!m) throw new Error(`wrk output has no ${what}:\n${out}`);
    return m;
  };
  const T = '([\\d.]+(?:us|ms|s|m|h))';
  const lat = need(new RegExp(`^\\s*Latency\\s+${T}\\s+${T}\\s+${T}`, 'm'), 'latency line');
  const pct = (p: number): number =>
    parseTimeMs(need(new RegExp(`^\\s*${p}%\\s+${T}\\s*$`, 'm'), `${p}% latency (was --latency given?)`)[1]!);
  const total = need(/^\s*(\d+) requests in ([\d.]+(?:us|ms|s|m|h)),/m, 'request count');
  const rps = need(/^Requests\/sec:\s+([\d.]+)/m, 'Requests/sec');
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  const socketErrors = {
    connect: Number(sock?.[1] ?? 0),
    read: Number(sock?.[2] ?? 0),
    write: Number(sock?.[3] ?? 0),
    timeout: Number(sock?.[4] ?? 0),
  };
  const n2 = Number(non2xx?.[1] ?? 0);
  return {
    requests: Number(total[1]),
    durationS: parseTimeMs(total[2]!) / 1000,
    rps: Number(rps[1]),
    latencyMs: { avg: parseTimeMs(lat[1]!), stdev: parseTimeMs(lat[2]!), max: parseTimeMs(lat[3]!) },
    percentilesMs: { p50: pct(50), p75: pct(75), p90: pct(90), p99: pct(99) },
    socketErrors,
    non2xx: n2,
    errors: socketErrors.connect + socketErrors.read + socketErrors.write + socketErrors.timeout + n2,
  };
}

export interface WrkParams {
  threads: number;
  connections: number;
  durationS: number;
  script: string;
}

export function wrkArgs(p: WrkParams, url: string): string[] {
  return [`-t${p.threads}`, `-c${p.connections}`, `-d${p.durationS}s`, '--latency', '-s', p.script, url];
}

export async function runWrk(p: WrkParams, url: string): Promise<{ result: WrkResult; raw: string }> {
  const r = await runCaptured('wrk', wrkArgs(p, url));
  if (r.code !== 0) {
    throw new Error(`wrk exited with ${r.code ?? r.signal}: ${r.stderr.trim() || r.stdout.trim()}`);
  }
  return { result: parseWrk(r.stdout), raw: r.stdout };
}
