import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import YAML from 'yaml';
import { ERRORS } from '../common/errors.js';
import { loadConfig, parseConfig } from '../proxy/config.js';

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
