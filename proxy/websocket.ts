/**
 * HTTP Upgrade (WebSocket) proxying: the version is chosen at the upgrade
 * request exactly as for any request (rules, sticky key, weights), then the
 * two sockets are spliced and bytes flow untouched until either side closes.
 */
import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import { SluiceError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { BY_SLOT, countChoice, originForm, pick, stickyKey, versionIndex } from './handle-request.js';
import { upstreamRequestHeaders } from './headers.js';
import { normalisePath } from './path.js';
import type { RoutingTable } from './routing-table.js';
import { classifyUpstreamError } from './upstream-errors.js';

export interface UpgradeContext {
  readonly table: () => RoutingTable;
  readonly versionHeader: string | null;
  readonly log: Logger;
}

export function createUpgradeHandler(ctx: UpgradeContext) {
  return function handleUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const startMs = performance.now();
    socket.on('error', () => socket.destroy());
    const requestTarget = originForm(req.url ?? '/');
    const url = requestTarget === null ? null : normalisePath(requestTarget);
    const state = url === null ? null : ctx.table().match(req.headers.host, url);
    if (url === null || state === null) return refuse(socket, new SluiceError('SLUICE_ROUTE_NOT_FOUND'));
    const key = stickyKey(state, req.headers);
    const picked = pick(state, req.headers, url, key);
    const version = state.route.versions[versionIndex(picked)]!;
    countChoice(state, picked, version.stats);
    // A user on a WebSocket was exposed to the version as much as by a request.
    if (key !== undefined) state.route.exposures?.record(key, version.index, state, (picked & BY_SLOT) !== 0);
    const target = new URL(version.url);
    const headers = upstreamRequestHeaders(req, false, '', state.route.trustForwarded);
    headers.push('connection', 'upgrade', 'upgrade', String(req.headers.upgrade ?? 'websocket'));
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

    upReq.on('upgrade', (upRes, upSocket, upHead) => {
      upReq.setTimeout(0);
      const lines = [`HTTP/1.1 101 ${upRes.statusMessage ?? 'Switching Protocols'}`];
      for (let i = 0; i < upRes.rawHeaders.length; i += 2) lines.push(`${upRes.rawHeaders[i]}: ${upRes.rawHeaders[i + 1]}`);
      if (ctx.versionHeader !== null) lines.push(`${ctx.versionHeader}: ${version.name}`);
      socket.write(lines.join('\r\n') + '\r\n\r\n');
      if (upHead.length > 0) socket.write(upHead);
      if (head.length > 0) upSocket.write(head);
      upSocket.on('error', () => socket.destroy());
      socket.on('close', () => upSocket.destroy());
      upSocket.on('close', () => socket.destroy());
      upSocket.pipe(socket);
      socket.pipe(upSocket);
      record(101, false);
    });
    // The upstream declined to upgrade: relay its answer as a plain response.
    upReq.on('response', (upRes) => {
      const lines = [`HTTP/1.1 ${upRes.statusCode} ${upRes.statusMessage ?? ''}`];
      for (let i = 0; i < upRes.rawHeaders.length; i += 2) {
        const name = upRes.rawHeaders[i]!.toLowerCase();
        if (name === 'connection' || name === 'transfer-encoding' || name === 'keep-alive') continue;
        lines.push(`${upRes.rawHeaders[i]}: ${upRes.rawHeaders[i + 1]}`);
      }
      lines.push('connection: close');
      socket.write(lines.join('\r\n') + '\r\n\r\n');
      upRes.pipe(socket);
      record(upRes.statusCode ?? 502, false);
    });
    upReq.on('timeout', () => upReq.destroy(Object.assign(new Error('connect timeout'), { code: 'UND_ERR_CONNECT_TIMEOUT' })));
    upReq.on('error', (err) => {
      const f = classifyUpstreamError(err);
      version.stats.recordUpstreamError(f.reasonIndex);
      record(f.status, true);
      ctx.log.warn({ route: state.route.name, version: version.name, reason: f.reason, err: err.message }, 'websocket upstream failed');
      refuse(socket, new SluiceError(f.code, `version ${version.name}: ${err.message}`));
    });
    upReq.end();
  };
}

function refuse(socket: Duplex, err: SluiceError): void {
  if (!socket.writable) return void socket.destroy();
  const body = JSON.stringify(err.toJSON());
  socket.end(
    `HTTP/1.1 ${err.status} ${http.STATUS_CODES[err.status] ?? ''}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}
