/**
 * gRPC status codes (grpc/doc/statuscodes.md) and which of them count as a
 * version's error by default. Shared by the config (route `grpc.errorCodes`),
 * the proxy (judging calls) and the docs.
 */
export const GRPC_CODES = [
  'OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS',
  'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE',
  'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED',
] as const;
export type GrpcCodeName = (typeof GRPC_CODES)[number];

export const GRPC_OK = 0;
export const GRPC_CANCELLED = 1;
export const GRPC_UNKNOWN = 2;
export const GRPC_DEADLINE_EXCEEDED = 4;
export const GRPC_RESOURCE_EXHAUSTED = 8;
export const GRPC_UNIMPLEMENTED = 12;
export const GRPC_INTERNAL = 13;
export const GRPC_UNAVAILABLE = 14;

/**
 * The codes a server owns: those grpc-gateway maps to a 5xx (UNKNOWN,
 * DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS). The
 * rest describe the caller's request (INVALID_ARGUMENT, NOT_FOUND,
 * PERMISSION_DENIED…) or its choice (CANCELLED), and a new version that
 * answers them correctly must not be rolled back for it.
 */
export const DEFAULT_GRPC_ERROR_CODES: readonly GrpcCodeName[] = ['UNKNOWN', 'DEADLINE_EXCEEDED', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS'];

export function grpcCodeMask(names: readonly GrpcCodeName[]): number {
  let mask = 0;
  for (const n of names) mask |= 1 << GRPC_CODES.indexOf(n);
  return mask;
}

export const DEFAULT_GRPC_ERROR_MASK = grpcCodeMask(DEFAULT_GRPC_ERROR_CODES);

/** Below it a deadline is the client's doing, not the version's (route grpc.minDeadline); real services' deadlines start around 100 ms. */
export const DEFAULT_GRPC_MIN_DEADLINE_MS = 50;
