/**
 * The listener's certificates over real TLS connections on loopback: the SNI
 * choice, reloads from overwritten files and from a Kubernetes-style symlink
 * swap while older connections keep working, a broken pair at start and at
 * reload, and the minimum protocol version.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync, readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import tls from 'node:tls';
import { pino } from 'pino';
import { SluiceError } from '../common/errors.js';
import { silentLogger } from '../common/logger.js';
import type { ListenerTlsConfig } from '../config/types.js';
import { ListenerCertificates } from '../proxy/tls-certs.js';
import { createPki, type IssuedPair, type Pki } from './support/certs.js';
import { waitFor } from './support/helpers.js';

const RELOAD_MS = 100;

let pki: Pki;
let ca: string;
let def: IssuedPair;
let a: IssuedPair;
let b: IssuedPair;
let wild: IssuedPair;

before(() => {
  pki = createPki();
  ca = pki.caPem();
  def = pki.issue('default', { hosts: ['default.test'], ips: ['127.0.0.1'] });
  a = pki.issue('a', { hosts: ['a.test'] });
  b = pki.issue('b', { hosts: ['b.test'] });
  wild = pki.issue('wild', { hosts: ['*.w.test'] });
});

after(() => pki.remove());

function tlsConfig(over: Partial<ListenerTlsConfig> = {}): ListenerTlsConfig {
  return { cert: def.cert, key: def.key, sni: [], minVersion: 'TLSv1.2', reloadMs: RELOAD_MS, ...over };
}

/** A logger whose lines are kept, parsed. */
function captureLog() {
  const lines: Array<{ level: number; msg: string; reason?: string; hosts?: unknown }> = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { log, lines, warnings: () => lines.filter((l) => l.level === 40) };
}

interface Listener {
  readonly server: tls.Server;
  readonly port: number;
  readonly clientErrors: Error[];
  close(): Promise<void>;
}

