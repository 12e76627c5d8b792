/**
 * Validation of `spec.tasks` (start, loop, finish lists; per-kind fields).
 * Like the rest of control/spec.ts, every problem is collected by path
 * (`spec.tasks.finish[0].url`) and nothing throws. The rules and defaults are
 * documented in docs/tasks.md; TASK_DEFAULTS is the one place they live.
 *
 * Some defaults depend on the experiment and are resolved when the task runs:
 * a github task's `branch` (null = `sluice/<experiment>`) and `title` (null =
 * a generated one).
 */
import type { Obj, Problems } from '../../common/validation.js';
import { expected, expectedText, httpUrl, index, isObj, join, mapping, optMapping, readBool, readEnum, readInt, readName } from '../../common/validation.js';
import { unknownVariables } from '../metrics/template.js';
import { TASK_CONDITIONS, TASK_KINDS } from '../spec-types.js';
import type {
  ExecTaskSpec, GithubTaskSpec, LoadTaskSpec, NotifyTaskSpec, ReadinessTaskSpec, TaskCondition, TaskKind, TaskSpec, TasksSpec,
} from '../spec-types.js';
import type { TaskPhase } from './types.js';

export const TASK_DEFAULTS = {
  timeoutSeconds: { readiness: 60, load: 600, notify: 10, github: 30, exec: 300 } satisfies Record<TaskKind, number>,
  onError: 'fail',
  /** `if` of finish tasks; start and loop tasks always run. */
  finishIf: 'success',
  every: 1,
  readiness: { path: '/', intervalSeconds: 1 },
  load: { path: '/', concurrency: 16, method: 'GET' },
  notify: { format: 'json' },
  github: { mode: 'dispatch', apiUrl: 'https://api.github.com', tokenEnv: 'GITHUB_TOKEN', eventType: 'sluice-experiment', base: 'main' },
  exec: { shell: false },
} as const;

/** setTimeout overflows past ~24.8 days; a day is plenty for any task. */
export const MAX_TASK_SECONDS = 86_400;
export const MAX_QPS = 10_000;
export const MAX_CONCURRENCY = 1_024;
const MAX_NAME = 63;

/** The variables a task template may use (besides {{env.NAME}}); `weights` only as weights.<version>. */
export const TASK_TEMPLATE_VARS = ['experiment', 'route', 'state', 'winner', 'iteration', 'reason'] as const;

const PHASES: readonly TaskPhase[] = ['start', 'loop', 'finish'];
const BASE_KEYS = ['task', 'name', 'if', 'onError', 'every', 'timeoutSeconds'];
const KIND_KEYS: Record<TaskKind, readonly string[]> = {
  readiness: ['urls', 'path', 'intervalSeconds'],
  load: ['url', 'path', 'qps', 'durationSeconds', 'requests', 'concurrency', 'method', 'headers', 'body', 'bodyFile', 'versions'],
  notify: ['url', 'format', 'headers'],
  github: ['repository', 'mode', 'apiUrl', 'tokenEnv', 'eventType', 'path', 'content', 'base', 'branch', 'title'],
  exec: ['command', 'shell', 'env', 'cwd'],
};
const ON_ERROR = ['fail', 'continue'] as const;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const METHOD = /^[A-Z]+$/;
const REPOSITORY = /^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/;
const GIT_REF = /^[A-Za-z0-9._/-]+$/;

interface Ctx {
  readonly p: Problems;
  readonly versions: readonly string[];
}

/** Reads `spec.tasks`; every problem is added to `p` by path. */
export function readTaskSpecs(p: Problems, raw: unknown, path: string, versions: readonly string[]): TasksSpec {
  const o = optMapping(p, raw, path, PHASES);
  const c: Ctx = { p, versions };
  const out: Record<TaskPhase, TaskSpec[]> = { start: [], loop: [], finish: [] };
  // Names are unique across phases: status and history key task runs by name.
  const seen = new Map<string, string>();
  for (const phase of PHASES) {
    const listPath = join(path, phase);
    const list = o[phase];
    if (list == null) continue;
    if (!Array.isArray(list)) {
      expected(p, listPath, 'a list of tasks such as [{ task: notify, url: ... }]', list, null);
      continue;
    }
    list.forEach((item, i) => {
      const at = index(listPath, i);
      const spec = readTask(c, item, at, phase, i);
      if (spec === null) return;
      const first = seen.get(spec.name);
      if (first !== undefined) p.add(isObj(item) && item.name != null ? join(at, 'name') : at, `duplicate task name ${JSON.stringify(spec.name)} (also ${first})`);
      else seen.set(spec.name, at);
      out[phase].push(spec);
    });
  }
  return out;
}

