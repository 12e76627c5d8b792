/**
 * The observability bundle (deploy/observability, issue 14) against the real
 * thing: promtool accepts the rules file; the Grafana dashboard is JSON a
 * Grafana 10/11 imports; and a real Prometheus scraping a real Sluice — HTTP
 * versions with 5xx, a refused upstream and a mirror, a gRPC route, an
 * experiment that ends with a failed finish task, and (when redis-server is
 * installed) a Redis-mode proxy and control plane — answers every panel's
 * query and every alert's expression with data.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test, type TestContext } from 'node:test';
import { request } from 'undici';
import YAML from 'yaml';
import { runControl, runProxy, type RunningControl, type RunningProxy } from '../cli/run-shared.js';
import { silentLogger } from '../common/logger.js';
import { validateConfig } from '../config/config.js';
import { echoClient, startEchoServer } from './support/grpc.js';
import { Pool, refusingUrl, requireBinary, startSluice, startUpstream, waitFor } from './support/helpers.js';
import { startPrometheus, type PrometheusServer } from './support/prometheus-server.js';
import { startRedis } from './support/redis-server.js';

const RULES = 'deploy/observability/prometheus-rules.yaml';
const DASHBOARD = 'deploy/observability/grafana-dashboard.json';
/** What `$__rate_interval` / `$__interval` / `$__range` become: Prometheus scrapes every second here. */
const INTERVALS: Record<string, string> = { __rate_interval: '10s', __interval: '2s', __range: '1m' };
/** Series only Redis mode exposes. */
const REDIS_ONLY = /\bsluice_(store_up|store_flush_seconds\w*|leader)\b/;

interface Target { expr: string; refId: string; legendFormat?: string; datasource?: { type: string; uid: string } }
interface Panel {
  id: number;
  type: string;
  title: string;
  description?: string;
  gridPos: { h: number; w: number; x: number; y: number };
  datasource?: { type: string; uid: string };
  targets?: Target[];
}
interface Variable { name: string; type: string; query: string | { query: string }; datasource?: { type: string; uid: string }; multi?: boolean; includeAll?: boolean }
interface Dashboard { title: string; uid: string; schemaVersion: number; panels: Panel[]; templating: { list: Variable[] } }
interface Rule { alert?: string; record?: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }

const dashboard = (): Dashboard => JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
const alerts = (): Rule[] => {
  const doc = YAML.parse(readFileSync(RULES, 'utf8')) as { groups: Array<{ name: string; rules: Rule[] }> };
  return doc.groups.flatMap((g) => g.rules).filter((r) => r.alert !== undefined);
};
const queryPanels = (d: Dashboard): Panel[] => d.panels.filter((p) => p.type !== 'row');
const variableQuery = (v: Variable): string => (typeof v.query === 'string' ? v.query : v.query.query);

/** An alert's expression without its final comparison: the series it is built on. */
function withoutThreshold(expr: string): string {
  return expr.trim().replace(/\s*(==|!=|>=|<=|>|<)\s*-?[0-9.]+(e[+-]?[0-9]+)?$/, '');
}

test('promtool check rules passes on deploy/observability/prometheus-rules.yaml; every alert has a severity, a summary and a description', (t) => {
  const promtool = requireBinary(t, 'promtool', 'prometheus');
  if (promtool === null) return;
  const check = spawnSync(promtool, ['check', 'rules', RULES], { encoding: 'utf8' });
  assert.equal(check.status, 0, `promtool check rules: ${check.stdout}${check.stderr}`);
  const rules = alerts();
  assert.deepEqual(
    rules.map((r) => r.alert),
    ['SluiceVersionHighErrorRate', 'SluiceVersionHighGrpcErrorRate', 'SluiceExperimentSampleRatioMismatch', 'SluiceExperimentFinishTaskFailed', 'SluiceNoControlPlaneLeader', 'SluiceStoreDown'],
  );
  for (const r of rules) {
    assert.match(r.labels?.severity ?? '', /^(critical|warning)$/, `${r.alert}: severity`);
    assert.ok(r.annotations?.summary && r.annotations.description, `${r.alert}: summary and description`);
    assert.notEqual(withoutThreshold(r.expr), r.expr.trim(), `${r.alert}: expr must end in a comparison with a threshold`);
  }
  for (const name of ['SluiceVersionHighErrorRate', 'SluiceVersionHighGrpcErrorRate']) {
    const r = rules.find((x) => x.alert === name)!;
    assert.equal(r.for, '5m');
    for (const label of ['route', 'version']) {
      assert.ok(r.annotations!.summary!.includes(`{{ $labels.${label} }}`) && r.annotations!.description!.includes(`{{ $labels.${label} }}`), `${name}: $labels.${label}`);
    }
  }
});

