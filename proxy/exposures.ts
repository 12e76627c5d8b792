/**
 * Which version each sticky key was served by, and since when: a reward
 * posted later by key (POST /experiments/NAME/rewards) is credited to the
 * version that served the user, not to the one the key's slot maps to by the
 * time the reward arrives (weights move; experiments end).
 *
 * One log per sticky route. The request path does one Map lookup and updates
 * the entry in place; only a key not seen before allocates. Bounded twice:
 * at most `maxKeys` keys (the least recently seen go first) and no key older
 * than `retentionMs` since its last request.
 *
 * In Redis mode the control plane runs elsewhere: the log then queues the
 * keys whose exposure *changed* (new key, new version) and the stats
 * publisher writes them to Redis with its next flush (stats-publisher.ts).
 */
import type { GenerationCounts } from './stats.js';

/**
 * What `record` reads of a routing state: its generation and the counts under
 * it. routing-table.ts's RouteState is one; naming only these fields here keeps
 * exposures.ts from importing the routing table, which imports it.
 */
export interface ExposureState {
  readonly generation: number;
  readonly counts: Pick<GenerationCounts, 'newKeys'>;
}

export interface ExposureSettings {
  /** Keys kept per route, at most. */
  readonly maxKeys: number;
  /** A key whose last request is older than this is forgotten (and its rewards unattributed). */
  readonly retentionMs: number;
}

/**
 * Longer sticky keys are not logged: a key is kept as the client sent it, so
 * without a cap clients could make each entry as large as a header may be.
 */
export const MAX_EXPOSURE_KEY_LENGTH = 256;
/** How often a log that is not full drops expired keys: memory is bounded by maxKeys anyway. */
const SWEEP_EVERY_MS = 60_000;

/** One key's exposure. Reused for every request of the key, so fields are mutable. */
export class Exposure {
  /** Version index (in the route's versions) of the key's latest request. */
  version: number;
  /** When the key was first served by `version` (ms since the epoch). */
  since: number;
  /** The version before `version`, -1 when there was none. */
  prevVersion = -1;
  prevSince = 0;
  /** Routing generation of the previous version's last request. */
  prevGeneration = 0;
  /** Routing generation of the latest request. */
  generation: number;
  /** The latest request already converted (a reward > 0 was credited to it). */
  converted = false;
  /** Requests counted for the key: a response carries the number of its request, so a stale one cannot mark a newer request converted. */
  seq = 0;
  /** Last request (ms): drives retention and eviction. */
  seen: number;
  /** When the entry was put at the end of the eviction order; `seen` past it earns it a second chance. */
  queued: number;
  /** Waiting in the publish queue (Redis mode). */
  pending = false;

  constructor(version: number, now: number, generation: number) {
    this.version = version;
    this.since = now;
    this.generation = generation;
    this.seen = now;
    this.queued = now;
  }

  /**
   * A reward > 0 arrived for request number `seq`: whether it converts it.
   * At most once per request; a response for an older request than the
   * latest cannot be checked any more and converts.
   */
  convert(seq: number): boolean {
    if (seq !== this.seq) return true;
    if (this.converted) return false;
    this.converted = true;
    return true;
  }
}

/** Where a reward posted at some time goes: the version index, and whether that is the key's latest request. */
export interface Attribution {
  readonly version: number;
  readonly latest: boolean;
  readonly exposure: Exposure;
}

export class ExposureLog {
  readonly #map = new Map<string, Exposure>();
  /** Keys whose exposure changed since the last publish; null unless publishing (Redis mode). */
  #pending: string[] | null = null;
  /** Changes not queued because the queue was full (the store was away too long). */
  droppedChanges = 0;
  /** When expired keys are next looked for (a full log looks at every new key anyway). */
  #nextSweep = 0;

  constructor(readonly settings: ExposureSettings) {}

  get size(): number {
    return this.#map.size;
  }

  /** Queue changed exposures for a publisher from now on. */
  publishChanges(): void {
    this.#pending ??= [];
  }

