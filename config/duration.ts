/**
 * Human-friendly durations and sizes for `sluice.yaml`. Both return null
 * instead of throwing so the config validator can report every bad field.
 */

const DURATION_UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

const SIZE_UNITS: Readonly<Record<string, number>> = {
  B: 1,
  kB: 1_000,
  KB: 1_000,
  MB: 1_000_000,
  GB: 1_000_000_000,
  KiB: 1_024,
  MiB: 1_048_576,
  GiB: 1_073_741_824,
};

const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;
const SIZE_RE = /^(\d+(?:\.\d+)?)(B|kB|KB|MB|GB|KiB|MiB|GiB)$/;

/**
 * Milliseconds from a bare number (already ms) or `250ms`, `2s`, `1.5s`,
 * `1m`, `1h`; null when invalid. A unit-less string is rejected on purpose:
 * "30" could mean seconds to one reader and milliseconds to another.
 */
export function parseDuration(v: unknown): number | null {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? v : null;
  const parsed = parseWithUnit(v, DURATION_RE, DURATION_UNITS);
  // Rounded to microseconds so `1.1s` is 1100, not 1100.0000000000002.
  return parsed === null ? null : Math.round(parsed * 1_000) / 1_000;
}

/**
 * Bytes from a bare non-negative integer or `512B`, `1kB`, `1MB` (decimal),
 * `64KiB`, `1MiB` (binary); null when invalid.
 */
export function parseSize(v: unknown): number | null {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : null;
  const parsed = parseWithUnit(v, SIZE_RE, SIZE_UNITS);
  return parsed === null ? null : Math.round(parsed);
}

function parseWithUnit(v: unknown, re: RegExp, units: Readonly<Record<string, number>>): number | null {
  if (typeof v !== 'string') return null;
  const m = re.exec(v.trim());
  const factor = m?.[2] === undefined ? undefined : units[m[2]];
  if (!m?.[1] || factor === undefined) return null;
  const n = Number(m[1]) * factor;
  return Number.isFinite(n) ? n : null;
}