test('the dashboard is importable: schemaVersion 39, a ${DS_PROMETHEUS} data source variable, route/version/experiment variables, every panel titled, described and placed', () => {
  const d = dashboard();
  assert.equal(d.schemaVersion, 39);
  assert.ok(d.title && d.uid);
  const vars = new Map(d.templating.list.map((v) => [v.name, v]));
  assert.equal(vars.get('DS_PROMETHEUS')?.type, 'datasource');
  assert.equal(vars.get('DS_PROMETHEUS')?.query, 'prometheus');
  for (const name of ['route', 'version', 'experiment']) {
    const v = vars.get(name);
    assert.ok(v, `variable ${name}`);
    assert.equal(v.type, 'query');
    assert.match(variableQuery(v), /^label_values\(/);
    assert.deepEqual(v.datasource, { type: 'prometheus', uid: '${DS_PROMETHEUS}' });
  }
  const ids = new Set<number>();
  for (const p of d.panels) {
    assert.ok(p.title, `panel ${p.id}: title`);
    assert.ok(p.description, `panel "${p.title}": description`);
    assert.ok(!ids.has(p.id), `panel "${p.title}": id ${p.id} is not unique`);
    ids.add(p.id);
    assert.ok(p.gridPos && p.gridPos.w > 0 && p.gridPos.x + p.gridPos.w <= 24, `panel "${p.title}": gridPos`);
    if (p.type === 'row') continue;
    assert.deepEqual(p.datasource, { type: 'prometheus', uid: '${DS_PROMETHEUS}' }, `panel "${p.title}": datasource`);
    assert.ok(p.targets && p.targets.length > 0, `panel "${p.title}": targets`);
    assert.equal(new Set(p.targets.map((x) => x.refId)).size, p.targets.length, `panel "${p.title}": refIds`);
    for (const x of p.targets) {
      assert.ok(x.expr, `panel "${p.title}" ${x.refId}: expr`);
      assert.deepEqual(x.datasource, { type: 'prometheus', uid: '${DS_PROMETHEUS}' }, `panel "${p.title}" ${x.refId}: datasource`);
    }
  }
});

/** The path of a binary, null when absent (not under CI: there it must be installed). */
function optionalBinary(name: string, debianPackage: string): string | null {
  try {
    return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim();
  } catch {
    if (process.env.CI) throw new Error(`${name} is required in CI (Debian package ${debianPackage})`);
    return null;
  }
}

/** A query that must succeed and return at least one sample; returns the samples. */
async function samples(prom: PrometheusServer, promql: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>> {
  const data = await prom.query(promql);
  assert.equal(data.resultType, 'vector', promql);
  return data.result as Array<{ metric: Record<string, string>; value: [number, string] }>;
}

/** Grafana's label_values(selector, label) through the API Grafana uses for it. */
async function labelValues(prom: PrometheusServer, query: string): Promise<string[]> {
  const m = /^label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)$/.exec(query.trim());
  assert.ok(m, `not a label_values() query: ${query}`);
  const res = await request(`${prom.url}/api/v1/label/${m[2]}/values?${new URLSearchParams({ 'match[]': m[1]! })}`);
  const body = (await res.body.json()) as { status: string; data: string[]; error?: string };
  assert.equal(body.status, 'success', `${query}: ${body.error}`);
  return body.data;
}

/** Grafana's substitution of a multi-value variable inside a regex matcher: (a|b|c), each value regex-escaped. */
const regexOf = (values: readonly string[]): string => `(${values.map((v) => v.replace(/[.*+?^${}()|[\]\\]/g, '\\\\$&')).join('|')})`;

function substitute(expr: string, vars: Record<string, string>): string {
  const out = expr.replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)/g, (whole, a: string | undefined, b: string | undefined) => {
    const name = (a ?? b)!;
    return vars[name] ?? INTERVALS[name] ?? whole;
  });
  assert.ok(!out.includes('$'), `unsubstituted variable left in ${out}`);
  return out;
}

async function startRedisMode(t: TestContext, upstreamUrl: string): Promise<{ proxy: RunningProxy; control: RunningControl } | null> {
  if (optionalBinary('redis-server', 'redis-server') === null) return null;
  const redis = await startRedis(t);
  if (redis === null) return null;
  const shared = { redisUrl: redis.url, prefix: `obs${process.pid}:`, log: silentLogger() };
  const config = validateConfig(
    { listen: '127.0.0.1:0', admin: { listen: '127.0.0.1:0' }, routes: [{ name: 'edge', versions: [{ name: 'v1', url: upstreamUrl }] }] },
    { env: {} },
  );
  const proxy = await runProxy(config, shared);
  t.after(() => proxy.close());
  const control = await runControl({ ...shared, adminListen: { host: '127.0.0.1', port: 0 }, token: null, leaseTtlMs: 1500, id: 'obs-control' });
  t.after(() => control.close());
  await waitFor('the Redis-mode control plane to lead and the proxy to flush', () => control.leader.isLeader && proxy.publisher.up, 10_000, 50);
  return { proxy, control };
}

