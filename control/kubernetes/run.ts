/**
 * Running the Experiment controller inside a Sluice process: `sluice start
 * --kubernetes` (leadership by a Lease) and `sluice control --kubernetes`
 * (the Redis-mode control plane's own leader decides; no Lease needed).
 */
import { hostname } from 'node:os';
import type { Logger } from '../../common/logger.js';
import type { KubeApi } from './api.js';
import { ExperimentController, type ExperimentPort } from './controller.js';
import { LeaseElector, type Leadership } from './lease.js';

export interface KubernetesOptions {
  readonly api: KubeApi;
  /** Where the Lease lives; default Sluice's own namespace (the pod's). */
  readonly leaseNamespace?: string;
  readonly leaseName?: string;
  readonly leaseSeconds?: number;
  readonly identity?: string;
  /** --kubernetes-allow-exec */
  readonly allowExec?: boolean;
}

export interface RunningController {
  readonly controller: ExperimentController;
  stop(): Promise<void>;
}

/** Starts the controller; with no `leadership` given, it campaigns for a Lease. */
export function startController(k: KubernetesOptions, scheduler: ExperimentPort, log: Logger, leadership?: Leadership): RunningController {
  const identity = k.identity ?? `${hostname()}-${process.pid}`;
  const elector = leadership === undefined
    ? new LeaseElector(k.api, { namespace: k.leaseNamespace ?? k.api.homeNamespace, name: k.leaseName ?? 'sluice-controller', identity, durationSeconds: k.leaseSeconds, log })
    : null;
  const controller = new ExperimentController({ api: k.api, scheduler, leadership: leadership ?? elector!, log, identity, allowExec: k.allowExec });
  controller.start();
  elector?.start();
  log.info({ namespace: k.api.namespace ?? '*', identity }, 'Experiment controller started');
  return {
    controller,
    async stop() {
      await controller.stop();
      await elector?.stop();
    },
  };
}
