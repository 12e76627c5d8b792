/**
 * The control plane's Prometheus series, read from the latest state of each
 * experiment at scrape time.
 */
import type { Registry } from 'prom-client';
import { scraped } from '../common/scrape.js';
import type { ExperimentRecord } from './ports.js';
import type { ExperimentState } from './status.js';

const EXPERIMENT_STATES: readonly ExperimentState[] = ['Pending', 'Running', 'Paused', 'Completed', 'Failed', 'Aborted'];

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
  // One series per state, 1 for the current one (kube-state-metrics' style): an alert on Failed needs no regex.
  add(
    scraped('sluice_experiment_state', '1 for the state an experiment is in (Pending, Running, Paused, Completed, Failed, Aborted), 0 for the others.', 'gauge', () =>
      all().flatMap((r) => EXPERIMENT_STATES.map((state) => ({ value: r.status.state === state ? 1 : 0, labels: { experiment: r.doc.name, state } }))),
    ),
  );
  add(
    scraped('sluice_experiment_srm', '1 when the last iteration found a sample ratio mismatch.', 'gauge', () =>
      all().map((r) => ({ value: r.status.srm?.flagged ? 1 : 0, labels: { experiment: r.doc.name } })),
    ),
  );
  // Promotion hooks that fail are worth an alert: runs by phase and state, from the status.
  add(
    scraped('sluice_experiment_task_runs', 'Task runs kept in an experiment\'s status, by phase and state (running, succeeded, failed, skipped).', 'gauge', () =>
      all().flatMap((r) => {
        const counts = new Map<string, { phase: string; state: string; n: number }>();
        for (const t of r.status.tasks ?? []) {
          const key = `${t.phase}/${t.state}`;
          const c = counts.get(key) ?? { phase: t.phase, state: t.state, n: 0 };
          c.n++;
          counts.set(key, c);
        }
        return [...counts.values()].map((c) => ({ value: c.n, labels: { experiment: r.doc.name, phase: c.phase, state: c.state } }));
      }),
    ),
  );
}
