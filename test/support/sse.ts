/**
 * A client of the dashboard's event stream (GET /dashboard/events) for the
 * tests: reads the stream as the page does (a plain GET with the
 * Authorization header, frames split on blank lines) and keeps every event
 * with the time it arrived.
 *
 *   const sse = await openEvents(adminUrl, { token: 'tok', experiment: 'ab' });
 *   await sse.next('experiment', (e) => e.summary.iteration >= 3);
 *   sse.close();
 */
import { Client } from 'undici';

export interface ReceivedEvent {
  readonly event: string;
  readonly data: any;
  readonly at: number;
}

export interface EventStream {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  /** Every event so far, oldest first. */
  readonly events: ReceivedEvent[];
  /** Heartbeat comments received. */
  readonly pings: number;
  /** Resolves when the server ended the stream or the connection broke. */
  readonly ended: Promise<void>;
  /** The first event of that name so far or to come (earlier ones included) for which `match` holds. */
  next(event: string, match?: (data: any) => boolean, timeoutMs?: number): Promise<ReceivedEvent>;
  close(): void;
}

export async function openEvents(adminUrl: string, opts: { token?: string | null; experiment?: string } = {}): Promise<EventStream> {
  const client = new Client(adminUrl, { bodyTimeout: 0, headersTimeout: 10_000 });
  const path = `/dashboard/events${opts.experiment ? `?experiment=${encodeURIComponent(opts.experiment)}` : ''}`;
  const headers: Record<string, string> = { accept: 'text/event-stream' };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  const res = await client.request({ method: 'GET', path, headers });
  const events: ReceivedEvent[] = [];
  let pings = 0;
  const waiters = new Set<() => void>();
  const notify = () => {
    for (const w of [...waiters]) w();
  };
  let buffer = '';
  let done = false;
  const ended = (async () => {
    try {
      for await (const chunk of res.body) {
        buffer += (chunk as Buffer).toString('utf8');
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = 'message';
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) pings++;
            else if (line.startsWith('event:')) event = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
          }
          if (data.length > 0) events.push({ event, data: JSON.parse(data.join('\n')), at: Date.now() });
        }
        notify();
      }
    } catch {
      // closed by us, or the connection broke: either way the stream has ended
    } finally {
      done = true;
      notify();
    }
  })();
  return {
    status: res.statusCode,
    headers: res.headers,
    events,
    get pings() {
      return pings;
    },
    ended,
    next(event, match = () => true, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        let from = 0;
        const check = () => {
          for (; from < events.length; from++) {
            const e = events[from]!;
            if (e.event === event && match(e.data)) {
              cleanup();
              return resolve(e);
            }
          }
          if (done) {
            cleanup();
            reject(new Error(`the stream ended before a matching ${event} event`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`no matching ${event} event within ${timeoutMs} ms (got ${events.map((e) => e.event).join(',')})`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    close() {
      void client.destroy().catch(() => {});
    },
  };
}
