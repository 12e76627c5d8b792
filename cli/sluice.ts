/**
 * The `sluice` command line.
 */
import { Command, Option } from 'commander';
import { formatDetails, SluiceError } from '../common/errors.js';
import { createLogger, type Logger } from '../common/logger.js';
import { loadConfig } from '../config/config.js';
import { parseListen } from '../config/process.js';
import { runControl, runProxy } from './run-shared.js';
import { registerClientCommands } from './commands/index.js';
import { runSluice } from './run-sluice.js';
import type { KubernetesOptions } from '../control/kubernetes/run.js';
import type { DashboardMode } from '../config/types.js';
import { allowExec, requireTokenBeyondLoopback, resolveToken, tokenOverride } from './secrets.js';

const program = new Command()
  .name('sluice')
  .description('Release engineering in the request path: split, route, mirror and measure traffic per version.')
  .showHelpAfterError();

interface ServeFlags {
  config: string;
  listen?: string;
  adminListen?: string;
  token?: string;
  tokenFile?: string;
  redis?: string;
  redisPrefix?: string;
  logLevel?: string;
  allowExec?: boolean;
}

interface KubernetesFlags {
  kubernetes?: boolean;
  kubeconfig?: string;
  namespace?: string;
  kubernetesAllowExec?: boolean;
  leaseName?: string;
  leaseNamespace?: string;
}

function withKubernetesOptions(cmd: Command): Command {
  return cmd
    .option('--kubernetes', 'run the Experiment controller: apply, follow and report Experiment resources (sluice.dev/v1alpha1)')
    .option('--kubeconfig <file>', 'kubeconfig for --kubernetes (default: in-cluster config in a pod, else $KUBECONFIG or ~/.kube/config)')
    .option('--namespace <ns>', 'namespace whose Experiment resources are watched; * for all (default: the pod\'s or the kubeconfig context\'s)')
    .option('--kubernetes-allow-exec', 'let Experiment resources run exec tasks; needs --allow-exec too (whoever can create a resource could run commands)')
    .option('--lease-name <name>', 'with --kubernetes (start): the Lease the controller replicas elect a leader by (default sluice-controller; one per installation)')
    .option('--lease-namespace <ns>', 'with --kubernetes (start): the Lease\'s namespace (default Sluice\'s own: the pod\'s)');
}

async function kubernetesOptions(opts: KubernetesFlags, exec: boolean): Promise<KubernetesOptions | undefined> {
  if (opts.kubernetes !== true) {
    if (opts.kubeconfig !== undefined || opts.namespace !== undefined || opts.kubernetesAllowExec === true || opts.leaseName !== undefined || opts.leaseNamespace !== undefined) {
      throw new SluiceError('SLUICE_CONFIG_INVALID', 'Kubernetes options need --kubernetes', [{ path: 'kubernetes', message: 'add --kubernetes' }]);
    }
    return undefined;
  }
  if (opts.kubernetesAllowExec === true && !exec) {
    throw new SluiceError('SLUICE_CONFIG_INVALID', '--kubernetes-allow-exec needs --allow-exec', [{ path: 'kubernetes-allow-exec', message: 'exec tasks are off in this process: add --allow-exec' }]);
  }
  const { clientNodeApi } = await import('../control/kubernetes/client-node-api.js');
  return {
    api: clientNodeApi({ kubeconfig: opts.kubeconfig, namespace: opts.namespace }),
    allowExec: opts.kubernetesAllowExec === true,
    leaseName: opts.leaseName,
    leaseNamespace: opts.leaseNamespace,
  };
}

