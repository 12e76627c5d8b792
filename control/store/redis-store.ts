/**
 * Experiments kept in Redis, so that they outlive a control process and are
 * shared by several (see common/redis-keys.ts for the layout):
 *
 *   {prefix}experiment:{name}   string  the ExperimentRecord as JSON
 *   {prefix}experiments         set     the names of stored experiments
 *
 * `put` and `delete` change both keys in one MULTI, so the set and the
 * records never disagree; `list` reads the set, then every record with one
 * MGET (a name whose record is gone by then is skipped).
 *
 * Serialisation. A record is plain data (strings, numbers, booleans, null,
 * arrays, plain objects) and round-trips through JSON except for non-finite
 * numbers, which JSON would turn into null although the status does produce
 * them: an SRM check's `chi2` is Infinity when a version with weight 0 got
 * traffic, and an objective relative to the baseline has the value Infinity
 * when the baseline's value is 0. They are therefore written as
 * `{"$number":"Infinity"}` (also "-Infinity", "NaN") and read back as
 * numbers; no record has an object key starting with "$" (version names
 * cannot contain it), so the tag is unambiguous. What JSON still does not
 * keep: -0 comes back as 0, properties whose value is `undefined` disappear
 * (the record types have no optional properties), and records come back
 * unfrozen.
 *
 * Failures. Every method rejects with SLUICE_STORE_UNAVAILABLE (503) when
 * Redis cannot serve it: unreachable, disconnected, the command timed out, or
 * Redis answered with an error (READONLY after a failover, OOM, …). The
 * client is expected to come from common/redis.ts createRedis: no offline
 * queue (commands fail at once while disconnected, nothing piles up) and a
 * command timeout. A record that is not valid JSON is SLUICE_INTERNAL.
 *
 * list() returns records ordered by creation time (`status.createdAt`), then
 * name: the order the in-memory store returns them in when experiments are
 * created one after another.
 */
import type { Redis } from 'ioredis';
import { SluiceError } from '../../common/errors.js';
import { fencedExec, type FencedOp } from '../../common/redis-fence.js';
import type { RedisKeys } from '../../common/redis-keys.js';
import type { ExperimentRecord, ExperimentStore } from '../ports.js';

const NUMBER_TAG = '$number';

export class RedisStore implements ExperimentStore {
  readonly #client: Redis;
  readonly #keys: RedisKeys;
  /** One wait for the connection in progress, shared by every caller. */
  readonly #epoch: (() => number | null) | null;
  #connecting: Promise<void> | null = null;

  /**
   * `epoch`, when given, makes every write fenced (common/redis-fence.ts):
   * only the control-plane leader holding that token can change a record.
   */
  constructor(client: Redis, keys: RedisKeys, epoch?: () => number | null) {
    this.#client = client;
    this.#keys = keys;
    this.#epoch = epoch ?? null;
  }

  /** Writes through the fence when this store has one. */
  async #write(ops: FencedOp[], plain: () => Promise<void>): Promise<void> {
    if (this.#epoch === null) return plain();
    const epoch = this.#epoch();
    if (epoch === null) throw new SluiceError('SLUICE_FENCED', 'this control replica is not the leader');
    await fencedExec(this.#client, this.#keys.leaderEpoch(), epoch, ops);
  }

  async get(name: string): Promise<ExperimentRecord | null> {
    return this.#run('get', async () => {
      const json = await this.#client.get(this.#keys.experiment(name));
      return json === null ? null : decode(json, name);
    });
  }

  async put(record: ExperimentRecord): Promise<void> {
    const name = record.doc.name;
    const json = encode(record);
    await this.#run('put', async () => {
      await this.#write(
        [
          ['SET', this.#keys.experiment(name), json],
          ['SADD', this.#keys.experiments(), name],
        ],
        async () => checkResults(await this.#client.multi().set(this.#keys.experiment(name), json).sadd(this.#keys.experiments(), name).exec()),
      );
    });
  }

  async list(): Promise<ExperimentRecord[]> {
    return this.#run('list', async () => {
      const names = await this.#client.smembers(this.#keys.experiments());
      if (names.length === 0) return [];
      const values = await this.#client.mget(names.map((n) => this.#keys.experiment(n)));
      const records: ExperimentRecord[] = [];
      values.forEach((json, i) => {
        if (json !== null) records.push(decode(json, names[i]!));
      });
      return records.sort(byCreation);
    });
  }

  async delete(name: string): Promise<void> {
    await this.#run('delete', async () => {
      await this.#write(
        [
          ['DEL', this.#keys.experiment(name)],
          ['SREM', this.#keys.experiments(), name],
        ],
        async () => checkResults(await this.#client.multi().del(this.#keys.experiment(name)).srem(this.#keys.experiments(), name).exec()),
      );
    });
  }

  /** Runs one store operation; anything Redis throws becomes SLUICE_STORE_UNAVAILABLE. */
  async #run<T>(op: string, fn: () => Promise<T>): Promise<T> {
    try {
      await this.#whileConnecting();
      return await fn();
    } catch (err) {
      if (err instanceof SluiceError) throw err;
      const reason = err instanceof Error ? err.message : String(err);
      throw new SluiceError('SLUICE_STORE_UNAVAILABLE', `experiment store unavailable (${op}): ${reason}`);
    }
  }

  /**
   * Without an offline queue, a command sent before the connection is ready
   * fails at once. So: connect a lazy client that has not connected yet, and
   * when a connection attempt is in progress wait for it — bounded by the
   * command timeout — instead of failing. While Redis is away (the client is
   * between reconnection attempts) this returns at once and the command
   * fails fast.
   */
  #whileConnecting(): Promise<void> {
    const c = this.#client;
    if (c.status === 'ready') return Promise.resolve();
    if (c.status === 'wait') c.connect().catch(() => {}); // the command reports the failure
    if (c.status !== 'connecting' && c.status !== 'connect') return Promise.resolve();
    this.#connecting ??= new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        c.off('ready', done);
        c.off('close', done);
        c.off('end', done);
        this.#connecting = null;
        resolve();
      };
      const timer = setTimeout(done, c.options.commandTimeout ?? 1000);
      timer.unref();
      c.on('ready', done);
      c.on('close', done);
      c.on('end', done);
    });
    return this.#connecting;
  }
}

/** MULTI results: [error, reply] per command; the transaction failed if any did. */
function checkResults(results: Array<[Error | null, unknown]> | null): void {
  if (results === null) throw new Error('transaction aborted');
  for (const [err] of results) if (err) throw err;
}

function encode(record: ExperimentRecord): string {
  return JSON.stringify(record, (_key, value: unknown) =>
    typeof value === 'number' && !Number.isFinite(value) ? { [NUMBER_TAG]: String(value) } : value,
  );
}

function decode(json: string, name: string): ExperimentRecord {
  try {
    return JSON.parse(json, (_key, value: unknown) => {
      if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
        const keys = Object.keys(value);
        if (keys.length === 1 && keys[0] === NUMBER_TAG) return Number((value as Record<string, unknown>)[NUMBER_TAG]);
      }
      return value;
    }) as ExperimentRecord;
  } catch {
    throw new SluiceError('SLUICE_INTERNAL', `the stored record of experiment ${JSON.stringify(name)} is not valid JSON`);
  }
}

function byCreation(a: ExperimentRecord, b: ExperimentRecord): number {
  const at = a.status.createdAt;
  const bt = b.status.createdAt;
  if (at !== bt) return at < bt ? -1 : 1;
  return a.doc.name < b.doc.name ? -1 : a.doc.name > b.doc.name ? 1 : 0;
}
