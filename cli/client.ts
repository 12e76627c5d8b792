/**
 * A client of the admin API for the `sluice` CLI commands. Every failure is a
 * `CliError` carrying the lines to print and the exit code, so commands only
 * deal with the happy path:
 *  - the API's JSON errors (`{ error: { code, message, details } }`) become
 *    `sluice: message [CODE]` plus one `path: message` line per detail;
 *  - a refused connection names the URL and how to point the CLI elsewhere;
 *  - a 401 adds a hint about `--token-file` / `--token` / `SLUICE_TOKEN_FILE` / `SLUICE_TOKEN`.
 */
import { Pool } from 'undici';
import type { ErrorDetail } from '../common/errors.js';
import { formatDetails } from '../common/errors.js';

export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:9901';
const REQUEST_TIMEOUT_MS = 30_000;

/** Exit codes of the client commands. */
/** unusable: `metrics test` was given a file it cannot use (invalid), as opposed to reads that failed (1). */
export const EXIT = { ok: 0, failed: 1, unusable: 2 } as const;

/** An error to print (every line, to stderr) and exit with. */
export class CliError extends Error {
  constructor(
    readonly lines: readonly string[],
    readonly exitCode: number = EXIT.failed,
  ) {
    super(lines[0] ?? 'error');
    this.name = 'CliError';
  }
}

/** A usage mistake (bad arguments): nothing was sent anywhere. */
export function usageError(message: string, usage?: string): CliError {
  return new CliError([`sluice: ${message}`, ...(usage ? [`usage: ${usage}`] : [])], EXIT.failed);
}

/** The API answered with an error. */
export class ApiError extends CliError {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: readonly ErrorDetail[],
    hint: string | null,
  ) {
    super([`sluice: ${message} [${code}]`, ...(details.length > 0 ? formatDetails(details).split('\n') : []), ...(hint ? [hint] : [])]);
    this.name = 'ApiError';
  }
}

// ---------------------------------------------------------------- response shapes (what the CLI reads)

export type Weights = Record<string, number>;

export interface ObjectiveStatus {
  metric: string;
  value: number | null;
  pHolds: number | null;
}

export interface VersionStatus {
  samples: number;
  metrics: Record<string, number | null>;
  verdict: 'feasible' | 'infeasible' | 'inconclusive';
  pFeasible: number | null;
  pBest: number | null;
  expectedLoss?: number | null;
  objectives: ObjectiveStatus[];
  metricErrors?: Record<string, { code: string; message: string }>;
  /** The reward as the winner test sees it (docs/statistics.md); null without a reward. */
  comparison?: RewardComparison | null;
}

export interface RewardComparison {
  estimate: number | null;
  interval: [number, number] | null;
  difference: number | null;
  differenceInterval: [number, number] | null;
  lift: number | null;
  liftInterval: [number, number] | null;
  eliminatedBy: string | null;
  units: number;
}

export interface TaskRun {
  phase: 'start' | 'loop' | 'finish';
  name: string;
  task: string;
  iteration: number;
  state: 'running' | 'succeeded' | 'failed' | 'skipped';
  startedAt: string;
  durationMs: number | null;
  onError: 'fail' | 'continue';
  error: { code: string; message: string } | null;
  output: Record<string, unknown> | null;
}

export interface SrmCheck {
  flagged: boolean;
  pValue: number;
  observed?: Record<string, number>;
  observedKeys?: Record<string, number>;
  expectedShare?: Record<string, number>;
}

export interface IterationRecord {
  iteration: number;
  at: string;
  weightsMeasured?: Weights;
  weights: Weights;
  versions: Record<string, VersionStatus>;
  winner: string | null;
  reason: string;
  srm: SrmCheck | null;
  tasks?: TaskRun[];
}

export type ExperimentState = 'Pending' | 'Running' | 'Paused' | 'Completed' | 'Failed' | 'Aborted';
export const FINAL_STATES: ReadonlySet<string> = new Set(['Completed', 'Failed', 'Aborted']);

export interface ExperimentStatus {
  state: ExperimentState;
  iteration: number;
  winner: string | null;
  reason: string;
  weights: Weights;
  versions: Record<string, VersionStatus>;
  srm?: SrmCheck | null;
  srmFlagged?: number;
  sequential?: { designEffect: number | null; pairAlpha: number; baselineLevel: number | null } | null;
  history: IterationRecord[];
  tasks?: TaskRun[];
  ending?: { state: string; reason: string; finishedAt: string } | null;
  createdAt?: string;
  startedAt?: string | null;
  finishedAt?: string | null;
}

export interface ObjectiveSpec {
  metric: string;
  upperLimit: number | null;
  lowerLimit: number | null;
  relativeTo: 'baseline' | null;
}

export interface ExperimentSpec {
  route: string;
  versions: Array<{ name: string; url: string | null }>;
  testingPattern: string;
  deploymentPattern: string;
  algorithm: string;
  criteria: {
    objectives: ObjectiveSpec[];
    reward: { metric: string; preferredDirection: string } | null;
    confidence: number;
    minSamples: number;
  };
  weights: { initial: Weights; maxCandidateWeight: number; maxCandidateWeightIncrement: number };
  duration: { intervalSeconds: number; maxIterations: number };
  promote?: boolean;
  seed?: number;
}

export interface Experiment {
  kind: 'Experiment';
  name: string;
  spec: ExperimentSpec;
  status: ExperimentStatus;
}

export interface ExperimentSummary {
  name: string;
  route: string;
  testingPattern: string;
  state: ExperimentState;
  iteration: number;
  maxIterations: number;
  winner: string | null;
  weights: Weights;
  reason: string;
}

