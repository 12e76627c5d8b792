/**
 * Reading the request attributes that rules and sticky keys look at, without
 * parsing more than asked for: a cookie or query value is found by scanning
 * the one header or query string, never by building a map of all of them.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { setFlagsFromString } from 'node:v8';
import type { RuleConfig, ValueMatch } from '../config/types.js';

/**
 * Rule regexes run on values the client chooses. A value longer than this
 * never matches a regex (documented in docs/config.md), which bounds the work
 * of even the linear engine per request.
 */
export const MAX_REGEX_INPUT = 4096;

let linearEngine: boolean | undefined;

/**
 * Whether V8's linear-time regex engine (the `l` flag) is available. It is
 * behind a V8 flag that only adds the `l` flag: other regexes are unchanged.
 * A backtracking pattern such as `(a+)+$` or `.*.*.*x` would otherwise let
 * one request stall the event loop for seconds to hours.
 */
export function hasLinearRegex(): boolean {
  if (linearEngine === undefined) {
    try {
      setFlagsFromString('--enable-experimental-regexp-engine');
      linearEngine = new RegExp('a', 'l').flags.includes('l');
    } catch {
      linearEngine = false;
    }
  }
  return linearEngine;
}

/**
 * A rule regex compiled so that matching takes time linear in the value, or
 * why it cannot be. With the linear engine, patterns it cannot run
 * (backreferences, lookarounds) are refused; without it (a future V8), a
 * conservative static check refuses those and nested quantifiers.
 */
export function compileRuleRegex(source: string): RegExp | string {
  const linear = hasLinearRegex();
  const unsafe = linear ? null : backtrackingHazard(source);
  if (unsafe !== null) return unsafe;
  try {
    return new RegExp(source, linear ? 'l' : '');
  } catch (err) {
    const msg = (err as Error).message;
    if (/linear time/.test(msg)) return `${msg} (backreferences and lookarounds are not allowed in rule regexes)`;
    return msg;
  }
}

/** Backreferences, lookarounds and quantified groups that contain a quantifier; null when none. */
export function backtrackingHazard(source: string): string | null {
  if (/\\[1-9]|\\k</.test(source)) return 'backreferences are not allowed in rule regexes';
  if (/\(\?<?[=!]/.test(source)) return 'lookarounds are not allowed in rule regexes';
  const groups: boolean[] = []; // per open group: does it contain a quantifier?
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i]!;
    if (c === '\\') {
      i++;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      continue;
    }
    if (c === '[') inClass = true;
    else if (c === '(') groups.push(false);
    else if (c === ')') {
      const hadQuantifier = groups.pop() ?? false;
      const next = source[i + 1];
      const quantified = next === '*' || next === '+' || next === '?' || next === '{';
      if (hadQuantifier && quantified) return 'nested quantifiers (such as (a+)+) are not allowed in rule regexes';
      if ((hadQuantifier || quantified) && groups.length > 0) groups[groups.length - 1] = true;
    } else if ((c === '*' || c === '+' || c === '{' || c === '?') && groups.length > 0 && source[i - 1] !== '(') {
      groups[groups.length - 1] = true;
    }
  }
  return null;
}

/** The value of cookie `name` in a Cookie header, or undefined. */
export function getCookie(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  let at = 0;
  const n = header.length;
  while (at < n) {
    while (at < n && (header.charCodeAt(at) === 32 || header.charCodeAt(at) === 59)) at++; // spaces and ';'
    const eq = header.indexOf('=', at);
    let end = header.indexOf(';', at);
    if (end === -1) end = n;
    if (eq !== -1 && eq < end && eq - at === name.length && header.startsWith(name, at)) {
      let value = header.slice(eq + 1, end).trim();
      if (value.length >= 2 && value.charCodeAt(0) === 34 && value.charCodeAt(value.length - 1) === 34) {
        value = value.slice(1, -1);
      }
      return value;
    }
    at = end + 1;
  }
  return undefined;
}

/** The first value of query parameter `name` in a request URL, decoded, or undefined. */
export function getQueryParam(url: string, name: string): string | undefined {
  const q = url.indexOf('?');
  if (q === -1) return undefined;
  let at = q + 1;
  const n = url.length;
  while (at <= n) {
    let end = url.indexOf('&', at);
    if (end === -1) end = n;
    const eq = url.indexOf('=', at);
    const keyEnd = eq !== -1 && eq < end ? eq : end;
    if (decode(url.slice(at, keyEnd)) === name) {
      return keyEnd === end ? '' : decode(url.slice(keyEnd + 1, end));
    }
    at = end + 1;
  }
  return undefined;
}

function decode(s: string): string {
  if (s.indexOf('%') === -1 && s.indexOf('+') === -1) return s;
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s; // a malformed escape is matched as written
  }
}

export function matchValue(m: ValueMatch, value: string | undefined): boolean {
  switch (m.kind) {
    case 'exact':
      return value === m.value;
    case 'regex':
      return value !== undefined && value.length <= MAX_REGEX_INPUT && m.regex.test(value);
    case 'present':
      return (value !== undefined) === m.present;
  }
}

function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}

/** A rule compiled to one predicate over (headers, url); every condition must hold. */
export type RulePredicate = (headers: IncomingHttpHeaders, url: string) => boolean;

export function compileRule(rule: RuleConfig): RulePredicate {
  const { headers, cookies, query } = rule.match;
  return (h, url) => {
    for (const [name, m] of headers) if (!matchValue(m, headerValue(h, name))) return false;
    if (cookies.length > 0) {
      const cookieHeader = headerValue(h, 'cookie');
      for (const [name, m] of cookies) if (!matchValue(m, getCookie(cookieHeader, name))) return false;
    }
    for (const [name, m] of query) if (!matchValue(m, getQueryParam(url, name))) return false;
    return true;
  };
}
