/**
 * How a source's outcome becomes a MetricReading. Sources throw SluiceErrors
 * with SLUICE_METRIC_* codes; `failedReading` turns any throw into a reading
 * with `error` and no value, so a failed read never carries a number (no
 * silent reuse of an older one) and never escapes as an exception.
 */
import { type MetricErrorCode, SluiceError } from '../../common/errors.js';
import { maskSecrets } from './template.js';
import type { MetricReading } from './types.js';

export function metricError(code: MetricErrorCode, message: string): SluiceError {
  return new SluiceError(code, message);
}

export function isMetricCode(code: string): code is MetricErrorCode {
  return code.startsWith('SLUICE_METRIC_');
}

export function okReading(value: number, count: number | null = null, stdDev: number | null = null): MetricReading {
  return { value, count, stdDev, error: null };
}

/**
 * A reading for a failure. Messages are masked once more here: the sources
 * build them from masked text already, but a message quoting a response body
 * (an echo server, a proxy's error page) could carry a secret back.
 */
export function failedReading(err: unknown, secrets: readonly string[]): MetricReading {
  if (err instanceof SluiceError && isMetricCode(err.code)) {
    return { value: null, count: null, stdDev: null, error: { code: err.code, message: maskSecrets(err.message, secrets) } };
  }
  // Not one of ours (a bug, or jq's wasm failing to load): still a named error, not a crash.
  const message = err instanceof Error ? err.message : String(err);
  return { value: null, count: null, stdDev: null, error: { code: 'SLUICE_METRIC_EXTRACT', message: maskSecrets(`unexpected failure: ${message}`, secrets) } };
}

const NUMERIC = /^\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*$/;

/**
 * A JSON value as a metric value: a finite number, or a string holding one
 * (Prometheus and many APIs send numbers as strings). `null` means "no data"
 * (a missing field, or a backend with nothing for this version yet).
 */
export function toNumber(v: unknown, what: string): number {
  if (v === null || v === undefined) throw metricError('SLUICE_METRIC_NO_DATA', `${what} gave null (a missing field, or no data for this version yet)`);
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v === 'string' && NUMERIC.test(v)) return Number(v);
  throw metricError('SLUICE_METRIC_NOT_NUMERIC', `${what} gave ${describeValue(v)}, not a number`);
}

/** A short, type-first description of a JSON value for an error message. */
export function describeValue(v: unknown): string {
  if (typeof v === 'string') return `the string ${JSON.stringify(excerpt(v, 60))}`;
  if (typeof v === 'number' || typeof v === 'boolean') return `${typeof v} ${String(v)}`;
  if (Array.isArray(v)) return `a list of ${v.length}`;
  if (v !== null && typeof v === 'object') return `an object ${excerpt(JSON.stringify(v), 80)}`;
  return String(v);
}

export function excerpt(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}…`;
}