function readTask(c: Ctx, raw: unknown, path: string, phase: TaskPhase, i: number): TaskSpec | null {
  const { p } = c;
  if (!isObj(raw)) return expected(p, path, 'a task mapping such as { task: notify, url: ... }', raw, null);
  const kind = readKind(p, raw, path);
  if (kind === null) return null;
  const o = mapping(p, raw, path, [...BASE_KEYS, ...KIND_KEYS[kind]]) ?? raw; // a mapping: checked above; this reports unknown keys
  const base = readBase(c, o, path, phase, i, kind);
  switch (kind) {
    case 'readiness':
      return { ...base, task: kind, ...readReadiness(c, o, path) };
    case 'load':
      return { ...base, task: kind, ...readLoad(c, o, path) };
    case 'notify':
      return { ...base, task: kind, ...readNotify(c, o, path) };
    case 'github':
      return { ...base, task: kind, ...readGithub(c, o, path) };
    case 'exec':
      return { ...base, task: kind, ...readExec(c, o, path) };
  }
}

function readKind(p: Problems, o: Obj, path: string): TaskKind | null {
  const at = join(path, 'task');
  const what = `one of ${TASK_KINDS.join(', ')}`;
  if (o.task == null) {
    // `- notify: {...}` is the shape other tools use; say how to write it here.
    const guess = Object.keys(o).find((k): k is TaskKind => (TASK_KINDS as readonly string[]).includes(k));
    const hint = guess === undefined ? '' : ` (write \`task: ${guess}\` and its fields beside it, not a "${guess}" key)`;
    return p.reject(at, `required: ${what}${hint}`, null);
  }
  return readEnum(p, o.task, at, TASK_KINDS, null);
}

/** The fields every kind shares, and the fields of one kind. */
type Base = Pick<TaskSpec, 'name' | 'if' | 'onError' | 'every' | 'timeoutSeconds'>;
type Fields<S extends TaskSpec> = Omit<S, keyof Base | 'task'>;

function readBase(c: Ctx, o: Obj, path: string, phase: TaskPhase, i: number, kind: TaskKind): Base {
  const { p } = c;
  const name = o.name == null ? `${phase}-${i}-${kind}` : readName(p, o.name, join(path, 'name'), MAX_NAME);
  let cond: TaskCondition = phase === 'finish' ? TASK_DEFAULTS.finishIf : 'always';
  if (o.if != null) {
    if (phase !== 'finish') p.add(join(path, 'if'), `if applies to finish tasks only (${phase} tasks always run)`);
    else cond = readEnum(p, o.if, join(path, 'if'), TASK_CONDITIONS, cond);
  }
  let every: number = TASK_DEFAULTS.every;
  if (o.every != null) {
    if (phase !== 'loop') p.add(join(path, 'every'), `every applies to loop tasks only (${phase} tasks run once)`);
    else every = readInt(p, o.every, join(path, 'every'), every, 1, 1_000_000);
  }
  return {
    name,
    if: cond,
    onError: readEnum(p, o.onError, join(path, 'onError'), ON_ERROR, TASK_DEFAULTS.onError),
    every,
    timeoutSeconds: readSeconds(p, o.timeoutSeconds, join(path, 'timeoutSeconds'), TASK_DEFAULTS.timeoutSeconds[kind]),
  };
}

// ---------------------------------------------------------------- kinds

function readReadiness(c: Ctx, o: Obj, path: string): Fields<ReadinessTaskSpec> {
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
    path: readPath(p, o.path, join(path, 'path'), TASK_DEFAULTS.readiness.path),
    intervalSeconds: readSeconds(p, o.intervalSeconds, join(path, 'intervalSeconds'), TASK_DEFAULTS.readiness.intervalSeconds),
  };
}

