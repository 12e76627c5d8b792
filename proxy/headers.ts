/**
 * Header rewriting in both directions. Hop-by-hop headers (RFC 9110 §7.6.1)
 * and every header the peer names in `Connection` describe one connection,
 * not the message, and must not cross the proxy.
 */
import type { IncomingMessage } from 'node:http';
import { PIN_HEADER } from '../common/pin.js';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** Header names a Connection header value lists, beyond close/keep-alive; null when none. */
export function connectionTokens(value: string | undefined): Set<string> | null {
  if (value === undefined) return null;
  let tokens: Set<string> | null = null;
  for (const part of value.split(',')) {
    const t = part.trim().toLowerCase();
    if (t === '' || t === 'close' || t === 'keep-alive') continue;
    (tokens ??= new Set()).add(t);
  }
  return tokens;
}

/**
 * The headers sent upstream: the client's, less hop-by-hop ones, `expect`
 * (Node has already answered 100-continue), and — when the body is dropped —
 * the framing headers; plus X-Forwarded-For/-Proto/-Host and Forwarded
 * (RFC 7239). Untrusted (`trustForwarded` off: Sluice is the ingress), the
 * client's X-Forwarded-Proto/-Host and Forwarded are dropped and replaced by
 * what Sluice saw, so a client cannot claim https or another host; XFF is
 * appended to either way, as nginx's $proxy_add_x_forwarded_for does (its
 * last entry is always ours). `hostSuffix` renames Host for shadow copies
 * (`shop.example.com-shadow`), as Envoy and Istio do.
 * Returns a flat [name, value, name, value, …] array, the form undici takes.
 */
export function upstreamRequestHeaders(req: IncomingMessage, keepBody: boolean, hostSuffix: string, trustForwarded = false): string[] {
  const raw = req.rawHeaders;
  const listed = connectionTokens(req.headers.connection);
  const out: string[] = [];
  let xff: string | undefined;
  let forwarded: string | undefined;
  let sawProto = false;
  let sawXHost = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    // x-sluice-pin carries the pin token of synthetic load (common/pin.ts): never for the upstream's eyes.
    if (HOP_BY_HOP.has(lower) || lower === 'expect' || lower === PIN_HEADER) continue;
    if (listed !== null && listed.has(lower)) continue;
    if (!keepBody && lower === 'content-length') continue;
    if (lower === 'x-forwarded-for') {
      xff = xff === undefined ? raw[i + 1]! : `${xff}, ${raw[i + 1]!}`;
      continue;
    }
    if (lower === 'forwarded') {
      if (trustForwarded) forwarded = forwarded === undefined ? raw[i + 1]! : `${forwarded}, ${raw[i + 1]!}`;
      continue;
    }
    if (lower === 'x-forwarded-proto') {
      if (!trustForwarded) continue;
      sawProto = true;
    } else if (lower === 'x-forwarded-host') {
      if (!trustForwarded) continue;
      sawXHost = true;
    } else if (lower === 'host' && hostSuffix !== '') {
      out.push(name, raw[i + 1]! + hostSuffix);
      continue;
    }
    out.push(name, raw[i + 1]!);
  }
  const remote = req.socket.remoteAddress ?? '';
  const proto = (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http';
  const host = req.headers.host;
  out.push('x-forwarded-for', xff === undefined ? remote : `${xff}, ${remote}`);
  if (!sawProto) out.push('x-forwarded-proto', proto);
  if (!sawXHost && host !== undefined) out.push('x-forwarded-host', host);
  const element = forwardedElement(remote, proto, host);
  out.push('forwarded', forwarded === undefined ? element : `${forwarded}, ${element}`);
  return out;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** One RFC 7239 forwarded-element for this hop; IPv6 nodes and non-token values are quoted. */
export function forwardedElement(remote: string, proto: string, host: string | undefined): string {
  let node: string;
  if (remote === '') node = 'unknown';
  else if (remote.startsWith('::ffff:') && remote.indexOf('.') !== -1) node = remote.slice(7);
  else if (remote.indexOf(':') !== -1) node = `"[${remote}]"`;
  else node = remote;
  const element = `for=${node};proto=${proto}`;
  if (host === undefined) return element;
  return `${element};host=${TOKEN.test(host) ? host : `"${host.replace(/["\\]/g, '\\$&')}"`}`;
}

export const REWARD_HEADER = 'x-sluice-reward';

/**
 * Upstream response headers for the client, as a flat string array for
 * `writeHead`. Reads and strips `x-sluice-reward`; returns its value (NaN
 * when absent, Infinity when present but not a number) through `out.reward`.
 */
export function clientResponseHeaders(
  raw: ReadonlyArray<Buffer | string>,
  versionHeader: string | null,
  versionName: string,
  out: { reward: number },
): string[] {
  let listed: Set<string> | null = null;
  // Connection-listed names must be known before filtering; it is rare, so look first.
  for (let i = 0; i < raw.length; i += 2) {
    const b = raw[i]!;
    if (b.length === 10 && latin1(b).toLowerCase() === 'connection') {
      listed = connectionTokens(latin1(raw[i + 1]!));
    }
  }
  const headers: string[] = [];
  out.reward = Number.NaN;
  for (let i = 0; i < raw.length; i += 2) {
    const name = latin1(raw[i]!);
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower)) continue;
    if (listed !== null && listed.has(lower)) continue;
    if (lower === REWARD_HEADER) {
      const text = latin1(raw[i + 1]!);
      const v = Number(text);
      // Number('') is 0: an empty header must not read as a zero reward. Anything but a finite
      // number comes out as Infinity, which the caller counts as a refused reward.
      out.reward = Number.isFinite(v) && text.trim() !== '' ? v : Number.POSITIVE_INFINITY;
      continue;
    }
    if (versionHeader !== null && lower === versionHeader) continue;
    headers.push(name, latin1(raw[i + 1]!));
  }
  if (versionHeader !== null) headers.push(versionHeader, versionName);
  return headers;
}

/** undici hands header buffers, Node's IncomingMessage (the upgrade path) latin1 strings. */
function latin1(v: Buffer | string): string {
  return typeof v === 'string' ? v : v.toString('latin1');
}
