/**
 * What the two document validators share: config/config.ts (`sluice.yaml`) and
 * control/spec.ts (`kind: Experiment`). Both collect every problem by path and
 * report them all at once, so the helpers here record a problem and hand back a
 * stand-in value rather than throw.
 */
import type { YAMLError } from 'yaml';
import type { ErrorDetail } from './errors.js';

export type Obj = Record<string, unknown>;

const NAME_RE = /^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$/i;
const NAME_RULE = 'letters, digits, "-", "_" and "." starting and ending with a letter or digit';

// ---------------------------------------------------------------- problem collection

export class Problems {
  list: ErrorDetail[] = [];

  add(path: string, message: string): void {
    this.list.push({ path, message });
  }

  /** Records a problem and yields a stand-in value so validation can go on. */
  reject<T>(path: string, message: string, standIn: T): T {
    this.add(path, message);
    return standIn;
  }

  /** Whether `path` (or something under it) was already reported: follow-on rules stay quiet. */
  has(path: string): boolean {
    return this.list.some((d) => d.path === path || d.path.startsWith(`${path}.`) || d.path.startsWith(`${path}[`));
  }

  /** The value a number or boolean reader checks; config/config.ts coerces `${VAR}` results here. */
  scalar(v: unknown, _path: string): unknown {
    return v;
  }

  /** How a wrong value is named in "got ...". */
  describe(v: unknown): string {
    return describe(v);
  }
}

// ---------------------------------------------------------------- structure helpers

export function isObj(v: unknown): v is Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** A mapping with a closed set of keys; null (after reporting) when `v` is not a mapping. */
export function mapping(p: Problems, v: unknown, path: string, allowed: readonly string[]): Obj | null {
  if (!isObj(v)) return expected(p, path, 'a mapping', v, null);
  for (const key of Object.keys(v)) {
    if (!allowed.includes(key)) p.add(join(path, key), `unknown field (allowed: ${allowed.join(', ')})`);
  }
  return v;
}

/** Like `mapping`, but absent (or an empty `key:`) means "all defaults". */
export function optMapping(p: Problems, v: unknown, path: string, allowed: readonly string[]): Obj {
  return v == null ? {} : (mapping(p, v, path, allowed) ?? {});
}

/** Items of an optional list, each with its path. */
export function optList(p: Problems, v: unknown, path: string, what: string): Array<[unknown, string]> {
  if (v == null) return [];
  if (!Array.isArray(v)) return expected(p, path, what, v, []);
  return v.map((x, i) => [x, index(path, i)]);
}

/** A list of at least one `what` (routes, versions), each read by `readItem`, with unique names. */
export function namedList<T extends { name: string }>(
  p: Problems,
  v: unknown,
  path: string,
  what: string,
  required: string,
  readItem: (v: unknown, path: string) => T,
): T[] {
  if (v == null || (Array.isArray(v) && v.length === 0)) return p.reject(path, required, []);
  if (!Array.isArray(v)) return expected(p, path, `a list of ${what}s`, v, []);
  const items = v.map((x, i) => readItem(x, index(path, i)));
  const seen = new Set<string>();
  items.forEach(({ name }, i) => {
    // An invalid name ('') was reported already.
    if (name !== '' && seen.has(name)) p.add(`${index(path, i)}.name`, `duplicate ${what} name ${JSON.stringify(name)}`);
    seen.add(name);
  });
  return items;
}

// ---------------------------------------------------------------- readers

export function readName(p: Problems, v: unknown, path: string, maxLength = Infinity): string {
  if (v == null) return p.reject(path, 'required', '');
  if (typeof v !== 'string' || !NAME_RE.test(v)) return expectedText(p, path, `a name of ${NAME_RULE}`, v, '');
  if (v.length > maxLength) return p.reject(path, `must be at most ${maxLength} characters, got ${v.length}`, '');
  return v;
}

