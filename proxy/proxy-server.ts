/**
 * The data plane as one object: the traffic listener, the routing table it
 * reads, the counters it writes, and the operations the admin API and the
 * control plane call on it (set weights, read stats).
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { Duplex } from 'node:stream';
import fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Registry } from 'prom-client';
import { SluiceError } from '../common/errors.js';
import { RateLimitedLog, type Logger } from '../common/logger.js';
import { validateWeights } from '../config/routes.js';
import type { SluiceConfig } from '../config/types.js';
import type { ForwardSettings } from './forward.js';
import { createRequestHandler, sendError } from './handle-request.js';
import { createStreamHandler } from './handle-stream.js';
import { createTrafficServer, ProtocolSwitch } from './listener.js';
import type { ListenerCertificates } from './tls-certs.js';
import { ExposureRegistry } from './exposures.js';
import { createMetricsRegistry } from './metrics.js';
import { SlowClients } from './slow-clients.js';
import { compileRoute, initialState, routeState, RoutingTable, withWeights, type RouteState } from './routing-table.js';
import { StatsRegistry } from './stats.js';
import { Upstreams } from './upstreams.js';
import { createUpgradeHandler, type UpgradeHandler } from './websocket.js';

export interface WeightsChange {
  readonly route: string;
  readonly generation: number;
  readonly weights: Readonly<Record<string, number>>;
  readonly source: string;
}

/** CONNECT would make Sluice a forward proxy to anywhere: refused, with a reason, and the connection closed. */
function refuseConnect(_req: http.IncomingMessage, socket: Duplex): void {
  const body = JSON.stringify(new SluiceError('SLUICE_METHOD_NOT_IMPLEMENTED', 'CONNECT is not forwarded: Sluice is a reverse proxy').toJSON());
  socket.on('error', () => {});
  socket.end(
    `HTTP/1.1 501 Not Implemented\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

export class ProxyServer {
  readonly stats = new StatsRegistry();
  /** Per sticky route, which version served each key: rewards posted later by key are credited with it. */
  readonly exposures: ExposureRegistry;
  readonly upstreams: Upstreams;
  /** Request/response buffering and the per-pool request bound that keep slow clients off upstream connections. */
  readonly slowClients: SlowClients;
  /**
   * Lets synthetic load (the `load` task) pin a request to a version with
   * `x-sluice-pin: <token>:<version>`. Random per process unless
   * SLUICE_PIN_TOKEN is set (Redis mode: the same value on proxies and control).
   */
  readonly pinToken: string = process.env.SLUICE_PIN_TOKEN || randomBytes(18).toString('base64url');
  readonly metrics: Registry;
  readonly app: FastifyInstance;
  #table: RoutingTable;
  #draining = false;
  #forward: ForwardSettings | null = null;
  #upgrades: UpgradeHandler | null = null;
  /** HTTP/2 beside HTTP/1.1 on the traffic port (listener.ts); null when listen.http2 is off. */
  #protocols: ProtocolSwitch | null = null;
  #certificates: ListenerCertificates | null = null;
  readonly #listeners = new Set<(c: WeightsChange) => void>();

  constructor(
    readonly config: SluiceConfig,
    readonly log: Logger,
  ) {
    this.upstreams = new Upstreams(config.proxy);
    this.slowClients = new SlowClients(config.proxy);
    this.exposures = new ExposureRegistry({ maxKeys: config.rewards.exposureKeys, retentionMs: config.rewards.exposureRetentionMs });
    this.#table = new RoutingTable(config.routes.map((r) => initialState(compileRoute(r, this.upstreams, this.stats, config.proxy.trustForwarded, this.exposures))));
    const table = () => this.#table;
    this.metrics = createMetricsRegistry(this.stats, table);
    this.app = this.#createApp(table);
  }

  get table(): RoutingTable {
    return this.#table;
  }

  get draining(): boolean {
    return this.#draining;
  }

  route(name: string): RouteState {
    const s = this.#table.get(name);
    if (!s) throw new SluiceError('SLUICE_UNKNOWN_ROUTE', `no route named "${name}"`);
    return s;
  }

  /**
   * Validates and applies new weights to one route. The swap is one
   * assignment: requests in flight keep their version, new ones see the new
   * table. `generation`, when given, must be newer than the current one (a
   * replica applying a shared state); otherwise the route's generation + 1.
   */
  setWeights(routeName: string, weights: unknown, source: string, generation?: number): RouteState {
    const current = this.route(routeName);
    const checked = validateWeights(current.route.config, weights);
    if ('errors' in checked) throw new SluiceError('SLUICE_WEIGHTS_INVALID', `weights for route ${routeName} are invalid`, checked.errors);
    if (generation !== undefined && generation <= current.generation) return current;
    const next = withWeights(current, checked.weights, generation);
    this.#table = this.#table.with(next);
    const change = { route: routeName, generation: next.generation, weights: next.weights, source };
    this.log.info(change, 'weights changed');
    for (const l of this.#listeners) l(change);
    return next;
  }

  /**
   * Applies a routing state decided elsewhere (the control-plane leader, via
   * Redis): weights *and* the slot layout, so that every replica sends a
   * sticky key to the same version. Only newer generations are applied;
   * returns whether this one was.
   */
  applyRouteState(routeName: string, state: { generation: number; weights: Readonly<Record<string, number>>; slots: readonly number[] }): boolean {
    const current = this.route(routeName);
    if (state.generation <= current.generation) return false;
    const checked = validateWeights(current.route.config, state.weights);
    if ('errors' in checked) throw new SluiceError('SLUICE_WEIGHTS_INVALID', `routing state for ${routeName} is invalid`, checked.errors);
    const n = current.route.versions.length;
    if (state.slots.length !== current.slots.length || state.slots.some((v) => !Number.isInteger(v) || v < 0 || v >= n)) {
      throw new SluiceError('SLUICE_WEIGHTS_INVALID', `routing state for ${routeName} has an invalid slot layout`);
    }
    const next = routeState(current.route, state.generation, Object.freeze({ ...checked.weights }), Uint8Array.from(state.slots));
    this.#table = this.#table.with(next);
    const change = { route: routeName, generation: next.generation, weights: next.weights, source: 'shared-state' };
    for (const l of this.#listeners) l(change);
    return true;
  }

  /**
   * Adds a version to a route with weight 0 (an experiment bringing its own
   * candidate). Existing versions keep their index, pools, counters and
   * slots, so no request or sticky key notices.
   */
  addVersion(routeName: string, name: string, url: string): RouteState {
    const current = this.route(routeName);
    if (current.route.byName.has(name)) return current;
    const parsed = new URL(url);
    // A candidate speaks what the route's baseline speaks (a gRPC service's new version is one too), over TLS if its URL says so.
    const base = current.route.config.versions[0]!;
    const https = parsed.protocol === 'https:';
    const protocol = base.protocol === 'http1' ? 'http1' : https ? 'h2' : 'h2c';
    const tls = https && base.url.startsWith('https:') ? base.tls : null;
    const config = {
      ...current.route.config,
      versions: [...current.route.config.versions, { name, url: parsed.origin, basePath: parsed.pathname.replace(/\/+$/, ''), protocol, tls } as const],
      weights: { ...current.weights, [name]: 0 },
    };
    const next = routeState(compileRoute(config, this.upstreams, this.stats, current.route.trustForwarded, this.exposures), current.generation + 1, config.weights, current.slots);
    this.#table = this.#table.with(next);
    this.log.info({ route: routeName, version: name, url }, 'version added');
    return next;
  }

  onWeightsChange(listener: (c: WeightsChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async listen(): Promise<string> {
    const { host, port } = this.config.listen;
    return this.app.listen({ host, port });
  }

  /** Stops accepting, lets in-flight requests finish (bounded by the drain timeout), then closes pools. */
  async close(): Promise<void> {
    if (this.#draining) return;
    this.#draining = true;
    if (this.#forward) this.#forward.draining = true;
    this.#protocols?.closeSessions();
    this.#certificates?.close();
    // Upgraded connections never finish on their own: without this the drain would wait its whole timeout.
    this.#upgrades?.closeAll();
    // server.close() closes only connections idle right now; keep-alive connections that finish
    // their last response later would hold the drain open until their idle timeout.
    const sweep = setInterval(() => this.app.server.closeIdleConnections(), 100);
    const deadline = new Promise<'timeout'>((r) => setTimeout(r, this.config.proxy.drainTimeoutMs, 'timeout').unref());
    try {
      const closed = this.app.close().then(() => 'closed' as const);
      if ((await Promise.race([closed, deadline])) === 'timeout') {
        this.log.warn({ drainTimeoutMs: this.config.proxy.drainTimeoutMs }, 'drain timeout: closing remaining connections');
        this.app.server.closeAllConnections();
        this.#protocols?.destroySessions();
      }
    } finally {
      clearInterval(sweep);
      await this.upstreams.close();
    }
  }

  #createApp(table: () => RoutingTable): FastifyInstance {
    const p = this.config.proxy;
    // Set below, once the request handler exists: the router's own complaints go to it (frameworkErrors).
    let traffic: ((request: FastifyRequest, reply: FastifyReply) => void) | null = null;
    const app = fastify({
      logger: false,
      // HTTPS when listen.tls is set; HTTP/2 is put beside it below (ProtocolSwitch).
      serverFactory: (handler) => {
        const made = createTrafficServer(this.config.listen, handler, this.log, p.headersTimeoutMs || p.requestTimeoutMs);
        this.#certificates = made.certificates;
        return made.server;
      },
      // find-my-way percent-decodes paths to match routes and refuses escapes that are not UTF-8 (%80,
      // caf%E9) or params past 100 characters. Sluice matches routes itself on the raw path and
      // forwards escapes as sent, so those requests go to its handler like any other.
      frameworkErrors: (err, request, reply) => {
        if (traffic !== null && (err.code === 'FST_ERR_BAD_URL' || err.code === 'FST_ERR_MAX_PARAM_LENGTH')) return traffic(request, reply);
        reply.hijack();
        sendError(reply.raw, new SluiceError('SLUICE_BAD_REQUEST', err.message));
      },
      requestTimeout: p.requestTimeoutMs,
      keepAliveTimeout: p.keepAliveTimeoutMs,
      return503OnClosing: true,
      forceCloseConnections: 'idle',
      exposeHeadRoutes: false,
    });
    // fastify sets these itself only on servers it makes.
    app.server.keepAliveTimeout = p.keepAliveTimeoutMs;
    app.server.requestTimeout = p.requestTimeoutMs;
    app.server.setTimeout(0);
    app.server.headersTimeout = p.headersTimeoutMs;
    // Node enforces headersTimeout/requestTimeout only when it sweeps connections, every 30 s
    // by default: a slow-header client would hold a socket up to 30 s past its timeout.
    const limits = [p.headersTimeoutMs, p.requestTimeoutMs].filter((ms) => ms > 0);
    (app.server as { connectionsCheckingInterval?: number }).connectionsCheckingInterval = Math.min(1000, ...limits);
    // Bodies are streamed to the upstream untouched: no parsing, no size limit of fastify's.
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', (_req, _payload, done) => done(null));

    const seen = new RateLimitedLog();
    const log = this.log;
    const forward: ForwardSettings = {
      versionHeader: p.versionHeader,
      draining: false,
      maxReward: this.config.rewards.maxValue,
      slow: this.slowClients,
      onUpstreamError(err, route, version, reason) {
        const held = seen.admit(`${route}/${version}/${reason}`);
        if (held >= 0) log.warn({ route, version, reason, code: (err as { code?: string }).code, err: err.message, suppressed: held }, 'upstream failed');
      },
      onFinish: p.accessLog
        ? (h, latencyMs) => log.info({ route: h.route, version: h.version.name, method: h.req.method, url: h.req.url, status: h.status, latencyMs }, 'request')
        : undefined,
      onStreamFinish: p.accessLog
        ? (c, latencyMs, grpcStatus) =>
            log.info({ route: c.route.name, version: c.version.name, method: c.method, url: c.url, status: c.status, ...(grpcStatus >= 0 ? { grpcStatus } : {}), latencyMs, protocol: 'h2' }, 'request')
        : undefined,
    };
    this.#forward = forward;
    const handler = createRequestHandler({ table, forward, pinPrefix: `${this.pinToken}:` });
    if (this.config.listen.http2) {
      const onStream = createStreamHandler({ table, forward, pinPrefix: `${this.pinToken}:` });
      this.#protocols = new ProtocolSwitch(app.server, this.config.listen.tls !== null, onStream, {
        firstBytesMs: p.headersTimeoutMs || p.requestTimeoutMs,
        idleMs: p.keepAliveTimeoutMs,
      });
    }
    // fastify routes 9 methods by default; a proxy forwards every one Node parses (WebDAV, PURGE, …).
    // Bodyless to fastify: it skips its body handling; ours streams whatever the framing says.
    const supported = new Set(app.supportedMethods);
    for (const m of http.METHODS) if (m !== 'CONNECT' && !supported.has(m)) app.addHttpMethod(m);
    // fastify answers a QUERY without Content-Type 400 itself (it would parse the body); we only forward it.
    app.addHttpMethod('QUERY', { overrideExisting: true });
    app.all('/', handler);
    app.all('/*', handler);
    traffic = handler;
    // Node hands CONNECT to this event, not to the request handler; without a listener it just drops the socket.
    app.server.on('connect', refuseConnect);
    app.setNotFoundHandler((request, reply) => {
      reply.hijack();
      sendError(reply.raw, new SluiceError('SLUICE_ROUTE_NOT_FOUND', `no route matches ${request.method} ${request.url}`));
    });
    const upgrades = createUpgradeHandler({
      table, versionHeader: p.versionHeader, log, maxPerVersion: p.maxUpgradesPerVersion, maxReward: this.config.rewards.maxValue, server: app.server,
    });
    this.#upgrades = upgrades;
    app.server.on('upgrade', upgrades.handle);
    return app;
  }
}
