/**
 * `github`: tells a repository about the outcome, through the GitHub REST API
 * (`apiUrl` for GitHub Enterprise):
 *  - mode dispatch: a `repository_dispatch` event whose client_payload is the
 *    summary, for a workflow `on: repository_dispatch` to promote;
 *  - mode pullRequest: a commit of one file (rendered `content`) on a branch
 *    and a pull request from it, for GitOps repositories. Re-running is safe:
 *    an existing branch, identical content and an open pull request are reused.
 * The token comes from the environment (`tokenEnv`); it is sent only as the
 * Authorization header and never appears in status, logs or errors.
 */
import type { Agent } from 'undici';
import { SluiceError } from '../../common/errors.js';
import type { Obj } from '../../common/validation.js';
import { expected, httpUrl, join, readEnum } from '../../common/validation.js';
import type { TaskSpecBase } from './base.js';
import { bodyHint, httpCall, renderTask, withAgent } from './common.js';
import { experimentSummary, taskTemplateVars, versionLines, type ExperimentSummary } from './summary.js';
import { ENV_NAME, readRef, readRepoPath, readTemplate } from './fields.js';
import type { TaskContext, TaskFields, TaskImpl, TaskReadContext } from './types.js';

export interface GithubTaskSpec extends TaskSpecBase {
  readonly task: 'github';
  /** owner/name */
  readonly repository: string;
  readonly mode: 'dispatch' | 'pullRequest';
  readonly apiUrl: string;
  /** Environment variable holding the token. */
  readonly tokenEnv: string;
  /** dispatch: event_type. */
  readonly eventType: string;
  /** pullRequest: the file to change, its new content (template), branches and texts. */
  readonly path: string | null;
  readonly content: string | null;
  readonly base: string | null;
  readonly branch: string | null;
  readonly title: string | null;
}

declare module './base.js' {
  interface TaskSpecs {
    github: GithubTaskSpec;
  }
}

/** The kind's defaults (docs/tasks.md). */
const DEFAULTS = { timeoutSeconds: 30, mode: 'dispatch', apiUrl: 'https://api.github.com', tokenEnv: 'GITHUB_TOKEN', eventType: 'sluice-experiment', base: 'main' } as const;
const REPOSITORY = /^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/;

export const githubTask: TaskImpl<GithubTaskSpec> = {
  keys: ['repository', 'mode', 'apiUrl', 'tokenEnv', 'eventType', 'path', 'content', 'base', 'branch', 'title'],
  timeoutSeconds: DEFAULTS.timeoutSeconds,
  read: (c, o, path, base) => ({ ...base, task: 'github', ...readGithub(c, o, path) }),
  secrets(spec, ctx) {
    const token = ctx.env[spec.tokenEnv];
    return { values: token !== undefined ? [token] : [], templates: [spec.content ?? '', spec.title ?? ''] };
  },
  async run(spec, ctx) {
    const token = ctx.env[spec.tokenEnv];
    if (token === undefined || token === '') {
      throw new SluiceError('SLUICE_TASK_FAILED', `environment variable ${spec.tokenEnv} is not set: it must hold a GitHub token (tokenEnv; scopes in docs/tasks.md)`);
    }
    return withAgent(async (agent) => {
      const api = new RepoApi(spec, token, ctx.signal, agent);
      const summary = experimentSummary(ctx.doc, ctx.status);
      return spec.mode === 'dispatch' ? dispatch(api, spec, summary, ctx) : pullRequest(api, spec, summary, ctx);
    });
  },
};

async function dispatch(api: RepoApi, spec: GithubTaskSpec, summary: ExperimentSummary, ctx: TaskContext): Promise<Record<string, unknown>> {
  await api.call('POST', '/dispatches', { event_type: spec.eventType, client_payload: summary }, [204]);
  ctx.log.info({ task: spec.name, repository: spec.repository, eventType: spec.eventType }, 'repository_dispatch sent');
  return { dispatched: true, repository: spec.repository, eventType: spec.eventType };
}

