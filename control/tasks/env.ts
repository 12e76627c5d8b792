/**
 * The environment experiment tasks and metric templates see: Sluice's own,
 * minus Sluice's secrets. Whoever may apply an experiment can read any
 * variable through `{{env.NAME}}`, a github task's `tokenEnv` or an exec
 * command, so the admin token, the pin token (both of which would let them
 * act as the operator) and a Redis URL with a password in it are not there.
 */

/** Variables that hold a Sluice secret, or point at one. */
export const SECRET_ENV_NAMES: ReadonlySet<string> = new Set([
  'SLUICE_TOKEN',
  'SLUICE_TOKEN_FILE',
  'SLUICE_PIN_TOKEN',
  'SLUICE_PIN_TOKEN_FILE',
]);

/** Whether a Redis URL carries credentials (`redis://user:pass@host`): such a URL is a secret. */
function hasCredentials(url: string): boolean {
  try {
    const u = new URL(url);
    return u.password !== '' || u.username !== '';
  } catch {
    // Not parseable (a sentinel list, say): keep it out rather than guess.
    return url.includes('@');
  }
}

/** The Redis URL as a secret value to hide wherever it appears, when it carries credentials; else null. */
export function redisSecret(url: string | null | undefined): string | null {
  return url && hasCredentials(url) ? url : null;
}

function isSecret(name: string, value: string | undefined, values: ReadonlySet<string>): boolean {
  if (SECRET_ENV_NAMES.has(name)) return true;
  if (value === undefined || value === '') return false;
  if (name === 'SLUICE_REDIS_URL') return hasCredentials(value);
  // The same secret under another name (API_TOKEN=$SLUICE_TOKEN, or a token read from a file).
  return values.has(value);
}

/**
 * A live view of `env` without Sluice's secrets: the names above, and any
 * variable whose value is one of `secretValues` (the admin token, the pin
 * token, whatever was read from a token file). Live, so variables set after
 * start are seen as they were before.
 */
export function withoutSecrets(
  env: Readonly<Record<string, string | undefined>>,
  secretValues: ReadonlyArray<string | null | undefined>,
): Readonly<Record<string, string | undefined>> {
  const values = new Set(secretValues.filter((v): v is string => typeof v === 'string' && v !== ''));
  const hidden = (k: string | symbol): boolean => typeof k === 'string' && isSecret(k, env[k], values);
  return new Proxy(env, {
    get: (target, k) => (hidden(k) ? undefined : Reflect.get(target, k)),
    has: (target, k) => !hidden(k) && Reflect.has(target, k),
    ownKeys: (target) => Reflect.ownKeys(target).filter((k) => !hidden(k)),
    getOwnPropertyDescriptor: (target, k) => (hidden(k) ? undefined : Reflect.getOwnPropertyDescriptor(target, k)),
    set: () => false,
    deleteProperty: () => false,
    defineProperty: () => false,
  });
}

/**
 * The environment of an exec command: `env` (already a view without secrets
 * when Sluice's own wiring made it) copied, with the secret names and the
 * given secret values dropped once more — a context built elsewhere (a test,
 * an embedding) must not leak them either.
 */
export function execEnvironment(env: Readonly<Record<string, string | undefined>>, secretValues: ReadonlyArray<string | null | undefined>): Record<string, string> {
  const values = new Set(secretValues.filter((v): v is string => typeof v === 'string' && v !== ''));
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined && !isSecret(k, v, values)) out[k] = v;
  return out;
}
