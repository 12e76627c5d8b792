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
import { fireShadows, planMirrors } from './mirror.js';
import { normalisePath } from './path.js';
import type { RouteState, RoutingTable } from './routing-table.js';
import { SLOT_COUNT, slotOfKey } from './slots.js';

/** Set in `pick`'s result when the version was drawn at random by weight (no rule, no key). */
export const KEYLESS = 0x100;
const INDEX_MASK = 0xff;

/** Which version serves a request: its index, with the KEYLESS bit for a weighted random draw. */
export function pick(state: RouteState, headers: IncomingHttpHeaders, url: string): number {
  const route = state.route;
  const rules = route.rules;
  for (let i = 0; i < rules.length; i++) {
    if (rules[i]!.test(headers, url)) return rules[i]!.version.index;
  }
  const key = stickyKey(state, headers);
  if (key !== undefined) return state.slots[slotOfKey(key)]!;
  return state.slots[(Math.random() * SLOT_COUNT) | 0]! | KEYLESS;
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
function pinned(state: RouteState, pin: string | string[], matcher: PinMatcher | null): number {
  if (matcher === null || typeof pin !== 'string') return -1;
  const name = matcher.version(pin);
  return name === null ? -1 : (state.route.byName.get(name)?.index ?? -1);
}

export function createRequestHandler(ctx: TrafficContext) {
  const settings = ctx.forward;
  const pinMatcher = ctx.pinPrefix === null ? null : new PinMatcher(ctx.pinPrefix);
  return function handleRequest(request: FastifyRequest, reply: FastifyReply): void {
    const startMs = performance.now();
    const req = request.raw;
    const res = reply.raw;
    reply.hijack();
    const target = originForm(req.url ?? '/');
    if (target === null) return sendError(res, new SluiceError('SLUICE_BAD_REQUEST', 'request target must be a path'));
    // Matched and forwarded as the upstream will read it, so dot segments cannot leave the route or base path.
    const url = normalisePath(target);
    if (url === null) return sendError(res, new SluiceError('SLUICE_PATH_INVALID'));
    const state = ctx.table().match(req.headers.host, url);
    if (state === null) return sendError(res, new SluiceError('SLUICE_ROUTE_NOT_FOUND', `no route matches ${url}`));

    const pin = req.headers[PIN_HEADER];
    const pinnedTo = pin === undefined ? -1 : pinned(state, pin, pinMatcher);
    const picked = pinnedTo >= 0 ? pinnedTo : pick(state, req.headers, url);
    const version = state.route.versions[picked & INDEX_MASK]!;
    if (picked >= KEYLESS) version.stats.countKeyless();
    const method = req.method!;
    // A body on GET/HEAD has no defined meaning; forwarding its framing could desync the upstream connection.
    const keepBody = method !== 'GET' && method !== 'HEAD' && hasBody(req);
    const mirrors = state.route.mirrors.length === 0 ? null : planMirrors(state.route.mirrors, req, method, url, keepBody);
    const handler = new ForwardHandler(req, res, state.route.name, version, startMs, settings, mirrors);
    const body = keepBody ? (mirrors?.tee ? req.pipe(mirrors.tee) : req) : null;
    try {
      version.pool.dispatch(
        {
          path: version.basePath + url,
          method: method as Dispatcher.HttpMethod,
          headers: upstreamRequestHeaders(req, keepBody, ''),
          body,
        },
        handler,
      );
    } catch (err) {
      handler.onError(err as Error);
    }
    if (mirrors !== null && mirrors.tee === null) fireShadows(mirrors, req, url, null, false);
  };
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
