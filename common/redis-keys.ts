/**
 * Every Redis key Sluice uses, in one module. All keys start with a
 * configurable prefix (default `sluice:`) so that several installations can
 * share one Redis.
 *
 *   {prefix}experiment:{name}          string  JSON ExperimentRecord
 *   {prefix}experiments                set     names of stored experiments
 *   {prefix}stats:{route}              hash    field {replicaId} → JSON cumulative snapshot of that replica
 *                                              (per version); absolute values, so re-sending is harmless
 */
export class RedisKeys {
  constructor(readonly prefix = 'sluice:') {}

  experiment(name: string): string {
    return `${this.prefix}experiment:${name}`;
  }

  experiments(): string {
    return `${this.prefix}experiments`;
  }

  stats(route: string): string {
    return `${this.prefix}stats:${route}`;
  }
}