  /**
   * A keyed request served by version `index` under `state`'s generation.
   * `bySlot`: the key's slot chose the version (no rule did); a key never
   * seen before is then a sample of the sticky SRM check (a fresh draw of
   * the hash — a returning user is not, as it was counted already).
   * Returns the key's entry (null for a key too long to log).
   */
  record(key: string, index: number, state: ExposureState, bySlot: boolean, now = Date.now()): Exposure | null {
    let e = this.#map.get(key);
    if (e !== undefined && now - e.seen < this.settings.retentionMs) {
      if (e.version !== index) {
        e.prevVersion = e.version;
        e.prevSince = e.since;
        e.prevGeneration = e.generation;
        e.version = index;
        e.since = now;
        if (this.#pending !== null) this.#queue(key, e);
      }
      e.seen = now;
      e.seq++;
      e.converted = false;
      if (e.generation !== state.generation) {
        // Redis mode: the control credits a late reward to the generation of the key's latest request.
        e.generation = state.generation;
        if (this.#pending !== null) this.#queue(key, e);
      }
      return e;
    }
    if (key.length > MAX_EXPOSURE_KEY_LENGTH) return null;
    // Expired: the key starts over, as if never seen.
    if (e !== undefined) this.#map.delete(key);
    this.#makeRoom(now);
    e = new Exposure(index, now, state.generation);
    this.#map.set(key, e);
    if (bySlot) state.counts.newKeys[index]! += 1;
    if (this.#pending !== null) this.#queue(key, e);
    return e;
  }

  get(key: string, now = Date.now()): Exposure | null {
    const e = this.#map.get(key);
    return e !== undefined && now - e.seen < this.settings.retentionMs ? e : null;
  }

  /**
   * The version that served `key`'s most recent request before `at` (ms):
   * the current one if it was already serving the key then, else the one
   * before it. Null for a key not seen (or forgotten), or first seen after `at`.
   */
  attribute(key: string, at: number, now = Date.now()): Attribution | null {
    const e = this.get(key, now);
    if (e === null) return null;
    if (at >= e.since) return { version: e.version, latest: true, exposure: e };
    if (e.prevVersion >= 0) return { version: e.prevVersion, latest: false, exposure: e };
    return null;
  }

  /** The queued changes, the queue emptied; give them back with `requeue` when they could not be written. */
  takeChanges(): Array<[string, Exposure]> {
    const keys = this.#pending;
    if (keys === null || keys.length === 0) return [];
    this.#pending = [];
    const out: Array<[string, Exposure]> = [];
    for (const k of keys) {
      const e = this.#map.get(k);
      if (e === undefined || !e.pending) continue; // evicted meanwhile
      e.pending = false;
      out.push([k, e]);
    }
    return out;
  }

  requeue(changes: ReadonlyArray<readonly [string, Exposure]>): void {
    for (const [k, e] of changes) if (this.#map.get(k) === e) this.#queue(k, e);
  }

  #queue(key: string, e: Exposure): void {
    if (e.pending) return;
    const pending = this.#pending!;
    if (pending.length >= this.settings.maxKeys) {
      this.droppedChanges++;
      return;
    }
    e.pending = true;
    pending.push(key);
  }

  /**
   * Before a new key: when full, or when a sweep is due, walk the eviction
   * order from its front. Expired keys go; while full, keys go until a
   * 64th of the room is free, so the walk (which also steps over the slots
   * Map deletions leave until it compacts) is paid once per many new keys.
   * A key seen since it was queued is moved to the end instead (a second
   * chance), so those evicted are the least recently seen among those
   * looked at, without reordering the Map on the request path. The walk is
   * bounded by the entries.
   */
  #makeRoom(now: number): void {
    const map = this.#map;
    const { maxKeys, retentionMs } = this.settings;
    const full = map.size >= maxKeys;
    if (!full && now < this.#nextSweep) return;
    this.#nextSweep = now + Math.min(retentionMs, SWEEP_EVERY_MS);
    const target = full ? maxKeys - Math.max(1, Math.ceil(maxKeys / 64)) : maxKeys;
    let budget = map.size + 1;
    for (const [k, e] of map) {
      if (budget-- === 0) break;
      if (now - e.seen >= retentionMs) {
        map.delete(k);
        e.pending = false;
        continue;
      }
      if (map.size <= target) break;
      map.delete(k);
      if (e.seen > e.queued) {
        e.queued = now;
        map.set(k, e);
        continue;
      }
      e.pending = false;
    }
    // Every entry looked at had a second chance: evict from the front regardless.
    if (map.size >= maxKeys) {
      for (const [k, e] of map) {
        if (map.size <= target) break;
        map.delete(k);
        e.pending = false;
      }
    }
  }
}

/** The exposure logs of a proxy, by route: they outlive routing tables (a version added recompiles the route). */
export class ExposureRegistry {
  readonly #logs = new Map<string, ExposureLog>();
  #publishing = false;

  constructor(readonly settings: ExposureSettings) {}

  route(name: string): ExposureLog {
    let log = this.#logs.get(name);
    if (log === undefined) {
      log = new ExposureLog(this.settings);
      if (this.#publishing) log.publishChanges();
      this.#logs.set(name, log);
    }
    return log;
  }

  publishChanges(): void {
    this.#publishing = true;
    for (const log of this.#logs.values()) log.publishChanges();
  }
}
