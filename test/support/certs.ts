/**
 * A throwaway PKI for TLS tests, made with the `openssl` CLI: a CA and the
 * certificates it signs, as PEM files in a directory. EC P-256 keys, because
 * generating them costs a few milliseconds where RSA costs a noticeable
 * fraction of a second per key. Two PKIs made by two `createPki` calls share
 * nothing, so one is "untrusted" from the other's point of view.
 *
 * The portable two-step form (`req` for the key and CSR, then `x509 -req`) is
 * used rather than `req -x509 -CA`, which needs OpenSSL 3.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface IssueOptions {
  /** DNS names in the subjectAltName (`*.example.com` allowed); the first is also the CN. */
  readonly hosts: readonly string[];
  /** IP addresses in the subjectAltName (`127.0.0.1` for a client connecting without a servername). */
  readonly ips?: readonly string[];
  /** A client certificate (extendedKeyUsage clientAuth) instead of a server one. */
  readonly client?: boolean;
}

/** Paths of a PEM certificate and its PEM (PKCS#8) private key. */
export interface IssuedPair {
  readonly cert: string;
  readonly key: string;
}

export interface Pki {
  /** Where every file lives; `remove()` deletes it. */
  readonly dir: string;
  readonly caCert: string;
  readonly caKey: string;
  /** Signs a certificate for `name` (files `<name>.crt` and `<name>.key` in `dir`; issuing a name again replaces them). */
  issue(name: string, opts: IssueOptions): IssuedPair;
  /** The CA certificate's PEM text, for a client's `ca` option. */
  caPem(): string;
  remove(): void;
}

// Test certificates only live as long as a test run; a short life keeps a
// leaked one useless, and two days survives a run that crosses midnight.
const DAYS = '2';

function openssl(args: readonly string[], cwd: string): void {
  // stderr is kept so that a failure's exception carries openssl's complaint.
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

function serial(): string {
  // Unique serials: a client that caches certificates by issuer and serial
  // must not mistake a reissued certificate for the previous one.
  return `0x${randomBytes(12).toString('hex')}`;
}

/** A CA in `dir` (a new temporary directory when omitted). */
export function createPki(dir: string = mkdtempSync(join(tmpdir(), 'sluice-pki-'))): Pki {
  const caCert = join(dir, 'ca.crt');
  const caKey = join(dir, 'ca.key');
  // A config file of our own: the system openssl.cnf would add whatever
  // default extensions its distribution chose.
  const cnf = join(dir, 'openssl.cnf');
  writeFileSync(
    cnf,
    [
      '[req]',
      'distinguished_name = dn',
      'prompt = no',
      '[dn]',
      'CN = Sluice test CA',
      '[ca]',
      'basicConstraints = critical,CA:TRUE',
      'keyUsage = critical,keyCertSign,cRLSign',
      'subjectKeyIdentifier = hash',
      '',
    ].join('\n'),
  );
  openssl(
    ['req', '-x509', '-new', '-nodes', '-config', cnf, '-extensions', 'ca', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
      '-keyout', caKey, '-out', caCert, '-days', DAYS, '-set_serial', serial()],
    dir,
  );

  function issue(name: string, opts: IssueOptions): IssuedPair {
    if (!/^[\w.-]+$/.test(name)) throw new Error(`certificate name ${name} must be a plain file name`);
    const cert = join(dir, `${name}.crt`);
    const key = join(dir, `${name}.key`);
    const csr = join(dir, `${name}.csr`);
    const ext = join(dir, `${name}.ext`);
    const san = [...opts.hosts.map((h) => `DNS:${h}`), ...(opts.ips ?? []).map((ip) => `IP:${ip}`)];
    const cn = opts.hosts[0] ?? name;
    writeFileSync(
      ext,
      [
        'basicConstraints = critical,CA:FALSE',
        'keyUsage = critical,digitalSignature',
        `extendedKeyUsage = ${opts.client ? 'clientAuth' : 'serverAuth'}`,
        ...(san.length > 0 ? [`subjectAltName = ${san.join(',')}`] : []),
        'authorityKeyIdentifier = keyid',
        '',
      ].join('\n'),
    );
    openssl(['req', '-new', '-nodes', '-config', cnf, '-subj', `/CN=${cn}`, '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
      '-keyout', key, '-out', csr], dir);
    openssl(['x509', '-req', '-in', csr, '-CA', caCert, '-CAkey', caKey, '-set_serial', serial(), '-days', DAYS,
      '-extfile', ext, '-out', cert], dir);
    rmSync(csr);
    rmSync(ext);
    return { cert, key };
  }

  return {
    dir,
    caCert,
    caKey,
    issue,
    caPem: () => readFileSync(caCert, 'utf8'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
