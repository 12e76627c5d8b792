/**
 * `sluice describe EXP --watch`: the describe view, read again every
 * `--interval` seconds. On a terminal the screen is redrawn in place (as
 * watch(1) does); into a pipe or file, a view is written each time it
 * changes, under a time line. Ends (exit 0) once the experiment has ended
 * and its finish tasks have run, or on Ctrl-C. A read that fails for a
 * while (the admin API restarting, a control plane failing over) is said
 * and retried; an experiment that is gone (404) or a refused token ends it
 * with exit 1.
 */
import { ApiError, type AdminClient, type Experiment, FINAL_STATES } from '../client.js';
import { describeText } from '../format.js';

export interface WatchOptions {
  readonly intervalS: number;
  readonly json: boolean;
}

const CLEAR = '\x1b[H\x1b[2J';

export async function watchDescribe(client: AdminClient, name: string, opts: WatchOptions): Promise<number> {
  const out = process.stdout;
  const tty = out.isTTY === true && !opts.json;
  let stopped = false;
  let wake: (() => void) | null = null;
  const stop = () => {
    stopped = true;
    wake?.();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  // `| head` closed the pipe: stop reading, as any filter would.
  const closed = (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') stop();
  };
  out.on('error', closed);
  let last: string | null = null;
  let trouble: string | null = null;
  try {
    while (!stopped) {
      let e: Experiment | null = null;
      try {
        e = await client.getExperiment(name);
        trouble = null;
      } catch (err) {
        if (err instanceof ApiError && (err.status === 404 || err.status === 401 || err.status === 400)) throw err;
        const why = (err as Error).message.replace(/^sluice: /, '');
        if (why !== trouble) {
          trouble = why;
          out.write(`${tty ? '\n' : ''}[${clock()}] ${why}; retrying every ${opts.intervalS}s\n`);
        }
      }
      if (e !== null) {
        const view = opts.json ? JSON.stringify(e) : describeText(e);
        if (tty) out.write(`${CLEAR}sluice describe ${name} --watch (every ${opts.intervalS}s; Ctrl-C to stop)   ${clock()}\n\n${view}\n`);
        else if (view !== last) out.write(opts.json ? `${view}\n` : `--- ${clock()} ---\n${view}\n`);
        last = view;
        if (FINAL_STATES.has(e.status.state) && !e.status.ending) return 0;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, opts.intervalS * 1000);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = null;
    }
    return 0;
  } finally {
    process.removeListener('SIGINT', stop);
    process.removeListener('SIGTERM', stop);
    out.removeListener('error', closed);
  }
}

function clock(): string {
  return new Date().toTimeString().slice(0, 8);
}