function withServeOptions(cmd: Command): Command {
  return cmd
    .option('--listen <host:port>', 'traffic listener (default 0.0.0.0:8080; env SLUICE_LISTEN)')
    .option('--admin-listen <host:port>', 'admin API listener (default 127.0.0.1:9901; env SLUICE_ADMIN_LISTEN)')
    .addOption(new Option('--token <token>', 'admin API bearer token (env SLUICE_TOKEN); visible in ps: prefer --token-file'))
    .option('--token-file <file>', 'read the admin API token from a file (env SLUICE_TOKEN_FILE)')
    .option('--redis <url>', 'Redis URL for shared state: redis://, rediss:// or sentinel://host:port,host:port/master (env SLUICE_REDIS_URL)')
    .option('--redis-prefix <prefix>', 'key prefix in Redis, to share one Redis between installations (env SLUICE_REDIS_PREFIX, default sluice:)')
    .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent (env SLUICE_LOG_LEVEL)');
}

function loadServeConfig(opts: ServeFlags) {
  return loadConfig(opts.config, {
    overrides: { listen: opts.listen, adminListen: opts.adminListen, token: tokenOverride(opts), redis: opts.redis, logLevel: opts.logLevel },
  });
}

/** Runs until SIGTERM/SIGINT, then drains and exits 0. */
function serveUntilSignal(log: Logger, close: () => Promise<void>): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'draining in-flight requests');
    close().then(
      () => {
        log.info('stopped');
        log.flush();
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        log.flush();
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

const prefixOf = (opts: { redisPrefix?: string }) => opts.redisPrefix ?? process.env.SLUICE_REDIS_PREFIX ?? 'sluice:';

withKubernetesOptions(withServeOptions(
  program
    .command('start')
    .description('run proxy and control plane in one process: in-memory, or against Redis with --redis (control API then on 127.0.0.1:9902)')
    .requiredOption('-c, --config <file>', 'sluice.yaml')
    .option('--allow-exec', 'let experiments run exec tasks (commands) in this process (env SLUICE_ALLOW_EXEC=1); off by default'),
)).action(async (opts: ServeFlags & KubernetesFlags) => {
  const config = loadServeConfig(opts);
  const exec = allowExec(opts.allowExec);
  const log = createLogger(config.logLevel);
  const kubernetes = await kubernetesOptions(opts, exec);
  if (config.store.redis === null) {
    const running = await runSluice(config, log, { allowExec: exec, kubernetes });
    return serveUntilSignal(log, () => running.close());
  }
  const shared = { redisUrl: config.store.redis, prefix: prefixOf(opts), log };
  // The proxy's admin API keeps 9901 (SLUICE_ADMIN_LISTEN); the control API goes to 9902 (SLUICE_CONTROL_LISTEN).
  const controlAt = controlListen(process.env.SLUICE_CONTROL_LISTEN ?? '127.0.0.1:9902');
  // Before anything listens: a refused control API must not leave a proxy half started.
  requireTokenBeyondLoopback('control API', controlAt, config.admin.token);
  const proxy = await runProxy(config, shared);
  const control = await runControl({ ...shared, adminListen: controlAt,
    token: config.admin.token,
    proxyUrl: proxy.trafficUrl,
    pinToken: proxy.proxy.pinToken,
    allowExec: exec,
    kubernetes,
    dashboard: config.admin.dashboard,
  });
  serveUntilSignal(log, async () => {
    await control.close();
    await proxy.close();
  });
});

withServeOptions(
  program
    .command('proxy')
    .description('run the data plane only, following the control plane through Redis (run as many replicas as needed)')
    .requiredOption('-c, --config <file>', 'sluice.yaml'),
).action(async (opts: ServeFlags) => {
  const config = loadServeConfig(opts);
  const log = createLogger(config.logLevel);
  if (config.store.redis === null) throw new SluiceError('SLUICE_CONFIG_INVALID', 'sluice proxy needs shared state', [{ path: 'store.redis', message: 'give --redis URL, SLUICE_REDIS_URL or store.redis' }]);
  const running = await runProxy(config, { redisUrl: config.store.redis, prefix: prefixOf(opts), log });
  serveUntilSignal(log, () => running.close());
});

withKubernetesOptions(program
  .command('control')
  .description('run the control plane only (experiments, admin API on 127.0.0.1:9902); several may run, one leads')
  .option('--redis <url>', 'Redis URL (env SLUICE_REDIS_URL)')
  .option('--redis-prefix <prefix>', 'key prefix in Redis (env SLUICE_REDIS_PREFIX, default sluice:)')
  .option('--admin-listen <host:port>', 'admin API listener (default 127.0.0.1:9902; env SLUICE_ADMIN_LISTEN)')
  .addOption(new Option('--token <token>', 'admin API bearer token (env SLUICE_TOKEN); visible in ps: prefer --token-file'))
  .option('--token-file <file>', 'read the admin API token from a file (env SLUICE_TOKEN_FILE)')
  .option('--allow-exec', 'let experiments run exec tasks (commands) in this process (env SLUICE_ALLOW_EXEC=1); off by default')
  .option('--log-level <level>', 'log level (env SLUICE_LOG_LEVEL)')
  .option('--lease-ttl <ms>', 'leader lease in milliseconds; failover takes about this plus a third of it (default 5000)')
  .addOption(new Option('--dashboard <mode>', 'the dashboard page on the control API\'s GET / (docs/dashboard.md)').choices(['on', 'read-only', 'off']).default('on')))
  .action(async (opts: KubernetesFlags & { redis?: string; redisPrefix?: string; adminListen?: string; token?: string; tokenFile?: string; allowExec?: boolean; logLevel?: string; leaseTtl?: string; dashboard: DashboardMode }) => {
    const redisUrl = opts.redis ?? process.env.SLUICE_REDIS_URL;
    if (!redisUrl) throw new SluiceError('SLUICE_CONFIG_INVALID', 'sluice control needs shared state', [{ path: 'redis', message: 'give --redis URL or SLUICE_REDIS_URL' }]);
    const token = resolveToken(opts);
    const adminListen = controlListen(opts.adminListen ?? process.env.SLUICE_ADMIN_LISTEN ?? '127.0.0.1:9902');
    requireTokenBeyondLoopback('control API', adminListen, token);
    const exec = allowExec(opts.allowExec);
    const log = createLogger(opts.logLevel ?? process.env.SLUICE_LOG_LEVEL ?? 'info');
    const leaseTtlMs = opts.leaseTtl === undefined ? undefined : Number(opts.leaseTtl);
    const kubernetes = await kubernetesOptions(opts, exec);
    const running = await runControl({ redisUrl, prefix: prefixOf(opts), log, adminListen, token, leaseTtlMs, allowExec: exec, kubernetes, dashboard: opts.dashboard });
    serveUntilSignal(log, () => running.close());
  });

function controlListen(raw: string): { host: string; port: number } {
  const parsed = parseListen(raw);
  if (typeof parsed === 'string') throw new SluiceError('SLUICE_CONFIG_INVALID', 'bad admin listen address', [{ path: 'admin-listen', message: parsed }]);
  return parsed;
}

program
  .command('crd')
  .description('print the Experiment CustomResourceDefinition (sluice.dev/v1alpha1) as YAML: sluice crd | kubectl apply -f -')
  .action(async () => {
    const { experimentCrdYaml } = await import('../control/experiment-crd.js');
    process.stdout.write(experimentCrdYaml());
  });

program
  .command('demo')
  .description('three sample versions, Sluice, an A/B/n + SLO experiment and synthetic load, live, to the verdict')
  .option('--qps <n>', 'synthetic requests per second', '150')
  .option('--interval <seconds>', 'seconds per iteration', '2')
  .option('--keep', 'keep serving after the experiment ends')
  .action(async (opts: { qps: string; interval: string; keep?: boolean }) => {
    const { runDemo } = await import('../demo/demo.js');
    const final = await runDemo({ qps: Number(opts.qps), intervalSeconds: Number(opts.interval), keep: opts.keep === true });
    process.exitCode = final.state === 'Completed' ? 0 : 1;
  });

registerClientCommands(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof SluiceError) {
    process.stderr.write(`sluice: ${err.message} [${err.code}]\n${err.details.length ? formatDetails(err.details) + '\n' : ''}`);
    process.exit(1);
  }
  throw err;
}