async function pullRequest(api: RepoApi, spec: GithubTaskSpec, summary: ExperimentSummary, ctx: TaskContext): Promise<Record<string, unknown>> {
  const vars = taskTemplateVars(ctx.doc, ctx.status);
  const base = spec.base ?? 'main';
  const branch = spec.branch ?? `sluice/${ctx.doc.name}`;
  if (spec.path === null || spec.content === null) throw new SluiceError('SLUICE_TASK_FAILED', 'mode pullRequest needs path and content');
  const file = spec.path;
  const content = renderTask(spec.content, vars, ctx.env, 'content').text;
  const title = spec.title === null ? defaultTitle(summary) : renderTask(spec.title, vars, ctx.env, 'title').text;

  const baseRef = await api.call('GET', `/git/ref/heads/${segments(base)}`, null, [200]);
  const sha = field(baseRef.json, 'object', 'sha');
  if (typeof sha !== 'string') throw new SluiceError('SLUICE_TASK_HTTP', `GET ${api.shown(`/git/ref/heads/${segments(base)}`)}: no object.sha in the answer`);

  // 422 "Reference already exists": an earlier run made the branch; commit on top of it.
  const created = await api.call('POST', '/git/refs', { ref: `refs/heads/${branch}`, sha }, [201, 422]);
  if (created.status === 422 && !/already exists/i.test(created.text)) api.fail('POST', '/git/refs', created);
  const branchCreated = created.status === 201;

  const contentsPath = `/contents/${segments(file)}`;
  const existing = await api.call('GET', `${contentsPath}?ref=${encodeURIComponent(branch)}`, null, [200, 404]);
  const fileSha = existing.status === 200 ? field(existing.json, 'sha') : undefined;
  const current = existing.status === 200 ? field(existing.json, 'content') : undefined;
  const encoded = Buffer.from(content, 'utf8').toString('base64');
  // GitHub returns the content base64 with line breaks; compare the bytes, not the text.
  const unchanged = typeof current === 'string' && Buffer.from(current, 'base64').equals(Buffer.from(content, 'utf8'));
  if (!unchanged) {
    const put = { message: title, content: encoded, branch, ...(typeof fileSha === 'string' ? { sha: fileSha } : {}) };
    await api.call('PUT', contentsPath, put, [200, 201]);
  }

  const opened = await api.call('POST', '/pulls', { title, head: branch, base, body: prBody(summary) }, [201, 422]);
  let pr: { number: unknown; url: unknown; existing: boolean };
  if (opened.status === 201) pr = { number: field(opened.json, 'number'), url: field(opened.json, 'html_url'), existing: false };
  else {
    // 422 for an open pull request from this branch: find it and report it rather than fail.
    const owner = spec.repository.split('/')[0]!;
    const query = `?head=${encodeURIComponent(`${owner}:${branch}`)}&base=${encodeURIComponent(base)}&state=open`;
    const list = await api.call('GET', `/pulls${query}`, null, [200]);
    const first: unknown = Array.isArray(list.json) ? list.json[0] : undefined;
    if (first === undefined) api.fail('POST', '/pulls', opened);
    pr = { number: field(first, 'number'), url: field(first, 'html_url'), existing: true };
  }
  ctx.log.info({ task: spec.name, repository: spec.repository, branch, pullRequest: pr.url }, 'pull request ready');
  return { repository: spec.repository, base, branch, branchCreated, fileChanged: !unchanged, pullRequest: pr };
}

interface ApiAnswer {
  readonly status: number;
  readonly text: string;
  readonly json: unknown;
}

/** Calls under {apiUrl}/repos/{owner}/{name} with GitHub's headers and the token. */
class RepoApi {
  readonly #root: string;

  constructor(
    private readonly spec: GithubTaskSpec,
    private readonly token: string,
    private readonly signal: AbortSignal,
    private readonly agent: Agent,
  ) {
    const [owner, name] = spec.repository.split('/');
    this.#root = `${spec.apiUrl.replace(/\/+$/, '')}/repos/${encodeURIComponent(owner!)}/${encodeURIComponent(name!)}`;
  }

  shown(path: string): string {
    return `${this.#root}${path}`;
  }

  /** Resolves for the `accept`ed statuses; any other is SLUICE_TASK_HTTP with GitHub's message. */
  async call(method: string, path: string, body: unknown, accept: readonly number[]): Promise<ApiAnswer> {
    const headers: Record<string, string> = {
      authorization: `Bearer ${this.token}`,
      accept: 'application/vnd.github+json',
      'x-github-api-version': '2022-11-28',
      'user-agent': 'sluice',
    };
    if (body !== null) headers['content-type'] = 'application/json';
    const answer = await httpCall({
      method,
      url: new URL(this.shown(path)),
      shown: this.shown(path),
      headers,
      body: body === null ? null : JSON.stringify(body),
      signal: this.signal,
      dispatcher: this.agent,
    });
    let json: unknown = null;
    try {
      json = answer.text === '' ? null : JSON.parse(answer.text);
    } catch {
      // Not JSON (a proxy's error page): the text is still in the error message.
    }
    const result = { status: answer.status, text: answer.text, json };
    if (!accept.includes(answer.status)) this.fail(method, path, result);
    return result;
  }

