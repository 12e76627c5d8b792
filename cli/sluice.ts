/**
 * The `sluice` command line.
 */
import { Command, Option } from 'commander';
import { formatDetails, SluiceError } from '../common/errors.js';
import { createLogger } from '../common/logger.js';
import { loadConfig } from '../proxy/config.js';
import { registerClientCommands } from './commands/index.js';
import { runSluice } from './run-sluice.js';

const program = new Command()
  .name('sluice')
  .description('Release engineering in the request path: split, route, mirror and measure traffic per version.')
  .showHelpAfterError();

program
  .command('start')
  .description('run the proxy and its admin API (all-in-one)')
  .requiredOption('-c, --config <file>', 'sluice.yaml')
  .option('--listen <host:port>', 'traffic listener (default 0.0.0.0:8080; env SLUICE_LISTEN)')
  .option('--admin-listen <host:port>', 'admin API listener (default 127.0.0.1:9901; env SLUICE_ADMIN_LISTEN)')
  .addOption(new Option('--token <token>', 'admin API bearer token (env SLUICE_TOKEN)'))
  .option('--redis <url>', 'Redis URL for shared state (env SLUICE_REDIS_URL)')
  .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent (env SLUICE_LOG_LEVEL)')
  .action(async (opts: { config: string; listen?: string; adminListen?: string; token?: string; redis?: string; logLevel?: string }) => {
    const config = loadConfig(opts.config, {
      overrides: { listen: opts.listen, adminListen: opts.adminListen, token: opts.token, redis: opts.redis, logLevel: opts.logLevel },
    });
    const log = createLogger(config.logLevel);
    if (config.store.redis !== null) log.warn('store.redis is set, but this version runs with the in-memory store only');
    const running = await runSluice(config, log);
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'draining in-flight requests');
      running.close().then(
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
