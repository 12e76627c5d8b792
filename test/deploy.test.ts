import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import YAML from 'yaml';
import { ERRORS } from '../common/errors.js';
import { loadConfig, parseConfig } from '../config/config.js';

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
