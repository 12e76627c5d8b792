/**
 * Upstream failures, classified by `err.code` (as @fastify/reply-from does,
 * not by `instanceof`), into the `reason` label of
 * `sluice_upstream_errors_total` and the error the client sees.
 */
import { ERRORS, type ErrorCode } from '../common/errors.js';
import { REASON_INDEX, type UpstreamErrorReason } from './stats.js';

export interface UpstreamFailure {
  readonly reason: UpstreamErrorReason;
  readonly reasonIndex: number;
  readonly code: ErrorCode;
  readonly status: number;
}

function failure(reason: UpstreamErrorReason, code: ErrorCode, status: number): UpstreamFailure {
  return Object.freeze({ reason, reasonIndex: REASON_INDEX[reason], code, status });
}

const CONNECT = failure('connect', 'SLUICE_UPSTREAM_CONNECT', 502);
const CONNECT_TIMEOUT = failure('connect-timeout', 'SLUICE_UPSTREAM_CONNECT_TIMEOUT', 504);
const TIMEOUT = failure('timeout', 'SLUICE_UPSTREAM_TIMEOUT', 504);
const RESET = failure('reset', 'SLUICE_UPSTREAM_RESET', 502);
const PROTOCOL = failure('protocol', 'SLUICE_UPSTREAM_ERROR', 502);
const OTHER = failure('other', 'SLUICE_UPSTREAM_ERROR', 502);

const BY_CODE: Readonly<Record<string, UpstreamFailure>> = {
  ECONNREFUSED: CONNECT,
  ENOTFOUND: CONNECT,
  EAI_AGAIN: CONNECT,
  EHOSTUNREACH: CONNECT,
  ENETUNREACH: CONNECT,
  EADDRNOTAVAIL: CONNECT,
  UND_ERR_CONNECT_TIMEOUT: CONNECT_TIMEOUT,
  ETIMEDOUT: CONNECT_TIMEOUT,
  UND_ERR_HEADERS_TIMEOUT: TIMEOUT,
  UND_ERR_BODY_TIMEOUT: TIMEOUT,
  ECONNRESET: RESET,
  EPIPE: RESET,
  UND_ERR_SOCKET: RESET,
  UND_ERR_CLOSED: RESET,
  // undici's HTTP/2 client (h2/h2c versions, HTTP/1.1 clients): the upstream reset the stream, or the session went.
  ERR_HTTP2_STREAM_ERROR: RESET,
  ERR_HTTP2_SESSION_ERROR: RESET,
  ERR_HTTP2_GOAWAY_SESSION: RESET,
  UND_ERR_RES_CONTENT_LENGTH_MISMATCH: PROTOCOL,
  UND_ERR_INFO: PROTOCOL,
};

export function classifyUpstreamError(err: Error): UpstreamFailure {
  const code = (err as { code?: string }).code;
  if (code === undefined) return OTHER;
  return BY_CODE[code] ?? (code.startsWith('HPE_') ? PROTOCOL : OTHER);
}

/**
 * The connection went away under a request (closed or reset), as a stale
 * keep-alive connection does; not a refusal, a timeout or a broken response.
 */
export function isConnectionLoss(err: Error): boolean {
  const code = (err as { code?: string }).code;
  return code === 'UND_ERR_SOCKET' || code === 'ECONNRESET' || code === 'EPIPE';
}

/**
 * The JSON body of a 502/504: what failed, where, and why — in our words only.
 * The cause's own message (`connect ECONNREFUSED 10.1.2.3:8080`) names internal
 * addresses; it goes to the log, never to the client.
 */
export function upstreamErrorBody(f: UpstreamFailure, route: string, version: string): string {
  return JSON.stringify({
    error: {
      code: f.code,
      message: `version ${version} of route ${route}: ${ERRORS[f.code].message}`,
      route,
      version,
      reason: f.reason,
    },
  });
}
