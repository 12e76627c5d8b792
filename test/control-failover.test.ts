/**
 * Control-plane failover end to end (issue 4, acceptance 4): two
 * `sluice control` processes and one `sluice proxy` against a real
 * redis-server. The leader is SIGKILLed in the middle of an experiment; the
 * other replica takes over within the lease ttl + one renew interval, the
 * experiment goes on at the next iteration, and no iteration number is
 * executed twice — checked both in the stored history and in the
 * `iteration` log lines of the two processes. (A write with a stale fencing
 * token being rejected is tested directly in leader.test.ts.)
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ExperimentStatus } from '../control/status.js';
import { freePort, Pool, waitFor } from './support/helpers.js';
import { endlessAb, json, sluice, startShop, steadyLoad } from './support/processes.js';
import { startRedis } from './support/redis-server.js';

const LEASE_TTL_MS = 1500;
/** LeaderElection's default: followers try (and the leader renews) every ttl/3. */
const RENEW_MS = Math.floor(LEASE_TTL_MS / 3);
const INTERVAL_MS = 500;
/** Scheduling slack on a shared 2-core machine (and the test's own polling). */
const MARGIN_MS = 500;

/** The iteration numbers a control process logged for `experiment` (pino JSON lines on stdout). */
function loggedIterations(output: string, experiment: string): number[] {
  const out: number[] = [];
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const entry = JSON.parse(line) as { msg?: string; experiment?: string; iteration?: number };
      if (entry.msg === 'iteration' && entry.experiment === experiment && typeof entry.iteration === 'number') out.push(entry.iteration);
    } catch {
      // a partial line at the end of the buffer
    }
  }
  return out;
}

