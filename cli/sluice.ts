/**
 * The `sluice` command line.
 */
import { Command, Option } from 'commander';
import { formatDetails, SluiceError } from '../common/errors.js';
import { createLogger, type Logger } from '../common/logger.js';
import { isLoopback, loadConfig, parseListen } from '../proxy/config.js';
import { runControl, runProxy } from './run-shared.js';
import { registerClientCommands } from './commands/index.js';
import { runSluice } from './run-sluice.js';

const program = new Command()
  .name('sluice')
  .description('Release engineering in the request path: split, route, mirror and measure traffic per version.')
  .showHelpAfterError();

interface ServeFlags {
  config: string;
  listen?: string;
  adminListen?: string;
  token?: string;
  redis?: string;
  redisPrefix?: string;
  logLevel?: string;
}

function withServeOptions(cmd: Command): Command {
  return cmd
    .option('--listen <host:port>', 'traffic listener (default 0.0.0.0:8080; env SLUICE_LISTEN)')
    .option('--admin-listen <host:port>', 'admin API listener (default 127.0.0.1:9901; env SLUICE_ADMIN_LISTEN)')
    .addOption(new Option('--token <token>', 'admin API bearer token (env SLUICE_TOKEN)'))
    .option('--redis <url>', 'Redis URL for shared state: redis://, rediss:// or sentinel://host:port,host:port/master (env SLUICE_REDIS_URL)')
    .option('--redis-prefix <prefix>', 'key prefix in Redis, to share one Redis between installations (env SLUICE_REDIS_PREFIX, default sluice:)')
    .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent (env SLUICE_LOG_LEVEL)');
}

function loadServeConfig(opts: ServeFlags) {
  return loadConfig(opts.config, {
    overrides: { listen: opts.listen, adminListen: opts.adminListen, token: opts.token, redis: opts.redis, logLevel: opts.logLevel },
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

withServeOptions(
  program
    .command('start')
    .description('run proxy and control plane in one process: in-memory, or against Redis with --redis (control API then on 127.0.0.1:9902)')
    .requiredOption('-c, --config <file>', 'sluice.yaml'),
).action(async (opts: ServeFlags) => {
  const config = loadServeConfig(opts);
  const log = createLogger(config.logLevel);
  if (config.store.redis === null) {
    const running = await runSluice(config, log);
    return serveUntilSignal(log, () => running.close());
  }
  const shared = { redisUrl: config.store.redis, prefix: prefixOf(opts), log };
  const proxy = await runProxy(config, shared);
  // The proxy's admin API keeps 9901 (SLUICE_ADMIN_LISTEN); the control API goes to 9902 (SLUICE_CONTROL_LISTEN).
  const control = await runControl({ ...shared, adminListen: controlListen(process.env.SLUICE_CONTROL_LISTEN ?? '127.0.0.1:9902'),
    token: config.admin.token,
    proxyUrl: proxy.trafficUrl,
    pinToken: proxy.proxy.pinToken,
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

program
  .command('control')
  .description('run the control plane only (experiments, admin API on 127.0.0.1:9902); several may run, one leads')
  .option('--redis <url>', 'Redis URL (env SLUICE_REDIS_URL)')
  .option('--redis-prefix <prefix>', 'key prefix in Redis (env SLUICE_REDIS_PREFIX, default sluice:)')
  .option('--admin-listen <host:port>', 'admin API listener (default 127.0.0.1:9902; env SLUICE_ADMIN_LISTEN)')
  .addOption(new Option('--token <token>', 'admin API bearer token (env SLUICE_TOKEN)'))
  .option('--log-level <level>', 'log level (env SLUICE_LOG_LEVEL)')
  .option('--lease-ttl <ms>', 'leader lease in milliseconds; failover takes about this plus a third of it (default 5000)')
  .action(async (opts: { redis?: string; redisPrefix?: string; adminListen?: string; token?: string; logLevel?: string; leaseTtl?: string }) => {
    const redisUrl = opts.redis ?? process.env.SLUICE_REDIS_URL;
    if (!redisUrl) throw new SluiceError('SLUICE_CONFIG_INVALID', 'sluice control needs shared state', [{ path: 'redis', message: 'give --redis URL or SLUICE_REDIS_URL' }]);
    const token = opts.token ?? (process.env.SLUICE_TOKEN || null);
    const adminListen = controlListen(opts.adminListen ?? process.env.SLUICE_ADMIN_LISTEN ?? '127.0.0.1:9902');
    if (!isLoopback(adminListen.host) && token === null) {
      throw new SluiceError('SLUICE_CONFIG_INVALID', 'admin API beyond loopback needs a token', [{ path: 'token', message: `an admin listener on ${adminListen.host} needs --token or SLUICE_TOKEN` }]);
    }
    const log = createLogger(opts.logLevel ?? process.env.SLUICE_LOG_LEVEL ?? 'info');
    const leaseTtlMs = opts.leaseTtl === undefined ? undefined : Number(opts.leaseTtl);
    const running = await runControl({ redisUrl, prefix: prefixOf(opts), log, adminListen, token, leaseTtlMs });
    serveUntilSignal(log, () => running.close());
  });

function controlListen(raw: string): { host: string; port: number } {
  const parsed = parseListen(raw);
  if (typeof parsed === 'string') throw new SluiceError('SLUICE_CONFIG_INVALID', 'bad admin listen address', [{ path: 'admin-listen', message: parsed }]);
  return parsed;
}

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
