/**
 * The control plane's Prometheus series, read from the latest state of each
 * experiment at scrape time.
 */
import type { Registry } from 'prom-client';
import { scraped } from '../proxy/metrics.js';
import type { ExperimentRecord } from './ports.js';

export function registerExperimentMetrics(registry: Registry, latest: () => Iterable<ExperimentRecord>): void {
  const all = () => [...latest()];
  const add = (m: ReturnType<typeof scraped>) => registry.registerMetric(m as never);
  add(
    scraped('sluice_experiment_iteration', 'Iterations an experiment has completed.', 'gauge', () =>
      all().map((r) => ({ value: r.status.iteration, labels: { experiment: r.doc.name } })),
    ),
  );
  add(
    scraped('sluice_experiment_winner', '1 for the version an experiment declared the winner, else 0.', 'gauge', () =>
      all().flatMap((r) => r.doc.spec.versions.map((v) => ({ value: r.status.winner === v.name ? 1 : 0, labels: { experiment: r.doc.name, version: v.name } }))),
    ),
  );
  add(
    scraped('sluice_experiment_srm', '1 when the last iteration found a sample ratio mismatch.', 'gauge', () =>
      all().map((r) => ({ value: r.status.srm?.flagged ? 1 : 0, labels: { experiment: r.doc.name } })),
    ),
  );
}
