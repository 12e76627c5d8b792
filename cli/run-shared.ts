/**
 * The two processes of Redis mode:
 *  - `sluice proxy`: the data plane. Serves traffic from its own routing
 *    table, follows the routing state the leader writes, and publishes its
 *    measurements. Redis is never on the request path: with Redis away it
 *    keeps serving with its last weights and keeps counting.
 *  - `sluice control`: the control plane. Several may run; the one holding
 *    the lease (the leader) runs experiments and writes, fenced by its epoch.
 * `sluice start --redis` runs both in one process.
 */
import { startController, type KubernetesOptions, type RunningController } from '../control/kubernetes/run.js';
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import { createAdminServer } from '../admin/admin-server.js';
import { redisRoutes } from '../admin/control-routes-api.js';
import { registerDashboard } from '../admin/dashboard/index.js';
import { registerExperimentsApi } from '../admin/experiments-api.js';
import { proxyRoutes, registerRoutesApi } from '../admin/routes-api.js';
import { SluiceError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { createRedis } from '../common/redis.js';
import { RedisKeys } from '../common/redis-keys.js';
import { registerExperimentMetrics } from '../control/experiment-metrics.js';
import { LeaderElection } from '../control/leader.js';
import type { ExperimentRecord } from '../control/ports.js';
import { RedisAggregates } from '../control/redis-aggregates.js';
import { RedisRouter } from '../control/redis-router.js';
import { Scheduler } from '../control/scheduler.js';
import { RedisStore } from '../control/store/redis-store.js';
import type { DashboardMode, ListenAddress, SluiceConfig } from '../config/types.js';
import { createBaseRegistry } from '../common/scrape.js';
import { ProxyServer } from '../proxy/proxy-server.js';
import { redisSecret, withoutSecrets } from '../control/tasks/env.js';
import { listenOrExplain, urlOf } from './run-sluice.js';
import { requireTokenBeyondLoopback } from './secrets.js';
import { RouteSync } from '../proxy/route-sync.js';
import { defaultReplicaId, StatsPublisher } from '../proxy/stats-publisher.js';

export interface SharedOptions {
  readonly redisUrl: string;
  /** Key prefix, so several installations can share one Redis (default `sluice:`). */
  readonly prefix: string;
  readonly log: Logger;
}

export interface RunningProcess {
  readonly adminUrl: string;
  close(): Promise<void>;
}

function connect(url: string, name: string): Redis {
  const client = createRedis(url, { connectionName: name });
  // Start connecting now; a Redis that is away at start is retried in the background.
  client.connect().catch(() => {});
  return client;
}

export interface RunningProxy extends RunningProcess {
  readonly proxy: ProxyServer;
  readonly trafficUrl: string;
  readonly publisher: StatsPublisher;
  readonly sync: RouteSync;
}

export async function runProxy(config: SluiceConfig, shared: SharedOptions): Promise<RunningProxy> {
  requireTokenBeyondLoopback('admin API', config.admin.listen, config.admin.token);
  const { log } = shared;
  const keys = new RedisKeys(shared.prefix);
  const proxy = new ProxyServer(config, log);
  const redis = connect(shared.redisUrl, 'sluice-proxy');
  const subscriber = connect(shared.redisUrl, 'sluice-proxy-sub');
  const publisher = new StatsPublisher({ proxy, redis, keys, log, registry: proxy.metrics, replicaId: defaultReplicaId() });
  const sync = new RouteSync({ proxy, redis, subscriber, keys, log });
  // The data plane is ready whenever it can serve: traffic must not stop because the control store is away.
  const admin = createAdminServer({ token: config.admin.token, metrics: proxy.metrics, log, notReadyReason: () => (proxy.draining ? 'draining' : null) });
  const routes = proxyRoutes(proxy);
  registerRoutesApi(admin, routes, async () => {
    throw new SluiceError('SLUICE_NOT_LEADER', 'in Redis mode weights are set on the control plane (sluice control, port 9902), which every proxy follows');
  });
  registerDashboard(admin, { mode: config.admin.dashboard, kind: 'proxy', tokenRequired: config.admin.token !== null, routes, experiments: null, weightEdits: false, log });
  await listenOrExplain('traffic', config.listen, () => proxy.listen());
  await listenOrExplain('admin', config.admin.listen, () => admin.listen({ host: config.admin.listen.host, port: config.admin.listen.port }));
  await sync.start();
  publisher.start();
  const trafficUrl = urlOf(proxy.app);
  log.info({ traffic: trafficUrl, admin: urlOf(admin), replica: publisher.replicaId }, 'sluice proxy started (Redis mode)');
  return {
    proxy,
    publisher,
    sync,
    trafficUrl,
    adminUrl: urlOf(admin),
    close: async () => {
      await proxy.close();
      await publisher.stop(); // a last flush: this replica's final counts stay counted
      await sync.stop();
      await admin.close();
      redis.disconnect();
      subscriber.disconnect();
    },
  };
}

export interface ControlOptions extends SharedOptions {
  readonly adminListen: ListenAddress;
  readonly token: string | null;
  /** Leader lease; failover takes about this plus one renewal interval. */
  readonly leaseTtlMs?: number;
  readonly id?: string;
  /**
   * Where `load` tasks send traffic by default: a proxy's listener
   * (`sluice start --redis` passes its own; else SLUICE_PROXY_URL). Pinning
   * a version needs the proxies' SLUICE_PIN_TOKEN in this process too.
   */
  readonly proxyUrl?: string | null;
  readonly pinToken?: string | null;
  /** The operator's opt-in to exec tasks (--allow-exec, SLUICE_ALLOW_EXEC=1); off by default. */
  readonly allowExec?: boolean;
  /** Run the Experiment controller (--kubernetes); the Redis leader is its leader. */
  readonly kubernetes?: KubernetesOptions;
  /** The page on the control API's `GET /` (--dashboard; `admin.dashboard` for `start --redis`); default on. */
  readonly dashboard?: DashboardMode;
}

export interface RunningControl extends RunningProcess {
  readonly leader: LeaderElection;
  readonly scheduler: Scheduler;
}

export async function runControl(opts: ControlOptions): Promise<RunningControl> {
  requireTokenBeyondLoopback('control API', opts.adminListen, opts.token);
  const { log } = opts;
  const keys = new RedisKeys(opts.prefix);
  const redis = connect(opts.redisUrl, 'sluice-control');
  const registry = createBaseRegistry();
  const leader = new LeaderElection(redis, keys, { id: opts.id ?? `${hostname()}-${process.pid}`, ttlMs: opts.leaseTtlMs, log, registry });
  const epoch = () => (leader.isLeader ? leader.epoch : null);
  const router = new RedisRouter(redis, keys, epoch);
  const aggregates = new RedisAggregates(redis, keys);
  const pinToken = opts.pinToken ?? (process.env.SLUICE_PIN_TOKEN || null);
  const latest = new Map<string, ExperimentRecord>();
  let controller: RunningController | null = null;
  const scheduler = new Scheduler({
    store: new RedisStore(redis, keys, epoch),
    aggregates,
    router,
    log,
    onChange: (r) => {
      latest.set(r.doc.name, r);
      controller?.controller.experimentChanged(r);
    },
    onDelete: (name) => latest.delete(name),
    proxyUrl: () => opts.proxyUrl ?? process.env.SLUICE_PROXY_URL ?? null,
    pinToken,
    env: withoutSecrets(process.env, [opts.token, pinToken, redisSecret(opts.redisUrl)]),
    allowExec: opts.allowExec === true,
  });
  registerExperimentMetrics(registry, () => latest.values());
  leader.onChange((isLeader) => {
    if (!isLeader) return scheduler.stop();
    // Experiments resume at their next iteration: the counter is in the stored status.
    void router
      .refresh()
      .then(() => scheduler.resumeAll())
      .catch((err: unknown) => log.error({ err }, 'could not resume experiments after becoming leader'));
  });
  const refresher = setInterval(() => void router.refresh().catch(() => {}), 1000);
  refresher.unref();
  const admin = createAdminServer({
    token: opts.token,
    metrics: registry,
    log,
    notReadyReason: () => (redis.status === 'ready' ? null : `store unreachable (${redis.status})`),
  });
  registerExperimentsApi(admin, scheduler, router);
  const routes = redisRoutes(router, aggregates);
  registerRoutesApi(admin, routes, (route) => scheduler.refuseWhileActive(route));
  registerDashboard(admin, { mode: opts.dashboard ?? 'on', kind: 'control', tokenRequired: opts.token !== null, routes, experiments: scheduler, leader: () => leader.isLeader, weightEdits: true, log });
  admin.get('/leader', async () => ({ leader: leader.isLeader, epoch: leader.epoch }));
  await listenOrExplain('control', opts.adminListen, () => admin.listen({ host: opts.adminListen.host, port: opts.adminListen.port }));
  leader.start();
  if (opts.kubernetes) controller = startController(opts.kubernetes, scheduler, log, leader);
  log.info({ admin: urlOf(admin) }, 'sluice control started');
  return {
    leader,
    scheduler,
    adminUrl: urlOf(admin),
    close: async () => {
      clearInterval(refresher);
      await controller?.stop();
      scheduler.stop();
      await leader.stop(true);
      await admin.close();
      redis.disconnect();
    },
  };
}
