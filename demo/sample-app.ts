/**
 * A sample app version for the demo and the tests: answers every request
 * after a configurable latency, fails a share of them with 500, and reports a
 * conversion (`x-sluice-reward: 1`) on a share of the successful ones.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { seededRandom } from '../common/random.js';

export interface SampleAppOptions {
  readonly name: string;
  /** Mean latency in ms; each response waits uniformly in [0.5, 1.5] × this. */
  readonly latencyMs?: number;
  readonly errorRate?: number;
  readonly conversionRate?: number;
  readonly seed?: number;
  readonly port?: number;
  readonly host?: string;
}

export interface SampleApp {
  readonly name: string;
  readonly url: string;
  readonly server: http.Server;
  requests: number;
  close(): Promise<void>;
}

export async function startSampleApp(opts: SampleAppOptions): Promise<SampleApp> {
  const rand = seededRandom(opts.seed ?? 1);
  const latency = opts.latencyMs ?? 0;
  const errorRate = opts.errorRate ?? 0;
  const conversionRate = opts.conversionRate ?? 0;
  const app: SampleApp = {
    name: opts.name,
    url: '',
    server: http.createServer((req, res) => {
      app.requests++;
      req.resume();
      const answer = () => {
        if (rand() < errorRate) {
          res.writeHead(500, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ version: opts.name, error: 'simulated failure' }));
          return;
        }
        const headers: Record<string, string> = { 'content-type': 'application/json' };
        if (rand() < conversionRate) headers['x-sluice-reward'] = '1';
        res.writeHead(200, headers);
        res.end(JSON.stringify({ version: opts.name, path: req.url }));
      };
      if (latency > 0) setTimeout(answer, latency * (0.5 + rand()));
      else answer();
    }),
    requests: 0,
    close: () => new Promise((resolve) => {
      app.server.closeAllConnections();
      app.server.close(() => resolve());
    }),
  };
  // Longer than Sluice's upstream idle timeout, so Sluice always closes idle connections first.
  app.server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve) => app.server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', resolve));
  (app as { url: string }).url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  return app;
}
