/**
 * The dashboard's live feed: one loop per process, whoever and however many
 * are watching. While at least one page is connected (or polled in the last
 * GRACE_MS), it reads what the admin API serves — the experiments' records
 * and the routes' descriptions and counters — once per tick (1 s), builds
 * the views of views.ts, and sends each page only what changed since it was
 * last sent, as server-sent events:
 *
 *  - `overview`: the process, the experiments' summaries, the routes;
 *  - `live`: per route and version, rates, errors and latency over the last
 *    seconds (rates.ts);
 *  - `experiment`: one experiment in full (charts, tables, timeline, tasks),
 *    for the pages that show it; rebuilt only when its record changed.
 *
 * Each event carries the whole of its part, never a difference, so a page
 * that reconnects (a dropped connection, a control-plane replica that went
 * away) is right again from its first events. A topic whose JSON is the
 * same as last time is not sent: an idle page gets nothing but a heartbeat.
 * The request path pays nothing: the proxy counts as it always does, and the
 * counters are read here at most once a second however many pages are open.
 */
import type { Logger } from '../../common/logger.js';
import type { ExperimentRecord } from '../../control/ports.js';
import type { RouteCounters, RouteDescription, RoutesPort } from '../routes-api.js';
import { type LiveView, RateTracker } from './rates.js';
import { experimentView, type OverviewView, type ProcessView, routeView, summaryView } from './views.js';

/** What the feed reads experiments from (the Scheduler, in the processes that run experiments). */
export interface ExperimentSource {
  list(): Promise<ExperimentRecord[]>;
}

export interface FeedSources {
  readonly kind: ProcessView['kind'];
  readonly routes: RoutesPort;
  /** Null on a proxy-only process. */
  readonly experiments: ExperimentSource | null;
  /** Redis mode's control plane: whether this replica leads. */
  readonly leader?: () => boolean;
  readonly weightEdits: boolean;
  readonly readOnly: boolean;
}

export interface FeedOptions {
  readonly log: Logger;
  /** Milliseconds between reads (default 1000: at most one update per second). */
  readonly tickMs?: number;
  /** How long the loop keeps going after the last page left or the last poll (default 30 s): a reconnect finds its rates warm. */
  readonly graceMs?: number;
  /** Milliseconds between heartbeats to each stream (default 15 s). */
  readonly heartbeatMs?: number;
  /** The span rates are measured over (default RATE_WINDOW_MS, 10 s). */
  readonly rateWindowMs?: number;
  readonly now?: () => number;
}

export type FeedEvent = 'overview' | 'live' | 'experiment';

/** A connected page, as the feed sees it. */
export interface FeedSink {
  send(event: FeedEvent, json: string): void;
  /** A comment line that keeps the connection (and the page's watchdog) alive. */
  ping(): void;
}

/** The feed's current JSON for a page: overview, live figures and, when asked for, one experiment. */
export interface FeedState {
  readonly overview: string;
  readonly live: string;
  readonly experiment: string | null;
}

interface Subscription {
  readonly experiment: string | null;
  readonly sink: FeedSink;
  /** Set once its first full state is sent: broadcasts skip it before. */
  ready: boolean;
}

interface CachedExperiment {
  fingerprint: string;
  json: string;
  /** Last time a page or poll asked for it (ms). */
  wanted: number;
}

/** What the feed has done: ticks, views built and events sent (a test compares them within one run). */
export interface FeedStats {
  ticks: number;
  overviewBuilds: number;
  experimentBuilds: number;
  events: number;
}

export class DashboardFeed {
  readonly stats: FeedStats = { ticks: 0, overviewBuilds: 0, experimentBuilds: 0, events: 0 };
  readonly #subs = new Set<Subscription>();
  readonly #rates: RateTracker;
  readonly #experiments = new Map<string, CachedExperiment>();
  /** Per experiment: the (createdAt, state, iteration) last seen and when its current interval started. */
  readonly #intervals = new Map<string, { key: string; iteration: number; base: number }>();
  readonly #tickMs: number;
  readonly #graceMs: number;
  readonly #heartbeatMs: number;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | null = null;
  #ticking: Promise<void> | null = null;
  #lastTick = 0;
  #lastHeartbeat = 0;
  #lastTouch = 0;
  #closed = false;
  #records: ExperimentRecord[] = [];
  #routes: RouteDescription[] = [];
  #error: string | null = null;
  #overview: string | null = null;
  #live: string | null = null;

