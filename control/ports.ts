/**
 * The control plane's seams to the outside: where measurements come from,
 * where weights go, where experiments are kept. All-in-one mode implements
 * them over the in-process proxy and an in-memory store; the Redis mode
 * implements them over Redis. The scheduler sees only these.
 */
import type { GenerationSnapshot, VersionSnapshot } from '../common/snapshots.js';
import type { ExperimentDoc } from './spec-types.js';
import type { ExperimentStatus } from './status.js';

/** Cumulative, absolute per-version counters of a route (summed over replicas where there are several). */
export interface AggregateSource {
  versions(route: string): Promise<Readonly<Record<string, VersionSnapshot>>>;
  /**
   * Per replica, the requests it counted under each recent routing
   * generation (keyless draws, sticky keys first seen). Kept apart by
   * replica: a key that reaches two replicas is new to each.
   */
  generations(route: string): Promise<readonly ReplicaGenerations[]>;
}

export interface ReplicaGenerations {
  readonly replica: string;
  readonly generations: readonly GenerationSnapshot[];
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
  /** Resolves with the generation the route's new state carries (what the request path counts under). */
  setWeights(route: string, weights: Readonly<Record<string, number>>, source: string): Promise<number>;
  /** Adds a version to a route (an experiment version with a `url`); no-op when it exists. */
  addVersion(route: string, name: string, url: string): Promise<void>;
  /** Largest absolute reward value accepted (rewards.maxValue): beyond it an event is refused. */
  readonly maxRewardValue: number;
  /**
   * Records reward events reported after the fact (the in-path header's
   * twin). An event `{ version }` counts for that version; an event `{ key }`
   * for the version that served that sticky key's most recent request before
   * `at` (ms), wherever the key's slot points now, even after the experiment
   * ended — or for none when the key was never seen or has been forgotten
   * (`unattributed`). A value > 0 converts a request at most once. With an
   * `id`, an event already recorded in the last REWARD_ID_TTL_MS is not
   * counted again (a client retrying after a lost reply): a `duplicate`.
   * Values are checked by the caller (finite, within maxRewardValue).
   */
  recordRewards(route: string, events: readonly RewardEvent[], at: number): Promise<RewardTally>;
}

export type RewardEvent =
  | { readonly version: string; readonly key?: undefined; readonly value: number; readonly id?: string | null }
  | { readonly key: string; readonly version?: undefined; readonly value: number; readonly id?: string | null };

export interface RewardTally {
  accepted: number;
  duplicates: number;
  unattributed: number;
}

/** How long a reward event id is remembered: retries come within seconds, this leaves room for queues replayed later. */
export const REWARD_ID_TTL_MS = 24 * 60 * 60 * 1000;

export interface ExperimentRecord {
  readonly doc: ExperimentDoc;
  readonly status: ExperimentStatus;
  /** Counters when the experiment started: measurements are taken relative to them. */
  readonly start: Readonly<Record<string, VersionSnapshot>> | null;
}

export interface ExperimentStore {
  get(name: string): Promise<ExperimentRecord | null>;
  put(record: ExperimentRecord): Promise<void>;
  list(): Promise<ExperimentRecord[]>;
  delete(name: string): Promise<void>;
}
