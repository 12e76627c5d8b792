/**
 * Where the processes and the CLI client get the admin token and the exec
 * opt-in, and the rule every state-changing listener obeys: beyond loopback,
 * a token or no start.
 *
 * `--token-file` / SLUICE_TOKEN_FILE exist because a `--token` argument is
 * visible to every user of the machine in `ps`, and an environment variable
 * is inherited by every child; a file's content is read once and kept only
 * in memory (never put back into the environment, so tasks cannot see it).
 */
import { readFileSync } from 'node:fs';
import { SluiceError } from '../common/errors.js';
import { osReason } from '../common/validation.js';
import type { ListenAddress } from '../config/types.js';
import { isLoopback } from '../config/process.js';

export interface TokenFlags {
  readonly token?: string;
  readonly tokenFile?: string;
}

type Env = Readonly<Record<string, string | undefined>>;

const nonEmpty = (s: string | undefined): string | undefined => (s === undefined || s === '' ? undefined : s);

/** The token in a file: its content without surrounding whitespace (editors add a final newline). */
export function readTokenFile(file: string, source: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new SluiceError('SLUICE_CONFIG_READ', `cannot read the token file ${file} (${source}): ${osReason(err)}`);
  }
  const token = text.trim();
  // Never echo the content: it is the secret.
  if (token === '') throw new SluiceError('SLUICE_CONFIG_INVALID', `the token file ${file} (${source}) is empty`, [{ path: source, message: 'empty file' }]);
  if (/\s/.test(token)) {
    throw new SluiceError('SLUICE_CONFIG_INVALID', `the token in ${file} (${source}) contains whitespace`, [{ path: source, message: 'a token is sent as a Bearer token: no whitespace inside it' }]);
  }
  return token;
}

function oneOf(a: string | undefined, aName: string, b: string | undefined, bName: string): void {
  if (a !== undefined && b !== undefined) {
    throw new SluiceError('SLUICE_CONFIG_INVALID', `give ${aName} or ${bName}, not both`, [{ path: bName, message: `${aName} is given too` }]);
  }
}

/**
 * The token given on the command line or as a file: `--token`, `--token-file`,
 * else SLUICE_TOKEN_FILE when SLUICE_TOKEN is not set. Undefined when none of
 * these is given — SLUICE_TOKEN itself is then read by the config loader, so
 * its errors name it.
 */
export function tokenOverride(flags: TokenFlags, env: Env = process.env): string | undefined {
  oneOf(flags.token, '--token', flags.tokenFile, '--token-file');
  if (flags.token !== undefined) return flags.token;
  if (flags.tokenFile !== undefined) return readTokenFile(flags.tokenFile, '--token-file');
  const fromEnv = nonEmpty(env.SLUICE_TOKEN);
  const fileFromEnv = nonEmpty(env.SLUICE_TOKEN_FILE);
  oneOf(fromEnv, 'SLUICE_TOKEN', fileFromEnv, 'SLUICE_TOKEN_FILE');
  return fileFromEnv === undefined ? undefined : readTokenFile(fileFromEnv, 'SLUICE_TOKEN_FILE');
}

/** The token from every source a process without a config file has (`sluice control`, the CLI client); null: none. */
export function resolveToken(flags: TokenFlags, env: Env = process.env): string | null {
  return tokenOverride(flags, env) ?? nonEmpty(env.SLUICE_TOKEN) ?? null;
}

/** `--allow-exec` or SLUICE_ALLOW_EXEC=1|true: the operator lets experiments run commands in this process. */
export function allowExec(flag: boolean | undefined, env: Env = process.env): boolean {
  if (flag === true) return true;
  const v = nonEmpty(env.SLUICE_ALLOW_EXEC)?.toLowerCase();
  if (v === undefined || v === '0' || v === 'false') return false;
  if (v === '1' || v === 'true') return true;
  throw new SluiceError('SLUICE_CONFIG_INVALID', 'SLUICE_ALLOW_EXEC must be 1, true, 0 or false', [{ path: 'SLUICE_ALLOW_EXEC', message: `got ${JSON.stringify(env.SLUICE_ALLOW_EXEC)}` }]);
}

/**
 * Refuses to serve a listener that can change state (admin API, control API)
 * beyond loopback without a token. Called right before every such listen, in
 * every mode, whatever validated the address before: one rule, one place.
 */
export function requireTokenBeyondLoopback(what: string, at: ListenAddress, token: string | null): void {
  if (token !== null && token !== '') return;
  if (isLoopback(at.host)) return;
  throw new SluiceError('SLUICE_CONFIG_INVALID', `the ${what} on ${at.host}:${at.port} is reachable beyond loopback and needs a token`, [
    { path: 'token', message: `give --token-file, SLUICE_TOKEN_FILE, SLUICE_TOKEN or --token (or listen on 127.0.0.1)` },
  ]);
}
