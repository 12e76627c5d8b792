/**
 * Starting and stopping a Sluice process: the proxy and its admin API
 * (all-in-one mode). Used by the CLI, the demo and the tests, so that all
 * three run exactly the same wiring.
 */
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { createAdminServer } from '../admin/admin-server.js';
import { registerDashboard } from '../admin/dashboard/index.js';
import { registerExperimentsApi } from '../admin/experiments-api.js';
import { proxyRoutes, registerRoutesApi } from '../admin/routes-api.js';
import { registerExperimentMetrics } from '../control/experiment-metrics.js';
import { InProcessAggregates, InProcessRouter } from '../control/in-process.js';
import type { ExperimentRecord } from '../control/ports.js';
import { Scheduler } from '../control/scheduler.js';
import { MemoryStore } from '../control/store/memory-store.js';
import { SluiceError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { SluiceConfig } from '../config/types.js';
import { ProxyServer } from '../proxy/proxy-server.js';
import { redisSecret, withoutSecrets } from '../control/tasks/env.js';
import { requireTokenBeyondLoopback } from './secrets.js';
import { startController, type KubernetesOptions, type RunningController } from '../control/kubernetes/run.js';

export interface RunningSluice {
  readonly proxy: ProxyServer;
  readonly admin: FastifyInstance;
  readonly scheduler: Scheduler;
  /** `http://host:port` of the traffic listener. */
  readonly trafficUrl: string;
  readonly adminUrl: string;
  /** Drains in-flight requests, then closes everything. */
  close(): Promise<void>;
}

export interface RunOptions {
  /** The operator's opt-in to exec tasks (--allow-exec, SLUICE_ALLOW_EXEC=1); off by default. */
  readonly allowExec?: boolean;
  /** Run the Experiment controller (--kubernetes). */
  readonly kubernetes?: KubernetesOptions;
}

export async function runSluice(config: SluiceConfig, log: Logger, opts: RunOptions = {}): Promise<RunningSluice> {
  requireTokenBeyondLoopback('admin API', config.admin.listen, config.admin.token);
  const proxy = new ProxyServer(config, log);
  const admin = createAdminServer({
    token: config.admin.token,
    metrics: proxy.metrics,
    log,
    notReadyReason: () => (proxy.draining ? 'draining' : null),
  });
  const router = new InProcessRouter(proxy);
  const latest = new Map<string, ExperimentRecord>();
  let controller: RunningController | null = null;
  const scheduler = new Scheduler({
    store: new MemoryStore(),
    aggregates: new InProcessAggregates(proxy),
    router,
    log,
    onChange: (r) => {
      latest.set(r.doc.name, r);
      controller?.controller.experimentChanged(r);
    },
    onDelete: (name) => latest.delete(name),
    proxyUrl: () => (proxy.app.server.listening ? urlOf(proxy.app) : null),
    pinToken: proxy.pinToken,
    env: withoutSecrets(process.env, [config.admin.token, proxy.pinToken, redisSecret(config.store.redis)]),
    allowExec: opts.allowExec === true,
  });
  registerExperimentMetrics(proxy.metrics, () => latest.values());
  registerExperimentsApi(admin, scheduler, router);
  const routes = proxyRoutes(proxy);
  registerRoutesApi(admin, routes, (route) => scheduler.refuseWhileActive(route));
  registerDashboard(admin, { mode: config.admin.dashboard, kind: 'all-in-one', tokenRequired: config.admin.token !== null, routes, experiments: scheduler, weightEdits: true, log });
  try {
    await listenOrExplain('traffic', config.listen, () => proxy.listen());
    await listenOrExplain('admin', config.admin.listen, () => admin.listen({ host: config.admin.listen.host, port: config.admin.listen.port }));
  } catch (err) {
    await proxy.close();
    await admin.close();
    throw err;
  }
  const trafficUrl = urlOf(proxy.app);
  const adminUrl = urlOf(admin);
  if (opts.kubernetes) controller = startController(opts.kubernetes, scheduler, log);
  log.info({ traffic: trafficUrl, admin: adminUrl, routes: config.routes.map((r) => r.name) }, 'sluice started');
  let closing: Promise<void> | null = null;
  return {
    proxy,
    admin,
    scheduler,
    trafficUrl,
    adminUrl,
    close: () =>
      (closing ??= (async () => {
        await controller?.stop();
        scheduler.stop();
        await proxy.close();
        await admin.close();
      })()),
  };
}

export async function listenOrExplain(what: string, at: { host: string; port: number }, listen: () => Promise<unknown>): Promise<void> {
  try {
    await listen();
  } catch (err) {
    const code = (err as { code?: string }).code ?? '';
    const why = code === 'EADDRINUSE' ? 'the address is already in use' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new SluiceError('SLUICE_LISTEN', `cannot listen for ${what} on ${at.host}:${at.port}: ${why}`);
  }
}

/** Where a listening server is reached: a listener on every IPv4 address (0.0.0.0) is reached on 127.0.0.1. */
export function urlOf(app: FastifyInstance): string {
  const a = app.server.address() as AddressInfo;
  const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  const scheme = app.server instanceof tls.Server ? 'https' : 'http';
  return `${scheme}://${host === '0.0.0.0' ? '127.0.0.1' : host}:${a.port}`;
}
