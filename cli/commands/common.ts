/**
 * What the client commands share: the `--admin` / `--token` options, the
 * `-o` output option, and the action wrapper that prints errors and sets
 * the exit code.
 */
import { type Command, Option } from 'commander';
import { formatDetails, SluiceError } from '../../common/errors.js';
import { AdminClient, CliError, DEFAULT_ADMIN_URL, EXIT } from '../client.js';
import { resolveToken } from '../secrets.js';

export interface ClientOptions {
  admin?: string;
  token?: string;
  tokenFile?: string;
}

export interface OutputOptions {
  output: 'text' | 'json';
}

/** `--admin URL` (env SLUICE_ADMIN_URL) and `--token` / `--token-file` (env SLUICE_TOKEN / SLUICE_TOKEN_FILE). */
export function withClientOptions(cmd: Command): Command {
  return cmd
    .option('--admin <url>', `admin API URL (env SLUICE_ADMIN_URL; default ${DEFAULT_ADMIN_URL})`)
    .option('--token <token>', 'admin API bearer token (env SLUICE_TOKEN); visible in ps: prefer --token-file')
    .option('--token-file <file>', 'read the admin API token from a file (env SLUICE_TOKEN_FILE)');
}

export function withOutputOption(cmd: Command): Command {
  return cmd.addOption(new Option('-o, --output <format>', 'text, or json for the raw API response').choices(['text', 'json']).default('text'));
}

export function clientFrom(opts: ClientOptions): AdminClient {
  const url = opts.admin ?? nonEmpty(process.env.SLUICE_ADMIN_URL) ?? DEFAULT_ADMIN_URL;
  const token = resolveToken(opts);
  return new AdminClient({ url, token });
}

/** Runs a command body: prints a CliError/SluiceError to stderr and sets the exit code (the body returns its own). */
export async function run(body: () => Promise<number | void>): Promise<void> {
  try {
    process.exitCode = (await body()) ?? EXIT.ok;
  } catch (err) {
    if (err instanceof CliError) {
      process.stderr.write(err.lines.join('\n') + '\n');
      process.exitCode = err.exitCode;
    } else if (err instanceof SluiceError) {
      process.stderr.write(`sluice: ${err.message} [${err.code}]\n${err.details.length > 0 ? formatDetails(err.details) + '\n' : ''}`);
      process.exitCode = EXIT.failed;
    } else {
      throw err;
    }
  }
}

/** Runs a body with a client that is closed afterwards (so the process can exit). */
export function runWithClient(opts: ClientOptions, body: (client: AdminClient) => Promise<number | void>): Promise<void> {
  return run(async () => {
    const client = clientFrom(opts);
    try {
      return await body(client);
    } finally {
      await client.close();
    }
  });
}

export function print(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : text + '\n');
}

export function printJson(value: unknown): void {
  print(JSON.stringify(value, null, 2));
}

function nonEmpty(s: string | undefined): string | undefined {
  return s === undefined || s === '' ? undefined : s;
}
