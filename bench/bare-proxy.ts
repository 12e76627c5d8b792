/**
 * Baseline for the bench: the smallest useful fastify + @fastify/http-proxy
 * reverse proxy, with a fixed upstream and the logger off.
 *
 *   node --import tsx bench/bare-proxy.ts <listenPort> <upstreamPort>
 */
import Fastify from 'fastify';
import proxy from '@fastify/http-proxy';

const port = Number(process.argv[2]);
const upstreamPort = Number(process.argv[3]);
if (!Number.isInteger(port) || !Number.isInteger(upstreamPort)) {
  console.error('usage: bare-proxy.ts <listenPort> <upstreamPort>');
  process.exit(2);
}

const app = Fastify({ logger: false });
await app.register(proxy, { upstream: `http://127.0.0.1:${upstreamPort}` });
await app.listen({ host: '127.0.0.1', port });
console.log(`bare-proxy listening on 127.0.0.1:${port} -> 127.0.0.1:${upstreamPort}`);

const stop = (): void => {
  void app.close().then(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
