/**
 * The dashboard on the admin API (docs/dashboard.md):
 *
 *  - `GET /` — the page (page.ts): static, no data, served without the token;
 *  - `GET /dashboard/events[?experiment=NAME]` — the live feed (feed.ts) as
 *    server-sent events, behind the token like every data endpoint;
 *  - `GET /dashboard/state[?experiment=NAME]` — the same views as one JSON
 *    document, with an ETag (If-None-Match → 304), for polling.
 *
 * Registered by every process that has an admin API: all-in-one (`sluice
 * start`), proxy (`sluice proxy`: its own routes and counters) and control
 * (`sluice control`, `start --redis` on 9902). `admin.dashboard: off`
 * registers nothing (`GET /` answers 404, as before); `read-only` serves a
 * page without actions — the API's own token is what protects the actions.
 */
import { createHash } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { SluiceError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import type { DashboardMode } from '../../config/types.js';
import type { RoutesPort } from '../routes-api.js';
import { DashboardFeed, type ExperimentSource, type FeedEvent, type FeedOptions, type FeedSink } from './feed.js';
import { dashboardPage } from './page.js';
import type { ProcessView } from './views.js';

export interface DashboardOptions {
  readonly mode: DashboardMode;
  readonly kind: ProcessView['kind'];
  /** Whether the admin API has a token (the page then asks for it before its first read). */
  readonly tokenRequired: boolean;
  readonly routes: RoutesPort;
  readonly experiments: ExperimentSource | null;
  readonly leader?: () => boolean;
  /** Whether `PUT /routes/NAME/weights` can succeed here (not on a proxy in Redis mode). */
  readonly weightEdits: boolean;
  readonly log: Logger;
  /** Tests: a faster tick, a shorter grace. */
  readonly feed?: Omit<FeedOptions, 'log'>;
}

/** Open event streams per process, past which new ones get 503 (each costs a socket, not a read). */
export const MAX_STREAMS = 256;
/** A stream whose client has not read for this long is closed (its events would only pile up). */
const STALLED_MS = 60_000;
/** Experiment names are route-like names (control/spec.ts); anything else cannot name one. */
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;

const feeds = new WeakMap<FastifyInstance, DashboardFeed>();

/** The feed behind an admin server's dashboard (tests read its stats); undefined when it has none. */
export function dashboardFeedOf(app: FastifyInstance): DashboardFeed | undefined {
  return feeds.get(app);
}

export function registerDashboard(app: FastifyInstance, opts: DashboardOptions): void {
  if (opts.mode === 'off') return;
  const readOnly = opts.mode === 'read-only';
  const page = dashboardPage({ readOnly, tokenRequired: opts.tokenRequired });
  const feed = new DashboardFeed(
    { kind: opts.kind, routes: opts.routes, experiments: opts.experiments, leader: opts.leader, weightEdits: opts.weightEdits, readOnly },
    { log: opts.log, ...opts.feed },
  );
  feeds.set(app, feed);
  app.addHook('onClose', async () => feed.close());

  app.get('/', { config: { public: true } }, async (request, reply) => {
    reply
      .header('content-security-policy', page.csp)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('x-frame-options', 'DENY')
      .header('cross-origin-opener-policy', 'same-origin')
      .header('cache-control', 'no-cache')
      .header('etag', page.etag);
    if (request.headers['if-none-match'] === page.etag) return reply.status(304).send();
    return reply.type('text/html; charset=utf-8').send(page.html);
  });

  app.get<{ Querystring: { experiment?: string } }>('/dashboard/state', async (request, reply) => {
    const state = await feed.current(experimentParam(request.query.experiment));
    const body = `{"overview":${state.overview},"live":${state.live},"experiment":${state.experiment ?? 'null'}}`;
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`;
    reply.header('etag', etag).header('cache-control', 'private, no-cache').header('x-content-type-options', 'nosniff');
    if (request.headers['if-none-match'] === etag) return reply.status(304).send();
    return reply.type('application/json; charset=utf-8').send(body);
  });

  app.get<{ Querystring: { experiment?: string } }>('/dashboard/events', async (request, reply) => {
    const experiment = experimentParam(request.query.experiment);
    if (feed.subscribers >= MAX_STREAMS) {
      throw new SluiceError('SLUICE_OVERLOADED', `the dashboard has ${MAX_STREAMS} open streams already: close some pages, or poll GET /dashboard/state`);
    }
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      // Reverse proxies in front of the admin API (nginx) must not buffer the stream.
      'x-accel-buffering': 'no',
    });
    const sink = new StreamSink(raw);
    let unsubscribe: (() => void) | null = null;
    let closed = false;
    raw.on('close', () => {
      closed = true;
      unsubscribe?.();
    });
    try {
      unsubscribe = await feed.subscribe(experiment, sink);
      if (closed) unsubscribe();
    } catch (err) {
      opts.log.warn({ err }, 'dashboard: could not start an event stream');
      raw.destroy();
    }
  });
}

function experimentParam(raw: string | undefined): string | null {
  if (raw === undefined || raw === '') return null;
  if (!NAME_RE.test(raw)) throw new SluiceError('SLUICE_BAD_REQUEST', 'experiment must be an experiment name', [{ path: 'experiment', message: 'letters, digits, ".", "_" and "-"' }]);
  return raw;
}

/**
 * One page's stream. A client that reads slowly is never buffered without
 * bound: while the socket is full, only the latest event of each kind is
 * kept (each is a whole view), sent when it drains; after STALLED_MS of not
 * draining, the connection is closed.
 */
class StreamSink implements FeedSink {
  readonly #pending = new Map<FeedEvent, string>();
  #blockedSince: number | null = null;

  constructor(private readonly raw: ServerResponse) {
    raw.on('drain', () => this.#drain());
  }

  send(event: FeedEvent, json: string): void {
    const frame = `event: ${event}\ndata: ${json}\n\n`;
    if (this.#blockedSince !== null) this.#pending.set(event, frame);
    else this.#write(frame);
  }

  ping(): void {
    if (this.#blockedSince === null) this.#write(': ping\n\n');
    else if (Date.now() - this.#blockedSince > STALLED_MS) this.raw.destroy();
  }

  #write(frame: string): void {
    if (this.raw.destroyed) return;
    if (!this.raw.write(frame)) this.#blockedSince = Date.now();
  }

  #drain(): void {
    this.#blockedSince = null;
    const frames = [...this.#pending];
    this.#pending.clear();
    // send() keeps what does not fit for the next drain.
    for (const [event, frame] of frames) {
      if (this.#blockedSince !== null) this.#pending.set(event, frame);
      else this.#write(frame);
    }
  }
}
