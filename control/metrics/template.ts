/**
 * `{{name}}` templates for metric queries and tasks. Deliberately tiny: no
 * logic, no HTML escaping (PromQL and URLs must arrive as written), and an
 * unknown variable is an error rather than an empty string, so a typo shows
 * up in validation instead of as a query that silently matches nothing.
 *
 * `{{env.NAME}}` reads the environment at render time. Secrets come in that
 * way, so every render also yields a masked text with each env value
 * replaced by `***`: that one is what logs, status, reports and
 * `sluice metrics test` show.
 */
import { SluiceError } from '../../common/errors.js';

const VAR = /\{\{\s*([A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*)\s*\}\}/g;
export const MASK = '***';

/** Values a template may name; nested records are reached with dots (`params.id`, `weights.v2`). */
export interface TemplateVars {
  readonly [name: string]: string | number | boolean | null | TemplateVars;
}

export interface Rendered {
  readonly text: string;
  /** The same text with every `{{env.NAME}}` value shown as ***. */
  readonly masked: string;
}

/** Renders; throws SLUICE_METRIC_TEMPLATE naming the unknown variable or the unset environment variable. */
export function render(template: string, vars: TemplateVars, env: Readonly<Record<string, string | undefined>>): Rendered {
  let text = '';
  let masked = '';
  let last = 0;
  for (const m of template.matchAll(VAR)) {
    const literal = template.slice(last, m.index);
    text += literal;
    masked += literal;
    last = m.index + m[0].length;
    const name = m[1]!;
    if (name.startsWith('env.')) {
      const key = name.slice(4);
      const value = env[key];
      if (value === undefined) throw new SluiceError('SLUICE_METRIC_TEMPLATE', `environment variable ${key} is not set (used as {{${name}}})`);
      text += value;
      masked += MASK;
      continue;
    }
    const value = lookup(vars, name);
    if (value === undefined) {
      throw new SluiceError('SLUICE_METRIC_TEMPLATE', `unknown template variable {{${name}}} (known: ${known(vars).join(', ')}, env.NAME)`);
    }
    text += value;
    masked += value;
  }
  text += template.slice(last);
  masked += template.slice(last);
  return { text, masked };
}

/** The variables a template uses, for validation: names that are not env.* and not under `roots` are returned. */
export function unknownVariables(template: string, roots: readonly string[]): string[] {
  const out: string[] = [];
  for (const m of template.matchAll(VAR)) {
    const name = m[1]!;
    const root = name.split('.')[0]!;
    if (root === 'env' && name.length > 4) continue;
    if (!roots.includes(root) && !roots.includes(name)) out.push(name);
  }
  return out;
}

/** Every variable a template names, in order (with repeats), e.g. ['version', 'params.id', 'env.TOKEN']. */
export function variablesOf(template: string): string[] {
  return [...template.matchAll(VAR)].map((m) => m[1]!);
}

/** Replaces every occurrence of a secret (an env value used by a template) in free text with ***. */
export function maskSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) if (s.length > 0) out = out.split(s).join(MASK);
  return out;
}

/** The values of the env variables a template refers to (to mask them in error messages). */
export function secretsOf(template: string, env: Readonly<Record<string, string | undefined>>): string[] {
  const out: string[] = [];
  for (const m of template.matchAll(VAR)) {
    const name = m[1]!;
    if (name.startsWith('env.')) {
      const v = env[name.slice(4)];
      if (v !== undefined && v !== '') out.push(v);
    }
  }
  return out;
}

function lookup(vars: TemplateVars, name: string): string | undefined {
  let cur: TemplateVars | string | number | boolean | null | undefined = vars;
  for (const part of name.split('.')) {
    if (cur === null || typeof cur !== 'object' || !Object.hasOwn(cur, part)) return undefined;
    cur = (cur as TemplateVars)[part];
  }
  if (cur === undefined || (cur !== null && typeof cur === 'object')) return undefined;
  return cur === null ? '' : String(cur);
}

function known(vars: TemplateVars, prefix = ''): string[] {
  return Object.entries(vars).flatMap(([k, v]) => (v !== null && typeof v === 'object' ? known(v, `${prefix}${k}.`) : [`${prefix}${k}`]));
}