  fail(method: string, path: string, a: ApiAnswer): never {
    const hint = a.status === 401 || a.status === 403 || a.status === 404 ? ` (does the token in ${this.spec.tokenEnv} have access to ${this.spec.repository}?)` : '';
    throw new SluiceError('SLUICE_TASK_HTTP', `${method} ${this.shown(path)} answered ${a.status}${bodyHint(a.text)}${hint}`);
  }
}

/** A path's segments, each URL-encoded; the slashes stay. */
function segments(path: string): string {
  return path.split('/').map(encodeURIComponent).join('/');
}

function field(v: unknown, ...keys: string[]): unknown {
  let cur = v;
  for (const k of keys) {
    if (cur === null || typeof cur !== 'object' || !Object.hasOwn(cur, k)) return undefined;
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur;
}

function defaultTitle(s: ExperimentSummary): string {
  return s.winner !== null ? `Sluice: promote ${s.winner} (experiment ${s.experiment})` : `Sluice: experiment ${s.experiment} ${s.state.toLowerCase()}, no winner`;
}

function prBody(s: ExperimentSummary): string {
  return [
    `Experiment **${s.experiment}** on route **${s.route}**: ${s.state} after ${s.iteration} iteration${s.iteration === 1 ? '' : 's'}.`,
    '',
    `Winner: ${s.winner === null ? 'none' : `**${s.winner}**`}`,
    `Reason: ${s.reason}`,
    '',
    ...versionLines(s, (t) => `**${t}**`).map((l) => `- ${l}`),
    '',
    '_Opened by Sluice._',
  ].join('\n');
}

// ---------------------------------------------------------------- reading the spec

function readGithub(c: TaskReadContext, o: Obj, path: string): TaskFields<GithubTaskSpec> {
  const { p } = c;
  const repoPath = join(path, 'repository');
  let repository = '';
  if (o.repository == null) p.add(repoPath, 'required: owner/name of the repository');
  else if (typeof o.repository === 'string' && REPOSITORY.test(o.repository)) repository = o.repository;
  else expected(p, repoPath, 'owner/name of a repository, such as acme/deploy', o.repository, null);
  const mode = readEnum(p, o.mode, join(path, 'mode'), ['dispatch', 'pullRequest'] as const, DEFAULTS.mode);
  let apiUrl: string = DEFAULTS.apiUrl;
  if (o.apiUrl != null) {
    const what = 'the GitHub REST API base URL, such as https://github.example.com/api/v3';
    if (typeof o.apiUrl !== 'string') expected(p, join(path, 'apiUrl'), what, o.apiUrl, null);
    else if (httpUrl(p, o.apiUrl, join(path, 'apiUrl'), what) !== null) apiUrl = o.apiUrl.replace(/\/+$/, '');
  }
  let tokenEnv: string = DEFAULTS.tokenEnv;
  if (o.tokenEnv != null) {
    if (typeof o.tokenEnv === 'string' && ENV_NAME.test(o.tokenEnv)) tokenEnv = o.tokenEnv;
    else expected(p, join(path, 'tokenEnv'), 'the name of the environment variable holding the token, such as GITHUB_TOKEN', o.tokenEnv, null);
  }
  let eventType: string = DEFAULTS.eventType;
  if (o.eventType != null) {
    const at = join(path, 'eventType');
    if (mode !== 'dispatch') p.add(at, 'eventType applies to mode: dispatch only');
    else if (typeof o.eventType === 'string' && o.eventType.length > 0 && o.eventType.length <= 100) eventType = o.eventType;
    else expected(p, at, 'a string of 1 to 100 characters', o.eventType, null);
  }
  if (mode === 'dispatch') {
    for (const key of ['path', 'content', 'base', 'branch', 'title']) {
      if (o[key] != null) p.add(join(path, key), `${key} applies to mode: pullRequest only`);
    }
    return { repository, mode, apiUrl, tokenEnv, eventType, path: null, content: null, base: null, branch: null, title: null };
  }
  const filePath = readRepoPath(p, o.path, join(path, 'path'));
  const contentPath = join(path, 'content');
  let content: string | null = null;
  if (o.content == null) p.add(contentPath, 'required in mode: pullRequest: the new content of the file (a template)');
  else content = readTemplate(c, o.content, contentPath, 'the new content of the file as a string');
  const title = o.title == null ? null : readTemplate(c, o.title, join(path, 'title'), 'the pull request title as a string');
  return {
    repository, mode, apiUrl, tokenEnv, eventType,
    path: filePath,
    content,
    base: readRef(p, o.base, join(path, 'base')) ?? DEFAULTS.base,
    branch: readRef(p, o.branch, join(path, 'branch')),
    title,
  };
}
