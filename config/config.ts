/**
 * Loads `sluice.yaml` into the frozen `SluiceConfig`. Validation happens once,
 * here, and reports every problem at once: a user fixing a config should not
 * have to run Sluice ten times to find ten mistakes. This file parses the text,
 * substitutes `${VAR}` references and applies the `SLUICE_*`/flag overrides;
 * process.ts reads the process settings and routes.ts the route schema.
 */
import { readFileSync } from 'node:fs';
import { SluiceError } from '../common/errors.js';
import { parseYaml } from '../common/yaml.js';
import { Problems, deepFreeze, index, isObj, join, osReason, plural, type Obj } from '../common/validation.js';
import { readConfig } from './process.js';
import type { SluiceConfig } from './types.js';

export type LoadOptions = {
  env?: NodeJS.ProcessEnv;
  overrides?: { listen?: string; adminListen?: string; token?: string; redis?: string; logLevel?: string };
};

type Overrides = NonNullable<LoadOptions['overrides']>;

const DEFAULT_NAME = 'sluice.yaml';

/** The settings that CLI flags and `SLUICE_*` variables may override, in one place. */
const OVERRIDABLE = [
  { key: 'listen', section: null, field: 'listen', env: 'SLUICE_LISTEN', flag: '--listen' },
  { key: 'adminListen', section: 'admin', field: 'listen', env: 'SLUICE_ADMIN_LISTEN', flag: '--admin-listen' },
  { key: 'token', section: 'admin', field: 'token', env: 'SLUICE_TOKEN', flag: '--token' },
  { key: 'redis', section: 'store', field: 'redis', env: 'SLUICE_REDIS_URL', flag: '--redis' },
  { key: 'logLevel', section: null, field: 'logLevel', env: 'SLUICE_LOG_LEVEL', flag: '--log-level' },
] as const;

// ---------------------------------------------------------------- entry points

/** Reads, parses and validates a config file. */
export function loadConfig(file: string, opts: LoadOptions = {}): SluiceConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new SluiceError('SLUICE_CONFIG_READ', `cannot read ${file}: ${osReason(err)}`);
  }
  return parseNamed(text, opts, file);
}

/** Parses YAML (or JSON) text and validates it. */
export function parseConfig(text: string, opts: LoadOptions = {}): SluiceConfig {
  return parseNamed(text, opts, DEFAULT_NAME);
}

/**
 * Validates an already-parsed document: `${VAR}` substitution, overrides,
 * defaults, every check. Throws one SLUICE_CONFIG_INVALID listing all problems.
 */
export function validateConfig(raw: unknown, opts: LoadOptions = {}): SluiceConfig {
  return validateNamed(raw, opts, DEFAULT_NAME);
}

function parseNamed(text: string, opts: LoadOptions, name: string): SluiceConfig {
  const refs = protectRefs(text);
  return validateNamed(refs.restore(parseYaml(refs.text, 'SLUICE_CONFIG_INVALID', `${name} is not valid YAML`)), opts, name);
}

// ---------------------------------------------------------------- ${VAR} protection while parsing

