/**
 * The request path, start to end:
 *   route (host, path prefix) → rule → sticky key → weighted slot → forward → record.
 * Everything it reads was compiled when the routing table was built.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Dispatcher } from 'undici';
import { SluiceError } from '../common/errors.js';
import { PIN_HEADER, PinMatcher } from '../common/pin.js';
import { ForwardHandler, type ForwardSettings } from './forward.js';
import { upstreamRequestHeaders } from './headers.js';
import { getCookie } from './match.js';
import type { Exposure } from './exposures.js';
import { compareWith, fireShadows, planMirrors, type BodyTee } from './mirror.js';
import { normalisePath } from './path.js';
import type { RouteState, RoutingTable, Version } from './routing-table.js';
import type { BufferHold } from './slow-clients.js';
import { hashKey, SLOT_COUNT, slotOfHash } from '../common/slots.js';
import { BUCKET_MASK } from '../common/snapshots.js';

/** Set in `pick`'s result when the version was drawn at random by weight (no rule, no key). */
export const KEYLESS = 0x100;
/** Set when the request carried a sticky key; its user bucket is then in the bits above BUCKET_SHIFT. */
export const KEYED = 0x200;
/** Set when the sticky key's slot chose the version (no rule did): the sample of the sticky SRM check. */
export const BY_SLOT = 0x400;
export const BUCKET_SHIFT = 11;
const INDEX_MASK = 0xff;

/**
 * Node puts at most 1,000 headers (its maxHeadersCount, in raw entries) in the
 * header map we route and frame by, yet `rawHeaders`, which we forward, keeps
 * them all: past it Content-Length or a Connection-listed name could go unseen.
 */
export const MAX_RAW_HEADERS = 2_000;

/**
 * Which version serves a request, packed in one number so nothing is
 * allocated: the version index, KEYLESS for a weighted random draw, KEYED
 * (with the key's user bucket) when a sticky key came along, BY_SLOT when
 * that key's slot decided.
 */
export function pick(state: RouteState, headers: IncomingHttpHeaders, url: string, key: string | undefined = stickyKey(state, headers)): number {
  const route = state.route;
  const rules = route.rules;
  const h = key === undefined ? 0 : hashKey(key);
  const keyBits = key === undefined ? 0 : KEYED | ((h & BUCKET_MASK) << BUCKET_SHIFT);
  for (let i = 0; i < rules.length; i++) {
    if (rules[i]!.test(headers, url)) return rules[i]!.version.index | keyBits;
  }
  if (key !== undefined) return state.slots[slotOfHash(h)]! | keyBits | BY_SLOT;
  return state.slots[(Math.random() * SLOT_COUNT) | 0]! | KEYLESS;
}

/** The user bucket in `pick`'s result; -1 without a sticky key. */
export function bucketOf(picked: number): number {
  return (picked & KEYED) === 0 ? -1 : (picked >>> BUCKET_SHIFT) & BUCKET_MASK;
}

/** Counts a chosen request where the analysis needs it: keyless draws per generation, keyed ones per user bucket. */
export function countChoice(state: RouteState, picked: number, stats: { countKeyless(): void; countKeyed(bucket: number): void }): void {
  state.counts.requests[picked & INDEX_MASK]! += 1;
  if (picked >= KEYLESS) {
    if ((picked & KEYLESS) !== 0) {
      stats.countKeyless();
      state.counts.keyless[picked & INDEX_MASK]! += 1;
    }
    if ((picked & KEYED) !== 0) stats.countKeyed((picked >>> BUCKET_SHIFT) & BUCKET_MASK);
  }
}

export function stickyKey(state: RouteState, headers: IncomingHttpHeaders): string | undefined {
  const sticky = state.route.sticky;
  if (sticky === null) return undefined;
  const v = sticky.kind === 'header' ? headers[sticky.name] : getCookie(headers.cookie, sticky.name);
  const key = Array.isArray(v) ? v[0] : v;
  return key === '' ? undefined : key;
}

export function versionIndex(picked: number): number {
  return picked & INDEX_MASK;
}

/** Whether the client sends a body (framing headers say so). */
function hasBody(req: IncomingMessage): boolean {
  const h = req.headers;
  return h['transfer-encoding'] !== undefined || (h['content-length'] !== undefined && h['content-length'] !== '0');
}

