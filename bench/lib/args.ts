/** What every benchmark script reads from its command line and environment. */

/** The only flag the scripts take is `--quick`; anything else exits 2 (after --help was handled). */
export function quickFlag(argv: readonly string[], script: string): boolean {
  for (const a of argv) {
    if (a !== '--quick') {
      console.error(`${script}: unknown argument ${a} (try --help)`);
      process.exit(2);
    }
  }
  return argv.includes('--quick');
}

/** An integer setting from the environment, `def` when unset; anything else but an integer >= `min` exits 2. */
export function envInt(script: string, name: string, def: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) {
    console.error(`${script}: ${name}=${raw} must be an integer >= ${min}`);
    process.exit(2);
  }
  return n;
}
