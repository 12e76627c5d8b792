/**
 * An experiment's Sluice status as an Experiment resource's `status`:
 * Kubernetes conditions (type, status, reason, message, lastTransitionTime,
 * observedGeneration — the API conventions) and the fields `kubectl get`
 * prints, beside a summary of Sluice's own status.
 */
import type { ExperimentRecord } from '../ports.js';

export interface Condition {
  readonly type: string;
  readonly status: 'True' | 'False' | 'Unknown';
  readonly reason: string;
  readonly message: string;
  readonly lastTransitionTime: string;
  readonly observedGeneration: number;
}

export type ConditionInput = Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>;

const ACTIVE = new Set(['Pending', 'Running', 'Paused']);

/** Condition reasons are CamelCase tokens (the CRD's pattern): "running start tasks" is a message, not a reason. */
function reasonOf(state: string): string {
  return state.replace(/[^A-Za-z0-9]/g, '') || 'Unknown';
}

/** The conditions a Sluice status implies: Accepted, Progressing, Completed. */
export function conditionsOf(r: ExperimentRecord): ConditionInput[] {
  const s = r.status;
  const active = ACTIVE.has(s.state);
  const out: ConditionInput[] = [
    { type: 'Accepted', status: 'True', reason: 'Applied', message: 'the experiment was applied to Sluice' },
    { type: 'Progressing', status: active ? 'True' : 'False', reason: reasonOf(s.state), message: s.reason },
  ];
  if (!active) {
    out.push({
      type: 'Completed',
      status: s.state === 'Completed' ? 'True' : 'False',
      reason: reasonOf(s.state),
      message: s.winner === null ? s.reason : `winner ${s.winner}: ${s.reason}`,
    });
  }
  return out;
}

/**
 * Merges `next` into `previous` conditions: a condition whose status did not
 * change keeps its lastTransitionTime (the conventions' meaning of it).
 */
export function mergeConditions(previous: readonly Condition[], next: readonly ConditionInput[], generation: number, now: string): Condition[] {
  const byType = new Map(previous.map((c) => [c.type, c]));
  for (const c of next) {
    const old = byType.get(c.type);
    byType.set(c.type, { ...c, observedGeneration: generation, lastTransitionTime: old && old.status === c.status ? old.lastTransitionTime : now });
  }
  return [...byType.values()];
}

/** The `status` written to the resource. */
export function resourceStatus(r: ExperimentRecord, generation: number, conditions: readonly Condition[]): Record<string, unknown> {
  const s = r.status;
  return {
    observedGeneration: generation,
    state: s.state,
    iteration: s.iteration,
    maxIterations: r.doc.spec.duration.maxIterations,
    winner: s.winner ?? '',
    weightsText: Object.entries(s.weights).map(([v, w]) => `${v}=${w}`).join(','),
    reason: s.reason,
    weights: s.weights,
    versions: Object.fromEntries(Object.entries(s.versions).map(([name, v]) => [name, { verdict: v.verdict, samples: v.samples, pBest: v.pBest, pFeasible: v.pFeasible }])),
    srmFlagged: s.srmFlagged,
    startedAt: s.startedAt,
    finishedAt: s.finishedAt,
    conditions,
  };
}
