/**
 * Reading the request attributes that rules and sticky keys look at, without
 * parsing more than asked for: a cookie or query value is found by scanning
 * the one header or query string, never by building a map of all of them.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { RuleConfig, ValueMatch } from './config-types.js';

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
      return value !== undefined && m.regex.test(value);
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
