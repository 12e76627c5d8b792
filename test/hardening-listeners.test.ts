/**
 * Issue 11, item 1: unauthenticated command execution.
 *  - Every listener that can change state (the admin API of `start`, `proxy`
 *    and `demo`, the control API of `control` and of `start --redis`) refuses
 *    to start beyond loopback without a token — in every mode, before it
 *    listens. Nothing here ever binds beyond loopback: a refusal happens
 *    before listening, and an accepted token is shown by the process getting
 *    as far as the bind (which fails on a port the test holds on 127.0.0.1).
 *  - `--token-file` / SLUICE_TOKEN_FILE: the token comes from a file and
 *    stays out of `ps`.
 *  - exec tasks are refused unless the operator allows them (`--allow-exec`,
 *    SLUICE_ALLOW_EXEC=1), and a command never sees Sluice's secrets.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { silentLogger } from '../common/logger.js';
import { pendingStatus } from '../control/lifecycle.js';
import { validateExperiment } from '../control/spec.js';
import { withoutSecrets } from '../control/tasks/env.js';
import { runTask } from '../control/tasks/index.js';
import { freePort, Pool, startSluice, startUpstream, waitFor } from './support/helpers.js';
import { endlessAb, json, sluice, startShop, type SluiceProcess } from './support/processes.js';
import { startRedis } from './support/redis-server.js';

/** The environment of a child with no token from the test runner's own environment. */
const NO_TOKEN = { SLUICE_TOKEN: '', SLUICE_TOKEN_FILE: '', SLUICE_ALLOW_EXEC: '', SLUICE_PIN_TOKEN: '' };

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-listeners-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Whether something accepts connections on 127.0.0.1:port (a wildcard bind does). */
function accepting(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Waits until the process exits or starts accepting on `port`, whichever
 * comes first: a listener that binds is a failure at once, not a timeout.
 */
async function exitOrListen(p: SluiceProcess, port: number): Promise<'listening' | NodeJS.Signals | number | null> {
  let exit: NodeJS.Signals | number | null | undefined;
  void p.exited.then((how) => (exit = how));
  return waitFor(`sluice to exit or listen on ${port}`, async () => {
    if (exit !== undefined) return { how: exit };
    if (await accepting(port)) return { how: 'listening' as const };
    return null;
  }, 20_000, 50).then((r) => r.how);
}

async function assertRefusedBeyondLoopback(p: SluiceProcess, port: number, what: RegExp): Promise<void> {
  const how = await exitOrListen(p, port);
  assert.equal(how, 1, `expected exit 1 before listening, got ${String(how)}: ${p.output()}`);
  assert.match(p.output(), /SLUICE_CONFIG_INVALID/);
  assert.match(p.output(), what);
  assert.match(p.output(), /token/i);
}

/** Holds 127.0.0.1:port so that a later bind of 0.0.0.0:port fails with EADDRINUSE; released after the test. */
async function holdPort(t: TestContext): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => srv.close(() => resolve())));
  return (srv.address() as net.AddressInfo).port;
}

