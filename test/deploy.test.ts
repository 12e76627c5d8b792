import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import YAML from 'yaml';
import { ERRORS } from '../common/errors.js';
import { loadConfig, parseConfig } from '../config/config.js';
import { parseExperiment } from '../control/spec.js';
import { createPki } from './support/certs.js';

test('the Kubernetes ConfigMap holds a valid sluice.yaml', () => {
  const docs = YAML.parseAllDocuments(readFileSync('deploy/kubernetes/sluice.yaml', 'utf8')).map((d) => d.toJS());
  const cm = docs.find((d) => d.kind === 'ConfigMap');
  const config = parseConfig(cm.data['sluice.yaml'], { env: { SLUICE_TOKEN: 'secret' } });
  assert.equal(config.admin.token, 'secret');
  assert.equal(config.routes[0]!.name, 'checkout');
});

test('examples/sluice.yaml is valid with and without a token', () => {
  assert.equal(loadConfig('examples/sluice.yaml', { env: {} }).admin.token, null);
  assert.equal(loadConfig('examples/sluice.yaml', { env: { SLUICE_TOKEN: 't' } }).admin.token, 't');
});

test('the gRPC examples are valid: a sidecar config, an ingress with TLS and mTLS, an A/B experiment', () => {
  const c = loadConfig('examples/grpc/sluice.yaml', { env: {} });
  assert.deepEqual(c.routes[0]!.versions.map((v) => v.protocol), ['h2c', 'h2c']);
  // The TLS example names files: validate it against a throwaway PKI laid out as it expects.
  const dir = mkdtempSync(path.join(tmpdir(), 'sluice-grpc-example-'));
  try {
    const pki = createPki();
    after(() => pki.remove());
    const place = (sub: string, pair: { cert: string; key: string }) => {
      mkdirSync(path.join(dir, sub));
      copyFileSync(pair.cert, path.join(dir, sub, 'tls.crt'));
      copyFileSync(pair.key, path.join(dir, sub, 'tls.key'));
    };
    place('default', pki.issue('default', { hosts: ['localhost'] }));
    place('checkout', pki.issue('checkout', { hosts: ['checkout.example.com'] }));
    place('client', pki.issue('client', { hosts: ['sluice'], client: true }));
    copyFileSync(pki.caCert, path.join(dir, 'upstream-ca.crt'));
    const t = loadConfig('examples/grpc/sluice-tls.yaml', { env: { TLS_DIR: dir } });
    assert.equal(t.listen.tls?.sni[0]?.hosts[0], 'checkout.example.com');
    assert.equal(t.routes[0]!.versions[0]!.protocol, 'h2');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const doc = parseExperiment(readFileSync('examples/grpc/checkout-ab.yaml', 'utf8'));
  assert.equal(doc.spec.testingPattern, 'A/B');
});

test('every error code is documented in docs/errors.md', () => {
  const doc = readFileSync('docs/errors.md', 'utf8');
  for (const code of Object.keys(ERRORS)) assert.ok(doc.includes(`\`${code}\``), `${code} missing from docs/errors.md`);
});

test('the Redis-mode manifests: a valid sluice.yaml, proxies and control on the same Redis, and only environment variables Sluice reads', () => {
  const docs = YAML.parseAllDocuments(readFileSync('deploy/kubernetes/redis-mode.yaml', 'utf8')).map((d) => d.toJS());
  const cm = docs.find((d) => d.kind === 'ConfigMap');
  const config = parseConfig(cm.data['sluice.yaml'], { env: { SLUICE_TOKEN: 'secret' } });
  assert.equal(config.routes[0]!.name, 'checkout');
  const container = (name: string) => docs.find((d) => d.kind === 'Deployment' && d.metadata.name === name).spec.template.spec.containers[0];
  const proxy = container('sluice-proxy');
  const control = container('sluice-control');
  assert.equal(proxy.args[0], 'proxy');
  assert.equal(control.args[0], 'control');
  const env = (c: { env: Array<{ name: string; value?: string }> }) => Object.fromEntries(c.env.map((e) => [e.name, e.value ?? '(secret)']));
  assert.equal(env(proxy).SLUICE_REDIS_URL, env(control).SLUICE_REDIS_URL);
  assert.equal(env(proxy).SLUICE_PIN_TOKEN, env(control).SLUICE_PIN_TOKEN);
  // A variable the code does not read would be silently ignored: every one must appear in the sources.
  const sources = ['cli/sluice.ts', 'cli/run-shared.ts', 'proxy/proxy-server.ts', 'config/config.ts'].map((f) => readFileSync(f, 'utf8')).join('\n');
  for (const c of [proxy, control]) for (const name of Object.keys(env(c))) assert.ok(sources.includes(name), `${name} is not read by Sluice`);
});
