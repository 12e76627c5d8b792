/**
 * Pinning synthetic load to a version: the `load` task (control/tasks/load.ts)
 * sends `x-sluice-pin: <token>:<version>`; the proxy (proxy/handle-request.ts)
 * routes such a request to that version when the token is its own, and
 * strips the header before forwarding (proxy/headers.ts). The token keeps
 * clients from choosing versions for themselves.
 */
import { timingSafeEqual } from 'node:crypto';

export const PIN_HEADER = 'x-sluice-pin';

export function pinValue(token: string, version: string): string {
  return `${token}:${version}`;
}

/**
 * Reads `<token>:<version>` against the proxy's own `<token>:` prefix in
 * constant time: a prefix compare that stops at the first wrong byte would
 * let a client find the token byte by byte from response times. Only the
 * prefix's length can be learnt, as with any fixed-length secret.
 *
 * No allocation per call: header values are latin1 strings, written into one
 * scratch buffer the size of the prefix (the request path is synchronous, so
 * one buffer per matcher is enough).
 */
export class PinMatcher {
  readonly #prefix: Buffer;
  readonly #scratch: Buffer;
  /** False when the token cannot appear in a header value (a character above U+00FF): then nothing matches. */
  readonly #usable: boolean;

  /** `prefix` is `<token>:`. */
  constructor(prefix: string) {
    this.#prefix = Buffer.from(prefix, 'latin1');
    this.#scratch = Buffer.alloc(this.#prefix.length);
    // latin1 keeps only the low byte of each character: a token outside latin1 would match other values.
    this.#usable = prefix.length > 1 && !/[^\u0000-\u00ff]/.test(prefix);
  }

  /** The version named by a pin carrying this prefix; null for any other value. */
  version(value: string): string | null {
    const n = this.#prefix.length;
    if (!this.#usable || value.length <= n) return null;
    this.#scratch.write(value, 0, n, 'latin1');
    return timingSafeEqual(this.#scratch, this.#prefix) ? value.slice(n) : null;
  }
}
