/**
 * Benchmark upstream: a plain node:http server answering every request with
 * 200 and a fixed ~100-byte JSON body over keep-alive.
 *
 *   node --import tsx bench/upstream.ts <port> [name]
 *
 * `GET /__bench/count` returns how many other requests it has served, so the
 * bench can check the traffic split and the mirror share.
 */
import http from 'node:http';

const port = Number(process.argv[2] ?? process.env['PORT'] ?? 0);
const name = process.argv[3] ?? 'v1';
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`upstream: bad port ${process.argv[2] ?? ''}`);
  process.exit(2);
}

// Fixed size whatever the name (padded to 100 bytes) so every version sends the same bytes.
const base = JSON.stringify({ ok: true, service: 'sluice-bench', version: name, pad: '' });
const BODY = Buffer.from(base.replace('"pad":""', `"pad":"${'x'.repeat(Math.max(0, 100 - base.length))}"`));
const HEADERS = {
  'content-type': 'application/json',
  'content-length': String(BODY.length),
};

let served = 0;

const server = http.createServer((req, res) => {
  req.resume(); // always drain a request body, if any
  if (req.url === '/__bench/count') {
    const body = JSON.stringify({ name, requests: served });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
    return;
  }
  served++;
  res.writeHead(200, HEADERS);
  res.end(BODY);
});

// Longer than every proxy's idle timeout (undici 4 s, nginx upstream keepalive_timeout 60 s),
// so the proxy always closes an idle pooled connection first (no reuse race).
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;
server.maxRequestsPerSocket = 0;

server.listen(port, '127.0.0.1', () => {
  const addr = server.address();
  const p = typeof addr === 'object' && addr ? addr.port : port;
  console.log(`upstream ${name} listening on 127.0.0.1:${p}`);
});

const stop = (): void => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 1000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
