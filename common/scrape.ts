/**
 * Prometheus series read from a process's own counters at scrape time, shared
 * by the proxy's series (proxy/metrics.ts) and the control plane's
 * (control/experiment-metrics.ts), and the base registry both processes start from.
 */
import { Registry, collectDefaultMetrics, type MetricValue } from 'prom-client';

/** One sample of a series (a histogram's samples name their own series). */
export type ScrapedValue = MetricValue<string> & { metricName?: string };

/** A metric read from our own counters; prom-client calls `get()` on scrape. */
export interface ScrapedMetric {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'gauge' | 'histogram' | 'summary';
  readonly aggregator: 'sum';
  get(): { name: string; help: string; type: string; aggregator: 'sum'; values: ScrapedValue[] };
}

export function scraped(name: string, help: string, type: ScrapedMetric['type'], values: () => ScrapedValue[]): ScrapedMetric {
  return {
    name,
    help,
    type,
    aggregator: 'sum',
    get: () => ({ name, help, type, aggregator: 'sum', values: values() }),
  };
}

/** A registry with prom-client's process metrics, less the ones promtool rejects. */
export function createBaseRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // prom-client names these gauges *_total, which promtool rejects; the same
  // numbers remain, per type, in nodejs_active_handles/requests/resources.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
    registry.removeSingleMetric(name);
  }
  return registry;
}