test('two control replicas: the leader SIGKILLed mid-experiment, the other takes over within the lease, the experiment continues at the next iteration, none runs twice', { timeout: 45_000 }, async (t) => {
  const redis = await startRedis(t);
  if (redis === null) return;
  // Same conversion rate on both versions and a minSamples far out of reach: the experiment runs iteration after iteration.
  const { config } = await startShop(t, [{ conversionRate: 0.1, seed: 1 }, { conversionRate: 0.1, seed: 2 }]);
  const prefix = `failover${process.pid}:`;
  const [trafficPort, proxyAdminPort, ...controlPorts] = await Promise.all(Array.from({ length: 4 }, freePort));
  sluice(t, ['proxy', '-c', config, '--redis', redis.url, '--redis-prefix', prefix, '--listen', `127.0.0.1:${trafficPort}`, '--admin-listen', `127.0.0.1:${proxyAdminPort}`]);
  const controls = controlPorts.map((port) => {
    const child = sluice(t, ['control', '--redis', redis.url, '--redis-prefix', prefix, '--admin-listen', `127.0.0.1:${port}`, '--lease-ttl', String(LEASE_TTL_MS), '--log-level', 'info']);
    return { port: port!, child, api: new Pool(`http://127.0.0.1:${port}`, { connections: 2 }) };
  });
  const proxyAdmin = new Pool(`http://127.0.0.1:${proxyAdminPort}`, { connections: 2 });
  const traffic = new Pool(`http://127.0.0.1:${trafficPort}`, { connections: 4 });
  t.after(() => Promise.all([proxyAdmin, traffic, ...controls.map((c) => c.api)].map((p) => p.close())));

  // Exactly one leader; both replicas see the route the proxy seeded.
  const leaderIndex = await waitFor('the proxy ready, exactly one control leader, the route seen by both', async () => {
    if ((await json(proxyAdmin, 'GET', '/readyz')).status !== 200) return null;
    const views = await Promise.all(controls.map(async (c) => ({ leader: await json(c.api, 'GET', '/leader'), routes: await json(c.api, 'GET', '/routes') })));
    if (views.some((v) => v.routes.body?.routes?.length !== 1)) return null;
    const leading = views.flatMap((v, i) => (v.leader.body?.leader === true ? [i] : []));
    return leading.length === 1 ? { index: leading[0]!, epoch: views[leading[0]!]!.leader.body.epoch as number } : null;
  }, 20_000, 50);
  const oldLeader = controls[leaderIndex.index]!;
  const survivor = controls[1 - leaderIndex.index]!;
  assert.deepEqual((await json(survivor.api, 'GET', '/leader')).body, { leader: false, epoch: null });

  const put = await json(oldLeader.api, 'PUT', '/experiments/ab', endlessAb('ab', INTERVAL_MS / 1000, 200));
  assert.equal(put.status, 201, JSON.stringify(put.body));

  const load = steadyLoad(t, traffic, 4, 2);

  const status = async (c: (typeof controls)[number]) => (await json(c.api, 'GET', '/experiments/ab')).body.status as ExperimentStatus;
  await waitFor('iteration 3 on the leader', async () => (await status(oldLeader)).iteration >= 3, 10_000, 20);

  // The follower serves reads but refuses every mutation: only the leader's epoch may write.
  const followerView = await status(survivor);
  assert.equal(followerView.state, 'Running');
  assert.ok(followerView.iteration >= 3, `the follower reads the shared state (iteration ${followerView.iteration})`);
  const refused = await json(survivor.api, 'POST', '/experiments/ab/pause');
  assert.equal(refused.status, 409, JSON.stringify(refused.body));
  assert.equal(refused.body.error.code, 'SLUICE_FENCED');
  assert.equal((await status(oldLeader)).state, 'Running', 'the refused pause changed nothing');

  // SIGKILL the leader: no release of the lease, no last write.
  const iterationBeforeKill = (await status(survivor)).iteration;
  const killedAt = Date.now();
  const killedAtMono = performance.now();
  oldLeader.child.process.kill('SIGKILL');
  assert.equal(await oldLeader.child.exited, 'SIGKILL');

  const takeover = await waitFor('the survivor to become leader', async () => {
    const l = (await json(survivor.api, 'GET', '/leader')).body as { leader: boolean; epoch: number | null };
    return l.leader ? { at: performance.now(), epoch: l.epoch! } : null;
  }, 10_000, 10);
  const takeoverMs = takeover.at - killedAtMono;
  assert.ok(takeover.epoch > leaderIndex.epoch, `a new epoch (${takeover.epoch} > ${leaderIndex.epoch})`);

  const resumed = await waitFor('the experiment to advance on the new leader', async () => {
    const s = await status(survivor);
    return s.history.some((h) => Date.parse(h.at) >= killedAt) ? { at: performance.now(), s } : null;
  }, 10_000, 10);
  const advanceMs = resumed.at - killedAtMono;
  t.diagnostic(`lease ttl ${LEASE_TTL_MS} ms, renew every ${RENEW_MS} ms, interval ${INTERVAL_MS} ms: takeover ${takeoverMs.toFixed(0)} ms after SIGKILL, next iteration ${advanceMs.toFixed(0)} ms after SIGKILL (${(advanceMs - takeoverMs).toFixed(0)} ms after takeover)`);
  assert.ok(takeoverMs <= LEASE_TTL_MS + RENEW_MS + MARGIN_MS, `takeover within ttl + one renew interval (+${MARGIN_MS} ms slack): took ${takeoverMs.toFixed(0)} ms`);
  assert.ok(advanceMs - takeoverMs <= INTERVAL_MS + MARGIN_MS, `the next iteration one interval after the takeover (+${MARGIN_MS} ms slack): took ${(advanceMs - takeoverMs).toFixed(0)} ms`);

  // A few more iterations on the new leader.
  const final = await waitFor('three more iterations on the new leader', async () => {
    const s = await status(survivor);
    return s.iteration >= resumed.s.iteration + 3 ? s : null;
  }, 10_000, 20);
  await load.stop();
  assert.equal(final.state, 'Running', final.reason);

  // Every iteration recorded exactly once: 1..N, no gap, no repeat.
  const numbers = final.history.map((h) => h.iteration);
  assert.deepEqual(numbers, Array.from({ length: final.iteration }, (_, i) => i + 1));
  // Those of the killed leader end at the kill; the new leader's begin right after, at the next number.
  const before = final.history.filter((h) => Date.parse(h.at) < killedAt);
  const after = final.history.filter((h) => Date.parse(h.at) >= killedAt);
  const lastBefore = before.at(-1)!.iteration;
  assert.ok(lastBefore === iterationBeforeKill || lastBefore === iterationBeforeKill + 1, `the killed leader's last iteration (${lastBefore}) is the one read just before the kill (${iterationBeforeKill}), or one more`);
  assert.equal(after[0]!.iteration, lastBefore + 1, 'the new leader continues at the next iteration');
  assert.ok(Date.parse(after[0]!.at) - killedAt <= LEASE_TTL_MS + RENEW_MS + INTERVAL_MS + 2 * MARGIN_MS);
  for (let i = 1; i < after.length; i++) assert.ok(Date.parse(after[i]!.at) > Date.parse(after[i - 1]!.at));

  // The processes' own logs: no iteration number was executed by both, nor twice by one.
  const newLogged = await waitFor('the new leader to log its last iteration', () => {
    const n = loggedIterations(survivor.child.output(), 'ab');
    return n.includes(final.iteration) ? n : null;
  }, 5000, 20);
  const oldLogged = loggedIterations(oldLeader.child.output(), 'ab');
  t.diagnostic(`iterations logged: killed leader ${oldLogged.join(',')}; new leader ${newLogged.join(',')}`);
  const all = [...oldLogged, ...newLogged].filter((n) => n <= final.iteration);
  assert.equal(new Set(all).size, all.length, `an iteration number executed twice: old leader ${oldLogged.join(',')}, new leader ${newLogged.join(',')}`);
  for (const n of oldLogged) assert.ok(n <= lastBefore, `the killed leader logged iteration ${n} after ${lastBefore}`);
  for (const n of newLogged) assert.ok(n > lastBefore, `the new leader re-ran iteration ${n} (≤ ${lastBefore})`);
  assert.deepEqual(newLogged.filter((n) => n <= final.iteration), after.map((h) => h.iteration));

  // Traffic never depended on the control plane.
  const failed = load.failures.length;
  assert.equal(failed, 0, `${failed} failed requests of ${load.ok + failed}: ${load.failures.slice(0, 3).join('; ')}`);
  assert.ok(load.ok > 0);
});
