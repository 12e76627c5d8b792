/**
 * The dashboard in Redis mode (issue 15): real `sluice proxy` and two
 * `sluice control` processes against a real redis-server.
 *
 *  - a proxy's dashboard shows its own routes and live counters, runs no
 *    experiments and offers no weight edits (weights are the control
 *    plane's);
 *  - both control replicas' feeds follow the experiment (the standby reads
 *    the shared store), flagged leader / standby;
 *  - the leader is SIGKILLed: its streams end; the standby's stream goes on
 *    without a gap or a step back, turns leader, and shows the iterations
 *    the new leader runs; a page that reconnects there is right from its
 *    first events;
 *  - `sluice control --dashboard read-only` serves the read-only page.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { freePort, Pool, waitFor } from './support/helpers.js';
import { endlessAb, json, sluice, startShop, steadyLoad } from './support/processes.js';
import { startRedis } from './support/redis-server.js';
import { openEvents } from './support/sse.js';

const LEASE_TTL_MS = 1500;

test('Redis mode: the proxy\'s dashboard has its own routes and counters; the control replicas\' feeds survive a leader failover', { timeout: 60_000 }, async (t) => {
  const redis = await startRedis(t);
  if (redis === null) return;
  const { config } = await startShop(t, [{ conversionRate: 0.1, seed: 1 }, { conversionRate: 0.1, seed: 2 }]);
  const prefix = `dash${process.pid}:`;
  const [trafficPort, proxyAdminPort, ...controlPorts] = await Promise.all(Array.from({ length: 4 }, freePort));
  const proxy = sluice(t, ['proxy', '-c', config, '--redis', redis.url, '--redis-prefix', prefix, '--listen', `127.0.0.1:${trafficPort}`, '--admin-listen', `127.0.0.1:${proxyAdminPort}`]);
  const controls = controlPorts.map((port, i) => {
    const args = ['control', '--redis', redis.url, '--redis-prefix', prefix, '--admin-listen', `127.0.0.1:${port}`, '--lease-ttl', String(LEASE_TTL_MS)];
    const child = sluice(t, i === 1 ? [...args, '--dashboard', 'read-only'] : args);
    return { url: `http://127.0.0.1:${port}`, child, api: new Pool(`http://127.0.0.1:${port}`, { connections: 2 }) };
  });
  const proxyUrl = `http://127.0.0.1:${proxyAdminPort}`;
  const proxyAdmin = new Pool(proxyUrl, { connections: 2 });
  const traffic = new Pool(`http://127.0.0.1:${trafficPort}`, { connections: 4 });
  t.after(() => Promise.all([proxyAdmin, traffic, ...controls.map((c) => c.api)].map((p) => p.close())));

  let waiting = 'nothing answered yet';
  const leaderIndex = await waitFor('the proxy ready and one control leader seeing the route', async () => {
    const ready = await json(proxyAdmin, 'GET', '/readyz');
    if (ready.status !== 200) return void (waiting = `proxy /readyz ${ready.status} ${JSON.stringify(ready.body)}`);
    const views = await Promise.all(controls.map(async (c) => ({ leader: await json(c.api, 'GET', '/leader'), routes: await json(c.api, 'GET', '/routes') })));
    waiting = `controls: ${JSON.stringify(views.map((v) => ({ leader: v.leader.body, routes: v.routes.body?.routes?.length })))}`;
    if (views.some((v) => v.routes.body?.routes?.length !== 1)) return null;
    const leading = views.flatMap((v, i) => (v.leader.body?.leader === true ? [i] : []));
    // An object: index 0 would read as "not yet" to waitFor.
    return leading.length === 1 ? { index: leading[0]! } : null;
  }, 30_000, 50).catch((err: Error) => {
    // Say what was awaited, which process was not there, and what each wrote.
    const outputs = [['proxy', proxy], ...controls.map((c, i) => [`control ${i}`, c.child] as const)] as const;
    throw new Error(`${err.message}\nlast seen: ${waiting}\n${outputs.map(([name, p]) => `--- ${name} (exit ${p.process.exitCode ?? p.process.signalCode ?? 'none'}):\n${p.output().slice(-1500)}`).join('\n')}`);
  });
  const leader = controls[leaderIndex.index]!;
  const standby = controls[1 - leaderIndex.index]!;
  assert.equal((await json(leader.api, 'PUT', '/experiments/ab', endlessAb('ab', 0.5, 10_000))).status, 201);
  steadyLoad(t, traffic, 4, 2);

  // The second replica was started with --dashboard read-only.
  assert.match(await (await fetch(`${controls[1]!.url}/`)).text(), /<meta name="sluice-dashboard" content="read-only">/);
  assert.match(await (await fetch(`${controls[0]!.url}/`)).text(), /<meta name="sluice-dashboard" content="on">/);

  // The proxy: the page on its admin port, its own routes and live counters, no experiments, no weight edits.
  assert.match(await (await fetch(`${proxyUrl}/`)).text(), /<meta name="sluice-dashboard" content="on">/);
  const proxyFeed = await openEvents(proxyUrl, { experiment: 'ab' });
  t.after(() => proxyFeed.close());
  const proxyOverview = (await proxyFeed.next('overview')).data;
  assert.deepEqual(
    [proxyOverview.process.kind, proxyOverview.process.experiments, proxyOverview.process.weightEdits, proxyOverview.process.leader],
    ['proxy', false, false, null],
  );
  assert.deepEqual(proxyOverview.experiments, []);
  assert.deepEqual(proxyOverview.routes.map((r: { name: string }) => r.name), ['shop']);
  assert.equal((await proxyFeed.next('experiment')).data.missing, true);
  await proxyFeed.next('live', (d) => d.routes.shop?.versions.v1?.rps > 0, 15_000);

  // Both control replicas follow the experiment; the standby reads the shared store.
  const feeds = await Promise.all(controls.map((c) => openEvents(c.url, { experiment: 'ab' })));
  t.after(() => feeds.forEach((f) => f.close()));
  const [leaderFeed, standbyFeed] = [feeds[leaderIndex.index]!, feeds[1 - leaderIndex.index]!];
  assert.equal((await leaderFeed.next('overview')).data.process.leader, true);
  assert.equal((await standbyFeed.next('overview')).data.process.leader, false);
  const seen = (await standbyFeed.next('experiment', (d) => d.summary?.iteration >= 3, 15_000)).data.summary.iteration as number;
  const live = (await standbyFeed.next('live', (d) => d.routes.shop?.versions.v1?.rps > 0, 15_000)).data;
  assert.equal(live.routes.shop.replicas, 1, 'the control plane sums the replicas');

  // The leader dies: its streams end; the standby's goes on, turns leader, and the iterations go on there.
  leader.child.process.kill('SIGKILL');
  await leaderFeed.ended;
  await standbyFeed.next('overview', (d) => d.process.leader === true, 15_000);
  const beyond = (await standbyFeed.next('experiment', (d) => d.summary?.iteration >= seen + 3, 15_000)).data.summary.iteration as number;
  assert.ok(beyond >= seen + 3);
  const iterations = standbyFeed.events.filter((e) => e.event === 'experiment').map((e) => e.data.summary.iteration as number);
  for (let i = 1; i < iterations.length; i++) assert.ok(iterations[i]! >= iterations[i - 1]!, `the iteration went back: ${iterations.join(',')}`);
  assert.equal(standbyFeed.events.filter((e) => e.event === 'overview').at(-1)!.data.process.error, null);

  // A page that reconnects to the surviving replica (say through a Service) is right from its first events.
  const reconnected = await openEvents(standby.url, { experiment: 'ab' });
  t.after(() => reconnected.close());
  const first = (await reconnected.next('experiment')).data;
  assert.ok(first.summary.iteration >= beyond && first.summary.state === 'Running');
  assert.equal((await reconnected.next('overview')).data.process.leader, true);

});