  constructor(
    private readonly sources: FeedSources,
    private readonly opts: FeedOptions,
  ) {
    this.#tickMs = opts.tickMs ?? 1000;
    this.#graceMs = opts.graceMs ?? 30_000;
    this.#heartbeatMs = opts.heartbeatMs ?? 15_000;
    this.#now = opts.now ?? Date.now;
    this.#rates = new RateTracker(opts.rateWindowMs);
  }

  get subscribers(): number {
    return this.#subs.size;
  }

  /** Whether the loop is running (a page is connected, or one polled within the grace period). */
  get running(): boolean {
    return this.#timer !== null;
  }

  /**
   * A page connected: it gets the current state at once, then what changes.
   * Returns the function that ends the subscription.
   */
  async subscribe(experiment: string | null, sink: FeedSink): Promise<() => void> {
    const sub: Subscription = { experiment, sink, ready: false };
    this.#subs.add(sub);
    const unsubscribe = () => {
      this.#subs.delete(sub);
      this.#lastTouch = this.#now();
    };
    try {
      const state = await this.current(experiment);
      if (!this.#subs.has(sub)) return unsubscribe;
      sink.send('overview', state.overview);
      sink.send('live', state.live);
      if (state.experiment !== null) sink.send('experiment', state.experiment);
      this.stats.events += state.experiment === null ? 2 : 3;
      sub.ready = true;
    } catch (err) {
      unsubscribe();
      throw err;
    }
    return unsubscribe;
  }

  /** The current state (a poll, or a page's first events); starts the loop if it was idle. */
  async current(experiment: string | null): Promise<FeedState> {
    if (this.#closed) throw new Error('the dashboard feed is closed');
    this.#touch();
    if (this.#overview === null || this.#live === null) await this.#tick();
    let json: string | null = null;
    if (experiment !== null) {
      const cached = this.#experiments.get(experiment);
      json = cached !== undefined ? cached.json : this.#buildExperiment(experiment);
      this.#experiments.get(experiment)!.wanted = this.#now();
    }
    return { overview: this.#overview!, live: this.#live!, experiment: json };
  }

  close(): void {
    this.#closed = true;
    this.#stop();
    this.#subs.clear();
  }

  #touch(): void {
    this.#lastTouch = this.#now();
    if (this.#timer !== null || this.#closed) return;
    this.#timer = setInterval(() => void this.#tick(), this.#tickMs);
    this.#timer.unref();
  }

  #stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    // Cold again: the next page starts from fresh reads, not from figures that stopped being updated.
    this.#overview = null;
    this.#live = null;
    this.#experiments.clear();
    this.#rates.clear();
  }

  /** One read and broadcast; never two at once (a slow store makes ticks skip, not pile up). */
  #tick(): Promise<void> {
    this.#ticking ??= this.#read().finally(() => {
      this.#ticking = null;
    });
    return this.#ticking;
  }

