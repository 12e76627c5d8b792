/**
 * The admin HTTP API's server: auth, errors as `{ error: { code, message,
 * details } }`, health and metrics. Feature routes (routes/stats, and the
 * control plane's experiments) register themselves as plugins.
 */
import { timingSafeEqual } from 'node:crypto';
import fastify, { type FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import { SluiceError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';

export interface AdminServerOptions {
  readonly token: string | null;
  readonly metrics: Registry;
  readonly log: Logger;
  /** Null when ready, else why not (served by /readyz as 503). */
  readonly notReadyReason: () => string | null;
}

const OPEN_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

export function createAdminServer(opts: AdminServerOptions): FastifyInstance {
  const app = fastify({ logger: false, bodyLimit: 1024 * 1024, forceCloseConnections: true });
  // YAML documents (experiments) arrive as text; JSON is parsed by fastify.
  app.addContentTypeParser(['application/yaml', 'application/x-yaml', 'text/yaml', 'text/plain'], { parseAs: 'string' }, (_req, body, done) =>
    done(null, body),
  );

  if (opts.token !== null) {
    const expected = Buffer.from(`Bearer ${opts.token}`);
    app.addHook('onRequest', async (request) => {
      if (OPEN_PATHS.has(request.url.split('?')[0]!)) return;
      // A route registered with `config: { public: true }` carries no data (the dashboard's static page, admin/dashboard/).
      if ((request.routeOptions.config as { public?: unknown } | undefined)?.public === true) return;
      const given = Buffer.from(request.headers.authorization ?? '');
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new SluiceError('SLUICE_UNAUTHORIZED');
    });
  }

  app.setErrorHandler((error, request, reply) => {
    if (error instanceof SluiceError) return reply.status(error.status).send(error.toJSON());
    const err = error as Error & { statusCode?: number };
    const status = err.statusCode ?? 500;
    if (status >= 500) opts.log.error({ err, url: request.url }, 'admin request failed');
    const e = new SluiceError(status >= 500 ? 'SLUICE_INTERNAL' : 'SLUICE_BAD_REQUEST', status >= 500 ? 'internal error' : err.message);
    return reply.status(status >= 500 ? 500 : status).send(e.toJSON());
  });
  app.setNotFoundHandler((request, reply) => {
    const e = new SluiceError('SLUICE_NOT_FOUND', `no admin endpoint ${request.method} ${request.url}`);
    reply.status(404).send(e.toJSON());
  });

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    const reason = opts.notReadyReason();
    if (reason === null) return { status: 'ready' };
    return reply.status(503).send({ status: 'not ready', reason });
  });
  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', opts.metrics.contentType);
    return opts.metrics.metrics();
  });
  return app;
}
