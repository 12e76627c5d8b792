/**
 * The traffic listener's certificates: a default pair and pairs chosen by SNI,
 * each held as a ready SecureContext so that choosing one per handshake is a
 * Map lookup. The files are polled and a pair is rebuilt when they change:
 * Kubernetes rotates a mounted secret in place (a `..data` symlink swapped to
 * a new directory), and a restart for a certificate would drop every
 * connection. A rebuild that fails keeps the previous certificate serving:
 * cert and key are replaced one after the other, so for a moment they do not
 * match, and an expired-soon certificate still beats none.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync, statSync, type Stats } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import tls from 'node:tls';
import { SluiceError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { ListenerTlsConfig } from '../config/types.js';

/** What identifies a file's version without reading it; the target's, as stat follows symlinks. */
interface FileVersion {
  readonly mtimeMs: number;
  readonly size: number;
  readonly ino: number;
  readonly dev: number;
}

interface Pair {
  /** Empty for the default pair, which has no hosts of its own. */
  readonly hosts: readonly string[];
  readonly certPath: string;
  readonly keyPath: string;
  context: tls.SecureContext;
  certPem: string;
  keyPem: string;
  /** The file versions `context` was built from. */
  cert: FileVersion;
  key: FileVersion;
  /** The last failed rebuild's message, so that a failure repeating every tick is logged once. */
  failure: string | null;
}

type MinVersion = ListenerTlsConfig['minVersion'];

export class ListenerCertificates {
  readonly #config: ListenerTlsConfig;
  readonly #log: Logger;
  readonly #default: Pair;
  readonly #pairs: readonly Pair[];
  readonly #exact = new Map<string, Pair>();
  /** `*.example.com` is kept under `example.com`. */
  readonly #wildcard = new Map<string, Pair>();
  readonly #servers = new Set<tls.Server>();
  #timer: NodeJS.Timeout | null = null;
  #closed = false;

  constructor(config: ListenerTlsConfig, log: Logger) {
    this.#config = config;
    this.#log = log;
    this.#default = loadPair([], config.cert, config.key, config.minVersion);
    const sni = config.sni.map((s) => loadPair(s.hosts, s.cert, s.key, config.minVersion));
    this.#pairs = [this.#default, ...sni];
    for (const pair of sni) {
      for (const h of pair.hosts) {
        const host = normalise(h);
        const [map, name] = host.startsWith('*.') ? [this.#wildcard, host.slice(2)] : [this.#exact, host];
        // The first entry naming a host wins, as the first matching route does.
        if (!map.has(name)) map.set(name, pair);
      }
    }
  }

  /**
   * Options for tls.createServer (or http2.createSecureServer): the default
   * pair, the minimum version, and the SNI choice. Clients without SNI get
   * the server's own context, which watch() keeps current.
   */
  serverOptions(): tls.TlsOptions {
    return {
      cert: this.#default.certPem,
      key: this.#default.keyPem,
      minVersion: this.#config.minVersion,
      SNICallback: this.#sni,
    };
  }

  /**
   * Polls the files every reloadMs and swaps in the pairs that changed; new
   * handshakes get them, existing connections keep what they negotiated.
   * Several servers may share one set of certificates.
   */
  watch(server: tls.Server): void {
    if (this.#closed) return;
    this.#servers.add(server);
    if (this.#timer === null) this.#schedule();
  }

  close(): void {
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#servers.clear();
  }

  // An arrow property: one function for every server and handshake.
  readonly #sni = (servername: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void): void => {
    const name = normalise(servername);
    let pair = this.#exact.get(name);
    if (pair === undefined) {
      const dot = name.indexOf('.');
      // dot > 0: `*.example.com` needs a label before `.example.com`.
      if (dot > 0) pair = this.#wildcard.get(name.slice(dot + 1));
    }
    // No context: the server's own (the default pair), as for a client
    // without SNI, so the two can never disagree.
    cb(null, pair?.context);
  };

  #schedule(): void {
    // A timeout chain, not an interval: a slow file system never stacks checks.
    this.#timer = setTimeout(() => {
      void this.#check().finally(() => {
        if (!this.#closed) this.#schedule();
      });
    }, this.#config.reloadMs);
    this.#timer.unref();
  }

  async #check(): Promise<void> {
    // One stat per path per tick: pairs may share files.
    const versions = new Map<string, Promise<FileVersion | Error>>();
    const versionOf = (path: string): Promise<FileVersion | Error> => {
      let v = versions.get(path);
      if (v === undefined) {
        v = stat(path).then(toVersion, (err: Error) => err);
        versions.set(path, v);
      }
      return v;
    };
    for (const pair of this.#pairs) {
      if (this.#closed) return;
      try {
        await this.#checkPair(pair, versionOf);
      } catch (err) {
        // Never an unhandled rejection from a timer: that would end the process.
        this.#failed(pair, `${pair.certPath}, ${pair.keyPath}: ${(err as Error).message}`);
      }
    }
  }

  async #checkPair(pair: Pair, versionOf: (path: string) => Promise<FileVersion | Error>): Promise<void> {
    // Stat before reading: a change landing after the stat is seen next tick.
    const [cert, key] = await Promise.all([versionOf(pair.certPath), versionOf(pair.keyPath)]);
    if (cert instanceof Error || key instanceof Error) {
      const err = (cert instanceof Error ? cert : key) as NodeJS.ErrnoException;
      const path = cert instanceof Error ? pair.certPath : pair.keyPath;
      return this.#failed(pair, `cannot stat ${path}: ${err.code ?? err.message}`);
    }
    if (sameVersion(cert, pair.cert) && sameVersion(key, pair.key)) {
      // Back to what is serving (a rotation undone): a later failure is news again.
      pair.failure = null;
      return;
    }
    let certPem: string;
    let keyPem: string;
    try {
      [certPem, keyPem] = await Promise.all([readFile(pair.certPath, 'utf8'), readFile(pair.keyPath, 'utf8')]);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      return this.#failed(pair, `cannot read ${e.path ?? `${pair.certPath} or ${pair.keyPath}`}: ${e.code ?? e.message}`);
    }
    if (this.#closed) return;
    let context: tls.SecureContext;
    try {
      context = buildContext(pair.certPath, certPem, pair.keyPath, keyPem, this.#config.minVersion);
    } catch (err) {
      return this.#failed(pair, (err as Error).message);
    }
    pair.context = context;
    pair.certPem = certPem;
    pair.keyPem = keyPem;
    pair.cert = cert;
    pair.key = key;
    pair.failure = null;
    if (pair === this.#default) {
      for (const server of this.#servers) {
        server.setSecureContext({
          cert: certPem,
          key: keyPem,
          minVersion: this.#config.minVersion,
          // setSecureContext makes new ticket keys unless given some: every
          // client would lose its resumable session at each rotation.
          ticketKeys: server.getTicketKeys(),
        });
      }
    }
    this.#log.info(
      { hosts: pair.hosts.length > 0 ? pair.hosts : 'default', cert: pair.certPath, key: pair.keyPath },
      'listener certificate reloaded',
    );
  }

  #failed(pair: Pair, message: string): void {
    if (message === pair.failure) return;
    pair.failure = message;
    this.#log.warn(
      { hosts: pair.hosts.length > 0 ? pair.hosts : 'default', cert: pair.certPath, key: pair.keyPath, reason: message },
      'listener certificate not reloaded: the previous one keeps serving; retrying',
    );
  }
}