  async #read(): Promise<void> {
    const now = this.#now();
    // At most one read per tick, even when a page's first request and the timer meet.
    if (this.#overview !== null && now - this.#lastTick < this.#tickMs / 2) return;
    this.#lastTick = now;
    this.stats.ticks++;
    const errors: string[] = [];
    if (this.sources.experiments !== null) {
      try {
        this.#records = await this.sources.experiments.list();
      } catch (err) {
        errors.push(`experiments could not be read (${(err as Error).message}); showing the last ones read`);
      }
    }
    let counters: RouteCounters[] | null = null;
    try {
      this.#routes = await this.sources.routes.routes();
      counters = await this.sources.routes.counters();
    } catch (err) {
      errors.push(`routes could not be read (${(err as Error).message}); showing the last ones read`);
    }
    const error = errors.length === 0 ? null : errors.join('; ');
    if (error !== null && error !== this.#error) this.opts.log.warn({ error }, 'dashboard: read failed');
    this.#error = error;
    if (this.#closed) return;

    const overview = JSON.stringify(this.#overviewView(now));
    this.stats.overviewBuilds++;
    if (overview !== this.#overview) {
      this.#overview = overview;
      this.#broadcast('overview', null, overview);
    }
    if (counters !== null || this.#live === null) {
      const live = JSON.stringify(counters === null ? ({ windowS: null, routes: {} } satisfies LiveView) : this.#rates.update(counters, now));
      if (live !== this.#live) {
        this.#live = live;
        this.#broadcast('live', null, live);
      }
    }
    const watched = new Set<string>();
    for (const s of this.#subs) if (s.experiment !== null) watched.add(s.experiment);
    for (const [name, cached] of this.#experiments) {
      if (watched.has(name)) cached.wanted = now;
      else if (now - cached.wanted > this.#graceMs) this.#experiments.delete(name);
      else watched.add(name); // polled lately: kept up to date for the next poll
    }
    for (const name of watched) {
      const before = this.#experiments.get(name)?.json;
      const json = this.#buildExperiment(name);
      if (json !== before) this.#broadcast('experiment', name, json);
    }
    if (now - this.#lastHeartbeat >= this.#heartbeatMs) {
      this.#lastHeartbeat = now;
      for (const s of this.#subs) if (s.ready) s.sink.ping();
    }
    if (this.#subs.size === 0 && now - this.#lastTouch > this.#graceMs) this.#stop();
  }

  #broadcast(event: FeedEvent, experiment: string | null, json: string): void {
    for (const s of this.#subs) {
      if (!s.ready || (event === 'experiment' && s.experiment !== experiment)) continue;
      s.sink.send(event, json);
      this.stats.events++;
    }
  }

  #overviewView(now: number): OverviewView {
    const process: ProcessView = {
      kind: this.sources.kind,
      leader: this.sources.leader ? this.sources.leader() : null,
      readOnly: this.sources.readOnly,
      experiments: this.sources.experiments !== null,
      weightEdits: this.sources.weightEdits,
      error: this.#error,
    };
    const records = [...this.#records].sort((a, b) => a.doc.name.localeCompare(b.doc.name));
    return {
      process,
      experiments: records.map((r) => summaryView(r, this.#nextIterationAt(r, now))),
      routes: this.#routes.map((d) => routeView(d, this.#records)),
    };
  }

  /** Builds (or keeps, when its record and route did not change) one experiment's view; returns its JSON. */
  #buildExperiment(name: string): string {
    const now = this.#now();
    const r = this.#records.find((x) => x.doc.name === name) ?? null;
    const cached = this.#experiments.get(name);
    if (r === null) {
      const why = this.sources.experiments === null ? 'this process runs no experiments (a proxy in Redis mode: see the control plane)' : `no experiment named "${name}"`;
      const json = JSON.stringify({ name, missing: true, reason: why });
      this.#experiments.set(name, { fingerprint: '', json, wanted: cached?.wanted ?? now });
      return json;
    }
    const route = this.#routes.find((d) => d.name === r.doc.spec.route) ?? null;
    const next = this.#nextIterationAt(r, now);
    const s = r.status;
    const fingerprint = [
      s.createdAt, s.state, s.iteration, s.winner, s.reason, s.ending?.state, s.finishedAt, s.srmFlagged, next,
      s.tasks.map((t) => t.state).join(','), JSON.stringify(s.weights), route?.generation, JSON.stringify(route?.weights),
    ].join('|');
    if (cached !== undefined && cached.fingerprint === fingerprint) return cached.json;
    this.stats.experimentBuilds++;
    const json = JSON.stringify(experimentView(r, route, next));
    this.#experiments.set(name, { fingerprint, json, wanted: cached?.wanted ?? now });
    return json;
  }

  /**
   * When the next iteration is due (ms), estimated: the scheduler starts an
   * interval after each iteration, at the start and on resume. The last
   * iteration's time is in the record; a resume is not, so it is taken as
   * when this feed first saw the experiment Running again.
   */
  #nextIterationAt(r: ExperimentRecord, now: number): number | null {
    const s = r.status;
    const name = r.doc.name;
    const key = `${s.createdAt}|${s.state}|${s.iteration}`;
    const prev = this.#intervals.get(name);
    let base: number;
    if (prev !== undefined && prev.key === key) base = prev.base;
    else if (prev !== undefined && prev.key.startsWith(`${s.createdAt}|`) && prev.iteration === s.iteration) base = now;
    else {
      const at = Date.parse(s.history.at(-1)?.at ?? s.startedAt ?? '');
      base = Number.isFinite(at) ? at : now;
    }
    this.#intervals.set(name, { key, iteration: s.iteration, base });
    if (this.#intervals.size > this.#records.length + 64) {
      const live = new Set(this.#records.map((x) => x.doc.name));
      for (const n of this.#intervals.keys()) if (!live.has(n)) this.#intervals.delete(n);
    }
    if (s.state !== 'Running' || s.ending || s.iteration >= r.doc.spec.duration.maxIterations) return null;
    return base + r.doc.spec.duration.intervalSeconds * 1000;
  }
}