describe('every state-changing listener refuses to start beyond loopback without a token', () => {
  it('sluice start: the admin API', async (t) => {
    const { config } = await startShop(t, [{}, {}]);
    const [traffic, admin] = await Promise.all([freePort(), freePort()]);
    const p = sluice(t, ['start', '-c', config, '--listen', `127.0.0.1:${traffic}`, '--admin-listen', `0.0.0.0:${admin}`], NO_TOKEN);
    await assertRefusedBeyondLoopback(p, admin, /admin/);
  });

  it('sluice start --redis: the control API (SLUICE_CONTROL_LISTEN)', async (t) => {
    const redis = await startRedis(t);
    if (redis === null) return;
    const { config } = await startShop(t, [{}, {}]);
    const [traffic, admin, control] = await Promise.all([freePort(), freePort(), freePort()]);
    const p = sluice(t, ['start', '-c', config, '--redis', redis.url, '--redis-prefix', `listen${process.pid}:`, '--listen', `127.0.0.1:${traffic}`, '--admin-listen', `127.0.0.1:${admin}`], {
      ...NO_TOKEN,
      SLUICE_CONTROL_LISTEN: `0.0.0.0:${control}`,
    });
    await assertRefusedBeyondLoopback(p, control, /control API/);
    assert.equal(await accepting(traffic), false, 'the proxy did not start either');
  });

  it('sluice proxy: the admin API', async (t) => {
    const { config } = await startShop(t, [{}, {}]);
    const [traffic, admin] = await Promise.all([freePort(), freePort()]);
    const p = sluice(t, ['proxy', '-c', config, '--redis', 'redis://127.0.0.1:1', '--listen', `127.0.0.1:${traffic}`, '--admin-listen', `0.0.0.0:${admin}`], NO_TOKEN);
    await assertRefusedBeyondLoopback(p, admin, /admin/);
  });

  it('sluice control: the control API', async (t) => {
    const control = await freePort();
    const p = sluice(t, ['control', '--redis', 'redis://127.0.0.1:1', '--admin-listen', `0.0.0.0:${control}`], NO_TOKEN);
    await assertRefusedBeyondLoopback(p, control, /control API|admin/);
  });

  it('sluice demo: the admin API (SLUICE_ADMIN_LISTEN)', async (t) => {
    const [traffic, admin] = await Promise.all([freePort(), freePort()]);
    const p = sluice(t, ['demo', '--qps', '1'], { ...NO_TOKEN, SLUICE_LISTEN: `127.0.0.1:${traffic}`, SLUICE_ADMIN_LISTEN: `0.0.0.0:${admin}` });
    await assertRefusedBeyondLoopback(p, admin, /admin/);
  });

  it('with a token from --token-file or SLUICE_TOKEN_FILE, the same listeners get as far as binding', async (t) => {
    const dir = tempDir(t);
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, 'file-token-7f3a\n');
    const held = await holdPort(t);
    const control = sluice(t, ['control', '--redis', 'redis://127.0.0.1:1', '--admin-listen', `0.0.0.0:${held}`, '--token-file', tokenFile], NO_TOKEN);
    const { config } = await startShop(t, [{}, {}]);
    const traffic = await freePort();
    const start = sluice(t, ['start', '-c', config, '--listen', `127.0.0.1:${traffic}`, '--admin-listen', `0.0.0.0:${held}`], { ...NO_TOKEN, SLUICE_TOKEN_FILE: tokenFile });
    for (const p of [control, start]) {
      assert.notEqual(await p.exited, 0);
      assert.doesNotMatch(p.output(), /SLUICE_CONFIG_INVALID/, p.output());
      assert.match(p.output(), /EADDRINUSE|already in use/, p.output());
    }
  });

  it('a token file that is empty, unreadable, or given beside a token is refused before starting', async (t) => {
    const dir = tempDir(t);
    const empty = join(dir, 'empty');
    writeFileSync(empty, '\n');
    const { config } = await startShop(t, [{}, {}]);
    const cases: Array<[string[], Record<string, string>, RegExp]> = [
      [['--token-file', empty], {}, /empty/],
      [['--token-file', join(dir, 'missing')], {}, /cannot read the token file/],
      [['--token-file', empty, '--token', 'x'], {}, /not both/],
      [[], { SLUICE_TOKEN: 'a', SLUICE_TOKEN_FILE: empty }, /not both/],
    ];
    for (const [flags, env, message] of cases) {
      const p = sluice(t, ['start', '-c', config, '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', ...flags], { ...NO_TOKEN, ...env });
      assert.equal(await p.exited, 1, p.output());
      assert.match(p.output(), message);
    }
  });
});

describe('--token-file keeps the token out of ps and is enforced', () => {
  it('the admin API and the CLI client read the token from files; the command line never shows it', async (t) => {
    const dir = tempDir(t);
    const tokenFile = join(dir, 'token');
    const token = 'ps-hidden-token-91c2';
    writeFileSync(tokenFile, `${token}\n`);
    const { config } = await startShop(t, [{}, {}]);
    const [traffic, admin] = await Promise.all([freePort(), freePort()]);
    const p = sluice(t, ['start', '-c', config, '--listen', `127.0.0.1:${traffic}`, '--admin-listen', `127.0.0.1:${admin}`, '--token-file', tokenFile], NO_TOKEN);
    const pool = new Pool(`http://127.0.0.1:${admin}`, { connections: 1 });
    t.after(() => pool.close());
    await waitFor('the admin API', async () => (await json(pool, 'GET', '/healthz')).status === 200);
    assert.equal((await json(pool, 'GET', '/routes')).status, 401);
    const authed = await pool.request({ method: 'GET', path: '/routes', headers: { authorization: `Bearer ${token}` } });
    assert.equal(authed.statusCode, 200);
    await authed.body.dump();
    assert.doesNotMatch(readFileSync(`/proc/${p.process.pid}/cmdline`, 'utf8'), new RegExp(token));

    const cli = sluice(t, ['get', 'routes', '--admin', `http://127.0.0.1:${admin}`, '--token-file', tokenFile], NO_TOKEN);
    assert.equal(await cli.exited, 0, cli.output());
    assert.match(cli.output(), /shop/);
    const viaEnv = sluice(t, ['get', 'routes', '--admin', `http://127.0.0.1:${admin}`], { ...NO_TOKEN, SLUICE_TOKEN_FILE: tokenFile });
    assert.equal(await viaEnv.exited, 0, viaEnv.output());
  });
});

