/**
 * Child-process bookkeeping for the bench: every child runs in its own
 * process group (detached) and is registered here, so `killAll` can take
 * down whole groups (nginx master + worker, a CLI that forks, …) at the end,
 * on error and on Ctrl-C.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';

export interface Managed {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  readonly logPath: string | null;
}

const live = new Set<ChildProcess>();

export function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: the group is gone already.
  }
}

/** Spawn a long-running child in its own process group, stdout+stderr appended to `logPath`. */
export function spawnManaged(opts: {
  name: string;
  cmd: string;
  args: readonly string[];
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  logPath: string;
}): Managed {
  const fd = fs.openSync(opts.logPath, 'a');
  let child: ChildProcess;
  try {
    child = spawn(opts.cmd, opts.args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['ignore', fd, fd],
      detached: true,
    });
  } finally {
    fs.closeSync(fd);
  }
  if (child.pid === undefined) {
    // spawn failed synchronously-ish (ENOENT etc.); the 'error' event carries the reason.
    throw new Error(`${opts.name}: could not spawn ${opts.cmd}`);
  }
  live.add(child);
  child.on('exit', () => live.delete(child));
  child.on('error', () => live.delete(child));
  return { name: opts.name, child, pid: child.pid, logPath: opts.logPath };
}

/** Run a short-lived child (wrk) in its own group, capturing stdout and stderr. */
export function runCaptured(
  cmd: string,
  args: readonly string[],
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    live.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (err) => {
      live.delete(child);
      reject(err);
    });
    child.on('close', (code, signal) => {
      live.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** SIGTERM every live group, wait up to `graceMs` for the leaders, then SIGKILL the groups. */
export async function killAll(graceMs = 3000): Promise<void> {
  const children = [...live];
  for (const c of children) if (c.pid !== undefined) killGroup(c.pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && children.some((c) => !hasExited(c))) {
    await new Promise((r) => setTimeout(r, 50));
  }
  // Always SIGKILL the groups: a leader may be gone while its children linger.
  for (const c of children) if (c.pid !== undefined) killGroup(c.pid, 'SIGKILL');
  live.clear();
}

/** Last resort from a synchronous 'exit' handler. */
export function killAllSync(): void {
  for (const c of live) if (c.pid !== undefined) killGroup(c.pid, 'SIGKILL');
  live.clear();
}

export function logTail(m: Managed, lines = 15): string {
  if (!m.logPath) return '';
  try {
    const text = fs.readFileSync(m.logPath, 'utf8').trimEnd();
    return text.split('\n').slice(-lines).map((l) => `    | ${l}`).join('\n');
  } catch {
    return '';
  }
}

export function commandExists(cmd: string, args: readonly string[] = ['--version']): boolean {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  return !(r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT');
}

// ---------------------------------------------------------------- CPU time

let clkTckCache: number | null = null;

/** Clock ticks per second for /proc/<pid>/stat utime/stime (`getconf CLK_TCK`, normally 100). */
export function clkTck(): number {
  if (clkTckCache !== null) return clkTckCache;
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(String(r.stdout ?? '').trim());
  clkTckCache = Number.isFinite(n) && n > 0 ? n : 100;
  return clkTckCache;
}

interface ProcStat {
  ppid: number;
  ticks: number; // utime + stime
}

function readStat(pid: number): ProcStat | null {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The comm field may contain spaces and parentheses: parse after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // rest[0] = state (field 3), rest[1] = ppid (4), rest[11] = utime (14), rest[12] = stime (15)
  const ppid = Number(rest[1]);
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return null;
  return { ppid, ticks: utime + stime };
}

/** utime+stime (ticks) of each process in the trees rooted at `roots` (roots + all descendants). */
export function treeTicks(roots: readonly number[]): Map<number, number> {
  const out = new Map<number, number>();
  if (roots.length === 0) return out;
  const byParent = new Map<number, number[]>();
  const stats = new Map<number, ProcStat>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const st = readStat(pid);
    if (!st) continue;
    stats.set(pid, st);
    const list = byParent.get(st.ppid);
    if (list) list.push(pid);
    else byParent.set(st.ppid, [pid]);
  }
  const queue = [...roots];
  while (queue.length > 0) {
    const pid = queue.shift()!;
    if (out.has(pid)) continue;
    const st = stats.get(pid);
    if (!st) continue;
    out.set(pid, st.ticks);
    queue.push(...(byParent.get(pid) ?? []));
  }
  return out;
}

/** CPU seconds spent by a process tree between two `treeTicks` snapshots. */
export function cpuSecondsBetween(before: Map<number, number>, after: Map<number, number>): number {
  let ticks = 0;
  for (const [pid, t] of after) ticks += t - (before.get(pid) ?? 0);
  return ticks / clkTck();
}

/** SIGKILL one managed child's whole group (used before restarting it). */
export function killManaged(m: Managed): void {
  killGroup(m.pid, 'SIGKILL');
  live.delete(m.child);
}

// ------------------------------------------------- other load on the machine

/** user + nice + system ticks of the whole machine so far (/proc/stat's first line; irq, softirq and steal left out). */
function machineTicks(): number {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  return (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0);
}

/** utime+stime of this process and every live descendant, plus the cutime+cstime of the children it has reaped (wrk, h2load). */
function benchTicks(): number {
  let ticks = 0;
  for (const t of treeTicks([process.pid]).values()) ticks += t;
  try {
    const text = fs.readFileSync(`/proc/${process.pid}/stat`, 'utf8');
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    ticks += Number(rest[13]) + Number(rest[14]); // cutime (16), cstime (17)
  } catch {
    // not on Linux: counted as no other load
  }
  return ticks;
}

export interface ForeignSnapshot {
  machine: number;
  bench: number;
  atMs: number;
}

/**
 * Snapshot for `foreignCpuSince`: CPU the machine spent outside the bench's
 * own process tree (someone else's tests, builds…) in between — what makes a
 * run's figures suspect on a shared machine.
 */
export function foreignSnapshot(): ForeignSnapshot {
  return { machine: machineTicks(), bench: benchTicks(), atMs: Date.now() };
}

/** CPU seconds spent outside the bench since `before`, and that as a share of the machine's capacity (cores × wall time). */
export function foreignCpuSince(before: ForeignSnapshot, cores: number): { seconds: number; share: number } {
  const now = foreignSnapshot();
  const seconds = Math.max(0, (now.machine - before.machine) - (now.bench - before.bench)) / clkTck();
  const wall = (now.atMs - before.atMs) / 1000;
  return { seconds, share: wall > 0 ? seconds / (wall * cores) : 0 };
}