/** A TLS server that greets each connection and echoes what it receives. */
async function listen(certs: ListenerCertificates, watch = true): Promise<Listener> {
  const sockets = new Set<tls.TLSSocket>();
  const clientErrors: Error[] = [];
  const server = tls.createServer(certs.serverOptions(), (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.write('hello\n');
    socket.pipe(socket);
  });
  server.on('tlsClientError', (err) => clientErrors.push(err));
  if (watch) certs.watch(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    server,
    port,
    clientErrors,
    close: () =>
      new Promise<void>((resolve) => {
        certs.close();
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A verified TLS connection, open once its greeting arrived. */
async function connect(port: number, opts: tls.ConnectionOptions = {}): Promise<tls.TLSSocket> {
  const socket = tls.connect({ host: '127.0.0.1', port, ca, ...opts });
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.once('data', () => resolve());
    });
  } catch (err) {
    socket.destroy();
    throw err;
  }
  return socket;
}

/** The subjectAltName of the certificate a new connection is served. */
async function servedSan(port: number, opts: tls.ConnectionOptions = {}): Promise<string> {
  const socket = await connect(port, opts);
  const san = socket.getPeerCertificate().subjectaltname ?? '';
  socket.destroy();
  return san;
}

/** For names the served certificate does not carry: the chain is still verified, the name is not. */
const anyName = { checkServerIdentity: () => undefined };

/** Writes `ping` on an open connection and waits for it to come back. */
async function echoes(socket: tls.TLSSocket): Promise<boolean> {
  const reply = new Promise<string>((resolve, reject) => {
    socket.once('data', (d: Buffer) => resolve(d.toString()));
    socket.once('error', reject);
  });
  socket.write('ping');
  return (await reply) === 'ping';
}

/** Replaces `path` by a copy of `from` in one rename. */
function replace(path: string, from: string): void {
  copyFileSync(from, `${path}.tmp`);
  renameSync(`${path}.tmp`, path);
}

test('SNI chooses the certificate: exact hosts, one-label wildcards, the default otherwise', async () => {
  const certs = new ListenerCertificates(
    tlsConfig({
      sni: [
        { hosts: ['a.test'], cert: a.cert, key: a.key },
        { hosts: ['b.test'], cert: b.cert, key: b.key },
        { hosts: ['*.w.test'], cert: wild.cert, key: wild.key },
      ],
    }),
    silentLogger(),
  );
  const l = await listen(certs, false);
  try {
    assert.equal(await servedSan(l.port, { servername: 'a.test' }), 'DNS:a.test');
    assert.equal(await servedSan(l.port, { servername: 'b.test' }), 'DNS:b.test');
    // Case and the trailing dot of a fully qualified name do not matter.
    assert.equal(await servedSan(l.port, { servername: 'B.Test.', ...anyName }), 'DNS:b.test');
    assert.equal(await servedSan(l.port, { servername: 'unknown.test', ...anyName }), 'DNS:default.test, IP Address:127.0.0.1');
    // No servername at all (connecting to an IP sends none): the server's own context.
    assert.equal(await servedSan(l.port), 'DNS:default.test, IP Address:127.0.0.1');

    assert.equal(await servedSan(l.port, { servername: 'x.w.test' }), 'DNS:*.w.test');
    assert.equal(await servedSan(l.port, { servername: 'y.x.w.test', ...anyName }), 'DNS:default.test, IP Address:127.0.0.1');
    assert.equal(await servedSan(l.port, { servername: 'w.test', ...anyName }), 'DNS:default.test, IP Address:127.0.0.1');
  } finally {
    await l.close();
  }
});

test('overwritten files are picked up for clients without SNI, while an older connection keeps working', async () => {
  const dir = join(pki.dir, 'overwrite');
  mkdirSync(dir);
  const crt = join(dir, 'tls.crt');
  const key = join(dir, 'tls.key');
  copyFileSync(def.cert, crt);
  copyFileSync(def.key, key);
  const { log, lines } = captureLog();
  const certs = new ListenerCertificates(tlsConfig({ cert: crt, key }), log);
  const l = await listen(certs);
  try {
    const older = await connect(l.port);
    assert.equal(older.getPeerCertificate().subjectaltname, 'DNS:default.test, IP Address:127.0.0.1');

    const next = pki.issue('rotated', { hosts: ['rotated.test'], ips: ['127.0.0.1'] });
    writeFileSync(crt, readFileSync(next.cert));
    writeFileSync(key, readFileSync(next.key));
    await waitFor('the rotated certificate', async () => (await servedSan(l.port)) === 'DNS:rotated.test, IP Address:127.0.0.1', 5_000);
    // An unknown servername falls back to the same, current, default.
    assert.equal(await servedSan(l.port, { servername: 'unknown.test', ...anyName }), 'DNS:rotated.test, IP Address:127.0.0.1');

    assert.ok(await echoes(older), 'the connection opened before the rotation still works');
    assert.equal(older.getPeerCertificate().subjectaltname, 'DNS:default.test, IP Address:127.0.0.1');
    older.destroy();
    assert.ok(lines.some((x) => x.level === 30 && x.msg === 'listener certificate reloaded' && x.hosts === 'default'));
  } finally {
    await l.close();
  }
});

test('a Kubernetes secret rotation (the ..data symlink swapped) is picked up for an SNI host', async () => {
  // The layout kubelet writes: tls.crt -> ..data/tls.crt, ..data -> ..<timestamp>/.
  const dir = join(pki.dir, 'k8s');
  const generation = (name: string, pair: IssuedPair) => {
    mkdirSync(join(dir, name), { recursive: true });
    copyFileSync(pair.cert, join(dir, name, 'tls.crt'));
    copyFileSync(pair.key, join(dir, name, 'tls.key'));
  };
  generation('..2024_01_01', a);
  symlinkSync('..2024_01_01', join(dir, '..data'));
  symlinkSync('..data/tls.crt', join(dir, 'tls.crt'));
  symlinkSync('..data/tls.key', join(dir, 'tls.key'));

  const certs = new ListenerCertificates(
    tlsConfig({ sni: [{ hosts: ['a.test'], cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key') }] }),
    silentLogger(),
  );
  const l = await listen(certs);
  try {
    const older = await connect(l.port, { servername: 'a.test' });
    assert.equal(older.getPeerCertificate().subjectaltname, 'DNS:a.test');

    // Both files change at once: a new directory, then one atomic rename of the link.
    const next = pki.issue('a2', { hosts: ['a.test', 'a2.test'] });
    generation('..2024_02_01', next);
    symlinkSync('..2024_02_01', join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    rmSync(join(dir, '..2024_01_01'), { recursive: true });

    await waitFor('the rotated SNI certificate', async () => (await servedSan(l.port, { servername: 'a.test' })) === 'DNS:a.test, DNS:a2.test', 5_000);
    assert.ok(await echoes(older), 'the connection opened before the rotation still works');
    assert.equal(older.getPeerCertificate().subjectaltname, 'DNS:a.test');
    older.destroy();
    // The default pair did not change.
    assert.equal(await servedSan(l.port), 'DNS:default.test, IP Address:127.0.0.1');
  } finally {
    await l.close();
  }
});

test('a pair that cannot serve refuses to start, naming its files', () => {
  const invalid = (config: ListenerTlsConfig, ...words: string[]) =>
    assert.throws(
      () => new ListenerCertificates(config, silentLogger()),
      (err: unknown) => {
        assert.ok(err instanceof SluiceError);
        assert.equal(err.code, 'SLUICE_TLS_INVALID');
        for (const w of words) assert.ok(err.message.includes(w), `${err.message} names ${w}`);
        return true;
      },
    );
  invalid(tlsConfig({ key: a.key }), 'does not match', def.cert, a.key);
  invalid(tlsConfig({ sni: [{ hosts: ['b.test'], cert: b.cert, key: a.key }] }), 'does not match', b.cert, a.key);
  invalid(tlsConfig({ cert: def.key }), def.key, 'no PEM certificate');
  invalid(tlsConfig({ key: def.cert }), def.cert, 'no usable PEM private key');
  invalid(tlsConfig({ cert: join(pki.dir, 'missing.crt') }), 'missing.crt', 'ENOENT');
  const empty = join(pki.dir, 'empty.key');
  writeFileSync(empty, '');
  // createSecureContext itself accepts an empty key (and then fails every handshake).
  invalid(tlsConfig({ key: empty }), empty, 'no usable PEM private key');
});

test('a mismatched pair written on reload keeps the previous certificate serving, warns once, then a good pair is taken', async () => {
  const dir = join(pki.dir, 'mismatch');
  mkdirSync(dir);
  const crt = join(dir, 'tls.crt');
  const key = join(dir, 'tls.key');
  copyFileSync(a.cert, crt);
  copyFileSync(a.key, key);
  const { log, warnings } = captureLog();
  const certs = new ListenerCertificates(tlsConfig({ sni: [{ hosts: ['a.test'], cert: crt, key }] }), log);
  const l = await listen(certs);
  try {
    const next = pki.issue('a3', { hosts: ['a.test', 'a3.test'] });
    // The certificate arrives first; its key is late. Each file is replaced
    // whole (a rename), so the only failure seen is the mismatch.
    replace(crt, next.cert);
    await waitFor('a warning about the mismatched pair', () => warnings().length > 0, 5_000);
    assert.match(warnings()[0]!.reason ?? '', /does not match/);
    assert.equal(await servedSan(l.port, { servername: 'a.test' }), 'DNS:a.test', 'the previous certificate still serves');
    // Several more ticks fail the same way: still one warning.
    await new Promise((r) => setTimeout(r, RELOAD_MS * 5));
    assert.equal(warnings().length, 1);

    replace(key, next.key);
    await waitFor('the new pair', async () => (await servedSan(l.port, { servername: 'a.test' })) === 'DNS:a.test, DNS:a3.test', 5_000);
    assert.equal(warnings().length, 1);
  } finally {
    await l.close();
  }
});

/** The handshake's outcome for a client held to some protocol versions. */
async function handshake(port: number, opts: tls.ConnectionOptions): Promise<string> {
  try {
    const socket = await connect(port, opts);
    const protocol = socket.getProtocol() ?? '';
    socket.destroy();
    return protocol;
  } catch (err) {
    return `refused: ${(err as NodeJS.ErrnoException).code}`;
  }
}

test('TLS 1.2 is the minimum; minVersion TLSv1.3 refuses TLS 1.2 clients, SNI hosts included', async () => {
  const sni = [{ hosts: ['a.test'], cert: a.cert, key: a.key }];
  const l12 = await listen(new ListenerCertificates(tlsConfig({ sni }), silentLogger()));
  try {
    // OpenSSL 3 clients refuse TLS 1.1 themselves unless the security level is 0;
    // at 0 this client offers it, so the refusal is the server's.
    const old = { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' } as const;
    assert.equal(await handshake(l12.port, old), 'refused: ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION');
    assert.equal(await handshake(l12.port, { ...old, servername: 'a.test' }), 'refused: ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION');
    assert.ok(l12.clientErrors.some((e) => /unsupported protocol/.test(e.message)), 'the server refused the protocol');
    assert.equal(await handshake(l12.port, { maxVersion: 'TLSv1.2' }), 'TLSv1.2');
  } finally {
    await l12.close();
  }

  const l13 = await listen(new ListenerCertificates(tlsConfig({ sni, minVersion: 'TLSv1.3' }), silentLogger()));
  try {
    assert.equal(await handshake(l13.port, { maxVersion: 'TLSv1.2' }), 'refused: ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION');
    assert.equal(await handshake(l13.port, { maxVersion: 'TLSv1.2', servername: 'a.test' }), 'refused: ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION');
    assert.equal(await handshake(l13.port, { servername: 'a.test' }), 'TLSv1.3');
  } finally {
    await l13.close();
  }
});