export interface TrafficContext {
  /** The current routing table; replaced whole on every change. */
  readonly table: () => RoutingTable;
  readonly forward: ForwardSettings;
  /** `<token>:` — an `x-sluice-pin: <token>:<version>` request goes to that version (load tasks); null: pinning off. */
  readonly pinPrefix: string | null;
}


/** The version a valid pin names (not keyless: pinned load stays out of the sample-ratio check); -1 otherwise. */
export function pinnedVersion(state: RouteState, pin: string | string[], matcher: PinMatcher | null): number {
  if (matcher === null || typeof pin !== 'string') return -1;
  const name = matcher.version(pin);
  return name === null ? -1 : (state.route.byName.get(name)?.index ?? -1);
}

/** Where `choose` puts the exposure it recorded: one object, reused (the request path is synchronous up to there). */
export interface Chosen {
  exposure: Exposure | null;
}
const CHOSEN: Chosen = { exposure: null };

/**
 * The version for one request, as `pick` packs it — a valid pin first, else
 * rules, sticky key, weights — counted where the analysis needs it, with the
 * sticky key's exposure recorded in `out`. Shared by HTTP/1.1 requests and
 * HTTP/2 streams (handle-stream.ts).
 */
export function choose(state: RouteState, headers: IncomingHttpHeaders, url: string, pinMatcher: PinMatcher | null, out: Chosen): number {
  const pin = headers[PIN_HEADER];
  const pinnedTo = pin === undefined ? -1 : pinnedVersion(state, pin, pinMatcher);
  // Read once: pick hashes it, the exposure log keeps it. Pinned (synthetic) load is no user's exposure.
  const key = pinnedTo >= 0 ? undefined : stickyKey(state, headers);
  const picked = pinnedTo >= 0 ? pinnedTo : pick(state, headers, url, key);
  countChoice(state, picked, state.route.versions[picked & INDEX_MASK]!.stats);
  const log = state.route.exposures;
  out.exposure = key === undefined || log === null ? null : log.record(key, picked & INDEX_MASK, state, (picked & BY_SLOT) !== 0);
  return picked;
}

export function createRequestHandler(ctx: TrafficContext) {
  const settings = ctx.forward;
  const pinMatcher = ctx.pinPrefix === null ? null : new PinMatcher(ctx.pinPrefix);
  return function handleRequest(request: FastifyRequest, reply: FastifyReply): void {
    const startMs = performance.now();
    const req = request.raw;
    const res = reply.raw;
    reply.hijack();
    if (req.rawHeaders.length > MAX_RAW_HEADERS) return sendError(res, new SluiceError('SLUICE_TOO_MANY_HEADERS'));
    const target = originForm(req.url ?? '/');
    if (target === null) return sendError(res, new SluiceError('SLUICE_BAD_REQUEST', 'request target must be a path'));
    // Matched and forwarded as the upstream will read it, so dot segments cannot leave the route or base path.
    const url = normalisePath(target);
    if (url === null) return sendError(res, new SluiceError('SLUICE_PATH_INVALID'));
    const state = ctx.table().match(req.headers.host, url);
    if (state === null) return sendError(res, new SluiceError('SLUICE_ROUTE_NOT_FOUND', `no route matches ${url}`));

    const picked = choose(state, req.headers, url, pinMatcher, CHOSEN);
    const version = state.route.versions[picked & INDEX_MASK]!;
    const exposure = CHOSEN.exposure;
    const method = req.method!;
    // A body on GET/HEAD has no defined meaning; forwarding its framing could desync the upstream connection.
    const keepBody = method !== 'GET' && method !== 'HEAD' && hasBody(req);
    const socket = req.socket as HoldingSocket;
    if (socket[kHeld] !== undefined) {
      // A request pipelined behind one whose body is still being read waits for it: the upstream
      // must see them in the order sent (RFC 9112 §9.3.2 allows reordering only among safe methods).
      socket[kHeld].push(() => dispatch(settings, req, res, state, version, picked, exposure, url, keepBody, performance.now()));
      return;
    }
    dispatch(settings, req, res, state, version, picked, exposure, url, keepBody, startMs);
  };
}

const kHeld = Symbol('sluice.held');
/** A client connection with requests held behind one whose body is being read (none: undefined). */
type HoldingSocket = IncomingMessage['socket'] & { [kHeld]?: Array<() => void> };

