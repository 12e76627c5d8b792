import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SluiceError } from '../common/errors.js';
import { validateConfig } from '../config/config.js';
import { Pool, startSluice, startUpstream } from './support/helpers.js';

test('with a token, admin calls need it except health, readiness and metrics', async (t) => {
  const up = await startUpstream('v1');
  const sluice = await startSluice({
    admin: { listen: '127.0.0.1:0', token: 's3cret' },
    routes: [{ name: 'r', versions: [{ name: 'v1', url: up.url }] }],
  });
  const admin = new Pool(sluice.adminUrl);
  t.after(async () => {
    await admin.close();
    await sluice.close();
    await up.close();
  });
  const call = async (method: string, path: string, headers: Record<string, string> = {}, body?: string) => {
    const r = await admin.request({ method: method as 'GET', path, headers, body });
    return { status: r.statusCode, body: await r.body.text() };
  };
  for (const open of ['/healthz', '/readyz', '/metrics']) assert.equal((await call('GET', open)).status, 200, open);
  for (const [method, path] of [['GET', '/stats'], ['GET', '/routes'], ['GET', '/routes/r'], ['PUT', '/routes/r/weights']] as const) {
    const r = await call(method, path, { 'content-type': 'application/json' }, method === 'PUT' ? '{"v1":100}' : undefined);
    assert.equal(r.status, 401, `${method} ${path}`);
    assert.equal(JSON.parse(r.body).error.code, 'SLUICE_UNAUTHORIZED');
  }
  assert.equal((await call('GET', '/routes', { authorization: 'Bearer wrong!' })).status, 401);
  assert.equal((await call('GET', '/routes', { authorization: 'Bearer s3cret' })).status, 200);
  const put = await call('PUT', '/routes/r/weights', { authorization: 'Bearer s3cret', 'content-type': 'application/json' }, '{"weights":{"v1":100}}');
  assert.equal(put.status, 200, put.body);
  assert.equal(JSON.parse(put.body).generation, 2);
  const missing = await call('GET', '/nope', { authorization: 'Bearer s3cret' });
  assert.equal(missing.status, 404);
  assert.equal(JSON.parse(missing.body).error.code, 'SLUICE_NOT_FOUND');
});

test('an admin listener beyond loopback without a token refuses to start', () => {
  assert.throws(
    () => validateConfig({ admin: { listen: '0.0.0.0:9901' }, routes: [{ name: 'r', versions: [{ name: 'v1', url: 'http://127.0.0.1:1' }] }] }, { env: {} }),
    (err: unknown) => err instanceof SluiceError && err.details.some((d) => d.path === 'admin.token'),
  );
});

test('GET /routes/NAME has the contract shape', async (t) => {
  const a = await startUpstream('a');
  const b = await startUpstream('b');
  const sluice = await startSluice({
    routes: [{ name: 'shop', versions: [{ name: 'v1', url: a.url }, { name: 'v2', url: `${b.url}/api` }], weights: { v1: 90, v2: 10 } }],
  });
  const admin = new Pool(sluice.adminUrl);
  t.after(async () => {
    await admin.close();
    await sluice.close();
    await a.close();
    await b.close();
  });
  const route = (await (await admin.request({ method: 'GET', path: '/routes/shop' })).body.json()) as Record<string, unknown>;
  assert.equal(route.name, 'shop');
  assert.equal(route.generation, 1);
  assert.deepEqual(route.weights, { v1: 90, v2: 10 });
  assert.deepEqual(route.versions, [
    { name: 'v1', url: a.url },
    { name: 'v2', url: `${b.url}/api` },
  ]);
  const list = (await (await admin.request({ method: 'GET', path: '/routes' })).body.json()) as { routes: unknown[] };
  assert.equal(list.routes.length, 1);
});