// Not through `p.scalar`: a `${VAR}` that yields "true" is still the string "true" to an enum.
export function readEnum<T extends string, F>(p: Problems, v: unknown, path: string, allowed: readonly T[], standIn: F): T | F {
  if (v == null) return standIn;
  if (typeof v === 'string' && (allowed as readonly string[]).includes(v)) return v as T;
  return expected(p, path, `one of ${allowed.join(', ')}`, v, standIn);
}

export function readInt(p: Problems, raw: unknown, path: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const v = p.scalar(raw, path);
  if (v == null) return fallback;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= min && v <= max) return v;
  const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `${min}..${max}`;
  return expected(p, path, `an integer ${range}`, v, fallback);
}

export function readBool(p: Problems, raw: unknown, path: string, fallback: boolean): boolean {
  const v = p.scalar(raw, path);
  if (v == null) return fallback;
  if (typeof v === 'boolean') return v;
  return expected(p, path, 'true or false', v, fallback);
}

/**
 * The checks every upstream URL gets; the caller says what to call it and
 * what to keep of it. `allowQuery`: a query is part of the target (a webhook
 * URL); a fragment never is.
 */
export function httpUrl(p: Problems, v: string, path: string, what: string, opts: { allowQuery?: boolean } = {}): URL | null {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    return expected(p, path, what, v, null);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return p.reject(path, `expected an http: or https: URL, got ${u.protocol}`, null);
  if (u.username || u.password) return p.reject(path, 'must not contain credentials (put them in headers)', null);
  if (opts.allowQuery) return u.hash || v.includes('#') ? p.reject(path, 'must not have a fragment', null) : u;
  // Checked on the text too: `http://h/?` parses with an empty search.
  if (u.search || u.hash || /[?#]/.test(v)) return p.reject(path, 'must not have a query or fragment', null);
  return u;
}

// ---------------------------------------------------------------- messages and paths

/** "expected X, got Y": every type error names both. */
export function expected<T>(p: Problems, path: string, what: string, got: unknown, standIn: T): T {
  return p.reject(path, `expected ${what}, got ${p.describe(got)}`, standIn);
}

/** For text fields: a YAML author who wrote `x-canary: true` meant the string, so say how to get it. */
export function expectedText<T>(p: Problems, path: string, what: string, got: unknown, standIn: T): T {
  const hint = typeof got === 'number' || typeof got === 'boolean' ? ` (quote it: "${String(got)}")` : '';
  return p.reject(path, `expected ${what}, got ${p.describe(got)}${hint}`, standIn);
}

export function describe(v: unknown): string {
  if (typeof v === 'string') return `string ${JSON.stringify(v)}`;
  if (typeof v === 'number' || typeof v === 'boolean') return `${typeof v} ${String(v)}`;
  return typeOf(v);
}

/** The kind of a value without its content, for secrets. */
export function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (isObj(v)) return 'a mapping';
  if (typeof v === 'object') return `a ${(v as object).constructor?.name ?? 'object'}`;
  return typeof v === 'string' ? 'a string' : typeof v;
}

export function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

export function index(path: string, i: number): string {
  return `${path}[${i}]`;
}

export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

export function yamlDetail(e: YAMLError): ErrorDetail {
  // yaml appends "at line L, column C:" and a source excerpt; keep the reason and report L:C compactly.
  const reason = e.message.split(/ at line \d+, column \d+/)[0] ?? e.message;
  const pos = e.linePos?.[0];
  return { path: '', message: pos ? `${pos.line}:${pos.col}: ${reason}` : reason };
}

export function osReason(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  // "ENOENT: no such file or directory, open 'x'" → "no such file or directory (ENOENT)"
  const m = /^[A-Z]+: ([^,]+)/.exec(e.message ?? '');
  return m?.[1] && e.code ? `${m[1]} (${e.code})` : String(e.message ?? err);
}

export function deepFreeze<T>(v: T): T {
  // RegExp and Set stay unfrozen: freezing them does not make them immutable anyway.
  if (typeof v !== 'object' || v === null || v instanceof RegExp || v instanceof Set || Object.isFrozen(v)) return v;
  for (const x of Object.values(v)) deepFreeze(x);
  return Object.freeze(v);
}