/** Forwards now, or reads a bounded body first (slow-clients.ts), holding the connection's later requests meanwhile. */
function dispatch(
  settings: ForwardSettings,
  req: IncomingMessage,
  res: ServerResponse,
  state: RouteState,
  version: Version,
  picked: number,
  exposure: Exposure | null,
  url: string,
  keepBody: boolean,
  startMs: number,
): void {
  // A bounded body is read whole first, so a slow upload holds no upstream connection.
  const reserved = keepBody ? settings.slow.reserveBody(req) : -1;
  if (reserved < 0) return forward(settings, req, res, state, version, picked, exposure, url, keepBody, null, null, startMs);
  const socket = req.socket as HoldingSocket;
  socket[kHeld] = [];
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    releaseHeld(socket);
  };
  // A body that never completes (timeout, client gone) must not hold the requests behind it for ever.
  res.once('close', release);
  // The version's latency starts once the body is here: the client's upload speed is not the version's.
  settings.slow.readBody(req, res, reserved, (body, hold) => {
    forward(settings, req, res, state, version, picked, exposure, url, true, body, hold, performance.now());
    release();
  });
}

/** Dispatches the requests held on a connection, in order; one that reads a body holds the rest again. */
function releaseHeld(socket: HoldingSocket): void {
  const queue = socket[kHeld];
  socket[kHeld] = undefined;
  if (queue === undefined) return;
  for (let i = 0; i < queue.length; i++) {
    // Read anew each time: the request just dispatched may have started holding again.
    const again = socket[kHeld] as Array<() => void> | undefined;
    if (again !== undefined) {
      for (let k = i; k < queue.length; k++) again.push(queue[k]!);
      return;
    }
    queue[i]!();
  }
}

/**
 * Sends a routed request upstream, or sheds it when the version's pool has
 * as many requests as it may queue. `body`: the body read whole, or null to
 * stream it from the client (when `keepBody`).
 */
function forward(
  settings: ForwardSettings,
  req: IncomingMessage,
  res: ServerResponse,
  state: RouteState,
  version: Version,
  picked: number,
  exposure: Exposure | null,
  url: string,
  keepBody: boolean,
  body: Buffer | null,
  hold: BufferHold | null,
  startMs: number,
): void {
  const gate = settings.slow.admit(version.pool);
  if (gate === null) return settings.slow.shed(res, state.route.name, version, settings.versionHeader, startMs);
  const method = req.method!;
  const streamed = keepBody && body === null;
  const mirrors = state.route.mirrors.length === 0 ? null : planMirrors(state.route.mirrors, req, method, url, streamed);
  const handler = new ForwardHandler(req, res, state.route.name, version, startMs, settings);
  if (mirrors !== null) compareWith(handler, mirrors);
  handler.gate = gate;
  handler.hold = hold;
  handler.bucket = bucketOf(picked);
  if (exposure !== null) {
    handler.exposure = exposure;
    handler.exposureSeq = exposure.seq;
  }
  handler.counts = state.counts;
  let stream: IncomingMessage | BodyTee | null = null;
  if (streamed) {
    settings.slow.watchUpload(req);
    stream = mirrors?.tee ? req.pipe(mirrors.tee) : req;
  }
  handler.start(version.pool, {
    path: version.basePath + url,
    method: method as Dispatcher.HttpMethod,
    headers: upstreamRequestHeaders(req, keepBody, '', state.route.trustForwarded),
    body: body ?? stream,
  });
  if (mirrors !== null && mirrors.tee === null) fireShadows(mirrors, req, url, body, body !== null);
}

/**
 * The path and query of a request target. Absolute-form targets
 * (`GET http://other/x`) keep only their path: the upstream origin is ours to
 * choose, never the client's. Null for anything else but origin-form.
 */
export function originForm(target: string): string | null {
  if (target.charCodeAt(0) === 47 /* / */) return target;
  if (!/^https?:\/\//i.test(target)) return null;
  try {
    const u = new URL(target);
    return u.pathname + u.search;
  } catch {
    return null;
  }
}

export function sendError(res: ServerResponse, err: SluiceError): void {
  const body = JSON.stringify(err.toJSON());
  res.writeHead(err.status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
