/**
 * The control plane's Prometheus series, read from the latest state of each
 * experiment at scrape time.
 */
import type { Registry } from 'prom-client';
import type { ExperimentRecord } from './ports.js';

export function registerExperimentMetrics(registry: Registry, latest: () => Iterable<ExperimentRecord>): void {
  const metric = (name: string, help: string, values: () => Array<{ value: number; labels: Record<string, string> }>) => ({
    name,
    help,
    type: 'gauge',
    aggregator: 'sum',
    get: () => ({ name, help, type: 'gauge', aggregator: 'sum', values: values() }),
  });
  const all = () => [...latest()];
  registry.registerMetric(
    metric('sluice_experiment_iteration', 'Iterations an experiment has completed.', () =>
      all().map((r) => ({ value: r.status.iteration, labels: { experiment: r.doc.name } })),
    ) as never,
  );
  registry.registerMetric(
    metric('sluice_experiment_winner', '1 for the version an experiment declared the winner, else 0.', () =>
      all().flatMap((r) => r.doc.spec.versions.map((v) => ({ value: r.status.winner === v.name ? 1 : 0, labels: { experiment: r.doc.name, version: v.name } }))),
    ) as never,
  );
  registry.registerMetric(
    metric('sluice_experiment_srm', '1 when the last iteration found a sample ratio mismatch.', () =>
      all().map((r) => ({ value: r.status.srm?.flagged ? 1 : 0, labels: { experiment: r.doc.name } })),
    ) as never,
  );
}
