/**
 * The configuration of issue 13: the traffic listener's TLS and HTTP/2, the
 * versions' protocol and upstream TLS, routes' gRPC settings. Every bad value
 * is refused with its path, before anything starts.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { SluiceError } from '../common/errors.js';
import { validateConfig } from '../config/config.js';
import { DEFAULT_GRPC_ERROR_MASK, GRPC_CODES } from '../common/grpc-status.js';
import { createPki } from './support/certs.js';

const pki = createPki();
after(() => pki.remove());
const pair = pki.issue('server', { hosts: ['a.test'] });

function problems(doc: Record<string, unknown>): string[] {
  try {
    validateConfig({ routes: [{ name: 'r', versions: [{ name: 'v1', url: 'http://127.0.0.1:1' }] }], ...doc }, { env: {} });
  } catch (err) {
    assert.ok(err instanceof SluiceError);
    assert.equal(err.code, 'SLUICE_CONFIG_INVALID');
    return (err.details ?? []).map((d) => `${d.path}: ${d.message}`);
  }
  return [];
}

function route(version: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return { routes: [{ name: 'r', versions: [{ name: 'v1', ...version }], ...extra }] };
}

describe('listen', () => {
  test('the mapping form with TLS and SNI', () => {
    const c = validateConfig(
      {
        listen: { address: '127.0.0.1:8443', tls: { cert: pair.cert, key: pair.key, sni: [{ hosts: ['A.test', '*.b.test'], cert: pair.cert, key: pair.key }], minVersion: 'TLSv1.3', reloadInterval: '1s' } },
        routes: [{ name: 'r', versions: [{ name: 'v1', url: 'http://127.0.0.1:1' }] }],
      },
      { env: {} },
    );
    assert.deepEqual(
      { host: c.listen.host, port: c.listen.port, http2: c.listen.http2, minVersion: c.listen.tls?.minVersion, reloadMs: c.listen.tls?.reloadMs, hosts: c.listen.tls?.sni[0]?.hosts },
      { host: '127.0.0.1', port: 8443, http2: true, minVersion: 'TLSv1.3', reloadMs: 1000, hosts: ['a.test', '*.b.test'] },
    );
  });

  test('SLUICE_LISTEN replaces the address and keeps the TLS settings', () => {
    const c = validateConfig(
      { listen: { address: '127.0.0.1:8443', tls: { cert: pair.cert, key: pair.key } }, routes: [{ name: 'r', versions: [{ name: 'v1', url: 'http://127.0.0.1:1' }] }] },
      { env: { SLUICE_LISTEN: '127.0.0.1:9443' } },
    );
    assert.equal(c.listen.port, 9443);
    assert.equal(c.listen.tls?.cert, pair.cert);
  });

  test('bad values are refused with their paths', () => {
    const got = problems({
      listen: { address: 'nope', http2: 'yes', tls: { cert: '/no/such/file.pem', key: pair.cert, minVersion: 'TLSv1.1', sni: [{ hosts: ['bad host!'], cert: pair.cert }], extra: 1 } },
    });
    const paths = got.map((g) => g.split(':')[0]);
    for (const p of ['listen.address', 'listen.http2', 'listen.tls.cert', 'listen.tls.key', 'listen.tls.minVersion', 'listen.tls.sni[0].hosts[0]', 'listen.tls.sni[0].key', 'listen.tls.extra']) {
      assert.ok(paths.includes(p), `${p} not reported in ${JSON.stringify(got)}`);
    }
    assert.ok(got.some((g) => g.startsWith('listen.tls.cert: cannot read /no/such/file.pem')), JSON.stringify(got));
    assert.ok(got.some((g) => g.startsWith('listen.tls.key:') && g.includes('holds no PEM key')), JSON.stringify(got));
  });

  test('a certificate and key that do not match stop the process at start, naming the files', async () => {
    const other = pki.issue('other', { hosts: ['b.test'] });
    const { startSluice } = await import('./support/helpers.js');
    await assert.rejects(
      startSluice({ listen: { address: '127.0.0.1:0', tls: { cert: pair.cert, key: other.key } }, routes: [{ name: 'r', versions: [{ name: 'v1', url: 'http://127.0.0.1:1' }] }] }),
      (err: SluiceError) => err.code === 'SLUICE_TLS_INVALID' && err.message.includes(other.key),
    );
  });
});

describe('versions', () => {
  test('protocol must fit the URL scheme; tls needs https; a client certificate needs both halves; no insecure switch', () => {
    assert.match(problems(route({ url: 'https://h:1', protocol: 'h2c' })).join('\n'), /versions\[0\]\.protocol: h2c is cleartext HTTP\/2/);
    assert.match(problems(route({ url: 'http://h:1', protocol: 'h2' })).join('\n'), /versions\[0\]\.protocol: h2 is HTTP\/2 over TLS/);
    assert.match(problems(route({ url: 'http://h:1', protocol: 'http3' })).join('\n'), /protocol: expected one of http1, h2c, h2/);
    assert.match(problems(route({ url: 'http://h:1', tls: { ca: pki.caCert } })).join('\n'), /versions\[0\]\.tls: TLS settings need an https: URL/);
    assert.match(problems(route({ url: 'https://h:1', tls: { cert: pair.cert } })).join('\n'), /tls\.key: a client certificate needs both cert and key/);
    assert.match(problems(route({ url: 'https://h:1', tls: { insecureSkipVerify: true } })).join('\n'), /tls\.insecureSkipVerify: unknown field/);
    assert.deepEqual(problems(route({ url: 'https://h:1', protocol: 'h2', tls: { ca: pki.caCert, cert: pair.cert, key: pair.key, servername: 'Up.Test' } })), []);
  });
});

describe('grpc', () => {
  test('errorCodes by name or number; OK and unknown names refused; minDeadline a duration', () => {
    const c = validateConfig(route({ url: 'http://h:1', protocol: 'h2c' }, { grpc: { errorCodes: ['unavailable', 4], minDeadline: '100ms' } }), { env: {} });
    assert.equal(c.routes[0]!.grpc.errorCodes, (1 << GRPC_CODES.indexOf('UNAVAILABLE')) | (1 << 4));
    assert.equal(c.routes[0]!.grpc.minDeadlineMs, 100);
    const d = validateConfig(route({ url: 'http://h:1' }), { env: {} });
    assert.equal(d.routes[0]!.grpc.errorCodes, DEFAULT_GRPC_ERROR_MASK);
    const got = problems(route({ url: 'http://h:1' }, { grpc: { errorCodes: ['OK', 'NOPE', 17], minDeadline: 'soon' } })).join('\n');
    assert.match(got, /grpc\.errorCodes\[0\]/);
    assert.match(got, /grpc\.errorCodes\[1\]/);
    assert.match(got, /grpc\.errorCodes\[2\]/);
    assert.match(got, /grpc\.minDeadline/);
  });
});