function readLoad(c: Ctx, o: Obj, path: string): Fields<LoadTaskSpec> {
  const { p } = c;
  const url = o.url == null ? null : readUrl(p, o.url, join(path, 'url'), false);
  const versions = readVersionList(c, o.versions, join(path, 'versions'));
  const qpsPath = join(path, 'qps');
  let qps = 1;
  if (o.qps == null) p.add(qpsPath, `required: requests per second${versions.length > 0 ? ' for each listed version' : ''}, > 0 and <= ${MAX_QPS}`);
  else qps = readPositive(p, o.qps, qpsPath, 1, MAX_QPS);
  if (!p.has(qpsPath) && qps * Math.max(versions.length, 1) > MAX_QPS) {
    p.add(qpsPath, `qps applies to each of the ${versions.length} versions: ${qps * versions.length} in total exceeds ${MAX_QPS}`);
  }
  let durationSeconds: number | null = null;
  let requests: number | null = null;
  if (o.durationSeconds != null) durationSeconds = readPositive(p, o.durationSeconds, join(path, 'durationSeconds'), 1, MAX_TASK_SECONDS);
  if (o.requests != null) requests = readInt(p, o.requests, join(path, 'requests'), 1, 1, Number.MAX_SAFE_INTEGER);
  if ((o.durationSeconds == null) === (o.requests == null)) {
    p.add(path, 'needs exactly one of durationSeconds and requests (how long, or how many requests)');
  }
  const methodPath = join(path, 'method');
  let method: string = TASK_DEFAULTS.load.method;
  if (o.method != null) {
    if (typeof o.method === 'string' && METHOD.test(o.method.toUpperCase())) method = o.method.toUpperCase();
    else expected(p, methodPath, 'an HTTP method such as GET or POST', o.method, null);
  }
  const body = readOptText(p, o.body, join(path, 'body'), 'the request body as a string');
  const bodyFile = readOptText(p, o.bodyFile, join(path, 'bodyFile'), 'the path of a file holding the request body');
  if (o.body != null && o.bodyFile != null) p.add(join(path, 'bodyFile'), 'set body or bodyFile, not both');
  if ((o.body != null || o.bodyFile != null) && (method === 'GET' || method === 'HEAD')) {
    p.add(join(path, o.body != null ? 'body' : 'bodyFile'), `a ${method} request carries no body (the proxy does not forward one): set method, e.g. POST`);
  }
  const headers = readHeaders(c, o.headers, join(path, 'headers'));
  if (versions.length > 0 && Object.keys(headers).some((h) => h.toLowerCase() === 'x-sluice-pin')) {
    p.add(join(path, 'headers'), 'x-sluice-pin is set by Sluice for the listed versions');
  }
  return {
    url,
    path: readPath(p, o.path, join(path, 'path'), TASK_DEFAULTS.load.path),
    qps,
    durationSeconds,
    requests,
    concurrency: readInt(p, o.concurrency, join(path, 'concurrency'), TASK_DEFAULTS.load.concurrency, 1, MAX_CONCURRENCY),
    method,
    headers,
    body,
    bodyFile,
    versions,
  };
}

function readNotify(c: Ctx, o: Obj, path: string): Fields<NotifyTaskSpec> {
  const { p } = c;
  const urlPath = join(path, 'url');
  let url = '';
  if (o.url == null) p.add(urlPath, 'required: the URL to POST the summary to (may use {{env.NAME}} for a secret webhook)');
  else url = readUrlTemplate(c, o.url, urlPath) ?? '';
  return {
    url,
    format: readEnum(p, o.format, join(path, 'format'), ['json', 'slack'] as const, TASK_DEFAULTS.notify.format),
    headers: readHeaders(c, o.headers, join(path, 'headers')),
  };
}