function loadPair(hosts: readonly string[], certPath: string, keyPath: string, minVersion: MinVersion): Pair {
  let cert: FileVersion;
  let key: FileVersion;
  let certPem: string;
  let keyPem: string;
  try {
    // Versions first, as on reload: a change after this point is seen by the first check.
    cert = toVersion(statSync(certPath));
    key = toVersion(statSync(keyPath));
    certPem = readFileSync(certPath, 'utf8');
    keyPem = readFileSync(keyPath, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new SluiceError('SLUICE_TLS_INVALID', `cannot read ${e.path ?? `${certPath} or ${keyPath}`}: ${e.code ?? e.message}`);
  }
  const context = buildContext(certPath, certPem, keyPath, keyPem, minVersion);
  return { hosts, certPath, keyPath, context, certPem, keyPem, cert, key, failure: null };
}

/**
 * Each file is parsed on its own first, so that the error names the file at
 * fault: createSecureContext says only "DECODER routines::unsupported" for a
 * bad key, and accepts an empty cert or key (a context that fails every
 * handshake) — what a file caught mid-write may be.
 */
function buildContext(certPath: string, certPem: string, keyPath: string, keyPem: string, minVersion: MinVersion): tls.SecureContext {
  let x509: X509Certificate;
  try {
    if (!certPem.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no "-----BEGIN CERTIFICATE-----"');
    x509 = new X509Certificate(certPem);
  } catch (err) {
    throw invalid(`${certPath} holds no PEM certificate (${reason(err)})`);
  }
  let privateKey: ReturnType<typeof createPrivateKey>;
  try {
    if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(keyPem)) throw new Error('no "-----BEGIN PRIVATE KEY-----"');
    privateKey = createPrivateKey(keyPem);
  } catch (err) {
    throw invalid(`${keyPath} holds no usable PEM private key (${reason(err)})`);
  }
  if (!x509.checkPrivateKey(privateKey)) throw invalid(`the key ${keyPath} does not match the certificate ${certPath}`);
  try {
    return tls.createSecureContext({ cert: certPem, key: keyPem, minVersion });
  } catch (err) {
    // Past the checks above: a damaged certificate further down the chain.
    throw invalid(`${certPath} with ${keyPath}: ${reason(err)}`);
  }
}

function invalid(message: string): SluiceError {
  return new SluiceError('SLUICE_TLS_INVALID', `listener TLS: ${message}`);
}

function reason(err: unknown): string {
  const e = err as Error & { reason?: string };
  return e.reason ?? e.message;
}

function toVersion(s: Stats): FileVersion {
  return { mtimeMs: s.mtimeMs, size: s.size, ino: s.ino, dev: s.dev };
}

function sameVersion(a: FileVersion, b: FileVersion): boolean {
  return a.mtimeMs === b.mtimeMs && a.size === b.size && a.ino === b.ino && a.dev === b.dev;
}

/** Host names compare lower-case and without the trailing dot of a fully qualified name. */
function normalise(host: string): string {
  const h = host.toLowerCase();
  return h.endsWith('.') ? h.slice(0, -1) : h;
}
