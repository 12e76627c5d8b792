/**
 * KubeApi (api.ts) over @kubernetes/client-node 1.x: in-cluster config, a
 * kubeconfig file, or the default kubeconfig. 1.x, not 2.x: 2.x needs Node 22.
 */
import { readFileSync } from 'node:fs';
import { CoordinationV1Api, CoreV1Api, CustomObjectsApi, KubeConfig, Watch } from '@kubernetes/client-node';
import { CRD_GROUP, CRD_KIND, CRD_PLURAL, CRD_VERSION } from '../experiment-crd.js';
import { KubeApiError, type ExperimentResource, type KubeApi, type KubeEvent, type WatchEventType, type Watching } from './api.js';

const IN_CLUSTER_NAMESPACE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

export interface ClientOptions {
  /** A kubeconfig file; else in-cluster config when running in a pod, else the default kubeconfig. */
  readonly kubeconfig?: string;
  /** One namespace to watch; '*' for all; default: the pod's namespace (or the kubeconfig context's, or "default"). */
  readonly namespace?: string;
  /** For tests: a ready KubeConfig. */
  readonly config?: KubeConfig;
}

function loadConfig(opts: ClientOptions): KubeConfig {
  if (opts.config) return opts.config;
  const kc = new KubeConfig();
  if (opts.kubeconfig) kc.loadFromFile(opts.kubeconfig);
  else if (process.env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster();
  else kc.loadFromDefault();
  return kc;
}

function defaultNamespace(kc: KubeConfig): string {
  try {
    return readFileSync(IN_CLUSTER_NAMESPACE, 'utf8').trim();
  } catch {
    return kc.getContextObject(kc.getCurrentContext())?.namespace ?? 'default';
  }
}

/** client-node throws ApiException (code, body) for non-2xx answers; fetch errors have no code. */
function asKubeError(err: unknown): Error {
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'number') {
    const body = (err as { body?: unknown }).body;
    let message = (err as Error).message;
    try {
      const parsed = typeof body === 'string' ? JSON.parse(body) : body;
      if (parsed && typeof parsed.message === 'string') message = parsed.message;
    } catch {
      // keep the exception's message
    }
    return new KubeApiError(code, message);
  }
  return err as Error;
}

async function call<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw asKubeError(err);
  }
}

export function clientNodeApi(opts: ClientOptions = {}): KubeApi {
  const kc = loadConfig(opts);
  const home = defaultNamespace(kc);
  const ns = opts.namespace === '*' ? null : (opts.namespace ?? home);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const core = kc.makeApiClient(CoreV1Api);
  const coordination = kc.makeApiClient(CoordinationV1Api);
  const base = { group: CRD_GROUP, version: CRD_VERSION, plural: CRD_PLURAL };
  const watchPath = ns === null ? `/apis/${CRD_GROUP}/${CRD_VERSION}/${CRD_PLURAL}` : `/apis/${CRD_GROUP}/${CRD_VERSION}/namespaces/${ns}/${CRD_PLURAL}`;
  return {
    namespace: ns,
    homeNamespace: home,

    async listExperiments() {
      const list = await call(() => (ns === null ? custom.listClusterCustomObject(base) : custom.listNamespacedCustomObject({ ...base, namespace: ns })));
      return { items: (list.items ?? []) as ExperimentResource[], resourceVersion: String(list.metadata?.resourceVersion ?? '') };
    },

    async watchExperiments(resourceVersion, onEvent, onDone): Promise<Watching> {
      const controller = await new Watch(kc).watch(
        watchPath,
        { resourceVersion, allowWatchBookmarks: true },
        (type: string, object: Record<string, any>) => onEvent(type as WatchEventType, object),
        (err: unknown) => onDone(err == null ? null : asKubeError(err)),
      );
      return { stop: () => controller.abort() };
    },

    async getExperiment(namespace, name) {
      try {
        return (await call(() => custom.getNamespacedCustomObject({ ...base, namespace, name }))) as ExperimentResource;
      } catch (err) {
        if (err instanceof KubeApiError && err.status === 404) return null;
        throw err;
      }
    },

    async replaceStatus(resource, status) {
      const body = { apiVersion: resource.apiVersion, kind: resource.kind, metadata: resource.metadata, spec: resource.spec, status };
      return (await call(() =>
        custom.replaceNamespacedCustomObjectStatus({ ...base, namespace: resource.metadata.namespace, name: resource.metadata.name, body }),
      )) as ExperimentResource;
    },

    async createEvent(event: KubeEvent, component: string, instance: string) {
      const o = event.object.metadata;
      const now = new Date();
      await call(() =>
        core.createNamespacedEvent({
          namespace: o.namespace,
          body: {
            metadata: { generateName: `${o.name}.`, namespace: o.namespace },
            involvedObject: { apiVersion: `${CRD_GROUP}/${CRD_VERSION}`, kind: CRD_KIND, name: o.name, namespace: o.namespace, uid: o.uid, resourceVersion: o.resourceVersion },
            type: event.type,
            reason: event.reason,
            message: event.message,
            source: { component },
            reportingComponent: component,
            reportingInstance: instance,
            action: event.reason,
            firstTimestamp: now,
            lastTimestamp: now,
            eventTime: now,
            count: 1,
          },
        }),
      );
    },

    async readLease(namespace, name) {
      try {
        const l = await call(() => coordination.readNamespacedLease({ namespace, name }));
        return {
          holder: l.spec?.holderIdentity ?? null,
          renewTime: l.spec?.renewTime ? new Date(l.spec.renewTime as unknown as string).toISOString() : null,
          durationSeconds: l.spec?.leaseDurationSeconds ?? 15,
          transitions: l.spec?.leaseTransitions ?? 0,
          resourceVersion: l.metadata?.resourceVersion ?? '',
        };
      } catch (err) {
        if (err instanceof KubeApiError && err.status === 404) return null;
        throw err;
      }
    },

    async writeLease(namespace, name, lease, previous) {
      const body = {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name, namespace, ...(previous ? { resourceVersion: previous.resourceVersion } : {}) },
        spec: {
          holderIdentity: lease.holder ?? undefined,
          leaseDurationSeconds: lease.durationSeconds,
          leaseTransitions: lease.transitions,
          renewTime: lease.renewTime ? (new Date(lease.renewTime) as never) : undefined,
        },
      };
      const l = await call(() =>
        previous ? coordination.replaceNamespacedLease({ namespace, name, body }) : coordination.createNamespacedLease({ namespace, body }),
      );
      return { ...lease, resourceVersion: l.metadata?.resourceVersion ?? '' };
    },
  };
}
