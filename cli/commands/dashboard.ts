/**
 * `sluice dashboard [--open]`: where the admin API's dashboard is (docs/dashboard.md).
 * Checks that the page is served there (not `admin.dashboard: off`), checks
 * the token when one is given, prints the URL and, with --open, opens it in
 * the default browser. The token is never put in the URL: the page asks for
 * it and keeps it in its own memory.
 */
import { spawn } from 'node:child_process';
import type { Command } from 'commander';
import { request } from 'undici';
import { CliError, DEFAULT_ADMIN_URL } from '../client.js';
import { resolveToken } from '../secrets.js';
import { type ClientOptions, print, run, withClientOptions } from './common.js';

const TIMEOUT_MS = 10_000;

export function registerDashboardCommand(program: Command): void {
  withClientOptions(
    program
      .command('dashboard')
      .description('print the URL of the live dashboard on the admin API (--open: open it in a browser); the page asks for the token itself')
      .option('--open', 'open the page in the default browser (xdg-open on Linux, open on macOS, start on Windows)'),
  ).action((opts: ClientOptions & { open?: boolean }) =>
    run(async () => {
      const base = opts.admin ?? (process.env.SLUICE_ADMIN_URL || DEFAULT_ADMIN_URL);
      let url: URL;
      try {
        url = new URL(base);
      } catch {
        throw new CliError([`sluice: --admin / SLUICE_ADMIN_URL must be an http:// URL such as ${DEFAULT_ADMIN_URL}, got ${JSON.stringify(base)}`]);
      }
      url.pathname = url.pathname.replace(/\/*$/, '/');
      url.search = '';
      url.hash = '';
      const page = await get(url, null);
      if (page.status === 404) throw new CliError([`sluice: the admin API at ${base} serves no dashboard (admin.dashboard: off; sluice control --dashboard off)`]);
      if (page.status !== 200 || !/<meta name="sluice-dashboard"/.test(page.body)) {
        throw new CliError([`sluice: ${url.href} is not a Sluice dashboard (answered ${page.status})`]);
      }
      const tokenRequired = /<meta name="sluice-token" content="required">/.test(page.body);
      const token = resolveToken(opts);
      if (token !== null) {
        const state = await get(new URL('dashboard/state', url), token);
        if (state.status === 401) throw new CliError([`sluice: the admin API at ${base} refused the token (--token-file / --token / SLUICE_TOKEN_FILE / SLUICE_TOKEN)`]);
      }
      print(url.href);
      if (tokenRequired) process.stderr.write('The page asks for the admin token (paste it there; it is never put in the URL).\n');
      if (opts.open) openBrowser(url.href);
    }),
  );
}

async function get(url: URL, token: string | null): Promise<{ status: number; body: string }> {
  try {
    const r = await request(url, {
      method: 'GET',
      headers: token === null ? {} : { authorization: `Bearer ${token}` },
      headersTimeout: TIMEOUT_MS,
      bodyTimeout: TIMEOUT_MS,
    });
    return { status: r.statusCode, body: await r.body.text() };
  } catch (err) {
    const e = err as { code?: string; message?: string };
    throw new CliError([`sluice: cannot reach the admin API at ${url.origin} (is sluice running? --admin / SLUICE_ADMIN_URL)`, `(${e.code ?? ''} ${e.message ?? String(err)})`.replace('( ', '(')]);
  }
}

/** The platform's opener, detached; a failure only says to open the URL by hand. */
function openBrowser(href: string): void {
  const [cmd, args] =
    process.platform === 'darwin' ? ['open', [href]] : process.platform === 'win32' ? ['cmd', ['/c', 'start', '""', href]] : ['xdg-open', [href]];
  const say = (why: string) => process.stderr.write(`sluice: could not open a browser (${why}): open ${href} yourself\n`);
  try {
    const child = spawn(cmd, args as string[], { detached: true, stdio: 'ignore' });
    child.once('error', (err) => say((err as Error).message));
    child.unref();
  } catch (err) {
    say((err as Error).message);
  }
}
