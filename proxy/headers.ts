/**
 * Header rewriting in both directions. Hop-by-hop headers (RFC 9110 §7.6.1)
 * and every header the peer names in `Connection` describe one connection,
 * not the message, and must not cross the proxy.
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
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
  // HTTP/1.1's h2c upgrade carries it; HTTP/2 refuses it as connection-specific (node:http2 throws on it).
  'http2-settings',
]);

/** Whether a header describes one connection only (it must not cross the proxy, and HTTP/2 refuses it). */
export function isHopByHop(name: string): boolean {
  return HOP_BY_HOP.has(name);
}

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
      out.reward = rewardValue(latin1(raw[i + 1]!));
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

// ---------------------------------------------------------------- HTTP/2 streams

/**
 * The upstream's request headers for a request that arrived over HTTP/2, the
 * counterpart of upstreamRequestHeaders: pseudo-headers become the upstream's
 * own (`:authority`, or Host for an HTTP/1.1 upstream), hop-by-hop ones go
 * (HTTP/2 forbids them anyway) except `te: trailers`, which gRPC needs and
 * only an HTTP/2 upstream may receive.
 */
export function upstreamHeadersOfStream(
  h: IncomingHttpHeaders,
  authority: string | undefined,
  remote: string,
  encrypted: boolean,
  opts: { readonly trustForwarded: boolean; readonly keepBody: boolean; readonly h2: boolean; readonly hostSuffix: string },
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  let xff: string | undefined;
  let sawProto = false;
  let sawXHost = false;
  for (const name in h) {
    if (name.charCodeAt(0) === 58 /* : */) continue;
    const value = h[name];
    if (value === undefined) continue;
    if (name === 'te') {
      if (opts.h2 && value === 'trailers') out.te = value;
      continue;
    }
    if (HOP_BY_HOP.has(name) || name === 'expect' || name === 'host' || name === PIN_HEADER) continue;
    if (!opts.keepBody && name === 'content-length') continue;
    if (name === 'x-forwarded-for') {
      xff = Array.isArray(value) ? value.join(', ') : value;
      continue;
    }
    if (name === 'forwarded' || name === 'x-forwarded-proto' || name === 'x-forwarded-host') {
      if (!opts.trustForwarded) continue;
      if (name === 'x-forwarded-proto') sawProto = true;
      if (name === 'x-forwarded-host') sawXHost = true;
    }
    out[name] = value;
  }
  const proto = encrypted ? 'https' : 'http';
  if (authority !== undefined) {
    const host = authority + opts.hostSuffix;
    if (opts.h2) out[':authority'] = host;
    else out.host = host;
  }
  out['x-forwarded-for'] = xff === undefined ? remote : `${xff}, ${remote}`;
  if (!sawProto) out['x-forwarded-proto'] = proto;
  if (!sawXHost && authority !== undefined) out['x-forwarded-host'] = authority;
  const element = forwardedElement(remote, proto, authority);
  const prior = out.forwarded;
  out.forwarded = prior === undefined ? element : `${Array.isArray(prior) ? prior.join(', ') : prior}, ${element}`;
  return out;
}

/**
 * An HTTP/2 upstream's response headers for the client, made from the
 * object node:http2 handed us, in place (no copy per call): `x-sluice-reward`
 * read and removed (the value, NaN or Infinity as in clientResponseHeaders,
 * goes to `out.reward`), the version header set when `versionHeader` is
 * given. Nothing else needs to go: HTTP/2 has no hop-by-hop headers (nghttp2
 * refuses a response carrying one, RFC 9113 §8.2.2), and `:status` is
 * written again by whoever responds.
 */
export function clientHeadersOfStream(
  h: IncomingHttpHeaders,
  versionHeader: string | null,
  versionName: string,
  out: { reward: number },
): Record<string, string | string[] | number> {
  const headers = h as Record<string, string | string[] | number>;
  const reward = h[REWARD_HEADER];
  if (reward !== undefined) {
    out.reward = rewardValue(Array.isArray(reward) ? reward[0]! : reward);
    delete headers[REWARD_HEADER];
  }
  if (versionHeader !== null) headers[versionHeader] = versionName;
  return headers;
}

/** A flat [name, value, …] list (clientResponseHeaders) as the object node:http2 takes; repeated names become lists. */
export function headerObject(flat: readonly string[], status: number): Record<string, string | string[] | number> {
  const o: Record<string, string | string[] | number> = { ':status': status };
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i]!.toLowerCase();
    const prev = o[name];
    const value = flat[i + 1]!;
    if (prev === undefined) o[name] = value;
    else if (Array.isArray(prev)) prev.push(value);
    else o[name] = [String(prev), value];
  }
  return o;
}

/**
 * An `x-sluice-reward` value. Number('') is 0: an empty header must not read
 * as a zero reward. Anything but a finite number comes out as Infinity, which
 * the caller counts as a refused reward.
 */
export function rewardValue(text: string): number {
  const v = Number(text);
  return Number.isFinite(v) && text.trim() !== '' ? v : Number.POSITIVE_INFINITY;
}
