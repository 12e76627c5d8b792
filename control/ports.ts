/**
 * The control plane's seams to the outside: where measurements come from,
 * where weights go, where experiments are kept. All-in-one mode implements
 * them over the in-process proxy and an in-memory store; the Redis mode
 * implements them over Redis. The scheduler sees only these.
 */
import type { VersionSnapshot } from '../proxy/stats.js';
import type { ExperimentStatus } from './lifecycle.js';
import type { ExperimentDoc } from './spec-types.js';

/** Cumulative, absolute per-version counters of a route (summed over replicas where there are several). */
export interface AggregateSource {
  versions(route: string): Promise<Readonly<Record<string, VersionSnapshot>>>;
}

export interface RouteView {
  readonly versions: readonly string[];
  readonly weights: Readonly<Record<string, number>>;
  /** Each version's upstream URL (readiness tasks probe them). */
  readonly urls: Readonly<Record<string, string>>;
}

export interface TrafficRouter {
  /** Null when the route does not exist. */
  route(route: string): RouteView | null;
  setWeights(route: string, weights: Readonly<Record<string, number>>, source: string): Promise<void>;
  /** Adds a version to a route (an experiment version with a `url`); no-op when it exists. */
  addVersion(route: string, name: string, url: string): Promise<void>;
  /** The version a sticky key is assigned to under the route's current weights. */
  versionOfKey(route: string, key: string): string | null;
  /**
   * Records a reward event for a version (the in-path header's twin, for
   * events reported later). With an `id`, an event already recorded in the
   * last REWARD_ID_TTL_MS is not counted again (a client retrying after a
   * lost reply); resolves false then.
   */
  recordReward(route: string, version: string, value: number, id?: string | null): Promise<boolean>;
}

/** How long a reward event id is remembered: retries come within seconds, this leaves room for queues replayed later. */
export const REWARD_ID_TTL_MS = 24 * 60 * 60 * 1000;

export interface ExperimentRecord {
  readonly doc: ExperimentDoc;
  readonly status: ExperimentStatus;
  /** Counters when the experiment started: measurements are taken relative to them. */
  readonly start: Readonly<Record<string, VersionSnapshot>> | null;
  /** Keyless requests per version at the last iteration, for the per-iteration SRM check. */
  readonly lastKeyless: Readonly<Record<string, number>>;
}

export interface ExperimentStore {
  get(name: string): Promise<ExperimentRecord | null>;
  put(record: ExperimentRecord): Promise<void>;
  list(): Promise<ExperimentRecord[]>;
  delete(name: string): Promise<void>;
}
