/**
 * The dashboard page's stylesheet: system fonts only (nothing to fetch),
 * black on white with colours that keep 4.5:1 contrast for text (axe checks
 * it in test/dashboard-browser.test.ts), the same version colours as the
 * charts. Served inline, allowed by its hash in the page's CSP.
 */
export const DASHBOARD_CSS = `
:root { color-scheme: light; --fg: #1a1a1a; --muted: #545454; --line: #d9d9d9; --soft: #f4f5f7; --accent: #0b5cad; --ok: #1b7a3d; --bad: #b3261e; --warn: #7a5200; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: var(--fg); background: #fff; }
a { color: var(--accent); }
a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible, summary:focus-visible { outline: 3px solid #1a73e8; outline-offset: 2px; }
header.top { display: flex; flex-wrap: wrap; align-items: center; gap: .5em 1.5em; padding: .6em 1.2em; border-bottom: 1px solid var(--line); background: var(--soft); }
header.top h1 { font-size: 1.1em; margin: 0; }
header.top nav ul { display: flex; gap: 1em; list-style: none; margin: 0; padding: 0; }
header.top nav a { text-decoration: none; font-weight: 600; padding: .2em .1em; }
header.top nav a[aria-current="page"] { border-bottom: 3px solid var(--accent); }
.proc { color: var(--muted); font-size: .9em; }
.conn { margin: 0 0 0 auto; font-size: .9em; }
.conn::before { content: "\\25CF"; margin-right: .35em; color: var(--muted); }
.conn.live::before { color: var(--ok); }
.conn.down::before { color: var(--bad); }
main { max-width: 1280px; margin: 0 auto; padding: .8em 1.2em 3em; }
main.stale .data { opacity: .6; }
h2 { font-size: 1.35em; margin: .6em 0 .4em; }
h3 { font-size: 1.1em; margin: 1.6em 0 .4em; padding-bottom: .2em; border-bottom: 1px solid var(--line); }
.banner { margin: .6em 0; padding: .55em .8em; border-left: 4px solid var(--accent); background: #eef4fb; }
.banner.error { border-color: var(--bad); background: #fbeeed; }
.banner.warning { border-color: var(--warn); background: #fbf5e6; }
.alerts { list-style: none; padding: 0; margin: .6em 0; }
.alerts li { margin: .3em 0; padding: .45em .8em; border-left: 4px solid var(--accent); background: #eef4fb; }
.alerts li.error { border-color: var(--bad); background: #fbeeed; }
.alerts li.warning { border-color: var(--warn); background: #fbf5e6; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .2em 1.2em; margin: .4em 0 .8em; }
dl.facts dt { font-weight: 600; } dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.state { display: inline-block; font-size: .8em; font-weight: 600; padding: .05em .55em; border: 1px solid currentColor; border-radius: .3em; vertical-align: middle; }
.state-completed { color: var(--ok); } .state-failed { color: var(--bad); } .state-aborted { color: var(--warn); }
.state-running, .state-pending { color: var(--accent); } .state-paused { color: #5b3f99; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; margin: .3em 0 .8em; }
caption { text-align: left; font-weight: 600; padding: .2em 0 .4em; }
th, td { text-align: left; vertical-align: top; padding: .3em .8em .3em 0; border-bottom: 1px solid var(--line); }
thead th { font-size: .85em; color: var(--muted); border-bottom: 1px solid #8c8c8c; white-space: nowrap; }
td.num, th.num { text-align: right; }
.v-feasible, .yes { color: var(--ok); font-weight: 600; } .v-infeasible, .no { color: var(--bad); font-weight: 600; } .v-inconclusive, .unknown { color: var(--muted); }
.t-failed { color: var(--bad); font-weight: 600; } .t-succeeded { color: var(--ok); }
.muted, .note, figcaption { color: var(--muted); }
.note, figcaption { font-size: .9em; }
.swatch { display: inline-block; width: .8em; height: .8em; border-radius: .15em; margin-right: .35em; vertical-align: -.05em; }
.weights { display: flex; align-items: center; gap: .6em; min-width: 16em; }
.bar { display: flex; flex: 0 0 10em; height: .9em; border: 1px solid #8c8c8c; border-radius: .2em; overflow: hidden; background: #fff; }
.bar span { display: block; height: 100%; }
.weights .wtext { font-size: .9em; white-space: nowrap; }
figure { margin: .6em 0 1.4em; }
figure .svg { max-width: 820px; }
svg.chart { display: block; width: 100%; height: auto; }
details { margin: .3em 0; }
summary { cursor: pointer; color: var(--accent); }
.actions { display: flex; flex-wrap: wrap; align-items: center; gap: .6em; margin: .6em 0; padding: .6em .8em; background: var(--soft); border: 1px solid var(--line); border-radius: .3em; }
.actions h3 { margin: 0 .6em 0 0; padding: 0; border: 0; font-size: 1em; }
button { font: inherit; padding: .3em .9em; border: 1px solid #6b6b6b; border-radius: .3em; background: #fff; color: var(--fg); cursor: pointer; }
button.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
button.danger { border-color: var(--bad); color: var(--bad); }
button.danger.primary { background: var(--bad); color: #fff; }
button:disabled { opacity: .55; cursor: not-allowed; }
input, select { font: inherit; padding: .25em .4em; border: 1px solid #6b6b6b; border-radius: .25em; }
input[type="number"] { width: 5.5em; }
.login { max-width: 28em; margin: 2em auto; padding: 1.2em 1.4em; border: 1px solid var(--line); border-radius: .4em; }
.login label { display: block; font-weight: 600; margin: .6em 0 .3em; }
.login input { width: 100%; }
.login .row { margin-top: .9em; display: flex; gap: .6em; }
.editor { margin: .4em 0 .8em; }
.editor fieldset { border: 1px solid var(--line); border-radius: .3em; display: flex; flex-wrap: wrap; gap: .5em 1.2em; align-items: end; }
.editor label { display: flex; flex-direction: column; font-size: .9em; }
.error-text { color: var(--bad); }
.toast { position: fixed; right: 1em; bottom: 1em; max-width: 32em; padding: .6em .9em; background: #1a1a1a; color: #fff; border-radius: .3em; }
.toast:empty { display: none; }
.toast.error { background: var(--bad); }
dialog { border: 1px solid #8c8c8c; border-radius: .4em; padding: 1em 1.3em; max-width: 32em; }
dialog::backdrop { background: rgba(0, 0, 0, .35); }
dialog h2 { font-size: 1.15em; margin-top: 0; }
dialog .row { display: flex; gap: .6em; justify-content: flex-end; margin-top: 1em; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
[hidden] { display: none !important; }
`;