test('every dashboard panel query and every alert expression returns data from a real Prometheus scraping Sluice', async (t) => {
  if (requireBinary(t, 'prometheus', 'prometheus') === null) return;
  const d = dashboard();
  const rules = alerts();
  // Undone last first: traffic stops before Sluice, Sluice before its upstreams.
  const cleanups: Array<() => unknown> = [];
  t.after(async () => {
    for (const undo of cleanups.reverse()) await undo();
  });

  // Versions: v1 fine (with conversions), v2 failing 1 in 5 with 500, v3 dark and mirrored (answers
  // differently: mismatches), v4 refusing connections (502, upstream errors by reason connect).
  let n = 0;
  const v1 = await startUpstream('v1', (_req, res) => {
    res.writeHead(200, n++ % 3 === 0 ? { 'x-sluice-reward': '1' } : {});
    res.end('v1');
  }, { record: false });
  let m = 0;
  const v2 = await startUpstream('v2', (_req, res) => {
    res.writeHead(m++ % 5 === 0 ? 500 : 200);
    res.end('v2');
  }, { record: false });
  const v3 = await startUpstream('v3-shadow', undefined, { record: false });
  const v4 = await refusingUrl();
  const s1 = await startUpstream('s1', undefined, { record: false });
  const s2 = await startUpstream('s2', undefined, { record: false });
  const hook = await startUpstream('hook', (req, res) => {
    res.writeHead(req.url === '/fail' ? 500 : 200);
    res.end();
  }, { record: false });
  const g1 = await startEchoServer({ version: 'g1' });
  const g2 = await startEchoServer({ version: 'g2', failRate: 0.3, seed: 7 });
  cleanups.push(async () => {
    await Promise.all([v1, v2, v3, s1, s2, hook].map((u) => u.close()));
    await g1.close();
    await g2.close();
  });

  const sluice = await startSluice({
    routes: [
      {
        name: 'checkout',
        match: { pathPrefix: '/checkout' },
        versions: [
          { name: 'v1', url: v1.url },
          { name: 'v2', url: v2.url },
          { name: 'v3', url: v3.url },
          { name: 'v4', url: v4 },
        ],
        weights: { v1: 60, v2: 30, v4: 10 },
        mirror: [{ version: 'v3', percent: 100, compare: true }],
      },
      {
        name: 'echo',
        match: { pathPrefix: '/sluice.test.Echo' },
        versions: [
          { name: 'g1', url: `http://${g1.address}`, protocol: 'h2c' },
          { name: 'g2', url: `http://${g2.address}`, protocol: 'h2c' },
        ],
        weights: { g1: 50, g2: 50 },
      },
      { name: 'shop', match: { pathPrefix: '/shop' }, versions: [{ name: 's1', url: s1.url }, { name: 's2', url: s2.url }] },
    ],
  });
  const traffic = new Pool(sluice.trafficUrl, { connections: 4 });
  const admin = new Pool(sluice.adminUrl, { connections: 2 });
  const grpcClient = echoClient(new URL(sluice.trafficUrl).host);
  let running = true;
  const loops: Promise<void>[] = [];
  cleanups.push(async () => {
    await traffic.close();
    await admin.close();
    await sluice.close();
  });
  cleanups.push(async () => {
    running = false;
    await Promise.all(loops);
    grpcClient.close();
  });

  const redisMode = await startRedisMode(t, v1.url);
  if (redisMode === null) t.diagnostic('redis-server not found: the Redis-mode panels and alerts (sluice_store_up, sluice_leader) are not checked; install the Debian package redis-server');

  // An experiment ending Completed with a winner, one finish task succeeding and one failing.
  const put = await admin.request({
    method: 'PUT',
    path: '/experiments/shop-ab',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      kind: 'Experiment',
      name: 'shop-ab',
      spec: {
        route: 'shop',
        versions: [{ name: 's1' }, { name: 's2' }],
        testingPattern: 'A/B',
        criteria: { reward: { metric: 'orders' }, minSamples: 100 },
        duration: { intervalSeconds: 0.3, maxIterations: 60 },
        metrics: [{ name: 'orders', source: 'mock', type: 'rate', values: { s1: { mean: 0.05 }, s2: { mean: 0.1 } }, countPerSecond: 1000 }],
        tasks: {
          finish: [
            { task: 'notify', name: 'tell-ok', url: `${hook.url}/ok`, if: 'always' },
            { task: 'notify', name: 'tell-broken', url: `${hook.url}/fail`, if: 'always', onError: 'continue' },
          ],
        },
      },
    }),
  });
  assert.equal(put.statusCode, 201, await put.body.text());
  await put.body.dump();

  // Steady traffic until the end: rates over the last seconds are then real numbers, not 0/0.
  const pause = () => new Promise((r) => setTimeout(r, 25));
  for (let w = 0; w < 3; w++) {
    loops.push((async () => {
      for (let i = 0; running; i++) {
        try {
          const r = await traffic.request({ method: 'GET', path: `/checkout/item/${w}-${i}` });
          await r.body.dump();
        } catch (err) {
          if (running) throw err;
        }
        await pause();
      }
    })());
  }
  loops.push((async () => {
    for (let i = 0; running; i++) {
      await grpcClient.say(`hello ${i}`).catch(() => {}); // g2's UNAVAILABLEs
      await pause();
    }
  })());

  const targets = [sluice.adminUrl, ...(redisMode ? [redisMode.proxy.adminUrl, redisMode.control.adminUrl] : [])].map((u) => new URL(u).host);
  const prom = await startPrometheus(t, targets);
  if (prom === null) return;

  const ended = await waitFor('experiment shop-ab to end', async () => {
    const r = await admin.request({ method: 'GET', path: '/experiments/shop-ab' });
    const st = ((await r.body.json()) as { status: { state: string; winner: string | null; ending?: string | null; tasks: Array<{ name: string; state: string }> } }).status;
    return ['Completed', 'Failed', 'Aborted'].includes(st.state) && !st.ending ? st : null;
  }, 20_000, 100);
  assert.equal(ended.state, 'Completed');
  assert.equal(ended.winner, 's2');
  assert.deepEqual(ended.tasks.map((x) => [x.name, x.state]), [['tell-ok', 'succeeded'], ['tell-broken', 'failed']]);

  // Enough scrapes: several of every target, the last taken after the experiment ended.
  const endedAt = Date.now() / 1000;
  await waitFor('Prometheus to scrape every target 5 times and once after the experiment ended', async () => {
    const up = await samples(prom, 'count_over_time(up[1m])');
    const last = await samples(prom, 'timestamp(sluice_experiment_iteration)');
    return up.length === targets.length && up.every((s) => Number(s.value[1]) >= 5) && last.some((s) => Number(s.value[1]) > endedAt);
  }, 20_000, 250);

  const skip = (expr: string) => redisMode === null && REDIS_ONLY.test(expr);

  // The template variables, as Grafana fills them: every value of each, in a regex matcher.
  const vars: Record<string, string> = {};
  for (const name of ['route', 'version', 'experiment']) {
    const v = d.templating.list.find((x) => x.name === name)!;
    const values = await labelValues(prom, substitute(variableQuery(v), vars));
    assert.ok(values.length > 0, `variable ${name} (${variableQuery(v)}) has no values`);
    vars[name] = regexOf(values);
  }
  for (const route of ['checkout', 'echo', 'shop']) assert.ok(vars.route!.includes(route), `variable route: ${vars.route}`);

  // Every panel target: retried until the deadline (a rate needs two scrapes in its window), then
  // every empty one is named by its panel's title.
  let checked = 0;
  await waitFor('every dashboard panel query to return data', async () => {
    const empty: string[] = [];
    checked = 0;
    for (const p of queryPanels(d)) {
      for (const x of p.targets!) {
        if (skip(x.expr)) continue;
        const promql = substitute(x.expr, vars);
        const result = await samples(prom, promql);
        checked++;
        if (!result.some((s) => Number.isFinite(Number(s.value[1])))) empty.push(`"${p.title}" (${x.refId}): ${result.length === 0 ? 'no data' : 'only NaN/Inf'} for ${promql}`);
      }
    }
    if (empty.length > 0) throw new Error(`panels without data:\n${empty.join('\n')}`);
    return true;
  }, 15_000, 500);
  t.diagnostic(`${checked} panel queries returned data`);

  // Every alert: the whole expression evaluates (it may or may not fire: this system is not healthy),
  // and the series it compares with its threshold exist.
  for (const r of rules) {
    if (skip(r.expr)) continue;
    await prom.query(r.expr);
    const inner = withoutThreshold(r.expr);
    const result = await samples(prom, inner);
    assert.ok(result.length > 0, `alert ${r.alert}: ${inner} returned no data`);
  }
});
