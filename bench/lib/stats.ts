import { median as medianOf } from 'simple-statistics';

/** The median of the runs of a case (the middle two averaged); null for none. */
export function median(xs: readonly number[]): number | null {
  return xs.length === 0 ? null : medianOf([...xs]);
}

export function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  return a == null || b == null || b === 0 ? null : a / b;
}

export function diff(a: number | null | undefined, b: number | null | undefined): number | null {
  return a == null || b == null ? null : a - b;
}
