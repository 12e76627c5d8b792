/**
 * TLS options towards https: versions, from their `tls` settings: a private
 * CA, a client certificate (mTLS), the name to verify. Read once per version
 * when its pool is made; certificates are always verified (there is no
 * switch to turn that off).
 */
import { readFileSync } from 'node:fs';
import { SluiceError } from '../common/errors.js';
import type { UpstreamTlsConfig } from '../config/types.js';

export interface UpstreamTlsOptions {
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
  readonly servername?: string;
  readonly minVersion: 'TLSv1.2';
}

function read(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new SluiceError('SLUICE_TLS_INVALID', `cannot read the upstream ${what} ${path}: ${(err as Error).message}`);
  }
}

export function upstreamTlsOptions(tls: UpstreamTlsConfig | null): UpstreamTlsOptions {
  if (tls === null) return { minVersion: 'TLSv1.2' };
  return {
    minVersion: 'TLSv1.2',
    ...(tls.ca !== null ? { ca: read(tls.ca, 'CA') } : {}),
    ...(tls.cert !== null ? { cert: read(tls.cert, 'client certificate') } : {}),
    ...(tls.key !== null ? { key: read(tls.key, 'client key') } : {}),
    ...(tls.servername !== null ? { servername: tls.servername } : {}),
  };
}

/** A stable key for pools: two versions with the same origin but other TLS settings must not share connections. */
export function tlsKey(tls: UpstreamTlsConfig | null): string {
  return tls === null ? '-' : JSON.stringify([tls.ca, tls.cert, tls.key, tls.servername]);
}
