/**
 * HTTP/2 connections to h2c and h2 versions, for streams that arrive over
 * HTTP/2 (gRPC above all). node:http2 directly, not undici: a proxied gRPC
 * call needs the upstream's RST_STREAM code and streams that may idle for
 * minutes; undici's h2 client reduces the first to a generic error, times
 * out the second (bodyTimeout), and costs 3.2× the CPU per call
 * (bench/README.md, "HTTP/2 upstreams").
 *
 * One session per version, a second one only when the first has as many
 * streams open as the upstream allows. A session that fails, goes away or
 * idles past the keep-alive is replaced on the next stream.
 */
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders, type SecureClientSessionOptions } from 'node:http2';
import type { UpstreamProtocol } from '../config/types.js';
import type { UpstreamTlsOptions } from './upstream-tls.js';

const kStreams = Symbol('sluice.openStreams');
const kMax = Symbol('sluice.maxStreams');
/** Open streams, and how many the upstream allows (read from its SETTINGS once, not per stream). */
type Session = ClientHttp2Session & { [kStreams]: number; [kMax]: number };

/** Streams the upstream's SETTINGS allow at once, when it has not said yet: RFC 9113 §6.5.2 recommends ≥ 100. */
const ASSUMED_MAX_STREAMS = 100;

function onRemoteSettings(this: Session, settings: { maxConcurrentStreams?: number }): void {
  this[kMax] = settings.maxConcurrentStreams ?? ASSUMED_MAX_STREAMS;
}

/** The session a stream was opened on: by 'close', `stream.session` is already gone. */
export const kSession = Symbol('sluice.upstreamSession');
type TrackedStream = ClientHttp2Stream & { [kSession]: Session };

function onStreamClose(this: TrackedStream): void {
  this[kSession][kStreams]--;
}

export class H2Upstream {
  readonly #sessions: Session[] = [];
  #closed = false;

  constructor(
    readonly origin: string,
    readonly protocol: Exclude<UpstreamProtocol, 'http1'>,
    private readonly tls: UpstreamTlsOptions | null,
    private readonly connectMs: number,
    private readonly idleMs: number,
  ) {}

  /** Opens a stream; errors (refused connection, GOAWAY) arrive on it as 'error'. */
  request(headers: OutgoingHttpHeaders, endStream: boolean): ClientHttp2Stream {
    const session = this.#session();
    const stream = session.request(headers, { endStream }) as TrackedStream;
    session[kStreams]++;
    stream[kSession] = session;
    stream.once('close', onStreamClose);
    return stream;
  }

  #session(): Session {
    const list = this.#sessions;
    for (let i = 0; i < list.length; i++) {
      const s = list[i]!;
      if (s.closed || s.destroyed) {
        list.splice(i--, 1);
        continue;
      }
      if (s[kStreams] < s[kMax]) return s;
    }
    return this.#connect();
  }

  #connect(): Session {
    if (this.#closed) throw Object.assign(new Error('upstream closed'), { code: 'UND_ERR_CLOSED' });
    const options: SecureClientSessionOptions = {
      ...(this.tls ?? {}),
      // Our peer for a whole session's lifetime is one upstream; its settings are its own business.
      peerMaxConcurrentStreams: ASSUMED_MAX_STREAMS,
    };
    const s = http2.connect(this.origin, options) as Session;
    s[kStreams] = 0;
    s[kMax] = ASSUMED_MAX_STREAMS;
    s.on('remoteSettings', onRemoteSettings);
    this.#sessions.push(s);
    // A connect that hangs fails its streams instead of leaving them waiting for ever.
    const timer = setTimeout(() => {
      if (!s.connecting) return; // connected meanwhile
      const err = Object.assign(new Error(`connect to ${this.origin} timed out`), { code: 'UND_ERR_CONNECT_TIMEOUT' });
      s.destroy(err);
    }, this.connectMs);
    timer.unref();
    s.once('connect', () => clearTimeout(timer));
    // Errors reach every open stream; the session's own 'error' just needs a listener.
    s.on('error', () => {});
    s.once('close', () => {
      clearTimeout(timer);
      const i = this.#sessions.indexOf(s);
      if (i >= 0) this.#sessions.splice(i, 1);
    });
    s.once('goaway', () => {
      const i = this.#sessions.indexOf(s);
      if (i >= 0) this.#sessions.splice(i, 1);
    });
    // Idle: no stream for idleMs. Node's session timeout counts activity, so an open but quiet stream would trip it too.
    s.setTimeout(this.idleMs, () => {
      if (s[kStreams] === 0) s.close();
    });
    s.unref();
    return s;
  }

  /** Sessions open and streams on them, for /stats and leak checks. */
  stats(): { sessions: number; streams: number } {
    let streams = 0;
    for (const s of this.#sessions) streams += s[kStreams];
    return { sessions: this.#sessions.length, streams };
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#sessions.map((s) => new Promise<void>((resolve) => (s.destroyed ? resolve() : s.close(() => resolve())))));
    this.#sessions.length = 0;
  }
}
