/**
 * The traffic port speaks HTTP/1.1 and HTTP/2 on one socket listener:
 * fastify's own server, whose connections are handed either to its HTTP/1.1
 * parser or to an HTTP/2 server. With TLS the client's ALPN choice decides
 * (`h2` or `http/1.1`); in cleartext the first bytes do: HTTP/2's connection
 * preface (`PRI * HTTP/2.0…`, prior knowledge — how a sidecar receives its
 * app's gRPC) or anything else, which HTTP/1.1 parses. Keeping fastify's
 * server as the listener keeps its drain, connection counts and timeouts.
 */
import http from 'node:http';
import http2, { type Http2Server, type ServerHttp2Session, type ServerHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import https from 'node:https';
import type net from 'node:net';
import type tls from 'node:tls';
import type { Logger } from '../common/logger.js';
import type { TrafficListenConfig } from '../config/types.js';
import { ListenerCertificates } from './tls-certs.js';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export type StreamHandler = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number, rawHeaders: string[]) => void;

export interface ListenerOptions {
  /** Time a new connection has to send its first bytes (the HTTP/1.1 headers timeout). */
  readonly firstBytesMs: number;
  /** An HTTP/2 connection with no open stream is closed after this long (the HTTP/1.1 keep-alive timeout). */
  readonly idleMs: number;
}

const kOpen = Symbol('sluice.openStreams');

function resumeSocket(socket: net.Socket): void {
  if (!socket.destroyed) socket.resume();
}
type Session = ServerHttp2Session & { [kOpen]: number };

/**
 * The traffic server fastify is given (serverFactory): HTTP/1.1 in
 * cleartext, or HTTPS with the listener's certificates; ProtocolSwitch then
 * puts HTTP/2 beside it.
 */
export function createTrafficServer(
  config: TrafficListenConfig,
  handler: http.RequestListener,
  log: Logger,
  handshakeMs: number,
): { server: http.Server; certificates: ListenerCertificates | null } {
  if (config.tls === null) return { server: http.createServer(handler), certificates: null };
  const certificates = new ListenerCertificates(config.tls, log);
  const server = https.createServer(
    {
      ...certificates.serverOptions(),
      ALPNProtocols: config.http2 ? ['h2', 'http/1.1'] : ['http/1.1'],
      // A handshake that never completes must not hold a socket for Node's default 120 s.
      ...(handshakeMs > 0 ? { handshakeTimeout: handshakeMs } : {}),
    },
    handler,
  );
  certificates.watch(server);
  return { server, certificates };
}

export class ProtocolSwitch {
  readonly #h2: Http2Server;
  readonly #sessions = new Set<Session>();
  #closing = false;

  /**
   * Takes over `server`'s connection event (secureConnection with TLS): the
   * HTTP/1.1 listener Node installed is kept and called for HTTP/1.1 connections.
   */
  constructor(
    server: http.Server,
    tlsOn: boolean,
    onStream: StreamHandler,
    private readonly options: ListenerOptions,
  ) {
    this.#h2 = this.#createH2(onStream);
    const event = tlsOn ? 'secureConnection' : 'connection';
    const http1 = server.listeners(event) as Array<(socket: net.Socket) => void>;
    server.removeAllListeners(event);
    const toHttp1 = (socket: net.Socket): void => {
      for (const l of http1) l.call(server, socket);
    };
    if (tlsOn) {
      server.on('secureConnection', (socket: tls.TLSSocket) => (socket.alpnProtocol === 'h2' ? this.#toH2(socket) : toHttp1(socket)));
    } else {
      server.on('connection', (socket: net.Socket) => this.#sniff(socket, toHttp1));
    }
  }

  /** Asks every HTTP/2 session to finish (GOAWAY: streams in flight complete), now and for sessions still to come. */
  closeSessions(): void {
    this.#closing = true;
    for (const s of this.#sessions) s.close();
  }

  /** The drain took too long: cut what is left. */
  destroySessions(): void {
    for (const s of this.#sessions) s.destroy();
  }

  /**
   * HTTP/1.1's server accepts its sockets half-open (allowHalfOpen: it may
   * still answer after the client's FIN); an HTTP/2 session does not handle
   * that, and a client gone would leave the session — its streams, their
   * upstream streams and the drain — waiting for ever.
   */
  #toH2(socket: net.Socket): void {
    socket.allowHalfOpen = false;
    this.#h2.emit('connection', socket);
  }

  /** Reads until the bytes either are the HTTP/2 preface or cannot be, then hands the connection on with them. */
  #sniff(socket: net.Socket, toHttp1: (socket: net.Socket) => void): void {
    let seen: Buffer = Buffer.alloc(0);
    // 0: no bound (proxy.headersTimeout: 0 turns it off), as for HTTP/1.1's own headers timeout.
    const timer = this.options.firstBytesMs > 0 ? setTimeout(() => socket.destroy(), this.options.firstBytesMs) : undefined;
    const onError = (): void => {
      clearTimeout(timer);
      socket.destroy();
    };
    socket.once('error', onError);
    const onData = (chunk: Buffer): void => {
      seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, PREFACE.length);
      const prefix = seen.subarray(0, n).equals(PREFACE.subarray(0, n));
      if (prefix && n < PREFACE.length) return; // could still be either: wait for more
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', onError);
      socket.pause();
      socket.unshift(seen);
      if (prefix) {
        // The session reads what was unshifted on its next tick; resuming here would lose it. Resumed
        // after that tick: a socket left paused never reads the client's FIN, and a client gone would
        // keep its streams (and their upstream streams) open.
        this.#toH2(socket);
        process.nextTick(resumeSocket, socket);
      } else {
        toHttp1(socket);
        socket.resume();
      }
    };
    socket.on('data', onData);
  }

  #createH2(onStream: StreamHandler): Http2Server {
    const server = http2.createServer({
      // Node allows 2³²−1 streams per connection by default: one client could open any number at once.
      // 128 is nginx's http2_max_concurrent_streams. Node's limits on reset floods (CVE-2023-44487) and
      // header lists (maxHeaderListPairs 128) stay on.
      settings: { enablePush: false, maxConcurrentStreams: 128 },
    });
    server.on('stream', onStream);
    server.on('session', (session: ServerHttp2Session) => {
      const s = session as Session;
      s[kOpen] = 0;
      this.#sessions.add(s);
      if (this.#closing) s.close();
      s.on('stream', (stream: ServerHttp2Stream) => {
        s[kOpen]++;
        stream.once('close', () => s[kOpen]--);
      });
      // Idle, not quiet: a gRPC stream may carry nothing for minutes and must stay.
      s.setTimeout(this.options.idleMs, () => {
        if (s[kOpen] === 0) s.close();
      });
      s.on('error', () => {});
      s.once('close', () => this.#sessions.delete(s));
    });
    return server;
  }
}
