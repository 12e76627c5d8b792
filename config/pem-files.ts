/**
 * PEM file references in `sluice.yaml` (listener certificates, upstream CAs and
 * client certificates). Checked at load, so a typo in a path is a config
 * error naming the field, not a TLS failure on the first connection. Only
 * the path is kept: the listener rereads its files when they change.
 */
import { readFileSync } from 'node:fs';
import { expected, type Problems } from '../common/validation.js';

export type PemKind = 'certificate' | 'key';

const MARKERS: Readonly<Record<PemKind, RegExp>> = {
  certificate: /-----BEGIN CERTIFICATE-----/,
  // PKCS#8, PKCS#1 (RSA), SEC1 (EC) and encrypted keys all end their label in "PRIVATE KEY".
  key: /-----BEGIN [A-Z ]*PRIVATE KEY-----/,
};

/** The path, after checking it names a readable PEM file holding a `kind`; '' when absent and not required. */
export function readPemFile(p: Problems, v: unknown, path: string, kind: PemKind, required: boolean): string {
  if (v == null || v === '') {
    if (required) p.add(path, 'required');
    return '';
  }
  if (typeof v !== 'string') return expected(p, path, `the path of a PEM ${kind} file`, v, '');
  let text: string;
  try {
    text = readFileSync(v, 'utf8');
  } catch (err) {
    p.add(path, `cannot read ${v}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    return v;
  }
  if (!MARKERS[kind].test(text)) p.add(path, `${v} holds no PEM ${kind} ("-----BEGIN ${kind === 'key' ? 'PRIVATE KEY' : 'CERTIFICATE'}-----")`);
  return v;
}