// ---------------------------------------------------------------- exec tasks

/** The never-deciding A/B of the process tests (support/processes.ts), with one exec start task. */
function execExperiment(name: string, command: string[], extra: Record<string, unknown> = {}) {
  const doc = endlessAb(name, 60, 10);
  return { ...doc, spec: { ...doc.spec, tasks: { start: [{ task: 'exec', name: 'dump-env', command, ...extra }] } } };
}

describe('exec tasks are opt-in and never see Sluice secrets', () => {
  it('applying an experiment with an exec task is refused (403 SLUICE_EXEC_DISABLED, each task listed) unless allowed', async (t) => {
    const upstream = await startUpstream('v1');
    t.after(() => upstream.close());
    const dir = tempDir(t);
    const marker = join(dir, 'ran');
    const routes = [{ name: 'shop', versions: [{ name: 'v1', url: upstream.url }, { name: 'v2', url: upstream.url }] }];
    const running = await startSluice({ routes });
    const admin = new Pool(running.adminUrl, { connections: 1 });
    t.after(async () => {
      await admin.close();
      await running.close();
    });
    const r = await json(admin, 'PUT', '/experiments/ran', execExperiment('ran', ['touch', marker]));
    assert.equal(r.status, 403, JSON.stringify(r.body));
    assert.equal(r.body.error.code, 'SLUICE_EXEC_DISABLED');
    assert.deepEqual(r.body.error.details.map((d: { path: string }) => d.path), ['spec.tasks.start[0]']);
    assert.match(r.body.error.message, /--allow-exec|SLUICE_ALLOW_EXEC/);
    assert.equal((await json(admin, 'GET', '/experiments/ran')).status, 404, 'nothing was created');
    assert.equal(existsSync(marker), false);

    const allowed = await startSluice({ routes }, { allowExec: true });
    const admin2 = new Pool(allowed.adminUrl, { connections: 1 });
    t.after(async () => {
      await admin2.close();
      await allowed.close();
    });
    assert.equal((await json(admin2, 'PUT', '/experiments/ran', execExperiment('ran', ['touch', marker]))).status, 201);
    await waitFor('the allowed exec task to run', () => existsSync(marker));
  });

  it('an exec task that reaches a process without the opt-in fails with SLUICE_EXEC_DISABLED and runs nothing', async (t) => {
    const dir = tempDir(t);
    const marker = join(dir, 'ran');
    const doc = validateExperiment(execExperiment('runtime', ['touch', marker]));
    const ctx = { doc, status: pendingStatus(doc, new Date().toISOString()), versionUrls: {}, proxyUrl: null, pinToken: null, env: {}, log: silentLogger() };
    const run = await runTask('start', doc.spec.tasks.start[0]!, ctx);
    assert.equal(run.state, 'failed');
    assert.equal(run.error?.code, 'SLUICE_EXEC_DISABLED');
    assert.equal(existsSync(marker), false);
  });

  it('an exec command does not inherit SLUICE_TOKEN, SLUICE_PIN_TOKEN or the pin token under another name, whatever env the context holds', async (t) => {
    const dir = tempDir(t);
    const out = join(dir, 'env.txt');
    const doc = validateExperiment(execExperiment('direct', ['sh', '-c', 'env > "$OUT"'], { env: { OUT: out } }));
    const env = { PATH: process.env.PATH, SLUICE_TOKEN: 'admin-secret-1', SLUICE_PIN_TOKEN: 'pin-secret-2', PIN_COPY: 'pin-secret-2', KEPT: 'yes' };
    const ctx = { doc, status: pendingStatus(doc, new Date().toISOString()), versionUrls: {}, proxyUrl: null, pinToken: 'pin-secret-2', env, allowExec: true, log: silentLogger() };
    const run = await runTask('start', doc.spec.tasks.start[0]!, ctx);
    assert.equal(run.state, 'succeeded', JSON.stringify(run.error));
    const dumped = readFileSync(out, 'utf8');
    assert.match(dumped, /^KEPT=yes$/m);
    assert.doesNotMatch(dumped, /admin-secret-1|pin-secret-2/);
  });

  it('sluice start --allow-exec: the command runs without SLUICE_TOKEN, the pin token, the token file or a copy of them; {{env.SLUICE_PIN_TOKEN}} is not resolved', async (t) => {
    const dir = tempDir(t);
    const out = join(dir, 'env.txt');
    const tokenFile = join(dir, 'token');
    const fileToken = 'from-file-token-55d1';
    writeFileSync(tokenFile, fileToken);
    const pin = 'pin-token-secret-0b7e';
    const { config } = await startShop(t, [{}, {}]);
    const [traffic, adminPort] = await Promise.all([freePort(), freePort()]);
    sluice(t, ['start', '-c', config, '--listen', `127.0.0.1:${traffic}`, '--admin-listen', `127.0.0.1:${adminPort}`, '--token-file', tokenFile, '--allow-exec'], {
      ...NO_TOKEN,
      SLUICE_PIN_TOKEN: pin,
      COPY_OF_PIN: pin,
      COPY_OF_TOKEN: fileToken,
      HARMLESS: 'still-here',
    });
    const admin = new Pool(`http://127.0.0.1:${adminPort}`, { connections: 1 });
    t.after(() => admin.close());
    const call = async (method: string, path: string, body?: unknown) => {
      const r = await admin.request({ method: method as 'GET', path, headers: { authorization: `Bearer ${fileToken}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
      const text = await r.body.text();
      return { status: r.statusCode, body: text ? JSON.parse(text) : null };
    };
    await waitFor('the admin API', async () => (await call('GET', '/healthz')).status === 200);
    const applied = await call('PUT', '/experiments/env', execExperiment('env', ['sh', '-c', 'env > "$OUT"'], { env: { OUT: out } }));
    assert.equal(applied.status, 201, JSON.stringify(applied.body));
    const dumped = await waitFor('the exec task to write its environment', () => (existsSync(out) && readFileSync(out, 'utf8').includes('SLUICE_EXPERIMENT=') ? readFileSync(out, 'utf8') : null));
    assert.match(dumped, /^HARMLESS=still-here$/m, 'the rest of the environment is passed');
    assert.match(dumped, /^SLUICE_EXPERIMENT=env$/m);
    for (const secret of [fileToken, pin]) assert.ok(!dumped.includes(secret), `a secret reached the command:\n${dumped}`);
    assert.doesNotMatch(dumped, /^(SLUICE_TOKEN|SLUICE_TOKEN_FILE|SLUICE_PIN_TOKEN|COPY_OF_PIN|COPY_OF_TOKEN)=/m);

    await call('DELETE', '/experiments/env');
    const templated = await call('PUT', '/experiments/tpl', execExperiment('tpl', ['sh', '-c', 'echo "$0" > "$OUT"', '{{env.SLUICE_PIN_TOKEN}}'], { env: { OUT: out } }));
    assert.equal(templated.status, 201, JSON.stringify(templated.body));
    const failed = await waitFor('the templated exec task to fail', async () => {
      const runs = (await call('GET', '/experiments/tpl')).body?.status?.tasks as Array<{ state: string; error: { message: string } | null }> | undefined;
      return runs?.find((r) => r.state === 'failed');
    });
    assert.match(failed.error!.message, /SLUICE_PIN_TOKEN/);
    assert.ok(!readFileSync(out, 'utf8').includes(pin));
  });

  it('withoutSecrets: a live view that hides the secret names, copies of secret values and a Redis URL with a password', () => {
    const env: Record<string, string | undefined> = {
      SLUICE_TOKEN: 'a', SLUICE_PIN_TOKEN: 'b', SLUICE_TOKEN_FILE: '/run/secrets/t', OTHER: 'a', PATH: '/bin',
      SLUICE_REDIS_URL: 'redis://:hunter2@127.0.0.1:6379',
    };
    const view = withoutSecrets(env, ['a', 'b', null]);
    assert.deepEqual(Object.keys(view).sort(), ['PATH']);
    assert.equal(view.SLUICE_TOKEN, undefined);
    assert.equal('OTHER' in view, false);
    env.LATER = 'seen';
    assert.equal(view.LATER, 'seen');
    assert.equal(withoutSecrets({ SLUICE_REDIS_URL: 'redis://127.0.0.1:6379' }, []).SLUICE_REDIS_URL, 'redis://127.0.0.1:6379');
  });
});
