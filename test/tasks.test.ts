/**
 * Experiment tasks, one at a time, against real loopback receivers: notify
 * (JSON and Slack), github (a fake REST API), exec (a real process group),
 * readiness, load (rate accuracy, concurrency, pinning, stop and timeout),
 * and the validation of `spec.tasks`.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SluiceError } from '../common/errors.js';
import { silentLogger } from '../common/logger.js';
import { pendingStatus } from '../control/lifecycle.js';
import { validateExperiment } from '../control/spec.js';
import type { ExperimentDoc, TaskSpec } from '../control/spec-types.js';
import { runTask, type TaskRunContext } from '../control/tasks/index.js';
import { slackPayload } from '../control/tasks/notify.js';
import { experimentSummary } from '../control/tasks/summary.js';
import type { ExperimentStatus, TaskPhase, TaskRun, VersionStatus } from '../control/status.js';
import { refusingUrl, startUpstream, waitFor, type Upstream } from './support/helpers.js';

// ---------------------------------------------------------------- fixtures

function experiment(tasks: Record<string, unknown>): ExperimentDoc {
  return validateExperiment({
    kind: 'Experiment',
    name: 'checkout-v2',
    spec: {
      route: 'checkout',
      versions: [{ name: 'v1' }, { name: 'v2' }],
      testingPattern: 'Canary',
      criteria: { objectives: [{ metric: 'error-rate', upperLimit: 0.1 }] },
      tasks,
    },
  });
}

function version(samples: number, errorRate: number | null, verdict: VersionStatus['verdict']): VersionStatus {
  return {
    samples,
    metrics: { 'request-count': samples, 'error-rate': errorRate, 'latency-p95': null },
    verdict,
    pFeasible: 0.99,
    pBest: null,
    expectedLoss: null,
    objectives: [],
    metricErrors: {},
  };
}

/** A finished experiment: v2 won. */
function completed(doc: ExperimentDoc): ExperimentStatus {
  return {
    ...pendingStatus(doc, '2026-01-01T00:00:00.000Z'),
    state: 'Completed',
    iteration: 7,
    winner: 'v2',
    reason: 'v2 meets every objective',
    weights: { v1: 0, v2: 100 },
    versions: { v1: version(900, 0.01, 'feasible'), v2: version(300, 0, 'feasible') },
  };
}

function context(doc: ExperimentDoc, over: Partial<TaskRunContext> = {}): TaskRunContext {
  return { doc, status: completed(doc), versionUrls: {}, proxyUrl: null, pinToken: null, env: {}, allowExec: true, log: silentLogger(), ...over };
}

/** Validates one task (as the only task of `phase`) and runs it. */
async function run(task: Record<string, unknown>, over: Partial<TaskRunContext> = {}, phase: TaskPhase = 'finish'): Promise<{ run: TaskRun; doc: ExperimentDoc }> {
  const doc = experiment({ [phase]: [task] });
  const spec: TaskSpec = doc.spec.tasks[phase][0]!;
  return { run: await runTask(phase, spec, context(doc, over)), doc };
}

function assertFailed(r: TaskRun, code: string, message: RegExp): void {
  assert.equal(r.state, 'failed', `expected a failed run, got ${JSON.stringify(r)}`);
  assert.equal(r.error?.code, code, r.error?.message);
  assert.match(r.error!.message, message);
}

