/**
 * Periods: the experiment's traffic cut by routing generation. Every weight
 * change is a new generation; the proxies count requests and rewards under
 * the generation that routed them (proxy/stats.ts GenerationCounts), so a
 * period's counts were all made under one set of weights — the unit the
 * winner test (sequential.ts) and the sample-ratio check (srm.ts) compare
 * within. Pure.
 */
import type { GenerationSnapshot } from '../common/snapshots.js';

export interface PeriodTotals {
  readonly requests: number;
  readonly conversions: number;
  readonly rewards: number;
  readonly rewardSum: number;
  readonly rewardSumSq: number;
}

export interface PeriodRecord {
  readonly generation: number;
  /** The iteration whose traffic this generation carried (1-based). */
  readonly iteration: number;
  /** The experiment's weights of this generation. */
  readonly weights: Readonly<Record<string, number>>;
  /** Per version; counts keep growing while late rewards for this generation arrive. */
  readonly versions: Readonly<Record<string, PeriodTotals>>;
}

/** Periods kept in a status: at most this many (the oldest are folded away; 200 iterations fit). */
export const MAX_PERIODS = 1000;

/** Registers the generation the scheduler just wrote, as the period of iteration `iteration`. */
export function openPeriod(periods: readonly PeriodRecord[], generation: number, iteration: number, weights: Readonly<Record<string, number>>): PeriodRecord[] {
  if (periods.some((p) => p.generation === generation)) return [...periods];
  return [...periods, { generation, iteration, weights: { ...weights }, versions: {} }].slice(-MAX_PERIODS);
}

/**
 * Sums the replicas' recent generation counts per generation and writes them
 * into the periods they belong to. Counts are cumulative per generation, so
 * newer totals replace older ones; a generation no replica keeps any more
 * (too old) keeps what was last read.
 */
export function withGenerationTotals(periods: readonly PeriodRecord[], replicas: readonly { readonly generations: readonly GenerationSnapshot[] }[]): PeriodRecord[] {
  const sums = new Map<number, Record<string, { requests: number; conversions: number; rewards: number; rewardSum: number; rewardSumSq: number }>>();
  for (const r of replicas) {
    for (const g of r.generations) {
      let by = sums.get(g.generation);
      if (!by) sums.set(g.generation, (by = {}));
      for (const v of Object.keys(g.requests)) {
        const t = (by[v] ??= { requests: 0, conversions: 0, rewards: 0, rewardSum: 0, rewardSumSq: 0 });
        t.requests += g.requests[v] ?? 0;
        t.conversions += g.conversions?.[v] ?? 0;
        t.rewards += g.rewards?.[v] ?? 0;
        t.rewardSum += g.rewardSum?.[v] ?? 0;
        t.rewardSumSq += g.rewardSumSq?.[v] ?? 0;
      }
    }
  }
  return periods.map((p) => {
    const s = sums.get(p.generation);
    return s === undefined ? p : { ...p, versions: s };
  });
}

/** Per replica, one generation's counts of one field (for the sample-ratio check). */
export function generationField(
  replicas: readonly { readonly replica: string; readonly generations: readonly GenerationSnapshot[] }[],
  generation: number,
  field: 'keyless' | 'newKeys',
): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const r of replicas) {
    const g = r.generations.find((x) => x.generation === generation);
    if (g !== undefined && g[field] !== undefined) out[r.replica] = { ...g[field] };
  }
  return out;
}
