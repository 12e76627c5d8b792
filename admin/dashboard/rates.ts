/**
 * Live per-version figures for the dashboard, from the same counter
 * snapshots `/stats` serves (RoutesPort.counters): request rate, error rate
 * and latency percentiles over the last seconds, as differences between two
 * cumulative snapshots. Nothing here touches the request path: the proxy
 * counts as it always does, and the dashboard's feed reads its counters once
 * per tick, whoever is watching.
 */
import { LatencySketch, type SketchSnapshot } from '../../common/sketch.js';
import type { VersionSnapshot } from '../../common/snapshots.js';
import type { RouteCounters } from '../routes-api.js';

/** One version's live figures (null where nothing was measured in the window). */
export interface LiveVersion {
  /** Requests per second over the window. */
  readonly rps: number | null;
  /** Errors / requests over the window. */
  readonly errorRate: number | null;
  readonly p50: number | null;
  readonly p95: number | null;
  readonly p99: number | null;
  /** Since the process (or, in Redis mode, the replicas) started counting. */
  readonly requests: number;
  readonly errors: number;
  /** Shadow copies sent to this version, by outcome, since the start; null when it was never mirrored to. */
  readonly mirror: { readonly ok: number; readonly error: number; readonly dropped: number; readonly mismatch: number; readonly compared: number } | null;
}

export interface LiveRoute {
  readonly versions: Readonly<Record<string, LiveVersion>>;
  /** Redis mode (control plane): the proxy replicas whose counts are summed. */
  readonly replicas?: number;
}

export interface LiveView {
  /** Seconds the rates are measured over (shorter just after the feed started). */
  readonly windowS: number | null;
  readonly routes: Readonly<Record<string, LiveRoute>>;
}

interface Sample {
  readonly at: number;
  readonly requests: number;
  readonly errors: number;
  readonly sketch: SketchSnapshot;
}

/** Rates are over this many milliseconds of snapshots (the last ~10 s). */
export const RATE_WINDOW_MS = 10_000;

/** Keeps the last RATE_WINDOW_MS of snapshots per route and version, and turns them into rates. */
export class RateTracker {
  readonly #samples = new Map<string, Sample[]>();

  constructor(private readonly windowMs = RATE_WINDOW_MS) {}

  /** Adds this tick's counters (taken at `at`, ms) and returns the live view. */
  update(counters: readonly RouteCounters[], at: number): LiveView {
    const routes: Record<string, LiveRoute> = {};
    const seen = new Set<string>();
    let window: number | null = null;
    for (const c of counters) {
      const versions: Record<string, LiveVersion> = {};
      for (const [name, snap] of Object.entries(c.versions)) {
        const key = `${c.route}\u0000${name}`;
        seen.add(key);
        const samples = this.#remember(key, snap, at);
        const ref = samples[0]!;
        if (samples.length > 1) window = Math.max(window ?? 0, at - ref.at);
        versions[name] = live(snap, samples.length > 1 ? ref : null, at);
      }
      routes[c.route] = c.replicas === undefined ? { versions } : { versions, replicas: c.replicas.length };
    }
    for (const key of this.#samples.keys()) if (!seen.has(key)) this.#samples.delete(key);
    // The span actually covered is the window plus up to a tick: report the window, so that an idle
    // process's view does not change with the timer's jitter (a shorter span only while warming up).
    return { windowS: window === null ? null : Math.round(Math.min(window, this.windowMs) / 100) / 10, routes };
  }

  /** Forgets every sample (the feed stopped: rates start again from the next snapshots). */
  clear(): void {
    this.#samples.clear();
  }

  #remember(key: string, snap: VersionSnapshot, at: number): Sample[] {
    let samples = this.#samples.get(key);
    // A counter that went down is a restarted process (or, in Redis mode, a replica that left): start over.
    if (samples === undefined || snap.requests < samples[samples.length - 1]!.requests) {
      samples = [];
      this.#samples.set(key, samples);
    }
    samples.push({ at, requests: snap.requests, errors: snap.errors, sketch: snap.latencySketch });
    // Keep the newest sample at least windowMs old as the reference, drop the older ones.
    while (samples.length > 2 && samples[1]!.at <= at - this.windowMs) samples.shift();
    return samples;
  }
}

function live(snap: VersionSnapshot, ref: Sample | null, at: number): LiveVersion {
  const m = snap.mirror;
  const mirrored = (m.ok ?? 0) + (m.error ?? 0) + (m.dropped ?? 0) + (m.mismatch ?? 0) > 0 || snap.mirrorCompared > 0;
  const mirror = mirrored
    ? { ok: m.ok ?? 0, error: m.error ?? 0, dropped: m.dropped ?? 0, mismatch: m.mismatch ?? 0, compared: snap.mirrorCompared }
    : null;
  const base = { requests: snap.requests, errors: snap.errors, mirror };
  if (ref === null || at <= ref.at) return { rps: null, errorRate: null, p50: null, p95: null, p99: null, ...base };
  const requests = snap.requests - ref.requests;
  const rps = round((requests * 1000) / (at - ref.at));
  if (requests <= 0) return { rps, errorRate: null, p50: null, p95: null, p99: null, ...base };
  const window = LatencySketch.fromSnapshot(snap.latencySketch);
  window.mergeSnapshot(ref.sketch, -1);
  const q = (p: number) => (window.count > 0 ? round(window.quantile(p)) : null);
  return { rps, errorRate: round((snap.errors - ref.errors) / requests), p50: q(0.5), p95: q(0.95), p99: q(0.99), ...base };
}

/** Three significant digits: enough to read, and figures that did not really move compare equal. */
function round(x: number): number {
  if (x === 0 || !Number.isFinite(x)) return x;
  return Number(x.toPrecision(3));
}
