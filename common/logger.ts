/**
 * pino writing to stdout asynchronously: a log line never blocks the event
 * loop the request path runs on. pino flushes what is buffered on exit.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level = 'info', name = 'sluice'): Logger {
  return pino(
    { name, level, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label) => ({ level: label }) } },
    pino.destination({ dest: 1, sync: false }),
  );
}

/** For tests and embedded use: nothing is written. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/**
 * Logs one line per `key` per interval and counts what it held back, so a
 * dead upstream under load yields a line a second, not thousands.
 */
export class RateLimitedLog {
  readonly #last = new Map<string, { at: number; suppressed: number }>();

  constructor(private readonly intervalMs = 1000) {}

  /** Returns how many lines were held back since the last one, or -1 when this one is held back too. */
  admit(key: string, now = Date.now()): number {
    const e = this.#last.get(key);
    if (e === undefined) {
      this.#last.set(key, { at: now, suppressed: 0 });
      return 0;
    }
    if (now - e.at < this.intervalMs) {
      e.suppressed++;
      return -1;
    }
    const held = e.suppressed;
    e.at = now;
    e.suppressed = 0;
    return held;
  }
}