export interface Route {
  name: string;
  generation: number;
  weights: Weights;
  versions: Array<{ name: string; url: string }>;
  [more: string]: unknown;
}

// ---------------------------------------------------------------- the client

export interface AdminClientOptions {
  /** `http://host:port` (a path prefix is kept). */
  readonly url: string;
  readonly token: string | null;
}

type Body = { json: unknown } | { yaml: string } | null;

export class AdminClient {
  readonly url: string;
  readonly #token: string | null;
  readonly #base: string;
  readonly #pool: Pool;

  constructor(opts: AdminClientOptions) {
    let u: URL;
    try {
      u = new URL(opts.url);
    } catch {
      throw usageError(`--admin / SLUICE_ADMIN_URL must be an http:// URL such as ${DEFAULT_ADMIN_URL}, got ${JSON.stringify(opts.url)}`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      throw usageError(`--admin / SLUICE_ADMIN_URL must be an http:// or https:// URL, got ${JSON.stringify(opts.url)}`);
    }
    this.url = opts.url;
    this.#token = opts.token === null || opts.token === '' ? null : opts.token;
    this.#base = u.pathname.replace(/\/+$/, '');
    this.#pool = new Pool(u.origin, { connections: 2, headersTimeout: REQUEST_TIMEOUT_MS, bodyTimeout: REQUEST_TIMEOUT_MS });
  }

  close(): Promise<void> {
    return this.#pool.close();
  }

  listExperiments(): Promise<{ experiments: ExperimentSummary[] }> {
    return this.#call('GET', '/experiments');
  }

  getExperiment(name: string): Promise<Experiment> {
    return this.#call('GET', `/experiments/${enc(name)}`);
  }

  /** PUT the document as written; the server parses and validates it. */
  applyExperiment(name: string, yamlText: string): Promise<Experiment> {
    return this.#call('PUT', `/experiments/${enc(name)}`, { yaml: yamlText });
  }

  action(name: string, action: 'pause' | 'resume' | 'abort'): Promise<Experiment> {
    return this.#call('POST', `/experiments/${enc(name)}/${action}`);
  }

  promote(name: string, version: string): Promise<Experiment> {
    return this.#call('POST', `/experiments/${enc(name)}/promote`, { json: { version } });
  }

  async deleteExperiment(name: string): Promise<void> {
    await this.#call('DELETE', `/experiments/${enc(name)}`);
  }

  listRoutes(): Promise<{ routes: Route[] }> {
    return this.#call('GET', '/routes');
  }

  getRoute(name: string): Promise<Route> {
    return this.#call('GET', `/routes/${enc(name)}`);
  }

  setWeights(route: string, weights: Weights): Promise<Route> {
    return this.#call('PUT', `/routes/${enc(route)}/weights`, { json: weights });
  }

  async #call<T>(method: 'GET' | 'PUT' | 'POST' | 'DELETE', path: string, body: Body = null): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.#token !== null) headers.authorization = `Bearer ${this.#token}`;
    let payload: string | undefined;
    if (body !== null && 'json' in body) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body.json);
    } else if (body !== null) {
      headers['content-type'] = 'application/yaml';
      payload = body.yaml;
    }
    let status: number;
    let text: string;
    try {
      const r = await this.#pool.request({ method, path: this.#base + path, headers, body: payload });
      status = r.statusCode;
      text = await r.body.text();
    } catch (err) {
      throw this.#unreachable(err);
    }
    let json: unknown;
    try {
      json = text === '' ? null : JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (status >= 200 && status < 300) {
      if (json === undefined) throw new CliError([`sluice: the admin API at ${this.url} answered ${method} ${path} with something that is not JSON`]);
      return json as T;
    }
    throw this.#apiError(status, json, text);
  }

  #apiError(status: number, json: unknown, text: string): ApiError {
    const e = (json as { error?: { code?: unknown; message?: unknown; details?: unknown } } | null | undefined)?.error;
    const code = typeof e?.code === 'string' ? e.code : `HTTP_${status}`;
    const message = typeof e?.message === 'string' ? e.message : `the admin API answered ${status}${text ? `: ${text.slice(0, 200)}` : ''}`;
    const details = Array.isArray(e?.details)
      ? e.details.map((d: unknown) => {
          const x = d as { path?: unknown; message?: unknown };
          return { path: typeof x?.path === 'string' ? x.path : '', message: typeof x?.message === 'string' ? x.message : JSON.stringify(d) };
        })
      : [];
    let hint: string | null = null;
    if (status === 401) {
      hint =
        this.#token === null
          ? 'hint: this admin API requires a token: pass --token-file <file> or --token <token>, or set SLUICE_TOKEN_FILE or SLUICE_TOKEN'
          : 'hint: the token was rejected: check --token-file / --token / SLUICE_TOKEN_FILE / SLUICE_TOKEN against the admin token Sluice runs with';
    }
    return new ApiError(status, code, message, details, hint);
  }

  #unreachable(err: unknown): CliError {
    const e = err as { code?: string; message?: string };
    const why = e.code && !String(e.message).includes(e.code) ? `${e.code}: ${e.message}` : (e.message ?? String(err));
    const unreachable = `sluice: cannot reach the admin API at ${this.url} (is sluice running? --admin / SLUICE_ADMIN_URL)`;
    if (e.code === 'ECONNREFUSED') return new CliError([unreachable]);
    if (e.code === 'ENOTFOUND' || e.code === 'EHOSTUNREACH' || e.code === 'ENETUNREACH' || e.code === 'UND_ERR_CONNECT_TIMEOUT') {
      return new CliError([unreachable, `(${why})`]);
    }
    return new CliError([`sluice: the admin API at ${this.url} failed: ${why}`]);
  }
}

function enc(s: string): string {
  return encodeURIComponent(s);
}