const REF_TEXT_RE = /\$\{[^}\n"']*\}/g;
const PRIVATE_USE_RE = /[\uE000-\uF8FF]/;
const PLACEHOLDER_RE = /([\uE000-\uF8FE])\uF8FF*/g;
const MAX_REFS = 0xf8fe - 0xe000 + 1;

/**
 * `{ token: ${T} }` is not valid YAML: inside a flow collection "{" and "}" are
 * indicators. docs/contract.md writes references that way, so each `${...}` is swapped
 * for a same-length run of private-use characters (plain text to YAML, and error
 * columns stay true), then swapped back in the parsed strings.
 */
function protectRefs(text: string): { text: string; restore: (v: unknown) => unknown } {
  const refs = text.match(REF_TEXT_RE) ?? [];
  // Text that already uses private-use characters is left alone rather than risk a mix-up.
  if (refs.length === 0 || refs.length > MAX_REFS || PRIVATE_USE_RE.test(text)) return { text, restore: (v) => v };
  let i = 0;
  const protectedText = text.replace(REF_TEXT_RE, (ref) => String.fromCharCode(0xe000 + i++) + '\uF8FF'.repeat(ref.length - 1));
  const unswap = (s: string): string => s.replace(PLACEHOLDER_RE, (_, c: string) => refs[c.charCodeAt(0) - 0xe000] ?? c);
  const restore = (v: unknown): unknown => {
    if (typeof v === 'string') return unswap(v);
    if (Array.isArray(v)) return v.map(restore);
    if (isObj(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [unswap(k), restore(x)]));
    return v;
  };
  return { text: protectedText, restore };
}

function validateNamed(raw: unknown, opts: LoadOptions, name: string): SluiceConfig {
  const env = opts.env ?? process.env;
  const p = new EnvProblems();
  const doc = applyOverrides(p, substituteAll(p, raw, env, ''), opts.overrides ?? {}, env);
  const config = readConfig(p, doc);
  if (p.list.length > 0) {
    throw new SluiceError('SLUICE_CONFIG_INVALID', `${name} has ${plural(p.list.length, 'problem')}`, p.list);
  }
  return deepFreeze(config);
}

// ---------------------------------------------------------------- problem collection

class EnvProblems extends Problems {
  /** Paths whose value came from a `${VAR}`: numbers and booleans may arrive there as strings. */
  readonly substituted = new Set<string>();
  /** Where an overridden value came from, appended to its errors so users look in the right place. */
  readonly sources = new Map<string, string>();
  /** A failed substitution already explains the field; follow-on type errors would only mislead. */
  private readonly envFailed = new Set<string>();

  override add(path: string, message: string): void {
    if (this.envFailed.has(path)) return;
    const source = this.sources.get(path);
    this.list.push({ path, message: source ? `${message} (from ${source})` : message });
  }

  addEnv(path: string, message: string): void {
    this.list.push({ path, message });
    this.envFailed.add(path);
  }

  /** An overridden field never uses the file's value, so its substitution errors are moot. */
  forgetEnv(path: string): void {
    if (!this.envFailed.delete(path)) return;
    this.list = this.list.filter((d) => d.path !== path);
  }

  /** Coerces `"42"`/`"true"` from a substitution; elsewhere the type the user wrote stands. */
  override scalar(v: unknown, path: string): unknown {
    if (typeof v !== 'string' || !this.substituted.has(path)) return v;
    if (/^-?\d+(\.\d+)?$/.test(v)) return Number(v);
    if (v === 'true' || v === 'false') return v === 'true';
    return v;
  }
}

// ---------------------------------------------------------------- ${VAR} substitution

const REF_RE = /\$\$\{|\$\{([^}]*)\}|\$\{/g;
const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

// Substitution runs on parsed scalars, never on raw text, so a variable's value
// cannot inject YAML structure.
function substituteAll(p: EnvProblems, v: unknown, env: NodeJS.ProcessEnv, path: string): unknown {
  if (typeof v === 'string') return v.includes('${') ? substitute(p, v, env, path) : v;
  if (Array.isArray(v)) return v.map((x, i) => substituteAll(p, x, env, index(path, i)));
  if (isObj(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, substituteAll(p, x, env, join(path, k))]));
  return v;
}

function substitute(p: EnvProblems, text: string, env: NodeJS.ProcessEnv, path: string): string {
  p.substituted.add(path);
  return text.replace(REF_RE, (whole: string, body: string | undefined) => {
    if (whole === '$${') return '${';
    if (body === undefined) {
      p.addEnv(path, 'unterminated ${ (write $${ for a literal ${)');
      return whole;
    }
    const sep = body.indexOf(':-');
    const name = sep < 0 ? body : body.slice(0, sep);
    if (!ENV_NAME_RE.test(name)) {
      p.addEnv(path, `invalid reference \${${body}} (expected \${NAME} or \${NAME:-default})`);
      return whole;
    }
    const value = env[name];
    if (sep >= 0) return value ? value : body.slice(sep + 2);
    if (value !== undefined) return value;
    p.addEnv(path, `environment variable ${name} is not set (write \${${name}:-} to make it optional)`);
    return '';
  });
}

// ---------------------------------------------------------------- overrides

function applyOverrides(p: EnvProblems, doc: unknown, overrides: Overrides, env: NodeJS.ProcessEnv): unknown {
  if (!isObj(doc) && doc != null) return doc; // reported as a type error later
  const out: Obj = { ...(doc ?? {}) };
  for (const o of OVERRIDABLE) {
    const flagValue = overrides[o.key];
    // An empty variable counts as unset: `SLUICE_TOKEN=` in a compose file should not wipe the file's value.
    const envValue = env[o.env] === '' ? undefined : env[o.env];
    const value = flagValue ?? envValue;
    if (value === undefined) continue;
    const path = o.section ? `${o.section}.${o.field}` : o.field;
    if (!setField(out, o.section, o.field, value)) continue;
    p.forgetEnv(path);
    p.sources.set(path, flagValue !== undefined ? o.flag : o.env);
  }
  return out;
}

function setField(doc: Obj, section: string | null, field: string, value: string): boolean {
  if (section === null) {
    // `listen: { address, tls }`: the override replaces the address and keeps the TLS settings.
    const current = doc[field];
    doc[field] = isObj(current) ? { ...current, address: value } : value;
    return true;
  }
  const current = doc[section];
  if (current != null && !isObj(current)) return false;
  doc[section] = { ...(current ?? {}), [field]: value };
  return true;
}
