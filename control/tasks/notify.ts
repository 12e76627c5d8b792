/**
 * `notify`: POSTs the experiment summary as JSON to a URL, or as a
 * Slack-compatible message (`format: slack`: a `text` and `blocks` payload,
 * which Slack incoming webhooks and most chat bridges accept).
 */
import { SluiceError } from '../../common/errors.js';
import type { Obj } from '../../common/validation.js';
import { join, readEnum } from '../../common/validation.js';
import type { TaskSpecBase } from './base.js';
import { bodyHint, httpCall, parseRenderedUrl, renderTask, withAgent } from './common.js';
import { experimentSummary, taskTemplateVars, versionLines, type ExperimentSummary } from './summary.js';
import { readHeaders, readUrlTemplate } from './fields.js';
import type { TaskFields, TaskImpl, TaskReadContext } from './types.js';

export interface NotifyTaskSpec extends TaskSpecBase {
  readonly task: 'notify';
  /** Template; may use {{env.NAME}}. */
  readonly url: string;
  readonly format: 'json' | 'slack';
  readonly headers: Readonly<Record<string, string>>;
}

declare module './base.js' {
  interface TaskSpecs {
    notify: NotifyTaskSpec;
  }
}

/** The kind's defaults (docs/tasks.md). */
const DEFAULTS = { timeoutSeconds: 10, format: 'json' } as const;

export const notifyTask: TaskImpl<NotifyTaskSpec> = {
  keys: ['url', 'format', 'headers'],
  timeoutSeconds: DEFAULTS.timeoutSeconds,
  read: (c, o, path, base) => ({ ...base, task: 'notify', ...readNotify(c, o, path) }),
  secrets: (spec) => ({ values: [], templates: [spec.url, ...Object.values(spec.headers)] }),
  async run(spec, ctx) {
    const vars = taskTemplateVars(ctx.doc, ctx.status);
    const url = renderTask(spec.url, vars, ctx.env, 'url');
    const target = parseRenderedUrl(url, 'url');
    // Lower-cased so a spec's Content-Type replaces ours instead of doubling it.
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    for (const [name, template] of Object.entries(spec.headers)) {
      headers[name.toLowerCase()] = renderTask(template, vars, ctx.env, `headers.${name}`).text;
    }
    const summary = experimentSummary(ctx.doc, ctx.status);
    const body = JSON.stringify(spec.format === 'slack' ? slackPayload(summary) : summary);
    const answer = await withAgent((dispatcher) =>
      httpCall({ method: 'POST', url: target, shown: url.masked, headers, body, signal: ctx.signal, dispatcher }),
    );
    if (answer.status < 200 || answer.status > 299) {
      throw new SluiceError('SLUICE_TASK_HTTP', `POST ${url.masked} answered ${answer.status}${bodyHint(answer.text)}`);
    }
    ctx.log.info({ task: spec.name, url: url.masked, status: answer.status }, 'notification sent');
    return { status: answer.status, format: spec.format };
  },
};

export type SlackBlock =
  | { readonly type: 'header'; readonly text: { readonly type: 'plain_text'; readonly text: string } }
  | { readonly type: 'section'; readonly text: { readonly type: 'mrkdwn'; readonly text: string } };

export interface SlackPayload {
  /** The notification text (and what clients without blocks show). */
  readonly text: string;
  readonly blocks: readonly SlackBlock[];
}

/** Slack limits: header text 150 characters, section text 3000. */
const HEADER_MAX = 150;
const SECTION_MAX = 3000;

export function slackPayload(s: ExperimentSummary): SlackPayload {
  const outcome = s.winner !== null ? `winner ${s.winner}` : 'no winner';
  const text = `Experiment ${s.experiment} on ${s.route}: ${s.state}, ${outcome}`;
  const facts = [
    `*State:* ${s.state} after ${s.iteration} iteration${s.iteration === 1 ? '' : 's'}`,
    `*Winner:* ${s.winner === null ? 'none' : escape(s.winner)}`,
    `*Route:* ${escape(s.route)}`,
    `*Reason:* ${escape(s.reason)}`,
  ].join('\n');
  return {
    text: escape(text),
    blocks: [
      { type: 'header', text: { type: 'plain_text', text: clip(`Sluice · ${s.experiment}: ${s.state}`, HEADER_MAX) } },
      { type: 'section', text: { type: 'mrkdwn', text: clip(facts, SECTION_MAX) } },
      { type: 'section', text: { type: 'mrkdwn', text: clip(versionLines(s, (t) => `*${escape(t)}*`).join('\n'), SECTION_MAX) } },
    ],
  };
}

/** Slack mrkdwn's three control characters. */
function escape(t: string): string {
  return t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function clip(t: string, max: number): string {
  return t.length <= max ? t : `${t.slice(0, max - 1)}…`;
}

// ---------------------------------------------------------------- reading the spec

function readNotify(c: TaskReadContext, o: Obj, path: string): TaskFields<NotifyTaskSpec> {
  const { p } = c;
  const urlPath = join(path, 'url');
  let url = '';
  if (o.url == null) p.add(urlPath, 'required: the URL to POST the summary to (may use {{env.NAME}} for a secret webhook)');
  else url = readUrlTemplate(c, o.url, urlPath) ?? '';
  return {
    url,
    format: readEnum(p, o.format, join(path, 'format'), ['json', 'slack'] as const, DEFAULTS.format),
    headers: readHeaders(c, o.headers, join(path, 'headers')),
  };
}
