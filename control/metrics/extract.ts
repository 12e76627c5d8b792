/**
 * Picks the metric value out of a JSON answer with jq (jq-web: jq 1.7
 * compiled to wasm) or a JSONPath (jsonpath.ts).
 *
 * jq runs in a worker thread, started on first use and kept: jq-web is
 * synchronous, and an expression such as `repeat(.)` never ends. In-process
 * it would stall the event loop the proxy serves requests on; in a worker it
 * is cut after JQ_TIMEOUT_MS (the worker is terminated and a new one started
 * for the next expression). The worker also keeps jq-web's habit of setting
 * `process.exitCode` on every jq error away from the process.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { compileJsonPath, type Json, JsonPathSyntaxError } from './jsonpath.js';
import { describeValue, metricError, toNumber } from './reading.js';

/** How long one jq evaluation may run. */
export const JQ_TIMEOUT_MS = 2000;

export type Extractor = { readonly jq: string } | { readonly jsonPath: string };

/**
 * The number an expression selects from `doc`. Throws SLUICE_METRIC_EXTRACT
 * (the expression failed, or selected more than one value), _NO_DATA (nothing
 * or null selected) or _NOT_NUMERIC.
 */
export async function extractNumber(doc: Json, how: Extractor): Promise<number> {
  const label = 'jq' in how ? `jq ${JSON.stringify(how.jq)}` : `jsonPath ${JSON.stringify(how.jsonPath)}`;
  const values = 'jq' in how ? await runJq(doc, how.jq) : runJsonPath(doc, how.jsonPath);
  if (values.length === 0) throw metricError('SLUICE_METRIC_NO_DATA', `${label} selected nothing`);
  if (values.length > 1) {
    const shown = values.slice(0, 3).map(describeValue).join(', ');
    throw metricError('SLUICE_METRIC_EXTRACT', `${label} selected ${values.length} values (${shown}${values.length > 3 ? ', …' : ''}); it must select exactly one`);
  }
  return toNumber(values[0], label);
}

/** A JSONPath syntax problem, or null when it parses. */
export function jsonPathProblem(path: string): string | null {
  try {
    compileJsonPath(path);
    return null;
  } catch (err) {
    if (err instanceof JsonPathSyntaxError) return err.message;
    throw err;
  }
}

/**
 * A jq compile problem, or null when the expression compiles. The expression
 * is compiled inside `if false then (…) else empty end`, so nothing of it
 * runs: a check must not hang on an expression that loops on its input.
 */
export async function jqCompileProblem(expr: string): Promise<string | null> {
  try {
    await jq().run('null', `if false then (${expr}\n) else empty end`);
    return null;
  } catch (err) {
    if (err instanceof JqError && err.compile) return err.reason;
    throw err;
  }
}

function runJsonPath(doc: Json, path: string): Json[] {
  try {
    return compileJsonPath(path)(doc);
  } catch (err) {
    if (err instanceof JsonPathSyntaxError) throw metricError('SLUICE_METRIC_EXTRACT', `jsonPath ${JSON.stringify(path)}: ${err.message}`);
    throw err;
  }
}

async function runJq(doc: Json, expr: string): Promise<Json[]> {
  let out: string;
  try {
    out = await jq().run(JSON.stringify(doc), expr);
  } catch (err) {
    if (err instanceof JqError) throw metricError('SLUICE_METRIC_EXTRACT', `jq ${JSON.stringify(expr)}: ${err.reason}`);
    throw err;
  }
  // `-c` prints one JSON value per line; jq-web's own json() would flatten arrays across lines.
  return out
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as Json);
}

// ---------------------------------------------------------------- the jq worker

class JqError extends Error {
  constructor(
    readonly reason: string,
    readonly compile: boolean,
  ) {
    super(reason);
  }
}

interface JqReply {
  readonly ok: boolean;
  readonly out?: string;
  readonly message?: string;
}

// Plain CommonJS, run with `eval: true`: the same code works under tsx and from dist/.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const ready = require(workerData.jqPath);
parentPort.on('message', async (m) => {
  try {
    const jq = await ready;
    const out = jq.raw(m.input, m.filter, ['-c']);
    parentPort.postMessage({ ok: true, out: out === undefined ? '' : out });
  } catch (e) {
    parentPort.postMessage({ ok: false, message: String((e && e.message) || e) });
  }
});
`;

/** One worker, one expression at a time (jq-web is synchronous anyway), each with a deadline. */
class JqRunner {
  #worker: Worker | null = null;
  #queue: Promise<unknown> = Promise.resolve();
  readonly #jqPath = createRequire(import.meta.url).resolve('jq-web');

  run(input: string, filter: string): Promise<string> {
    const job = this.#queue.then(() => this.#runNow(input, filter));
    this.#queue = job.catch(() => undefined);
    return job;
  }

  #runNow(input: string, filter: string): Promise<string> {
    const worker = this.#ensureWorker();
    // Referenced only while it works: an idle worker must not keep a CLI process alive.
    worker.ref();
    return new Promise<string>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.unref();
      };
      const onMessage = (m: JqReply) => {
        done();
        if (m.ok) resolve(m.out ?? '');
        else reject(jqError(m.message ?? 'jq failed'));
      };
      const onError = (err: Error) => {
        done();
        this.#worker = null;
        reject(new JqError(`jq failed: ${err.message}`, false));
      };
      const timer = setTimeout(() => {
        done();
        this.#worker = null;
        void worker.terminate();
        reject(new JqError(`did not finish within ${JQ_TIMEOUT_MS} ms (an expression that never ends, such as repeat?)`, false));
      }, JQ_TIMEOUT_MS);
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.postMessage({ input, filter });
    });
  }

  #ensureWorker(): Worker {
    if (this.#worker === null) {
      this.#worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { jqPath: this.#jqPath } });
      this.#worker.unref();
    }
    return this.#worker;
  }
}

/**
 * jq-web's error text is "Non-zero exit code: N\njq: error: <reason>…" and
 * ends with "jq: N compile error" for a syntax error. Keep the reason only:
 * the rest echoes the (wrapped) program.
 */
function jqError(message: string): JqError {
  const compile = /compile error/.test(message);
  const line = message.split('\n').find((l) => l.startsWith('jq: error'));
  const reason = (line ?? message)
    .replace(/^jq: error(?: \(at [^)]*\))?: /, '')
    .replace(' (Unix shell quoting issues?)', '')
    .replace(/ at <top-level>, line \d+:$/, '')
    .trim();
  return new JqError(reason, compile);
}

let runner: JqRunner | null = null;

function jq(): JqRunner {
  runner ??= new JqRunner();
  return runner;
}
