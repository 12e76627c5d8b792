/**
 * HTTP Upgrade (WebSocket) proxying: the version is chosen at the upgrade
 * request exactly as for any request (rules, sticky key, weights), then the
 * two sockets are spliced and bytes flow untouched until either side closes.
 * The upstream's answer gets the normal path's header rules (headers.ts).
 * Only `websocket` is spliced: any other upgrade (`h2c`) would tunnel a
 * protocol past every route, so it is served as a plain request instead.
 */
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { SluiceError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { BY_SLOT, bucketOf, countChoice, originForm, pick, stickyKey, versionIndex } from './handle-request.js';
import { clientResponseHeaders, upstreamRequestHeaders } from './headers.js';
import { normalisePath } from './path.js';
import type { RouteState, RoutingTable, Version } from './routing-table.js';
import type { VersionStats } from './stats.js';
import { classifyUpstreamError } from './upstream-errors.js';

export interface UpgradeContext {
  readonly table: () => RoutingTable;
  readonly versionHeader: string | null;
  readonly log: Logger;
  /** proxy.maxUpgradesPerVersion: upgraded connections (and handshakes) open at once per version. */
  readonly maxPerVersion: number;
  /** rewards.maxValue, as on the normal path. */
  readonly maxReward: number;
  /** The traffic server: a non-websocket upgrade is handed back to it as a plain request. */
  readonly server: http.Server;
}

export interface UpgradeHandler {
  handle(req: http.IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Drain: refuse new upgrades and close every spliced connection (they never end by themselves). */
  closeAll(): void;
}

export function createUpgradeHandler(ctx: UpgradeContext): UpgradeHandler {
  // Keyed by the version's stats, which outlive routing tables (a weight change must not reset the count).
  const open = new Map<VersionStats, number>();
  const spliced = new Set<Duplex>();
  let draining = false;

  function handle(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const startMs = performance.now();
    socket.on('error', () => socket.destroy());
    if (!isWebSocket(req)) return servePlain(ctx.server, req, socket);
    if (draining) return refuse(socket, new SluiceError('SLUICE_UPGRADE_LIMIT', 'shutting down'));
    const requestTarget = originForm(req.url ?? '/');
    const url = requestTarget === null ? null : normalisePath(requestTarget);
    const state = url === null ? null : ctx.table().match(req.headers.host, url);
    if (url === null || state === null) return refuse(socket, new SluiceError('SLUICE_ROUTE_NOT_FOUND'));
    const key = stickyKey(state, req.headers);
    const picked = pick(state, req.headers, url, key);
    const version = state.route.versions[versionIndex(picked)]!;
    const inUse = open.get(version.stats) ?? 0;
    if (inUse >= ctx.maxPerVersion) {
      return refuse(socket, new SluiceError('SLUICE_UPGRADE_LIMIT', `version ${version.name} has ${inUse} upgraded connections (proxy.maxUpgradesPerVersion)`));
    }
    open.set(version.stats, inUse + 1);
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      open.set(version.stats, (open.get(version.stats) ?? 1) - 1);
    };
    countChoice(state, picked, version.stats);
    // A user on a WebSocket was exposed to the version as much as by a request.
    if (key !== undefined) state.route.exposures?.record(key, version.index, state, (picked & BY_SLOT) !== 0);
    const target = new URL(version.url);
    const headers = upstreamRequestHeaders(req, false, '', state.route.trustForwarded);
    headers.push('connection', 'upgrade', 'upgrade', 'websocket');
    const upReq = (target.protocol === 'https:' ? https : http).request({
      host: target.hostname,
      port: target.port,
      method: req.method,
      path: version.basePath + url,
      headers,
      timeout: state.route.timeouts.connectMs,
      agent: false,
    });
    const record = (status: number, failed: boolean) =>
      version.stats.record(status, performance.now() - startMs, failed);
    const rewardOut = { reward: Number.NaN };
    const responseHead = (status: number, message: string, raw: string[], extra: string): string => {
      const h = clientResponseHeaders(raw, ctx.versionHeader, version.name, rewardOut);
      countReward(state, version, picked, rewardOut.reward, ctx.maxReward);
      let text = `HTTP/1.1 ${status} ${message}\r\n`;
      for (let i = 0; i < h.length; i += 2) text += `${h[i]}: ${h[i + 1]}\r\n`;
      return text + extra + '\r\n';
    };

    upReq.on('upgrade', (upRes, upSocket, upHead) => {
      upReq.setTimeout(0);
      if (String(upRes.headers.upgrade).toLowerCase() !== 'websocket') {
        // We asked for websocket; splicing another protocol would tunnel it past every route.
        upSocket.destroy();
        return upReq.emit('error', Object.assign(new Error(`upstream switched to ${String(upRes.headers.upgrade)}`), { code: 'HPE_INVALID_UPGRADE' }));
      }
      if (draining || !socket.writable) {
        upSocket.destroy();
        release();
        return void socket.destroy();
      }
      // Connection and Upgrade are hop-by-hop and were stripped: these two are ours, for this hop.
      socket.write(responseHead(101, upRes.statusMessage || 'Switching Protocols', upRes.rawHeaders, 'Connection: Upgrade\r\nUpgrade: websocket\r\n'));
      if (upHead.length > 0) socket.write(upHead);
      if (head.length > 0) upSocket.write(head);
      upSocket.on('error', () => socket.destroy());
      spliced.add(socket);
      const closeBoth = (): void => {
        spliced.delete(socket);
        release();
        socket.destroy();
        upSocket.destroy();
      };
      socket.on('close', closeBoth);
      upSocket.on('close', closeBoth);
      // closeAll ends the client side; the upstream side follows it.
      socket.on('end', () => upSocket.end());
      upSocket.pipe(socket);
      socket.pipe(upSocket);
      record(101, false);
    });
    // The upstream declined to upgrade: relay its answer as a plain response.
    upReq.on('response', (upRes) => {
      release();
      socket.write(responseHead(upRes.statusCode ?? 502, upRes.statusMessage ?? '', upRes.rawHeaders, 'connection: close\r\n'));
      upRes.pipe(socket);
      record(upRes.statusCode ?? 502, false);
    });
    upReq.on('timeout', () => upReq.destroy(Object.assign(new Error('connect timeout'), { code: 'UND_ERR_CONNECT_TIMEOUT' })));
    upReq.on('error', (err) => {
      release();
      const f = classifyUpstreamError(err);
      version.stats.recordUpstreamError(f.reasonIndex);
      record(f.status, true);
      ctx.log.warn({ route: state.route.name, version: version.name, reason: f.reason, err: err.message }, 'websocket upstream failed');
      refuse(socket, new SluiceError(f.code, `version ${version.name}: ${f.reason}`));
    });
    upReq.end();
  }

  return {
    handle,
    closeAll(): void {
      draining = true;
      for (const socket of spliced) {
        socket.end();
        // A peer that does not close its side in time is cut.
        setTimeout(() => socket.destroy(), 1000).unref();
      }
    },
  };
}

function isWebSocket(req: http.IncomingMessage): boolean {
  const u = req.headers.upgrade;
  return req.method === 'GET' && u !== undefined && u.length === 9 && u.toLowerCase() === 'websocket';
}

/**
 * Node hands every request with `Connection: upgrade` to the upgrade
 * listener. A non-websocket one (`h2c`) is answered as the plain request it
 * also is (RFC 9110 §7.8 lets a server ignore Upgrade): Upgrade and
 * Connection are hop-by-hop, so the upstream never sees them. The parser has
 * let go of the socket, so the connection closes after the answer; a body
 * could not be read, so a request with one is refused.
 */
function servePlain(server: http.Server, req: http.IncomingMessage, socket: Duplex): void {
  const h = req.headers;
  if (h['transfer-encoding'] !== undefined || (h['content-length'] !== undefined && h['content-length'] !== '0')) {
    return refuse(socket, new SluiceError('SLUICE_BAD_REQUEST', 'an Upgrade other than websocket cannot carry a body'));
  }
  const res = new http.ServerResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket as Socket);
  res.on('finish', () => {
    res.detachSocket(socket as Socket);
    socket.end();
  });
  server.emit('request', req, res);
}

function countReward(state: RouteState, version: Version, picked: number, reward: number, max: number): void {
  if (reward !== reward) return;
  // Beyond the bound, or not a number (Infinity from clientResponseHeaders), it is no reward, as on the normal path.
  if (reward > max || reward < -max) return version.stats.rejectReward();
  version.stats.recordReward(reward, reward > 0, bucketOf(picked));
  state.counts.recordReward(version.index, reward, reward > 0);
}

function refuse(socket: Duplex, err: SluiceError): void {
  if (!socket.writable) return void socket.destroy();
  const body = JSON.stringify(err.toJSON());
  socket.end(
    `HTTP/1.1 ${err.status} ${http.STATUS_CODES[err.status] ?? ''}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}
