/**
 * Readers the process settings (process.ts) and the route schema (routes.ts)
 * share: token and host names, durations and sizes.
 */
import { Problems, expected } from '../common/validation.js';
import { parseDuration, parseSize } from './duration.js';

export const TOKEN_RE = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/i; // RFC 9110 token: header, cookie and method names
export const HOST_RE = /^(\*\.)?[a-z0-9_]([-a-z0-9_]*[a-z0-9])?(\.[a-z0-9_]([-a-z0-9_]*[a-z0-9])?)*$/;
export const MIB = 1_048_576;

// ---------------------------------------------------------------- scalar readers

export function readDuration(p: Problems, raw: unknown, path: string, fallback: number, allowZero = false): number {
  const v = p.scalar(raw, path);
  if (v == null) return fallback;
  const ms = parseDuration(v);
  if (ms !== null && (allowZero || ms > 0)) return ms;
  const what = allowZero ? 'a duration' : 'a duration > 0';
  return expected(p, path, `${what} such as 250ms, 2s, 1.5s, 1m or 1h (a bare number is milliseconds)`, v, fallback);
}

export function readSize(p: Problems, raw: unknown, path: string, fallback: number): number {
  const v = p.scalar(raw, path);
  if (v == null) return fallback;
  const bytes = parseSize(v);
  if (bytes !== null) return bytes;
  return expected(p, path, 'a size such as 512B, 64KiB, 1MiB or 1MB (a bare number is bytes)', v, fallback);
}
