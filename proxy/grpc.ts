/**
 * gRPC on the request path: recognising a call, its deadline, its outcome,
 * and answering Sluice's own errors the way a gRPC client understands them
 * (a trailers-only response with grpc-status), never as a JSON 502.
 */
import { constants as h2, type IncomingHttpHeaders } from 'node:http2';
import {
  GRPC_CANCELLED, GRPC_INTERNAL, GRPC_RESOURCE_EXHAUSTED, GRPC_UNAVAILABLE, GRPC_UNIMPLEMENTED, GRPC_UNKNOWN,
} from '../common/grpc-status.js';

/** application/grpc, application/grpc+proto, application/grpc+json… but not application/grpc-web (a different framing). */
export function isGrpc(contentType: string | undefined): boolean {
  if (contentType === undefined || contentType.length < 16) return false;
  if (contentType.charCodeAt(12) !== 103 /* g */ || !contentType.startsWith('application/grpc')) return false;
  const next = contentType.charCodeAt(16);
  return Number.isNaN(next) || next === 43 /* + */ || next === 59 /* ; */;
}

const UNIT_MS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 1e-3, n: 1e-6 };

/**
 * `grpc-timeout` (1–8 digits and a unit, PROTOCOL-HTTP2.md) in milliseconds;
 * -1 when absent or malformed (the call then has no deadline of ours, as a
 * gRPC server would treat it).
 */
export function grpcTimeoutMs(value: string | string[] | undefined): number {
  if (typeof value !== 'string' || value.length < 2 || value.length > 9) return -1;
  const unit = UNIT_MS[value[value.length - 1]!];
  const digits = value.slice(0, -1);
  if (unit === undefined || !/^\d+$/.test(digits)) return -1;
  const ms = Number(digits) * unit;
  // Past ~24.8 days setTimeout fires at once (a TimeoutOverflowWarning): a deadline that far is none at all.
  return ms > MAX_TIMER_MS ? -1 : ms;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The status an upstream's HTTP status means when it is not a gRPC answer
 * (a load balancer's 503, a 404 from a non-gRPC server): gRPC's own mapping,
 * doc/http-grpc-status-mapping.md. Sluice's errors use it too.
 */
export function grpcStatusOfHttp(status: number): number {
  switch (status) {
    case 400: return GRPC_INTERNAL;
    case 401: return 16; // UNAUTHENTICATED
    case 403: return 7; // PERMISSION_DENIED
    case 404: return GRPC_UNIMPLEMENTED;
    case 429: case 502: case 503: case 504: return GRPC_UNAVAILABLE;
    default: return GRPC_UNKNOWN;
  }
}

/** What an RST_STREAM from the upstream means for the call (grpc-go's mapping). */
export function grpcStatusOfReset(code: number): number {
  switch (code) {
    case h2.NGHTTP2_REFUSED_STREAM: return GRPC_UNAVAILABLE; // never processed: safe to retry
    case h2.NGHTTP2_CANCEL: return GRPC_CANCELLED;
    case h2.NGHTTP2_ENHANCE_YOUR_CALM: return GRPC_RESOURCE_EXHAUSTED;
    case h2.NGHTTP2_INADEQUATE_SECURITY: return 7; // PERMISSION_DENIED
    default: return GRPC_INTERNAL;
  }
}

/**
 * The grpc-status of a finished call: from its trailers, or its headers for
 * a trailers-only answer. A gRPC response without one is broken (INTERNAL
 * per the spec); a non-200 HTTP answer maps by status.
 */
export function grpcOutcome(httpStatus: number, headers: IncomingHttpHeaders | null, trailers: IncomingHttpHeaders | null): number {
  const raw = trailers?.['grpc-status'] ?? headers?.['grpc-status'];
  if (typeof raw === 'string') {
    const n = Number(raw);
    return Number.isInteger(n) && n >= 0 && n <= 16 ? n : GRPC_UNKNOWN;
  }
  return httpStatus !== 200 ? grpcStatusOfHttp(httpStatus) : GRPC_INTERNAL;
}

/** grpc-message is percent-encoded (PROTOCOL-HTTP2.md): anything outside printable ASCII, and %. */
export function encodeGrpcMessage(message: string): string {
  return /^[\x20-\x24\x26-\x7e]*$/.test(message) ? message : encodeURIComponent(message);
}

/** A trailers-only response: one HEADERS frame that ends the stream. */
export function grpcErrorHeaders(code: number, message: string, extra?: Record<string, string>): Record<string, string | number> {
  return {
    ':status': 200,
    'content-type': 'application/grpc',
    'grpc-status': String(code),
    'grpc-message': encodeGrpcMessage(message),
    ...extra,
  };
}

