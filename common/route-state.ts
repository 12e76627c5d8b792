/**
 * The route-state codec shared by the proxy replicas (proxy/route-sync.ts
 * reads and seeds it) and the control-plane leader (control/redis-router.ts
 * writes it): the JSON stored under `{prefix}route:{name}` in Redis mode.
 */
import { SLOT_COUNT } from './slots.js';

/** The JSON stored under `{prefix}route:{name}`. */
export interface StoredRouteState {
  readonly generation: number;
  /** Integer percent per version name. */
  readonly weights: Readonly<Record<string, number>>;
  /** SLOT_COUNT entries: slot → index into `versions`. */
  readonly slots: readonly number[];
  /** Every version of the route, in index order; `url` includes the base path. */
  readonly versions: ReadonlyArray<{ readonly name: string; readonly url: string }>;
  /** Who decided it (`seed`, `admin`, an experiment, …), for operators. Optional. */
  readonly source?: string;
  /** Milliseconds since the epoch when it was written. Optional. */
  readonly at?: number;
}

/** Parses and checks a stored state; null when it is not a well-formed one. */
export function parseRouteState(json: string): StoredRouteState | null {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    return null;
  }
  if (v === null || typeof v !== 'object') return null;
  const s = v as Record<string, unknown>;
  if (typeof s.generation !== 'number' || !Number.isSafeInteger(s.generation) || s.generation < 1) return null;
  if (!Array.isArray(s.versions)) return null;
  const names = new Set<string>();
  for (const x of s.versions as unknown[]) {
    if (x === null || typeof x !== 'object') return null;
    const { name, url } = x as Record<string, unknown>;
    if (typeof name !== 'string' || typeof url !== 'string' || name === '' || names.has(name)) return null;
    names.add(name);
  }
  if (s.weights === null || typeof s.weights !== 'object' || Array.isArray(s.weights)) return null;
  for (const [name, w] of Object.entries(s.weights)) {
    if (!names.has(name) || typeof w !== 'number' || !Number.isInteger(w)) return null;
  }
  if (!Array.isArray(s.slots) || s.slots.length !== SLOT_COUNT) return null;
  if ((s.slots as unknown[]).some((i) => typeof i !== 'number' || !Number.isInteger(i) || i < 0 || i >= names.size)) return null;
  return s as unknown as StoredRouteState;
}
