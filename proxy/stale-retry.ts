/**
 * The one retry Sluice makes: a request a *reused* keep-alive connection lost
 * before any response byte (the upstream closed it while idle, just as we
 * sent: nginx `keepalive_timeout`) goes once more on a connection of its
 * own — when it is safe to send twice. Anything else keeps its error, so a
 * failing version stays visible. Shared by the HTTP/1.1 path (forward.ts)
 * and HTTP/2 clients of HTTP/1.1 versions (stream-to-h1.ts).
 */
import { subscribe } from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import type { Client, Dispatcher } from 'undici';
import type { VersionStats } from './stats.js';
import { isConnectionLoss } from './upstream-errors.js';
import { UpstreamPool } from './upstreams.js';

/**
 * Safe to send twice: no body, and a method RFC 9110 calls idempotent. A stale
 * keep-alive connection may have taken the first copy; these may be retried once.
 */
const REPLAYABLE: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);

/**
 * Whether a request went out on a connection that had carried one before.
 * undici does not tell a handler which socket it got, but it calls the
 * handler's onConnect and then publishes sendHeaders with the socket
 * synchronously, in one call (client-h1 writeH1): `connecting` links the two.
 */
const kUsed = Symbol('sluice.socketUsed');
type UpstreamSocket = Socket & { [kUsed]?: true };
let connecting: StaleRetry | null = null;
subscribe('undici:client:sendHeaders', (message) => {
  const socket = (message as { socket: UpstreamSocket }).socket;
  const r = connecting;
  connecting = null;
  if (r !== null) r.sentOn(socket, socket[kUsed] === true);
  socket[kUsed] = true;
});

/** One request's attempts: which connection each went out on, and whether the one retry was made. */
export class StaleRetry {
  #retried = false;
  /** The attempt in flight went out on a connection that had carried a request before. */
  #reused = false;
  #socket: Socket | null = null;
  /** The connection's bytesRead when this attempt was sent: more at the failure means a response had begun. */
  #readAtSend = 0;

  /** From the handler's onConnect: an attempt starts; the sendHeaders that follows at once names its connection. */
  attempt(): void {
    this.#reused = false;
    this.#socket = null;
    connecting = this;
  }

  sentOn(socket: Socket, reused: boolean): void {
    this.#reused = reused;
    this.#socket = socket;
    this.#readAtSend = socket.bytesRead;
  }

  /**
   * Whether `err` lost a request that may go again; if so, `send` is given a
   * fresh connection (closed once the request is done) and the options to
   * send on it. `responded`: a response had begun (a status came).
   */
  retry(err: Error, opts: Dispatcher.DispatchOptions, responded: boolean, pool: Dispatcher, stats: VersionStats, send: (client: Client, opts: Dispatcher.DispatchOptions) => void): boolean {
    if (this.#retried || !this.#reused || responded || opts.body != null) return false;
    if (!REPLAYABLE.has(opts.method) || !isConnectionLoss(err)) return false;
    // Any byte of a response (even a partial status line) means the upstream took the request.
    if (this.#socket === null || this.#socket.bytesRead !== this.#readAtSend) return false;
    if (!(pool instanceof UpstreamPool)) return false;
    this.#retried = true;
    stats.recordRetry();
    const client = pool.freshClient();
    // reset: the one-off connection closes after this request; close() waits for it.
    send(client, { ...opts, reset: true });
    client.close().catch(() => {});
    return true;
  }
}
