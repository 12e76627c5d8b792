/**
 * Issue 11, item 13: YAML alias bombs ("billion laughs") and other parser
 * failures are refused as the document's own error — SLUICE_CONFIG_INVALID
 * from `sluice start`, SLUICE_EXPERIMENT_INVALID (400) from the admin API —
 * never as an uncaught ReferenceError or a 500.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { SluiceError } from '../common/errors.js';
import { parseExperiment } from '../control/spec.js';
import { parseConfig } from '../config/config.js';
import { Pool, startSluice, startUpstream } from './support/helpers.js';
import { sluice } from './support/processes.js';

/** Nine levels of nine aliases each: 9^9 (387 million) strings once expanded. */
function billionLaughs(prefix = ''): string {
  const lines = [`${prefix}l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]`];
  for (let i = 1; i <= 9; i++) lines.push(`${prefix}l${i}: &l${i} [${Array.from({ length: 9 }, () => `*l${i - 1}`).join(',')}]`);
  return lines.join('\n') + '\n';
}

function tempFile(t: TestContext, name: string, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-yaml-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

function assertRefused(fn: () => unknown, code: string): SluiceError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof SluiceError, `expected a SluiceError, got ${String(err)}`);
    assert.equal(err.code, code);
    return err;
  }
  assert.fail('expected the document to be refused');
}

describe('YAML alias bombs', () => {
  it('a config alias bomb is SLUICE_CONFIG_INVALID with a message naming the cause', () => {
    const err = assertRefused(() => parseConfig(billionLaughs()), 'SLUICE_CONFIG_INVALID');
    assert.match(err.details.map((d) => d.message).join('\n'), /alias/);
  });

  it('an experiment alias bomb is SLUICE_EXPERIMENT_INVALID', () => {
    const err = assertRefused(() => parseExperiment(`kind: Experiment\nname: bomb\n${billionLaughs()}`), 'SLUICE_EXPERIMENT_INVALID');
    assert.match(err.details.map((d) => d.message).join('\n'), /alias/);
  });

  it('nesting too deep for the parser is refused the same way', () => {
    const deep = `a: ${'['.repeat(20_000)}${']'.repeat(20_000)}\n`;
    assertRefused(() => parseConfig(deep), 'SLUICE_CONFIG_INVALID');
    assertRefused(() => parseExperiment(deep), 'SLUICE_EXPERIMENT_INVALID');
  });

  it('ordinary anchors still load', () => {
    const anchored = parseConfig(`routes:
  - name: a
    versions: &vs [{ name: v1, url: "http://127.0.0.1:1" }]
  - name: b
    match: { pathPrefix: /b }
    versions: *vs
`);
    assert.equal(anchored.routes[1]!.versions[0]!.name, 'v1');
  });

  it('sluice start with an alias bomb exits 1 with SLUICE_CONFIG_INVALID, not an uncaught exception', async (t) => {
    const file = tempFile(t, 'sluice.yaml', billionLaughs());
    const p = sluice(t, ['start', '-c', file]);
    assert.equal(await p.exited, 1);
    assert.match(p.output(), /SLUICE_CONFIG_INVALID/);
    assert.match(p.output(), /alias/);
    assert.doesNotMatch(p.output(), /ReferenceError|\n\s+at /);
  });

  it('sluice validate with an alias bomb exits 1 listing the problem', async (t) => {
    const file = tempFile(t, 'exp.yaml', `kind: Experiment\nname: bomb\n${billionLaughs()}`);
    const p = sluice(t, ['validate', '-f', file]);
    assert.equal(await p.exited, 1);
    assert.match(p.output(), /invalid/);
    assert.match(p.output(), /alias/);
    assert.doesNotMatch(p.output(), /ReferenceError|\n\s+at /);
  });

  it('PUT /experiments/NAME with an alias bomb answers 400 SLUICE_EXPERIMENT_INVALID and the API keeps serving', async (t) => {
    const upstream = await startUpstream('v1');
    const running = await startSluice({ routes: [{ name: 'shop', versions: [{ name: 'v1', url: upstream.url }] }] });
    const admin = new Pool(running.adminUrl, { connections: 1 });
    t.after(async () => {
      await admin.close();
      await running.close();
      await upstream.close();
    });
    for (const type of ['application/yaml', 'text/plain']) {
      const r = await admin.request({ method: 'PUT', path: '/experiments/bomb', headers: { 'content-type': type }, body: `kind: Experiment\nname: bomb\n${billionLaughs()}` });
      const body = (await r.body.json()) as { error: { code: string; message: string; details: Array<{ message: string }> } };
      assert.equal(r.statusCode, 400, JSON.stringify(body));
      assert.equal(body.error.code, 'SLUICE_EXPERIMENT_INVALID');
      assert.match(body.error.details.map((d) => d.message).join('\n'), /alias/);
    }
    const health = await admin.request({ method: 'GET', path: '/healthz' });
    assert.equal(health.statusCode, 200);
    await health.body.dump();
  });
});