function readGithub(c: Ctx, o: Obj, path: string): Fields<GithubTaskSpec> {
  const { p } = c;
  const repoPath = join(path, 'repository');
  let repository = '';
  if (o.repository == null) p.add(repoPath, 'required: owner/name of the repository');
  else if (typeof o.repository === 'string' && REPOSITORY.test(o.repository)) repository = o.repository;
  else expected(p, repoPath, 'owner/name of a repository, such as acme/deploy', o.repository, null);
  const mode = readEnum(p, o.mode, join(path, 'mode'), ['dispatch', 'pullRequest'] as const, TASK_DEFAULTS.github.mode);
  let apiUrl: string = TASK_DEFAULTS.github.apiUrl;
  if (o.apiUrl != null) {
    const what = 'the GitHub REST API base URL, such as https://github.example.com/api/v3';
    if (typeof o.apiUrl !== 'string') expected(p, join(path, 'apiUrl'), what, o.apiUrl, null);
    else if (httpUrl(p, o.apiUrl, join(path, 'apiUrl'), what) !== null) apiUrl = o.apiUrl.replace(/\/+$/, '');
  }
  let tokenEnv: string = TASK_DEFAULTS.github.tokenEnv;
  if (o.tokenEnv != null) {
    if (typeof o.tokenEnv === 'string' && ENV_NAME.test(o.tokenEnv)) tokenEnv = o.tokenEnv;
    else expected(p, join(path, 'tokenEnv'), 'the name of the environment variable holding the token, such as GITHUB_TOKEN', o.tokenEnv, null);
  }
  let eventType: string = TASK_DEFAULTS.github.eventType;
  if (o.eventType != null) {
    const at = join(path, 'eventType');
    if (mode !== 'dispatch') p.add(at, 'eventType applies to mode: dispatch only');
    else if (typeof o.eventType === 'string' && o.eventType.length > 0 && o.eventType.length <= 100) eventType = o.eventType;
    else expected(p, at, 'a string of 1 to 100 characters', o.eventType, null);
  }
  if (mode === 'dispatch') {
    for (const key of ['path', 'content', 'base', 'branch', 'title']) {
      if (o[key] != null) p.add(join(path, key), `${key} applies to mode: pullRequest only`);
    }
    return { repository, mode, apiUrl, tokenEnv, eventType, path: null, content: null, base: null, branch: null, title: null };
  }
  const filePath = readRepoPath(p, o.path, join(path, 'path'));
  const contentPath = join(path, 'content');
  let content: string | null = null;
  if (o.content == null) p.add(contentPath, 'required in mode: pullRequest: the new content of the file (a template)');
  else content = readTemplate(c, o.content, contentPath, 'the new content of the file as a string');
  const title = o.title == null ? null : readTemplate(c, o.title, join(path, 'title'), 'the pull request title as a string');
  return {
    repository, mode, apiUrl, tokenEnv, eventType,
    path: filePath,
    content,
    base: readRef(p, o.base, join(path, 'base')) ?? TASK_DEFAULTS.github.base,
    branch: readRef(p, o.branch, join(path, 'branch')),
    title,
  };
}

function readExec(c: Ctx, o: Obj, path: string): Fields<ExecTaskSpec> {
  const { p } = c;
  const cmdPath = join(path, 'command');
  const command: string[] = [];
  const what = 'a non-empty list of strings (argv), such as [kubectl, apply, -f, promote.yaml]';
  if (o.command == null) p.add(cmdPath, `required: ${what}`);
  else if (!Array.isArray(o.command) || o.command.length === 0) expected(p, cmdPath, what, o.command, null);
  else {
    o.command.forEach((arg, i) => {
      const at = index(cmdPath, i);
      const s = readTemplate(c, arg, at, 'a string');
      if (s !== null && i === 0 && s.trim() === '') p.add(at, 'the command must not be empty');
      if (s !== null) command.push(s);
    });
  }
  const env: Record<string, string> = {};
  const envPath = join(path, 'env');
  if (o.env != null) {
    if (!isObj(o.env)) expected(p, envPath, 'a mapping of environment variable name to value', o.env, null);
    else {
      for (const [k, v] of Object.entries(o.env)) {
        const at = join(envPath, k);
        if (!ENV_NAME.test(k)) p.add(at, 'not an environment variable name (letters, digits and _, not starting with a digit)');
        else if (k.startsWith('SLUICE_')) p.add(at, 'SLUICE_* variables are set by Sluice (see docs/tasks.md)');
        if (typeof v !== 'string') expectedText(p, at, 'a string', v, null);
        else env[k] = v;
      }
    }
  }
  const cwd = readOptText(p, o.cwd, join(path, 'cwd'), 'a directory path');
  if (cwd === '') p.add(join(path, 'cwd'), 'must not be empty (leave it out to use the working directory of Sluice)');
  return { command, shell: readBool(p, o.shell, join(path, 'shell'), TASK_DEFAULTS.exec.shell), env, cwd: cwd === '' ? null : cwd };
}

// ---------------------------------------------------------------- field readers

/** Seconds: a number > 0 (fractions allowed, for tests and fast loops) up to a day. */
function readSeconds(p: Problems, raw: unknown, path: string, fallback: number): number {
  return readPositive(p, raw, path, fallback, MAX_TASK_SECONDS);
}

function readPositive(p: Problems, raw: unknown, path: string, fallback: number, max: number): number {
  const v = p.scalar(raw, path);
  if (v == null) return fallback;
  if (typeof v === 'number' && Number.isFinite(v) && v > 0 && v <= max) return v;
  return expected(p, path, `a number > 0 and <= ${max}`, v, fallback);
}

