/**
 * The Experiment controller: keeps Sluice's experiments in step with the
 * Experiment resources of a namespace (or all), as GitOps tools expect.
 *
 * - A new resource is validated and applied; an invalid one, one whose name
 *   is taken, or one with `exec` tasks the operator has not allowed gets an
 *   `Accepted=False` condition saying why.
 * - A deleted resource's experiment is deleted (aborted first: traffic goes
 *   back to the baseline).
 * - A changed spec on a *running* experiment is reported (`SpecChanged=True`)
 *   and not applied: restarting would throw away the evidence collected so
 *   far and reset the statistics' guarantees; abort or delete the resource to
 *   run the new spec. A changed spec on a finished experiment runs it anew.
 * - Every change of the experiment's status (each iteration, each state) is
 *   written to the status subresource with the resource's resourceVersion;
 *   a 409 (someone else wrote) is retried on a fresh copy. Events record
 *   state changes.
 * - Only the leader acts (Leadership: a Lease, or the Redis-mode control
 *   plane's own leader). List, then watch from the list's resourceVersion;
 *   a watch that ends is resumed from the last version seen (bookmarks
 *   included), one that is too old (410 Gone) relists. Every action is
 *   idempotent on the resource's uid and generation, so a relist repeats
 *   none and an event missed is caught by the next list.
 *
 * The experiment's iterations are the scheduler's, not the controller's: a
 * relist, a failover or a conflict never runs or skips one.
 */