const servers: Upstream[] = [];
async function server(...args: Parameters<typeof startUpstream>): Promise<Upstream> {
  const s = await startUpstream(...args);
  servers.push(s);
  return s;
}
after(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

// ---------------------------------------------------------------- notify

describe('notify task', () => {
  it('POSTs the JSON summary with templated URL and headers; the secret is masked in the run', async () => {
    const hook = await server('hook');
    const secret = 's3cret-hook-token';
    const { run: r, doc } = await run(
      { task: 'notify', url: `${hook.url}/hooks/{{experiment}}?winner={{winner}}`, headers: { Authorization: 'Bearer {{env.HOOK_TOKEN}}', 'X-Route': '{{route}}' } },
      { env: { HOOK_TOKEN: secret } },
    );
    assert.equal(r.state, 'succeeded', JSON.stringify(r.error));
    assert.equal(r.name, 'finish-0-notify');
    assert.deepEqual(r.output, { status: 200, format: 'json' });
    assert.equal(hook.seen.length, 1);
    const got = hook.seen[0]!;
    assert.equal(got.method, 'POST');
    assert.equal(got.url, '/hooks/checkout-v2?winner=v2');
    assert.equal(got.headers['content-type'], 'application/json');
    assert.equal(got.headers.authorization, `Bearer ${secret}`);
    assert.equal(got.headers['x-route'], 'checkout');
    const body: unknown = JSON.parse(got.body.toString('utf8'));
    assert.deepEqual(body, {
      experiment: 'checkout-v2',
      route: 'checkout',
      state: 'Completed',
      winner: 'v2',
      reason: 'v2 meets every objective',
      iteration: 7,
      weights: { v1: 0, v2: 100 },
      versions: {
        v1: { samples: 900, verdict: 'feasible', metrics: { 'request-count': 900, 'error-rate': 0.01 }, pBest: null },
        v2: { samples: 300, verdict: 'feasible', metrics: { 'request-count': 300, 'error-rate': 0 }, pBest: null },
      },
    });
    assert.deepEqual(body, JSON.parse(JSON.stringify(experimentSummary(doc, completed(doc)))));
    assert.ok(!JSON.stringify(r).includes(secret));
  });

  it('format slack sends text and blocks', async () => {
    const hook = await server('hook');
    const { run: r } = await run({ task: 'notify', url: `${hook.url}/slack`, format: 'slack' });
    assert.equal(r.state, 'succeeded', JSON.stringify(r.error));
    const body = JSON.parse(hook.seen[0]!.body.toString('utf8')) as { text: string; blocks: Array<{ type: string; text: { type: string; text: string } }> };
    assert.deepEqual(Object.keys(body).sort(), ['blocks', 'text']);
    assert.match(body.text, /checkout-v2.*Completed.*winner v2/);
    assert.equal(body.blocks[0]!.type, 'header');
    assert.equal(body.blocks[0]!.text.type, 'plain_text');
    const sections = body.blocks.filter((b) => b.type === 'section');
    assert.ok(sections.length >= 2);
    for (const s of sections) assert.equal(s.text.type, 'mrkdwn');
    const all = sections.map((s) => s.text.text).join('\n');
    assert.match(all, /\*Winner:\* v2/);
    assert.match(all, /\*v2\* \(winner\): 100% · 300 samples · feasible/);
  });

  it('escapes Slack control characters', () => {
    const doc = experiment({});
    const p = slackPayload(experimentSummary(doc, { ...completed(doc), reason: 'p95 <100 & >50' }));
    assert.ok(JSON.stringify(p).includes('p95 &lt;100 &amp; &gt;50'));
  });

  it('a non-2xx answer is SLUICE_TASK_HTTP with the status', async () => {
    const hook = await server('hook', (_req, res) => {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('receiver broke');
    });
    const { run: r } = await run({ task: 'notify', url: `${hook.url}/x` });
    assertFailed(r, 'SLUICE_TASK_HTTP', /answered 500: receiver broke/);
  });

  it('an unreachable receiver is SLUICE_TASK_HTTP, with the secret part of the URL masked', async () => {
    const url = await refusingUrl();
    const secret = 'T000/B000/XXXXsecret';
    const { run: r } = await run({ task: 'notify', url: `${url}/services/{{env.SLACK_PATH}}`, format: 'slack' }, { env: { SLACK_PATH: secret } });
    assertFailed(r, 'SLUICE_TASK_HTTP', /POST http:\/\/127\.0\.0\.1:\d+\/services\/\*\*\*: .*ECONNREFUSED/);
    assert.ok(!JSON.stringify(r).includes(secret));
  });

  it('an unset env variable in the URL fails the task without sending', async () => {
    const { run: r } = await run({ task: 'notify', url: '{{env.NOT_SET_HOOK}}' });
    assertFailed(r, 'SLUICE_TASK_FAILED', /url: environment variable NOT_SET_HOOK is not set/);
  });
});

// ---------------------------------------------------------------- github

/** A fake GitHub REST API (under /api/v3, as GitHub Enterprise): what the github task calls, with state. */
async function fakeGithub(token: string): Promise<Upstream & { files: Map<string, string> }> {
  const files = new Map<string, string>();
  const branches = new Set<string>(['main']);
  let pr: { number: number; html_url: string } | null = null;
  const root = '/api/v3/repos/acme/deploy';
  const api = await server('github', (req, res, body) => {
    const send = (status: number, json?: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(json === undefined ? '' : JSON.stringify(json));
    };
    if (req.headers.authorization !== `Bearer ${token}`) return send(401, { message: 'Bad credentials' });
    const url = new URL(req.url!, 'http://x');
    const path = decodeURIComponent(url.pathname);
    const input = body.length > 0 ? (JSON.parse(body.toString('utf8')) as Record<string, string>) : {};
    const route = `${req.method} ${path.startsWith(root) ? path.slice(root.length) : path}`;
    if (route === 'POST /dispatches') return send(204);
    if (route === 'GET /git/ref/heads/main') return send(200, { ref: 'refs/heads/main', object: { sha: 'base-sha-1' } });
    if (route === 'POST /git/refs') {
      const name = input.ref!.replace('refs/heads/', '');
      if (branches.has(name)) return send(422, { message: 'Reference already exists' });
      branches.add(name);
      return send(201, { ref: input.ref, object: { sha: input.sha } });
    }
    const file = /^(GET|PUT) \/contents\/(.+)$/.exec(route);
    if (file) {
      const key = file[1] === 'GET' ? `${url.searchParams.get('ref')}:${file[2]}` : `${input.branch}:${file[2]}`;
      if (file[1] === 'GET') {
        const content = files.get(key);
        return content === undefined ? send(404, { message: 'Not Found' }) : send(200, { sha: 'file-sha-1', content: `${Buffer.from(content).toString('base64')}\n` });
      }
      files.set(key, Buffer.from(input.content!, 'base64').toString('utf8'));
      return send(201, { content: { sha: 'file-sha-2' } });
    }
    if (route === 'POST /pulls') {
      if (pr !== null) return send(422, { message: 'Validation Failed', errors: [{ message: 'A pull request already exists' }] });
      pr = { number: 7, html_url: 'https://github.example/acme/deploy/pull/7' };
      return send(201, pr);
    }
    if (route === 'GET /pulls') return send(200, pr === null ? [] : [pr]);
    return send(404, { message: 'Not Found' });
  });
  return Object.assign(api, { files });
}

describe('github task', () => {
  const token = 'ghp_testtoken_0123456789';
  let api: Awaited<ReturnType<typeof fakeGithub>>;
  before(async () => {
    api = await fakeGithub(token);
  });

  it('dispatch: POSTs repository_dispatch with the summary, GitHub headers and the token', async () => {
    const seenBefore = api.seen.length;
    const { run: r, doc } = await run({ task: 'github', repository: 'acme/deploy', apiUrl: `${api.url}/api/v3/` }, { env: { GITHUB_TOKEN: token } });
    assert.equal(r.state, 'succeeded', JSON.stringify(r.error));
    assert.deepEqual(r.output, { dispatched: true, repository: 'acme/deploy', eventType: 'sluice-experiment' });
    const calls = api.seen.slice(seenBefore);
    assert.equal(calls.length, 1);
    const c = calls[0]!;
    assert.equal(`${c.method} ${c.url}`, 'POST /api/v3/repos/acme/deploy/dispatches');
    assert.equal(c.headers.authorization, `Bearer ${token}`);
    assert.equal(c.headers.accept, 'application/vnd.github+json');
    assert.equal(c.headers['x-github-api-version'], '2022-11-28');
    assert.equal(c.headers['user-agent'], 'sluice');
    assert.deepEqual(JSON.parse(c.body.toString('utf8')), {
      event_type: 'sluice-experiment',
      client_payload: JSON.parse(JSON.stringify(experimentSummary(doc, completed(doc)))),
    });
    assert.ok(!JSON.stringify(r).includes(token));
  });

  it('pullRequest: branch, file commit and pull request; a second run reuses all three', async () => {
    const task = {
      task: 'github',
      mode: 'pullRequest',
      repository: 'acme/deploy',
      apiUrl: `${api.url}/api/v3`,
      tokenEnv: 'DEPLOY_TOKEN',
      path: 'apps/checkout/values.yaml',
      content: 'image:\n  tag: "{{winner}}"\nweight: {{weights.v2}}\n',
    };
    const env = { DEPLOY_TOKEN: token };
    const seenBefore = api.seen.length;
    const { run: first } = await run(task, { env });
    assert.equal(first.state, 'succeeded', JSON.stringify(first.error));
    assert.deepEqual(first.output, {
      repository: 'acme/deploy',
      base: 'main',
      branch: 'sluice/checkout-v2',
      branchCreated: true,
      fileChanged: true,
      pullRequest: { number: 7, url: 'https://github.example/acme/deploy/pull/7', existing: false },
    });
    const calls = api.seen.slice(seenBefore);
    assert.deepEqual(
      calls.map((c) => `${c.method} ${c.url}`),
      [
        'GET /api/v3/repos/acme/deploy/git/ref/heads/main',
        'POST /api/v3/repos/acme/deploy/git/refs',
        'GET /api/v3/repos/acme/deploy/contents/apps/checkout/values.yaml?ref=sluice%2Fcheckout-v2',
        'PUT /api/v3/repos/acme/deploy/contents/apps/checkout/values.yaml',
        'POST /api/v3/repos/acme/deploy/pulls',
      ],
    );
    for (const c of calls) assert.equal(c.headers.authorization, `Bearer ${token}`);
    assert.deepEqual(JSON.parse(calls[1]!.body.toString('utf8')), { ref: 'refs/heads/sluice/checkout-v2', sha: 'base-sha-1' });
    const put = JSON.parse(calls[3]!.body.toString('utf8')) as Record<string, unknown>;
    assert.equal(put.branch, 'sluice/checkout-v2');
    assert.equal(put.sha, undefined, 'a new file has no sha');
    assert.match(String(put.message), /promote v2/);
    assert.equal(api.files.get('sluice/checkout-v2:apps/checkout/values.yaml'), 'image:\n  tag: "v2"\nweight: 100\n');
    const pull = JSON.parse(calls[4]!.body.toString('utf8')) as Record<string, string>;
    assert.equal(pull.head, 'sluice/checkout-v2');
    assert.equal(pull.base, 'main');
    assert.match(pull.body!, /Winner: \*\*v2\*\*/);

    const { run: second } = await run(task, { env });
    assert.equal(second.state, 'succeeded', JSON.stringify(second.error));
    assert.deepEqual(second.output, {
      repository: 'acme/deploy',
      base: 'main',
      branch: 'sluice/checkout-v2',
      branchCreated: false,
      fileChanged: false,
      pullRequest: { number: 7, url: 'https://github.example/acme/deploy/pull/7', existing: true },
    });
  });

  it('a missing token fails naming the variable; a wrong one is SLUICE_TASK_HTTP 401 without the token', async () => {
    const missing = await run({ task: 'github', repository: 'acme/deploy', apiUrl: `${api.url}/api/v3` });
    assertFailed(missing.run, 'SLUICE_TASK_FAILED', /environment variable GITHUB_TOKEN is not set/);
    const wrong = 'ghp_wrong_token_42';
    const bad = await run({ task: 'github', repository: 'acme/deploy', apiUrl: `${api.url}/api/v3` }, { env: { GITHUB_TOKEN: wrong } });
    assertFailed(bad.run, 'SLUICE_TASK_HTTP', /answered 401: Bad credentials/);
    assert.ok(!JSON.stringify(bad.run).includes(wrong));
  });
});

// ---------------------------------------------------------------- exec

describe('exec task', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-exec-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('gets the outcome in SLUICE_* variables and templated args; output is captured', async () => {
    const out = join(dir, 'winner.txt');
    const { run: r } = await run({
      task: 'exec',
      command: ['sh', '-c', 'printf "%s|%s|%s|%s" "$SLUICE_WINNER" "$SLUICE_STATE" "$SLUICE_ITERATION" "$1" > "$OUT"; echo promoted; echo warn >&2', 'sh', '{{weights.v2}}'],
      env: { OUT: out },
    });
    assert.equal(r.state, 'succeeded', JSON.stringify(r.error));
    assert.equal(readFileSync(out, 'utf8'), 'v2|Completed|7|100');
    assert.equal(r.output?.exitCode, 0);
    assert.equal(r.output?.stdout, 'promoted\n');
    assert.equal(r.output?.stderr, 'warn\n');
  });

  it('SLUICE_SUMMARY and SLUICE_WEIGHTS are JSON; shell: true runs a script', async () => {
    const { run: r } = await run({ task: 'exec', shell: true, command: ['echo "$SLUICE_WEIGHTS"; echo "$SLUICE_SUMMARY"'] });
    assert.equal(r.state, 'succeeded', JSON.stringify(r.error));
    const [weights, summary] = String(r.output?.stdout).trim().split('\n');
    assert.deepEqual(JSON.parse(weights!), { v1: 0, v2: 100 });
    assert.equal((JSON.parse(summary!) as { winner: string }).winner, 'v2');
  });

  it('a non-zero exit is SLUICE_TASK_FAILED with the code and stderr; the output is kept', async () => {
    const { run: r } = await run({ task: 'exec', command: ['sh', '-c', 'echo partial; echo "kubectl: forbidden" >&2; exit 3'] });
    assertFailed(r, 'SLUICE_TASK_FAILED', /exited with code 3: kubectl: forbidden/);
    assert.equal(r.output?.exitCode, 3);
    assert.equal(r.output?.stdout, 'partial\n');
  });

  it('a command that cannot start is SLUICE_TASK_FAILED (ENOENT)', async () => {
    const { run: r } = await run({ task: 'exec', command: ['/nonexistent/sluice-promote'] });
    assertFailed(r, 'SLUICE_TASK_FAILED', /cannot run \/nonexistent\/sluice-promote: .*ENOENT/);
  });

  it('secrets from {{env.NAME}} are masked in output and errors', async () => {
    const secret = 'hunter2-very-secret';
    const { run: r } = await run({ task: 'exec', command: ['sh', '-c', 'echo "$1"; echo "$1" >&2; exit 1', 'sh', '{{env.API_KEY}}'] }, { env: { API_KEY: secret } });
    assertFailed(r, 'SLUICE_TASK_FAILED', /\*\*\*/);
    assert.equal(r.output?.stdout, '***\n');
    assert.ok(!JSON.stringify(r).includes(secret));
  });

  it('a timeout kills the whole process group (SIGTERM) and is SLUICE_TASK_TIMEOUT', async () => {
    const pidFile = join(dir, 'sleep.pid');
    const slack = 4 * (await execBaseline());
    const t0 = Date.now();
    const { run: r } = await run({ task: 'exec', shell: true, command: [`sleep 30 & echo $! > ${pidFile}; wait`], timeoutSeconds: 0.5 });
    // On a loaded machine the group may not be gone within the 2 s grace, and then gets SIGKILL too: either way the whole group was killed.
    assertFailed(r, 'SLUICE_TASK_TIMEOUT', /did not finish within 0\.5 s.*process group killed \(SIGTERM(\)|, then SIGKILL after 2 s\))/);
    assert.ok(Date.now() - t0 < 4000 + slack, `took ${Date.now() - t0} ms (slack ${slack} ms)`);
    const pid = Number(readFileSync(pidFile, 'utf8'));
    await waitFor(`the background sleep (pid ${pid}) to be gone`, () => !alive(pid), 3000);
  });

  it('what ignores SIGTERM gets SIGKILL after the grace period', async () => {
    const pidFile = join(dir, 'stubborn.pid');
    const slack = 4 * (await execBaseline());
    const t0 = Date.now();
    const { run: r } = await run({ task: 'exec', shell: true, command: [`trap '' TERM; sleep 30 & echo $! > ${pidFile}; wait`], timeoutSeconds: 0.3 });
    const took = Date.now() - t0;
    assertFailed(r, 'SLUICE_TASK_TIMEOUT', /SIGTERM, then SIGKILL after 2 s/);
    assert.ok(took >= 2000 && took < 6000 + slack, `took ${took} ms (slack ${slack} ms)`);
    const pid = Number(readFileSync(pidFile, 'utf8'));
    await waitFor(`the stubborn sleep (pid ${pid}) to be gone`, () => !alive(pid), 3000);
  });

  it('the caller stopping the experiment stops the command (SLUICE_TASK_FAILED, not a timeout)', async () => {
    const doc = experiment({ finish: [{ task: 'exec', command: ['sleep', '30'] }] });
    const ac = new AbortController();
    const pending = runTask('finish', doc.spec.tasks.finish[0]!, context(doc, { signal: ac.signal }));
    setTimeout(() => ac.abort(new Error('experiment aborted')), 200);
    const r = await pending;
    assertFailed(r, 'SLUICE_TASK_FAILED', /stopped while running sleep 30: experiment aborted/);
  });
});

