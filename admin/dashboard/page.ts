/**
 * The dashboard's page: one self-contained HTML document (inline style and
 * script, nothing to fetch: clusters are often offline), built once per
 * process, and the Content-Security-Policy that goes with it. The inline
 * style and script are allowed by their SHA-256 hashes; nothing else may
 * run or load, and the page may only talk to its own origin.
 *
 * The page holds no data: it is served without the admin token, and reads
 * everything through the feed, which needs it.
 */
import { createHash } from 'node:crypto';
import { CLIENT_SCRIPT } from './client.js';
import { DASHBOARD_CSS } from './style.js';

export interface DashboardPage {
  readonly html: string;
  readonly csp: string;
  readonly etag: string;
}

const sha256 = (text: string) => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;

/**
 * `readOnly`: the page shows no action. `tokenRequired`: the page asks for
 * the token before its first read (so it never starts with a refused request).
 */
export function dashboardPage(opts: { readOnly: boolean; tokenRequired: boolean }): DashboardPage {
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="sluice-dashboard" content="${opts.readOnly ? 'read-only' : 'on'}">
<meta name="sluice-token" content="${opts.tokenRequired ? 'required' : 'none'}">
<link rel="icon" href="data:,">
<title>Sluice</title>
<style>${DASHBOARD_CSS}</style>
</head>
<body>
<noscript><p>This page needs JavaScript. The same figures are in the admin API: GET /experiments, /routes and /stats.</p></noscript>
<script>${CLIENT_SCRIPT}</script>
</body>
</html>
`;
  const csp = [
    "default-src 'none'",
    `script-src ${sha256(CLIENT_SCRIPT)}`,
    `style-src ${sha256(DASHBOARD_CSS)}`,
    // The empty favicon (data:,), so the browser asks the admin API for none.
    'img-src data:',
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
  return { html, csp, etag: `"${createHash('sha256').update(html).digest('base64url').slice(0, 27)}"` };
}
