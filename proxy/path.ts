/**
 * Request path normalisation, done once before a request is matched to a
 * route and forwarded. Upstreams normalise paths too (nginx resolves `..`
 * after decoding `%2e`), so a path Sluice forwarded verbatim could land
 * outside the version's base path or the route's prefix. After this step the
 * path Sluice matches on is the path the upstream sees.
 *
 * Policy (docs/config.md, "Request paths"):
 * - RFC 3986 §6.2.2: percent-encoded unreserved characters (`%2e`, `%41`, …)
 *   are decoded, other escapes kept with upper-case hex, dot segments removed.
 *   A path climbing above the root stays at the root (`/../x` → `/x`), as
 *   browsers and RFC 3986 §5.2.4 do.
 * - Empty segments are collapsed (`//a///b` → `/a/b`), as nginx's
 *   merge_slashes does, so `//api` cannot slip past a `/api` route.
 * - `%2F` and `%5C` stay encoded (they may be data, such as `@scope%2Fname`).
 *   But an upstream may decode them and then resolve dots, and Tomcat-like
 *   servers drop `;params` before doing so: a segment that would hold a dot
 *   segment under any of those readings (`..%2F`, `..;x`, `..\`) is refused,
 *   as is a malformed escape. The query string is never touched.
 */

const SLASH = 47;
const DOT = 46;
const PERCENT = 37;
const QUESTION = 63;
const BACKSLASH = 92;

/**
 * The normalised form of an origin-form target (`/path?query`), or null when
 * it must be refused. Returns `target` itself, with no allocation, for the
 * common path that needs no work.
 */
export function normalisePath(target: string): string | null {
  let end = target.indexOf('?');
  if (end === -1) end = target.length;
  if (!needsWork(target, end)) return target;
  return slowNormalise(target, end);
}

/** Whether the path part could change: it has an escape, `//`, or a segment starting with a dot. */
function needsWork(s: string, end: number): boolean {
  let prev = 0;
  for (let i = 0; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c === PERCENT) return true;
    if (c === SLASH && prev === SLASH) return true;
    if (c === DOT && (prev === SLASH || prev === BACKSLASH)) return true;
    prev = c;
  }
  return false;
}

function slowNormalise(target: string, end: number): string | null {
  const decoded = decodeUnreserved(target, end);
  if (decoded === null) return null;
  const parts = decoded.split('/');
  const out: string[] = [];
  // parts[0] is '' (the path starts with '/'); the last part decides the trailing slash.
  let trailingSlash = false;
  for (let i = 1; i < parts.length; i++) {
    const seg = parts[i]!;
    const last = i === parts.length - 1;
    if (seg === '' || seg === '.') {
      trailingSlash = last;
      continue;
    }
    if (seg === '..') {
      out.pop();
      trailingSlash = last;
      continue;
    }
    if (hidesDotSegment(seg)) return null;
    out.push(seg);
    trailingSlash = false;
  }
  let path = '/' + out.join('/');
  if (trailingSlash && out.length > 0) path += '/';
  return end === target.length ? path : path + target.slice(end);
}

/**
 * RFC 3986 unreserved characters (ALPHA / DIGIT / "-" / "." / "_" / "~")
 * decoded, other escapes upper-cased; null for a malformed escape.
 */
function decodeUnreserved(s: string, end: number): string | null {
  let out = '';
  let from = 0;
  let i = s.indexOf('%');
  while (i !== -1 && i < end) {
    const h = hex(s.charCodeAt(i + 1));
    const l = hex(s.charCodeAt(i + 2));
    if (h < 0 || l < 0 || i + 2 >= end) return null;
    const code = h * 16 + l;
    out += s.slice(from, i) + (isUnreserved(code) ? String.fromCharCode(code) : '%' + s.slice(i + 1, i + 3).toUpperCase());
    from = i + 3;
    i = s.indexOf('%', from);
  }
  return out + s.slice(from, end);
}

function hex(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

function isUnreserved(c: number): boolean {
  return (
    (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 45 || c === DOT || c === 95 || c === 126
  );
}

const ALT_SEPARATORS = /%2F|%5C|\\/;

/** Whether a segment becomes `.` or `..` for an upstream that splits at `%2F`, `%5C`, `\` or drops `;params`. */
function hidesDotSegment(seg: string): boolean {
  if (seg.indexOf('.') === -1) return false;
  const semi = seg.indexOf(';');
  const head = semi === -1 ? seg : seg.slice(0, semi);
  if (head === '.' || head === '..') return true;
  if (!ALT_SEPARATORS.test(seg)) return false;
  for (const piece of seg.split(/%2F|%5C|\\|;/)) if (piece === '.' || piece === '..') return true;
  return false;
}

/**
 * A route's `pathPrefix` as the matcher compares it: without a trailing slash,
 * '' for the root (matches everything).
 */
export function prefixKey(prefix: string): string {
  let end = prefix.length;
  while (end > 0 && prefix.charCodeAt(end - 1) === SLASH) end--;
  return prefix.slice(0, end);
}

/**
 * Whether a normalised target lies under a prefix key on a segment boundary,
 * as Gateway API's PathPrefix: `/api` matches `/api`, `/api/x`, `/api?q`, not `/apiary`.
 */
export function underPrefix(url: string, key: string): boolean {
  if (key.length === 0) return true;
  if (!url.startsWith(key)) return false;
  if (url.length === key.length) return true;
  const c = url.charCodeAt(key.length);
  return c === SLASH || c === QUESTION;
}
