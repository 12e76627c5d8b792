/**
 * The field readers the task kinds share (seconds, paths, URLs, templates,
 * headers, version lists, repository paths, branch names) and their limits.
 * Like the rest of spec validation, every problem is added by path and
 * nothing throws.
 */
import type { Problems } from '../../common/validation.js';
import { expected, expectedText, httpUrl, index, isObj, join } from '../../common/validation.js';
import { unknownVariables } from '../metrics/template.js';
import type { TaskReadContext } from './types.js';

/** setTimeout overflows past ~24.8 days; a day is plenty for any task. */
export const MAX_TASK_SECONDS = 86_400;
export const MAX_QPS = 10_000;
export const MAX_CONCURRENCY = 1_024;

/** The variables a task template may use (besides {{env.NAME}}); `weights` only as weights.<version>. */
export const TASK_TEMPLATE_VARS = ['experiment', 'route', 'state', 'winner', 'iteration', 'reason'] as const;

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const GIT_REF = /^[A-Za-z0-9._/-]+$/;

/** Seconds: a number > 0 (fractions allowed, for tests and fast loops) up to a day. */
export function readSeconds(p: Problems, raw: unknown, path: string, fallback: number): number {
  return readPositive(p, raw, path, fallback, MAX_TASK_SECONDS);
}

export function readPositive(p: Problems, raw: unknown, path: string, fallback: number, max: number): number {
  const v = p.scalar(raw, path);
  if (v == null) return fallback;
  if (typeof v === 'number' && Number.isFinite(v) && v > 0 && v <= max) return v;
  return expected(p, path, `a number > 0 and <= ${max}`, v, fallback);
}

export function readOptText(p: Problems, v: unknown, path: string, what: string): string | null {
  if (v == null) return null;
  if (typeof v === 'string') return v;
  return expectedText(p, path, what, v, null);
}

/** A path and optional query appended to a URL: starts with "/", no spaces. */
export function readPath(p: Problems, v: unknown, path: string, fallback: string): string {
  if (v == null) return fallback;
  if (typeof v === 'string' && v.startsWith('/') && !/\s/.test(v) && !v.includes('#')) return v;
  return expectedText(p, path, 'a path starting with "/" (a query is allowed, no spaces or fragment)', v, fallback);
}

/** An absolute http(s) URL without credentials (they belong in headers); `query` allows one. */
export function readUrl(p: Problems, v: unknown, path: string, query: boolean): string | null {
  const what = `an absolute http: or https: URL${query ? '' : ' (no query: put it in path)'}`;
  if (typeof v !== 'string') return expectedText(p, path, what, v, null);
  return httpUrl(p, v, path, what, { allowQuery: query }) === null ? null : v;
}

/**
 * A URL that may be a template. A literal one is checked now; one with
 * {{...}} (often `{{env.SLACK_WEBHOOK}}`, a secret) only for its variables:
 * it is checked again after rendering, when the task runs.
 */
export function readUrlTemplate(c: TaskReadContext, v: unknown, path: string): string | null {
  if (typeof v === 'string' && v.includes('{{')) return readTemplate(c, v, path, 'a URL');
  return readUrl(c.p, v, path, true);
}

/** A string template whose variables are the task variables, weights.<version> or env.NAME. */
export function readTemplate(c: TaskReadContext, v: unknown, path: string, what: string): string | null {
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

export function readHeaders(c: TaskReadContext, v: unknown, path: string): Record<string, string> {
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

export function readVersionList(c: TaskReadContext, v: unknown, path: string): string[] {
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
export function readRepoPath(p: Problems, v: unknown, path: string): string | null {
  const what = 'the path of a file in the repository, such as deploy/values.yaml';
  if (v == null) return p.reject(path, `required in mode: pullRequest: ${what}`, null);
  if (typeof v !== 'string' || v === '') return expectedText(p, path, what, v, null);
  if (v.startsWith('/') || v.split('/').some((s) => s === '' || s === '.' || s === '..')) {
    return p.reject(path, `must be relative to the repository root, without empty, "." or ".." segments, got ${JSON.stringify(v)}`, null);
  }
  return v;
}

/** A branch name (the subset of git's rules that matters here). */
export function readRef(p: Problems, v: unknown, path: string): string | null {
  if (v == null) return null;
  const ok = typeof v === 'string' && GIT_REF.test(v) && !/^[-/]|\/$|\.\.|\/\/|\.lock$/.test(v);
  return ok ? v : expectedText(p, path, 'a branch name such as main or sluice/promote', v, null);
}
