/**
 * What the Experiment controller needs from a Kubernetes API server, as one
 * interface: list and watch Experiment resources, write their status, record
 * Events, hold a Lease. `client-node-api.ts` implements it with
 * @kubernetes/client-node; the controller sees only this.
 */

export interface ObjectMeta {
  readonly name: string;
  readonly namespace: string;
  readonly uid: string;
  readonly generation: number;
  readonly resourceVersion: string;
  readonly creationTimestamp?: string;
}

export interface ExperimentResource {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: ObjectMeta;
  readonly spec: unknown;
  readonly status?: Readonly<Record<string, unknown>>;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

export interface Watching {
  stop(): void;
}

export interface KubeEvent {
  readonly object: ExperimentResource;
  readonly type: 'Normal' | 'Warning';
  readonly reason: string;
  readonly message: string;
}

export interface LeaseRecord {
  readonly holder: string | null;
  readonly renewTime: string | null;
  readonly durationSeconds: number;
  readonly transitions: number;
  readonly resourceVersion: string;
}

/** An API answer that is not a success, with its HTTP status: 404, 409 Conflict, 410 Gone… */
export class KubeApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface KubeApi {
  /** The namespace watched; null: all. */
  readonly namespace: string | null;
  /** Sluice's own namespace (the pod's, else the kubeconfig context's, else "default"): where its Lease lives. */
  readonly homeNamespace: string;
  listExperiments(): Promise<{ items: ExperimentResource[]; resourceVersion: string }>;
  /**
   * Watches from `resourceVersion`; `onEvent` gets every event (an ERROR
   * event's object is a Status, code 410 when the version is too old);
   * `onDone` once the watch has ended, by the server or by an error.
   */
  watchExperiments(
    resourceVersion: string,
    onEvent: (type: WatchEventType, object: Record<string, any>) => void,
    onDone: (err: Error | null) => void,
  ): Promise<Watching>;
  getExperiment(namespace: string, name: string): Promise<ExperimentResource | null>;
  /** Replaces the status subresource; `resource.metadata.resourceVersion` must be current (else KubeApiError 409). */
  replaceStatus(resource: ExperimentResource, status: Record<string, unknown>): Promise<ExperimentResource>;
  createEvent(event: KubeEvent, component: string, instance: string): Promise<void>;
  readLease(namespace: string, name: string): Promise<LeaseRecord | null>;
  /** Creates or (with `previous`) replaces a Lease; KubeApiError 409 when someone else wrote it first. */
  writeLease(namespace: string, name: string, lease: Omit<LeaseRecord, 'resourceVersion'>, previous: LeaseRecord | null): Promise<LeaseRecord>;
}
