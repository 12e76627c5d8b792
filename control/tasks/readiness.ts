/**
 * `readiness`: waits until every version of the experiment has answered 2xx
 * on its health URL at least once, asking every `intervalSeconds`. A version
 * that was ready is not asked again (readiness is a gate before traffic moves,
 * not a monitor). On timeout the error names the versions that never became
 * ready and what they last said.
 */
import type { Agent } from 'undici';
import { request } from 'undici';
import { SluiceError } from '../../common/errors.js';
import type { Obj } from '../../common/validation.js';
import { expected, isObj, join } from '../../common/validation.js';
import type { TaskSpecBase } from './base.js';
import { sleep, stopError, TaskError, transportReason, withAgent } from './common.js';
import { readPath, readSeconds, readUrl } from './fields.js';
import type { TaskFields, TaskImpl, TaskReadContext } from './types.js';

export interface ReadinessTaskSpec extends TaskSpecBase {
  readonly task: 'readiness';
  /** Health URL per version; default: the version's URL + `path`. */
  readonly urls: Readonly<Record<string, string>>;
  readonly path: string;
  readonly intervalSeconds: number;
}

declare module './base.js' {
  interface TaskSpecs {
    readiness: ReadinessTaskSpec;
  }
}

/** One attempt never waits longer than this (or the interval, when that is longer). */
const ATTEMPT_TIMEOUT_MS = 5_000;

interface Probe {
  readonly version: string;
  readonly url: URL;
  attempts: number;
  /** The last status, or null when the last attempt got no answer. */
  status: number | null;
  error: string | null;
  ready: boolean;
}

/** The kind's defaults (docs/tasks.md). */
const DEFAULTS = { timeoutSeconds: 60, path: '/', intervalSeconds: 1 } as const;

export const readinessTask: TaskImpl<ReadinessTaskSpec> = {
  keys: ['urls', 'path', 'intervalSeconds'],
  timeoutSeconds: DEFAULTS.timeoutSeconds,
  read: (c, o, path, base) => ({ ...base, task: 'readiness', ...readReadiness(c, o, path) }),
  secrets: () => ({ values: [], templates: [] }),
  async run(spec, ctx) {
    const probes = ctx.doc.spec.versions.map(({ name }) => ({ version: name, url: healthUrl(spec, name, ctx.versionUrls), attempts: 0, status: null, error: null, ready: false }) satisfies Probe);
    const intervalMs = spec.intervalSeconds * 1000;
    const attemptMs = Math.max(ATTEMPT_TIMEOUT_MS, intervalMs);
    await withAgent(async (agent) => {
      for (;;) {
        const round = performance.now();
        await Promise.all(probes.filter((p) => !p.ready).map((p) => attempt(p, agent, ctx.signal, attemptMs)));
        const waiting = probes.filter((p) => !p.ready);
        if (waiting.length === 0) return;
        if (ctx.signal.aborted || !(await sleep(Math.max(0, intervalMs - (performance.now() - round)), ctx.signal))) {
          const stop = stopError(ctx.signal, 'waiting for readiness');
          const lines = waiting.map((p) => `${p.version} (${p.url.href}: ${p.status !== null ? `last answered ${p.status}` : p.error ?? 'no answer'}, ${p.attempts} attempts)`);
          throw new TaskError(stop.code === 'SLUICE_TASK_TIMEOUT' ? 'SLUICE_TASK_TIMEOUT' : 'SLUICE_TASK_FAILED', `${stop.message}: not ready: ${lines.join('; ')}`, output(probes));
        }
      }
    });
    ctx.log.info({ task: spec.name, versions: probes.map((p) => p.version) }, 'all versions ready');
    return output(probes);
  },
};

/** `urls[version]`, else the version's URL as the route knows it + `path`. */
function healthUrl(spec: ReadinessTaskSpec, version: string, versionUrls: Readonly<Record<string, string>>): URL {
  const explicit = spec.urls[version];
  if (explicit !== undefined) return new URL(explicit);
  const base = versionUrls[version];
  if (base === undefined) {
    throw new SluiceError('SLUICE_TASK_FAILED', `version ${version} has no URL on the route: give it one (spec.versions[].url) or set urls.${version}`);
  }
  return new URL(`${base.replace(/\/+$/, '')}${spec.path}`);
}

/** One GET. An attempt cut short by the task's own stop is not counted: what the version said before stays the last word. */
async function attempt(p: Probe, agent: Agent, signal: AbortSignal, timeoutMs: number): Promise<void> {
  try {
    const res = await request(p.url, { method: 'GET', dispatcher: agent, signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]) });
    await res.body.dump();
    p.attempts++;
    p.status = res.statusCode;
    p.error = null;
    p.ready = res.statusCode >= 200 && res.statusCode <= 299;
  } catch (err) {
    if (signal.aborted) return;
    p.attempts++;
    p.status = null;
    p.error = transportReason(err);
  }
}

function output(probes: readonly Probe[]): Record<string, unknown> {
  return { versions: Object.fromEntries(probes.map((p) => [p.version, { ready: p.ready, status: p.status, attempts: p.attempts }])) };
}

// ---------------------------------------------------------------- reading the spec

function readReadiness(c: TaskReadContext, o: Obj, path: string): TaskFields<ReadinessTaskSpec> {
  const { p } = c;
  const urls: Record<string, string> = {};
  const urlsPath = join(path, 'urls');
  if (o.urls != null) {
    if (!isObj(o.urls)) expected(p, urlsPath, 'a mapping of version name to health URL', o.urls, null);
    else {
      for (const [v, u] of Object.entries(o.urls)) {
        const at = join(urlsPath, v);
        if (!c.versions.includes(v)) p.add(at, `unknown version (the experiment's versions: ${c.versions.join(', ')})`);
        const url = readUrl(p, u, at, true);
        if (url !== null) urls[v] = url;
      }
    }
  }
  return {
    urls,
    path: readPath(p, o.path, join(path, 'path'), DEFAULTS.path),
    intervalSeconds: readSeconds(p, o.intervalSeconds, join(path, 'intervalSeconds'), DEFAULTS.intervalSeconds),
  };
}