import { SluiceError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import type { ExperimentRecord } from '../ports.js';
import type { Scheduler } from '../scheduler.js';
import { validateExperiment } from '../spec.js';
import type { ExperimentDoc } from '../spec-types.js';
import { KubeApiError, type ExperimentResource, type KubeApi, type WatchEventType, type Watching } from './api.js';
import type { Leadership } from './lease.js';
import { conditionsOf, mergeConditions, resourceStatus, type Condition, type ConditionInput } from './status.js';

export type ExperimentPort = Pick<Scheduler, 'apply' | 'delete' | 'get'>;

export interface ControllerOptions {
  readonly api: KubeApi;
  readonly scheduler: ExperimentPort;
  readonly leadership: Leadership;
  readonly log: Logger;
  /** This process, in Events' reportingInstance. */
  readonly identity: string;
  /** Resources may carry `exec` tasks (--kubernetes-allow-exec): whoever can create one could otherwise run commands. */
  readonly allowExec?: boolean;
  /** Pause before relisting after a failed watch or list. */
  readonly retryMs?: number;
}

interface Managed {
  readonly uid: string;
  readonly namespace: string;
  /** The generation whose spec is running. */
  generation: number;
  /** The latest copy seen or written (its resourceVersion is what the next status write sends). */
  resource: ExperimentResource;
  conditions: Condition[];
  lastState: string | null;
  /** A newer generation is waiting (SpecChanged). */
  pendingGeneration: number | null;
}

const COMPONENT = 'sluice-controller';
const ACTIVE = new Set(['Pending', 'Running', 'Paused']);
const STATUS_ATTEMPTS = 5;

function hasExec(doc: ExperimentDoc): boolean {
  const t = doc.spec.tasks;
  return [...t.start, ...t.loop, ...t.finish].some((x) => x.task === 'exec');
}

function problemsOf(err: SluiceError): string {
  return err.details.length > 0 ? err.details.map((d) => `${d.path}: ${d.message}`).join('; ') : err.message;
}

export class ExperimentController {
  readonly #managed = new Map<string, Managed>();
  readonly #queues = new Map<string, Promise<unknown>>();
  #resourceVersion = '';
  #watch: Watching | null = null;
  #running = false;
  /** Bumped on every start and stop: callbacks of an older watch find it changed and do nothing. */
  #epoch = 0;
  #retry: NodeJS.Timeout | null = null;
  #unsubscribe: (() => void) | null = null;

  constructor(private readonly opts: ControllerOptions) {}

  start(): void {
    this.#unsubscribe = this.opts.leadership.onChange((leader) => (leader ? this.#begin() : this.#end()));
    if (this.opts.leadership.isLeader) this.#begin();
  }

  async stop(): Promise<void> {
    this.#unsubscribe?.();
    this.#end();
    await Promise.all([...this.#queues.values()]);
  }

  /** Scheduler onChange: a managed experiment's status moved; write it to its resource. */
  experimentChanged(record: ExperimentRecord): void {
    const name = record.doc.name;
    if (!this.#running || !this.#managed.has(name)) return;
    void this.#serial(name, () => this.#writeStatus(name, record));
  }

  /** Experiments this controller manages (for tests and /stats). */
  get managed(): readonly string[] {
    return [...this.#managed.keys()];
  }

  #begin(): void {
    if (this.#running) return;
    this.#running = true;
    this.#epoch++;
    void this.#relist();
  }

  #end(): void {
    this.#running = false;
    this.#epoch++;
    this.#watch?.stop();
    this.#watch = null;
    if (this.#retry !== null) clearTimeout(this.#retry);
    // Another leader takes the resources over; what this one knew may be stale by the time it leads again.
    this.#managed.clear();
  }

  #serial<T>(name: string, fn: () => Promise<T>): Promise<T | undefined> {
    const prev = this.#queues.get(name) ?? Promise.resolve();
    const next = prev.then(fn, fn).catch((err: unknown) => {
      this.opts.log.error({ experiment: name, err: (err as Error).message }, 'controller action failed');
      return undefined;
    });
    this.#queues.set(name, next);
    void next.then(() => {
      if (this.#queues.get(name) === next) this.#queues.delete(name);
    });
    return next;
  }

  #later(epoch: number): void {
    if (epoch !== this.#epoch || !this.#running) return;
    this.#retry = setTimeout(() => void this.#relist(), this.opts.retryMs ?? 2000);
    this.#retry.unref();
  }

  async #relist(): Promise<void> {
    const epoch = this.#epoch;
    this.#watch?.stop();
    this.#watch = null;
    let list: { items: ExperimentResource[]; resourceVersion: string };
    try {
      list = await this.opts.api.listExperiments();
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message }, 'cannot list Experiment resources; retrying');
      return this.#later(epoch);
    }
    if (epoch !== this.#epoch) return;
    const present = new Set(list.items.map((r) => r.metadata.uid));
    // Deletions missed while no watch ran (or before this leader took over).
    for (const [name, m] of this.#managed) {
      if (!present.has(m.uid)) void this.#serial(name, () => this.#removed(name, m.uid));
    }
    await Promise.all(list.items.map((r) => this.#serial(r.metadata.name, () => this.#reconcile(r))));
    this.#resourceVersion = list.resourceVersion;
    this.#watchFrom(epoch);
  }

  #watchFrom(epoch: number): void {
    if (epoch !== this.#epoch) return;
    let gone = false;
    const onEvent = (type: WatchEventType, object: Record<string, any>): void => {
      if (epoch !== this.#epoch) return;
      if (type === 'ERROR') {
        if (object.code === 410) gone = true;
        else this.opts.log.warn({ status: object }, 'watch error');
        return;
      }
      const rv = object.metadata?.resourceVersion;
      if (typeof rv === 'string' && rv !== '') this.#resourceVersion = rv;
      if (type === 'BOOKMARK') return;
      const r = object as ExperimentResource;
      if (type === 'DELETED') void this.#serial(r.metadata.name, () => this.#removed(r.metadata.name, r.metadata.uid));
      else void this.#serial(r.metadata.name, () => this.#reconcile(r));
    };
    const onDone = (err: Error | null): void => {
      if (epoch !== this.#epoch) return;
      this.#watch = null;
      if (gone || (err instanceof KubeApiError && err.status === 410)) {
        this.opts.log.info({ resourceVersion: this.#resourceVersion }, 'watch expired (410 Gone): relisting');
        void this.#relist();
      } else if (err !== null) {
        this.opts.log.warn({ err: err.message }, 'watch failed; relisting');
        this.#later(epoch);
      } else {
        this.#watchFrom(epoch); // the server ended it (its timeout): resume where it was
      }
    };
    this.opts.api.watchExperiments(this.#resourceVersion, onEvent, onDone).then(
      (w) => {
        if (epoch === this.#epoch) this.#watch = w;
        else w.stop();
      },
      (err: unknown) => onDone(err as Error),
    );
  }

  async #reconcile(r: ExperimentResource): Promise<void> {
    if (!this.#running) return;
    const name = r.metadata.name;
    const m = this.#managed.get(name);
    if (m !== undefined && m.uid !== r.metadata.uid) {
      if (m.namespace !== r.metadata.namespace) {
        return this.#reject(r, 'NameInUse', `experiment names are unique across namespaces: "${name}" is the resource in namespace ${m.namespace}`);
      }
      // Deleted and created again while we were not watching: the old run goes, the new one starts.
      await this.#removed(name, m.uid);
      return this.#reconcile(r);
    }
    if (m !== undefined) {
      m.resource = r;
      if (r.metadata.generation <= m.generation) return;
      const current = await this.#record(name);
      if (current !== null && ACTIVE.has(current.status.state)) {
        if (m.pendingGeneration === r.metadata.generation) return;
        m.pendingGeneration = r.metadata.generation;
        await this.#event(r, 'Warning', 'SpecChanged', `generation ${r.metadata.generation} is not applied while the experiment is ${current.status.state}: abort it (or delete the resource) to run the new spec`);
        return this.#writeStatus(name, current);
      }
      // A finished run: the new spec runs anew.
      await this.opts.scheduler.delete(name).catch(() => {});
      this.#managed.delete(name);
      return this.#apply(r);
    }
    const existing = await this.#record(name);
    if (existing !== null) {
      const status = r.status as { observedGeneration?: unknown; state?: unknown } | undefined;
      if (status?.observedGeneration === r.metadata.generation && status.state !== 'Rejected') {
        // Ours already (a restart, a new leader, a relist): adopt it, apply nothing.
        this.#managed.set(name, this.#entry(r, existing.status.state));
        return this.#writeStatus(name, existing);
      }
      if (ACTIVE.has(existing.status.state)) {
        return this.#reject(r, 'NameInUse', `an experiment named "${name}" is already ${existing.status.state} in Sluice (applied through its API or another resource)`);
      }
      await this.opts.scheduler.delete(name).catch(() => {});
    }
    return this.#apply(r);
  }

  #entry(r: ExperimentResource, lastState: string | null): Managed {
    const prior = (r.status as { conditions?: Condition[] } | undefined)?.conditions;
    return {
      uid: r.metadata.uid,
      namespace: r.metadata.namespace,
      generation: r.metadata.generation,
      resource: r,
      conditions: Array.isArray(prior) ? prior : [],
      lastState,
      pendingGeneration: null,
    };
  }

  async #apply(r: ExperimentResource): Promise<void> {
    const name = r.metadata.name;
    let doc: ExperimentDoc;
    try {
      doc = validateExperiment({ kind: 'Experiment', name, spec: r.spec });
    } catch (err) {
      if (err instanceof SluiceError) return this.#reject(r, 'Invalid', problemsOf(err));
      throw err;
    }
    if (hasExec(doc) && this.opts.allowExec !== true) {
      return this.#reject(r, 'ExecNotAllowed', 'exec tasks from Experiment resources are off: the operator enables them with --kubernetes-allow-exec (whoever can create a resource could otherwise run commands)');
    }
    let record: ExperimentRecord;
    try {
      record = await this.opts.scheduler.apply(doc);
    } catch (err) {
      if (err instanceof SluiceError) return this.#reject(r, err.code === 'SLUICE_EXPERIMENT_CONFLICT' ? 'Conflict' : 'Refused', problemsOf(err));
      throw err;
    }
    this.#managed.set(name, this.#entry(r, null));
    this.opts.log.info({ experiment: name, namespace: r.metadata.namespace, generation: r.metadata.generation }, 'experiment applied from its resource');
    await this.#event(r, 'Normal', 'Applied', `generation ${r.metadata.generation} applied to route ${doc.spec.route}`);
    await this.#writeStatus(name, await this.#record(name) ?? record);
  }

  async #removed(name: string, uid: string): Promise<void> {
    const m = this.#managed.get(name);
    if (m === undefined || m.uid !== uid) return;
    this.#managed.delete(name);
    try {
      await this.opts.scheduler.delete(name);
      this.opts.log.info({ experiment: name }, 'resource deleted: experiment deleted, traffic back to the baseline');
    } catch (err) {
      if (!(err instanceof SluiceError && err.code === 'SLUICE_EXPERIMENT_NOT_FOUND')) throw err;
    }
  }

  async #record(name: string): Promise<ExperimentRecord | null> {
    try {
      return await this.opts.scheduler.get(name);
    } catch (err) {
      if (err instanceof SluiceError && err.code === 'SLUICE_EXPERIMENT_NOT_FOUND') return null;
      throw err;
    }
  }

  /** A resource Sluice does not run: Accepted=False with the reason, and a Warning event. */
  async #reject(r: ExperimentResource, reason: string, message: string): Promise<void> {
    const conditions = mergeConditions(
      ((r.status as { conditions?: Condition[] } | undefined)?.conditions ?? []).filter((c) => c.type === 'Accepted'),
      [{ type: 'Accepted', status: 'False', reason, message }],
      r.metadata.generation,
      new Date().toISOString(),
    );
    const prior = r.status as { conditions?: Condition[]; observedGeneration?: number } | undefined;
    if (prior?.observedGeneration === r.metadata.generation && JSON.stringify(prior.conditions) === JSON.stringify(conditions)) return;
    await this.#event(r, 'Warning', reason, message);
    await this.#putStatus(r, () => ({ observedGeneration: r.metadata.generation, state: 'Rejected', reason: message, conditions }));
  }

  async #writeStatus(name: string, record: ExperimentRecord): Promise<void> {
    const m = this.#managed.get(name);
    if (m === undefined || !this.#running) return;
    const extra: ConditionInput[] = [];
    if (m.pendingGeneration !== null) {
      extra.push({ type: 'SpecChanged', status: 'True', reason: 'NotAppliedWhileRunning', message: `generation ${m.pendingGeneration} waits: abort the experiment or delete the resource to run it` });
    }
    const conditions = mergeConditions(m.conditions, [...conditionsOf(record), ...extra], m.generation, new Date().toISOString());
    const written = await this.#putStatus(m.resource, () => resourceStatus(record, m.generation, conditions));
    if (written === null) return;
    m.resource = written;
    m.conditions = conditions;
    const state = record.status.ending?.state ?? record.status.state;
    if (state !== m.lastState) {
      m.lastState = state;
      const failed = state === 'Failed' || state === 'Aborted';
      const winner = record.status.winner === null ? '' : ` (winner ${record.status.winner})`;
      await this.#event(written, failed ? 'Warning' : 'Normal', state, `${record.status.reason}${winner}`);
    }
  }

  /** Replaces the status, retrying a 409 on a fresh copy; null when the resource is gone. */
  async #putStatus(resource: ExperimentResource, status: () => Record<string, unknown>): Promise<ExperimentResource | null> {
    let current = resource;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.opts.api.replaceStatus(current, status());
      } catch (err) {
        if (!(err instanceof KubeApiError) || err.status !== 409 || attempt >= STATUS_ATTEMPTS) {
          if (err instanceof KubeApiError && err.status === 404) return null;
          throw err;
        }
        const fresh = await this.opts.api.getExperiment(current.metadata.namespace, current.metadata.name);
        if (fresh === null || fresh.metadata.uid !== current.metadata.uid) return null;
        current = fresh;
      }
    }
  }

  async #event(r: ExperimentResource, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void> {
    try {
      await this.opts.api.createEvent({ object: r, type, reason, message }, COMPONENT, this.opts.identity);
    } catch (err) {
      // Events are best effort, as in client-go's recorder: the status says the same.
      this.opts.log.debug({ err: (err as Error).message, reason }, 'cannot record an Event');
    }
  }
}
