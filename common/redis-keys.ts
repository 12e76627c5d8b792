/**
 * Every Redis key Sluice uses, in one module. All keys start with a
 * configurable prefix (default `sluice:`) so that several installations can
 * share one Redis.
 *
 *   {prefix}experiment:{name}          string  JSON ExperimentRecord
 *   {prefix}experiments                set     names of stored experiments
 *   {prefix}stats:{route}              hash    field {replicaId} → JSON cumulative snapshot of that replica
 *                                              (per version); absolute values, so re-sending is harmless
 *   {prefix}rewards:{route}            hash    {version}:count|sum|sumsq|conv, {version}:b{bucket}:sum|conv → reward
 *                                              events posted to the control API
 *   {prefix}reward-id:{route}:{id}     string  an event id already counted (PX 24 h): a retried post counts once
 *   {prefix}exposure:{route}:{key}     string  JSON { v, s, pv?, ps? }: the version serving a sticky key since s (ms),
 *                                              and the one before; written by proxies, PX rewards.exposureRetention
 *   {prefix}reward-conv:{route}:{key}  string  the `s` of the exposure a reward by key already converted
 *   {prefix}leader                     string  id of the control replica holding the lease (PX ttl)
 *   {prefix}leader:epoch               string  fencing token: incremented at every acquisition
 *   {prefix}route:{name}               string  JSON routing state { generation, weights, slots, versions }
 *   {prefix}routes                     set     names of routes with a stored routing state
 *   {prefix}routes:changed             channel a route name, published after its state changes
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

  rewards(route: string): string {
    return `${this.prefix}rewards:${route}`;
  }

  rewardId(route: string, id: string): string {
    return `${this.prefix}reward-id:${route}:${id}`;
  }

  exposure(route: string, key: string): string {
    return `${this.prefix}exposure:${route}:${key}`;
  }

  rewardConversion(route: string, key: string): string {
    return `${this.prefix}reward-conv:${route}:${key}`;
  }

    leader(): string {
    return `${this.prefix}leader`;
  }

  leaderEpoch(): string {
    return `${this.prefix}leader:epoch`;
  }

  route(name: string): string {
    return `${this.prefix}route:${name}`;
  }

  routes(): string {
    return `${this.prefix}routes`;
  }

  routesChanged(): string {
    return `${this.prefix}routes:changed`;
  }
}