/**
 * A same-run baseline for the timeout tests' wall-clock bounds: the slowest of three exec tasks that do nothing
 * (`true` through the shell), in ms — what spawning and reaping cost on this machine now. The bounds (the timeout's
 * 0.5 s or 0.3 s + 2 s grace, well short of the `sleep 30` they must not wait for) get 4 × this on top.
 */
async function execBaseline(): Promise<number> {
  let slowest = 0;
  for (let i = 0; i < 3; i++) {
    const t0 = Date.now();
    const { run: r } = await run({ task: 'exec', shell: true, command: ['true'] });
    assert.equal(r.state, 'succeeded', JSON.stringify(r.error));
    slowest = Math.max(slowest, Date.now() - t0);
  }
  return slowest;
}

/** Whether a process exists and is not a zombie (an orphan may wait a moment to be reaped). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------- readiness

describe('readiness task', () => {
  it('waits until every version answers 2xx on URL + path', async () => {
    let calls = 0;
    const slow = await server('v1', (req, res) => {
      calls++;
      res.writeHead(req.url === '/healthz' && calls > 3 ? 200 : 503);
      res.end();
    });
    const fast = await server('v2');
    const { run: r } = await run(
      { task: 'readiness', path: '/healthz', intervalSeconds: 0.05, timeoutSeconds: 5 },
      { versionUrls: { v1: slow.url, v2: `${fast.url}/` } },
      'start',
    );
    assert.equal(r.state, 'succeeded', JSON.stringify(r.error));
    assert.deepEqual(r.output, { versions: { v1: { ready: true, status: 200, attempts: 4 }, v2: { ready: true, status: 200, attempts: 1 } } });
    assert.equal(fast.seen[0]!.url, '/healthz');
  });

  it('times out naming the version that never became ready and what it said', async () => {
    const up = await server('v1');
    const down = await server('v2', (_req, res) => {
      res.writeHead(503);
      res.end();
    });
    const t0 = Date.now();
    const { run: r } = await run(
      { task: 'readiness', urls: { v2: `${down.url}/ready` }, intervalSeconds: 0.05, timeoutSeconds: 0.5 },
      { versionUrls: { v1: up.url } },
      'start',
    );
    assertFailed(r, 'SLUICE_TASK_TIMEOUT', /not ready: v2 \(http:\/\/127\.0\.0\.1:\d+\/ready: last answered 503, \d+ attempts\)$/);
    assert.ok(Date.now() - t0 < 3000);
    assert.ok(!r.error!.message.includes('v1 ('));
  });

  it('a version without any URL fails at once', async () => {
    const { run: r } = await run({ task: 'readiness' }, { versionUrls: {} }, 'start');
    assertFailed(r, 'SLUICE_TASK_FAILED', /version v1 has no URL/);
  });
});

// ---------------------------------------------------------------- load

interface LoadOutput {
  requests: number;
  errors: number;
  dropped: number;
  achievedQps: number;
  stopped: boolean;
  firstError: string | null;
  perVersion?: Record<string, { requests: number }>;
  statuses: Record<string, number>;
}

describe('load task', () => {
  it('holds 200 qps within 10% (open loop, over 3 s)', async () => {
    let hits = 0;
    const target = await server('target', (_req, res) => {
      hits++;
      res.end('ok');
    }, { record: false });
    const { run: r } = await run({ task: 'load', url: target.url, qps: 200, durationSeconds: 3 }, {}, 'start');
    assert.equal(r.state, 'succeeded', JSON.stringify(r.error));
    const o = r.output as unknown as LoadOutput;
    assert.ok(Math.abs(o.achievedQps - 200) <= 20, `achieved ${o.achievedQps} qps`);
    assert.ok(Math.abs(o.requests - 600) <= 60, `${o.requests} requests`);
    assert.equal(hits, o.requests);
    assert.equal(o.errors, 0);
    assert.deepEqual(o.statuses, { 200: o.requests });
  });

  it('never has more than `concurrency` in flight; what comes due meanwhile is dropped', async () => {
    let inFlight = 0;
    let most = 0;
    let hits = 0;
    const slow = await server('slow', (_req, res) => {
      hits++;
      most = Math.max(most, ++inFlight);
      setTimeout(() => {
        inFlight--;
        res.end('slow');
      }, 150);
    }, { record: false });
    const { run: r } = await run({ task: 'load', url: slow.url, qps: 100, requests: 40, concurrency: 3 }, {}, 'start');
    assert.equal(r.state, 'succeeded', JSON.stringify(r.error));
    const o = r.output as unknown as LoadOutput;
    assert.ok(most <= 3, `${most} in flight`);
    assert.ok(o.dropped > 0, 'some requests came due with 3 in flight');
    assert.equal(o.requests + o.dropped, 40);
    assert.equal(hits, o.requests);
  });

  it('requests mode sends exactly N, with method, path, headers and body', async () => {
    const target = await server('target');
    const { run: r } = await run(
      { task: 'load', url: `${target.url}/base`, path: '/buy?x=1', qps: 500, requests: 25, method: 'post', headers: { 'x-load': '{{experiment}}' }, body: '{"n":1}' },
      {},
      'start',
    );
    assert.equal(r.state, 'succeeded', JSON.stringify(r.error));
    assert.equal((r.output as unknown as LoadOutput).requests, 25);
    assert.equal(target.seen.length, 25);
    const s = target.seen[0]!;
    assert.equal(`${s.method} ${s.url}`, 'POST /base/buy?x=1');
    assert.equal(s.headers['x-load'], 'checkout-v2');
    assert.equal(s.body.toString(), '{"n":1}');
  });

  it('per version: qps and requests per listed version, pinned with the token (never shown)', async () => {
    const proxy = await server('proxy');
    const pinToken = 'pin-token-abcdef';
    const { run: r } = await run({ task: 'load', qps: 100, requests: 5, versions: ['v1', 'v2'] }, { proxyUrl: proxy.url, pinToken }, 'start');
    assert.equal(r.state, 'succeeded', JSON.stringify(r.error));
    const pins = proxy.seen.map((s) => s.headers['x-sluice-pin']).sort();
    assert.deepEqual(pins, [...Array(5).fill(`${pinToken}:v1`), ...Array(5).fill(`${pinToken}:v2`)]);
    const o = r.output as unknown as LoadOutput;
    assert.equal(o.perVersion?.v1?.requests, 5);
    assert.equal(o.perVersion?.v2?.requests, 5);
    assert.ok(!JSON.stringify(r).includes(pinToken));
  });

  it('per version without a pin token, or without any target, fails', async () => {
    const noPin = await run({ task: 'load', qps: 10, requests: 1, versions: ['v2'] }, { proxyUrl: 'http://127.0.0.1:9' }, 'start');
    assertFailed(noPin.run, 'SLUICE_TASK_FAILED', /per-version load needs the pin token/);
    const noTarget = await run({ task: 'load', qps: 10, requests: 1 }, {}, 'start');
    assertFailed(noTarget.run, 'SLUICE_TASK_FAILED', /load has no target/);
  });

  it('counts error statuses and transport failures as errors', async () => {
    const failing = await server('failing', (_req, res) => {
      res.writeHead(503);
      res.end();
    });
    const a = await run({ task: 'load', url: failing.url, qps: 200, requests: 10 }, {}, 'start');
    assert.equal(a.run.state, 'succeeded', JSON.stringify(a.run.error));
    assert.equal((a.run.output as unknown as LoadOutput).errors, 10);
    const b = await run({ task: 'load', url: await refusingUrl(), qps: 200, requests: 10 }, {}, 'start');
    const o = b.run.output as unknown as LoadOutput;
    assert.equal(o.errors, 10);
    assert.match(String(o.firstError), /ECONNREFUSED/);
  });

  it('stops when the experiment ends (stopped: true, a success) and fails on timeout with its counts', async () => {
    const target = await server('target', undefined, { record: false });
    const doc = experiment({ start: [{ task: 'load', url: target.url, qps: 50, durationSeconds: 30 }] });
    const ac = new AbortController();
    const t0 = Date.now();
    const pending = runTask('start', doc.spec.tasks.start[0]!, context(doc, { signal: ac.signal }));
    setTimeout(() => ac.abort(new Error('experiment completed')), 300);
    const stopped = await pending;
    assert.ok(Date.now() - t0 < 3000, `stopped after ${Date.now() - t0} ms`);
    assert.equal(stopped.state, 'succeeded', JSON.stringify(stopped.error));
    const o = stopped.output as unknown as LoadOutput;
    assert.equal(o.stopped, true);
    assert.ok(o.requests > 0 && o.requests < 100, `${o.requests} requests`);

    const timed = await run({ task: 'load', url: target.url, qps: 50, durationSeconds: 30, timeoutSeconds: 0.3 }, {}, 'start');
    assertFailed(timed.run, 'SLUICE_TASK_TIMEOUT', /load did not finish within 0\.3 s \(timeoutSeconds\): \d+ of 1500 requests sent/);
    assert.ok((timed.run.output as unknown as LoadOutput).requests > 0);
  });
});

// ---------------------------------------------------------------- validation

describe('spec.tasks validation', () => {
  it('fills the defaults', () => {
    const doc = experiment({
      start: [{ task: 'readiness' }, { task: 'load', qps: 5, durationSeconds: 10 }],
      loop: [{ task: 'notify', url: 'http://hooks.example/x', every: 3 }],
      finish: [
        { task: 'github', repository: 'acme/deploy' },
        { task: 'github', mode: 'pullRequest', repository: 'acme/deploy', path: 'a.yaml', content: 'x', if: 'always', onError: 'continue' },
        { task: 'exec', name: 'promote', command: ['true'] },
      ],
    });
    const [readiness, load] = doc.spec.tasks.start;
    assert.deepEqual(readiness, { name: 'start-0-readiness', if: 'always', onError: 'fail', every: 1, timeoutSeconds: 60, task: 'readiness', urls: {}, path: '/', intervalSeconds: 1 });
    assert.deepEqual(load, {
      name: 'start-1-load', if: 'always', onError: 'fail', every: 1, timeoutSeconds: 600, task: 'load',
      url: null, path: '/', qps: 5, durationSeconds: 10, requests: null, concurrency: 16, method: 'GET', headers: {}, body: null, bodyFile: null, versions: [],
    });
    assert.deepEqual(doc.spec.tasks.loop[0], { name: 'loop-0-notify', if: 'always', onError: 'fail', every: 3, timeoutSeconds: 10, task: 'notify', url: 'http://hooks.example/x', format: 'json', headers: {} });
    const [dispatch, pr, exec] = doc.spec.tasks.finish;
    assert.deepEqual(dispatch, {
      name: 'finish-0-github', if: 'success', onError: 'fail', every: 1, timeoutSeconds: 30, task: 'github', repository: 'acme/deploy', mode: 'dispatch',
      apiUrl: 'https://api.github.com', tokenEnv: 'GITHUB_TOKEN', eventType: 'sluice-experiment', path: null, content: null, base: null, branch: null, title: null,
    });
    assert.equal(pr?.if, 'always');
    assert.equal(pr?.onError, 'continue');
    assert.equal(pr?.task === 'github' && pr.base, 'main');
    assert.deepEqual(exec, { name: 'promote', if: 'success', onError: 'fail', every: 1, timeoutSeconds: 300, task: 'exec', command: ['true'], shell: false, env: {}, cwd: null });
  });

  const exec = { task: 'exec', command: ['true'] };
  const cases: Array<{ name: string; tasks: unknown; paths: string[] }> = [
    { name: 'tasks not a mapping', tasks: [], paths: ['spec.tasks'] },
    { name: 'phase not a list', tasks: { start: { task: 'exec' } }, paths: ['spec.tasks.start'] },
    { name: 'unknown phase', tasks: { end: [] }, paths: ['spec.tasks.end'] },
    { name: 'kind as a key', tasks: { finish: [{ notify: 'x' }] }, paths: ['spec.tasks.finish[0].task'] },
    { name: 'unknown kind', tasks: { start: [{ task: 'deploy' }] }, paths: ['spec.tasks.start[0].task'] },
    { name: 'unknown field', tasks: { start: [{ ...exec, colour: 'blue' }] }, paths: ['spec.tasks.start[0].colour'] },
    { name: 'if outside finish', tasks: { start: [{ ...exec, if: 'always' }] }, paths: ['spec.tasks.start[0].if'] },
    { name: 'bad if', tasks: { finish: [{ ...exec, if: 'sometimes' }] }, paths: ['spec.tasks.finish[0].if'] },
    { name: 'every outside loop', tasks: { finish: [{ ...exec, every: 2 }] }, paths: ['spec.tasks.finish[0].every'] },
    { name: 'every 0', tasks: { loop: [{ ...exec, every: 0 }] }, paths: ['spec.tasks.loop[0].every'] },
    { name: 'bad onError and timeout', tasks: { start: [{ ...exec, onError: 'ignore', timeoutSeconds: 0 }] }, paths: ['spec.tasks.start[0].onError', 'spec.tasks.start[0].timeoutSeconds'] },
    { name: 'duplicate names across phases', tasks: { start: [{ ...exec, name: 'a' }], finish: [{ ...exec, name: 'a' }] }, paths: ['spec.tasks.finish[0].name'] },
    { name: 'explicit name equal to a default', tasks: { start: [exec, { ...exec, name: 'start-0-exec' }] }, paths: ['spec.tasks.start[1].name'] },
    { name: 'load: no qps, both modes', tasks: { start: [{ task: 'load', durationSeconds: 5, requests: 5 }] }, paths: ['spec.tasks.start[0]', 'spec.tasks.start[0].qps'] },
    { name: 'load: neither mode, qps too high', tasks: { start: [{ task: 'load', qps: 20000 }] }, paths: ['spec.tasks.start[0]', 'spec.tasks.start[0].qps'] },
    { name: 'load: per-version total too high', tasks: { start: [{ task: 'load', qps: 6000, requests: 1, versions: ['v1', 'v2'] }] }, paths: ['spec.tasks.start[0].qps'] },
    { name: 'load: unknown version, bad url', tasks: { start: [{ task: 'load', qps: 1, requests: 1, versions: ['v9'], url: 'http://h/x?q=1' }] }, paths: ['spec.tasks.start[0].url', 'spec.tasks.start[0].versions[0]'] },
    { name: 'load: body and bodyFile', tasks: { start: [{ task: 'load', qps: 1, requests: 1, method: 'POST', body: 'x', bodyFile: 'f' }] }, paths: ['spec.tasks.start[0].bodyFile'] },
    { name: 'load: body on GET', tasks: { start: [{ task: 'load', qps: 1, requests: 1, body: 'x' }] }, paths: ['spec.tasks.start[0].body'] },
    { name: 'load: bad path, concurrency, method', tasks: { start: [{ task: 'load', qps: 1, requests: 1, path: 'x', concurrency: 0, method: 'GE T' }] }, paths: ['spec.tasks.start[0].concurrency', 'spec.tasks.start[0].method', 'spec.tasks.start[0].path'] },
    { name: 'readiness: unknown version, bad URL', tasks: { start: [{ task: 'readiness', urls: { v9: 'http://h/', v1: 'ftp://h/' }, intervalSeconds: -1 }] }, paths: ['spec.tasks.start[0].intervalSeconds', 'spec.tasks.start[0].urls.v1', 'spec.tasks.start[0].urls.v9'] },
    { name: 'notify: no url', tasks: { finish: [{ task: 'notify' }] }, paths: ['spec.tasks.finish[0].url'] },
    { name: 'notify: bad url, format, header', tasks: { finish: [{ task: 'notify', url: 'hooks.example/x', format: 'xml', headers: { 'bad header': 'x', ok: 5 } }] }, paths: ['spec.tasks.finish[0].format', 'spec.tasks.finish[0].headers.bad header', 'spec.tasks.finish[0].headers.ok', 'spec.tasks.finish[0].url'] },
    { name: 'notify: credentials in the url', tasks: { finish: [{ task: 'notify', url: 'https://user:pw@hooks.example/x' }] }, paths: ['spec.tasks.finish[0].url'] },
    { name: 'notify: unknown template variables', tasks: { finish: [{ task: 'notify', url: 'http://h/{{winer}}', headers: { x: '{{weights.v9}}' } }] }, paths: ['spec.tasks.finish[0].headers.x', 'spec.tasks.finish[0].url'] },
    { name: 'github: no repository, bad mode', tasks: { finish: [{ task: 'github', mode: 'push' }] }, paths: ['spec.tasks.finish[0].mode', 'spec.tasks.finish[0].repository'] },
    { name: 'github: bad repository, tokenEnv, apiUrl', tasks: { finish: [{ task: 'github', repository: 'acme', tokenEnv: 'GH-TOKEN', apiUrl: 'api.github.com' }] }, paths: ['spec.tasks.finish[0].apiUrl', 'spec.tasks.finish[0].repository', 'spec.tasks.finish[0].tokenEnv'] },
    { name: 'github: pullRequest needs path and content', tasks: { finish: [{ task: 'github', repository: 'a/b', mode: 'pullRequest' }] }, paths: ['spec.tasks.finish[0].content', 'spec.tasks.finish[0].path'] },
    { name: 'github: pullRequest fields in dispatch mode', tasks: { finish: [{ task: 'github', repository: 'a/b', path: 'x', branch: 'b' }] }, paths: ['spec.tasks.finish[0].branch', 'spec.tasks.finish[0].path'] },
    { name: 'github: bad path, branch, content template', tasks: { finish: [{ task: 'github', repository: 'a/b', mode: 'pullRequest', path: '../x', content: '{{nope}}', branch: 'a..b', eventType: 'x' }] }, paths: ['spec.tasks.finish[0].branch', 'spec.tasks.finish[0].content', 'spec.tasks.finish[0].eventType', 'spec.tasks.finish[0].path'] },
    { name: 'exec: empty command', tasks: { finish: [{ task: 'exec', command: [] }] }, paths: ['spec.tasks.finish[0].command'] },
    { name: 'exec: no command', tasks: { finish: [{ task: 'exec' }] }, paths: ['spec.tasks.finish[0].command'] },
    { name: 'exec: bad args, env, shell, cwd', tasks: { finish: [{ task: 'exec', command: ['', 5], env: { SLUICE_WINNER: 'x', 'A-B': 'y', N: 1 }, shell: 'yes', cwd: '' }] }, paths: ['spec.tasks.finish[0].command[0]', 'spec.tasks.finish[0].command[1]', 'spec.tasks.finish[0].cwd', 'spec.tasks.finish[0].env.A-B', 'spec.tasks.finish[0].env.N', 'spec.tasks.finish[0].env.SLUICE_WINNER', 'spec.tasks.finish[0].shell'] },
  ];
  for (const c of cases) {
    it(`rejects ${c.name}`, () => {
      let error: unknown;
      try {
        experiment(c.tasks as Record<string, unknown>);
      } catch (err) {
        error = err;
      }
      assert.ok(error instanceof SluiceError, 'expected SLUICE_EXPERIMENT_INVALID');
      assert.equal(error.code, 'SLUICE_EXPERIMENT_INVALID');
      assert.deepEqual([...new Set(error.details.map((d) => d.path))].sort(), [...c.paths].sort(), JSON.stringify(error.details));
    });
  }

  it('says how to write a kind given as a key', () => {
    assert.throws(() => experiment({ finish: [{ notify: 'x' }] }), (err: SluiceError) => err.details.some((d) => /write `task: notify`/.test(d.message)));
  });
});
