/**
 * Leader election on a coordination.k8s.io Lease, as client-go's
 * leaderelection does: the holder renews every third of the lease; another
 * candidate takes over once the holder has not renewed for a whole lease.
 * Writes are optimistic (resourceVersion), so two candidates racing for an
 * expired lease cannot both win. Used by the all-in-one controller; the
 * Redis-mode control plane has its own leader (control/leader.ts).
 */
import type { Logger } from '../../common/logger.js';
import { KubeApiError, type KubeApi, type LeaseRecord } from './api.js';

export interface Leadership {
  readonly isLeader: boolean;
  onChange(listener: (isLeader: boolean) => void): () => void;
}

export interface LeaseOptions {
  readonly namespace: string;
  readonly name: string;
  readonly identity: string;
  /** Lease duration; a dead leader is replaced after about this long. */
  readonly durationSeconds?: number;
  readonly log: Logger;
  readonly now?: () => number;
}

export class LeaseElector implements Leadership {
  #leader = false;
  #timer: NodeJS.Timeout | null = null;
  #stopped = false;
  readonly #listeners = new Set<(isLeader: boolean) => void>();
  readonly #duration: number;
  /** The last failure logged, so that an outage is logged once, not every tick. */
  #lastError: string | null = null;

  constructor(
    private readonly api: KubeApi,
    private readonly opts: LeaseOptions,
  ) {
    this.#duration = opts.durationSeconds ?? 15;
  }

  get isLeader(): boolean {
    return this.#leader;
  }

  onChange(listener: (isLeader: boolean) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  start(): void {
    void this.#tick();
  }

  /** Stops campaigning; a leader gives the lease up (holder cleared) so another takes over at once. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    if (!this.#leader) return;
    this.#set(false);
    try {
      const cur = await this.api.readLease(this.opts.namespace, this.opts.name);
      if (cur !== null && cur.holder === this.opts.identity) {
        await this.api.writeLease(this.opts.namespace, this.opts.name, { ...cur, holder: null, renewTime: null }, cur);
      }
    } catch {
      // it expires by itself
    }
  }

  #now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  async #tick(): Promise<void> {
    try {
      this.#set(await this.#tryAcquire());
      this.#lastError = null;
    } catch (err) {
      // An API outage: a leader that cannot renew must stop acting before its lease runs out elsewhere.
      const message = (err as Error).message;
      if (this.#leader) this.opts.log.warn({ err: message }, 'lease renewal failed: no longer the controller leader');
      else if (message !== this.#lastError) this.opts.log.warn({ err: message, lease: `${this.opts.namespace}/${this.opts.name}` }, 'cannot take the controller lease: is the API server reachable, and may this account read and write leases?');
      this.#lastError = message;
      this.#set(false);
    }
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#tick(), (this.#duration * 1000) / 3);
    this.#timer.unref();
  }

  async #tryAcquire(): Promise<boolean> {
    const { namespace, name, identity } = this.opts;
    const cur = await this.api.readLease(namespace, name);
    const now = this.#now();
    const expired = (l: LeaseRecord) => l.holder === null || l.renewTime === null || Date.parse(l.renewTime) + l.durationSeconds * 1000 < now;
    if (cur !== null && cur.holder !== identity && !expired(cur)) return false;
    const next = {
      holder: identity,
      renewTime: new Date(now).toISOString(),
      durationSeconds: this.#duration,
      transitions: (cur?.transitions ?? 0) + (cur?.holder === identity ? 0 : 1),
    };
    try {
      await this.api.writeLease(namespace, name, next, cur);
      return true;
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 409) return false; // another candidate wrote first
      throw err;
    }
  }

  #set(leader: boolean): void {
    if (leader === this.#leader) return;
    this.#leader = leader;
    this.opts.log.info({ identity: this.opts.identity, leader }, leader ? 'became the controller leader' : 'no longer the controller leader');
    for (const l of this.#listeners) l(leader);
  }
}