function readOptText(p: Problems, v: unknown, path: string, what: string): string | null {
  if (v == null) return null;
  if (typeof v === 'string') return v;
  return expectedText(p, path, what, v, null);
}

/** A path and optional query appended to a URL: starts with "/", no spaces. */
function readPath(p: Problems, v: unknown, path: string, fallback: string): string {
  if (v == null) return fallback;
  if (typeof v === 'string' && v.startsWith('/') && !/\s/.test(v) && !v.includes('#')) return v;
  return expectedText(p, path, 'a path starting with "/" (a query is allowed, no spaces or fragment)', v, fallback);
}

/** An absolute http(s) URL without credentials (they belong in headers); `query` allows one. */
function readUrl(p: Problems, v: unknown, path: string, query: boolean): string | null {
  const what = `an absolute http: or https: URL${query ? '' : ' (no query: put it in path)'}`;
  if (typeof v !== 'string') return expectedText(p, path, what, v, null);
  return httpUrl(p, v, path, what, { allowQuery: query }) === null ? null : v;
}

/**
 * A URL that may be a template. A literal one is checked now; one with
 * {{...}} (often `{{env.SLACK_WEBHOOK}}`, a secret) only for its variables:
 * it is checked again after rendering, when the task runs.
 */
function readUrlTemplate(c: Ctx, v: unknown, path: string): string | null {
  if (typeof v === 'string' && v.includes('{{')) return readTemplate(c, v, path, 'a URL');
  return readUrl(c.p, v, path, true);
}

/** A string template whose variables are the task variables, weights.<version> or env.NAME. */
function readTemplate(c: Ctx, v: unknown, path: string, what: string): string | null {
  if (typeof v !== 'string') return expectedText(c.p, path, what, v, null);
  for (const name of unknownVariables(v, [])) {
    const [root, member, ...rest] = name.split('.');
    const ok =
      (TASK_TEMPLATE_VARS as readonly string[]).includes(name) ||
      (root === 'weights' && member !== undefined && rest.length === 0 && c.versions.includes(member));
    if (!ok) {
      const known = [...TASK_TEMPLATE_VARS, ...c.versions.map((x) => `weights.${x}`), 'env.NAME'].join(', ');
      c.p.add(path, `unknown template variable {{${name}}} (known: ${known})`);
    }
  }
  return v;
}

function readHeaders(c: Ctx, v: unknown, path: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (v == null) return out;
  if (!isObj(v)) return expected(c.p, path, 'a mapping of header name to value', v, out);
  for (const [k, x] of Object.entries(v)) {
    const at = join(path, k);
    if (!HEADER_NAME.test(k)) c.p.add(at, 'not a valid header name');
    const value = readTemplate(c, x, at, 'a header value as a string');
    if (value !== null && /[\r\n]/.test(value)) c.p.add(at, 'a header value must not contain line breaks');
    else if (value !== null) out[k] = value;
  }
  return out;
}

function readVersionList(c: Ctx, v: unknown, path: string): string[] {
  if (v == null) return [];
  if (!Array.isArray(v)) return expected(c.p, path, 'a list of version names', v, []);
  const out: string[] = [];
  v.forEach((x, i) => {
    const at = index(path, i);
    if (typeof x !== 'string' || !c.versions.includes(x)) expected(c.p, at, `one of the experiment's versions (${c.versions.join(', ')})`, x, null);
    else if (out.includes(x)) c.p.add(at, `duplicate version ${JSON.stringify(x)}`);
    else out.push(x);
  });
  return out;
}

/** A file in the repository: relative, no "." or ".." segments. */
function readRepoPath(p: Problems, v: unknown, path: string): string | null {
  const what = 'the path of a file in the repository, such as deploy/values.yaml';
  if (v == null) return p.reject(path, `required in mode: pullRequest: ${what}`, null);
  if (typeof v !== 'string' || v === '') return expectedText(p, path, what, v, null);
  if (v.startsWith('/') || v.split('/').some((s) => s === '' || s === '.' || s === '..')) {
    return p.reject(path, `must be relative to the repository root, without empty, "." or ".." segments, got ${JSON.stringify(v)}`, null);
  }
  return v;
}

/** A branch name (the subset of git's rules that matters here). */
function readRef(p: Problems, v: unknown, path: string): string | null {
  if (v == null) return null;
  const ok = typeof v === 'string' && GIT_REF.test(v) && !/^[-/]|\/$|\.\.|\/\/|\.lock$/.test(v);
  return ok ? v : expectedText(p, path, 'a branch name such as main or sluice/promote', v, null);
}
