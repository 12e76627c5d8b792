/**
 * The one registry of Sluice's error codes. Every error a user can see has a
 * code here, an HTTP status, and a line in docs/errors.md (a test checks that).
 */

export interface ErrorDef {
  readonly status: number;
  readonly message: string;
}

export const ERRORS = {
  SLUICE_CONFIG_INVALID: { status: 400, message: 'configuration is invalid' },
  SLUICE_CONFIG_READ: { status: 500, message: 'configuration file cannot be read' },
  SLUICE_EXPERIMENT_INVALID: { status: 400, message: 'experiment is invalid' },
  SLUICE_EXPERIMENT_NOT_FOUND: { status: 404, message: 'no such experiment' },
  SLUICE_EXPERIMENT_CONFLICT: { status: 409, message: 'another experiment is running on this route' },
  SLUICE_EXPERIMENT_STATE: { status: 409, message: 'the experiment is not in a state that allows this' },
  SLUICE_ROUTE_NOT_FOUND: { status: 404, message: 'no route matches this request' },
  SLUICE_UNKNOWN_ROUTE: { status: 404, message: 'no such route' },
  SLUICE_WEIGHTS_INVALID: { status: 400, message: 'weights are invalid' },
  SLUICE_UPSTREAM_CONNECT: { status: 502, message: 'cannot connect to the upstream version' },
  SLUICE_UPSTREAM_RESET: { status: 502, message: 'the upstream version closed the connection' },
  SLUICE_UPSTREAM_TIMEOUT: { status: 504, message: 'the upstream version did not answer in time' },
  SLUICE_UPSTREAM_CONNECT_TIMEOUT: { status: 504, message: 'connecting to the upstream version timed out' },
  SLUICE_UPSTREAM_ERROR: { status: 502, message: 'the upstream version failed' },
  SLUICE_UNAUTHORIZED: { status: 401, message: 'a valid bearer token is required' },
  SLUICE_BAD_REQUEST: { status: 400, message: 'the request is invalid' },
  SLUICE_REQUEST_UNFORWARDABLE: { status: 400, message: 'the request cannot be forwarded as sent (its framing is refused by the upstream client)' },
  SLUICE_TOO_MANY_HEADERS: { status: 431, message: 'the request has more header fields than Sluice reads' },
  SLUICE_METHOD_NOT_IMPLEMENTED: { status: 501, message: 'Sluice does not forward this method' },
  SLUICE_PATH_INVALID: { status: 400, message: 'the request path is malformed or hides a dot segment' },
  SLUICE_UPGRADE_LIMIT: { status: 503, message: 'the version has as many upgraded (WebSocket) connections as allowed' },
  SLUICE_REQUEST_TIMEOUT: { status: 408, message: 'the request body did not arrive in time' },
  SLUICE_OVERLOADED: { status: 503, message: 'the version has too many requests waiting for a connection' },
  SLUICE_NOT_FOUND: { status: 404, message: 'not found' },
  SLUICE_INTERNAL: { status: 500, message: 'internal error' },
  SLUICE_LISTEN: { status: 500, message: 'cannot listen on the configured address' },
  SLUICE_TLS_INVALID: { status: 500, message: 'a TLS certificate or key cannot be loaded' },
  SLUICE_STORE_UNAVAILABLE: { status: 503, message: 'the experiment store (Redis) is unavailable' },
  SLUICE_FENCED: { status: 409, message: 'another control-plane leader has taken over' },
  SLUICE_NOT_LEADER: { status: 409, message: 'this process does not decide weights or experiments' },
  SLUICE_METRIC_HTTP: { status: 502, message: 'the metric backend answered with an error status' },
  SLUICE_METRIC_TIMEOUT: { status: 504, message: 'the metric backend did not answer in time' },
  SLUICE_METRIC_UNREACHABLE: { status: 502, message: 'cannot connect to the metric backend' },
  SLUICE_METRIC_NOT_JSON: { status: 502, message: 'the metric backend did not answer with JSON' },
  SLUICE_METRIC_EXTRACT: { status: 502, message: 'the jq or JSONPath expression failed on the response' },
  SLUICE_METRIC_NOT_NUMERIC: { status: 502, message: 'the extracted value is not a number' },
  SLUICE_METRIC_NO_DATA: { status: 502, message: 'the metric backend has no data for this version yet' },
  SLUICE_METRIC_TEMPLATE: { status: 400, message: 'a metric template refers to an unknown variable or unset environment variable' },
  SLUICE_TASK_FAILED: { status: 500, message: 'an experiment task failed' },
  SLUICE_TASK_TIMEOUT: { status: 504, message: 'an experiment task did not finish in time' },
  SLUICE_TASK_HTTP: { status: 502, message: 'a task\'s HTTP request failed or was answered with an error status' },
  SLUICE_EXEC_DISABLED: { status: 403, message: 'exec tasks are disabled in this control plane' },
} as const satisfies Record<string, ErrorDef>;

export type ErrorCode = keyof typeof ERRORS;
export type MetricErrorCode = Extract<ErrorCode, `SLUICE_METRIC_${string}`>;

/** One field-level problem, named by its path in the document (`routes[0].weights.v9`). */
export interface ErrorDetail {
  readonly path: string;
  readonly message: string;
}

export class SluiceError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: readonly ErrorDetail[];

  constructor(code: ErrorCode, message?: string, details: readonly ErrorDetail[] = []) {
    super(message ?? ERRORS[code].message);
    this.name = 'SluiceError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.details = details;
  }

  toJSON(): { error: { code: ErrorCode; message: string; details: readonly ErrorDetail[] } } {
    return { error: { code: this.code, message: this.message, details: this.details } };
  }
}

/** `path: message` lines, the form a CLI prints a list of problems in. */
export function formatDetails(details: readonly ErrorDetail[]): string {
  return details.map((d) => (d.path ? `${d.path}: ${d.message}` : d.message)).join('\n');
}
