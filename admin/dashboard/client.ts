/**
 * The dashboard page's script, as served inline (allowed by its hash in the
 * page's CSP). Plain browser JavaScript in a string, so that it ships in
 * dist/ with the rest of the admin API and nothing has to bundle it; its
 * syntax is checked by test/dashboard.test.ts and its behaviour in Chromium by
 * test/dashboard-browser.test.ts.
 *
 * What it does: reads the feed (GET /dashboard/events) with fetch() — not
 * EventSource, which cannot send the Authorization header — and lays out
 * what it is sent. The admin token, when one is needed, lives in one
 * variable of this script: never in a URL, a cookie or storage. Everything
 * from the server is inserted as text, except the charts' SVG, which the
 * server drew and escaped (common/svg-chart.ts). No inline event handlers:
 * listeners are added here. Reconnects by itself (backoff up to 10 s, a
 * watchdog for a silent connection), and every event holds a whole view, so
 * the page is right again from the first events after a reconnect.
 *
 * Written without backquotes or dollar-brace, so it can sit in String.raw.
 */
export const CLIENT_SCRIPT = String.raw`
(function () {
  'use strict';
  function metaContent(name) {
    var m = document.querySelector('meta[name="' + name + '"]');
    return m ? m.getAttribute('content') : null;
  }
  var READ_ONLY = metaContent('sluice-dashboard') === 'read-only';
  // Whether this admin API has a token: then the page asks for it before reading anything.
  var TOKEN_REQUIRED = metaContent('sluice-token') === 'required';
  var WATCHDOG_MS = 45000;
  var RETRY_MAX_MS = 10000;

  // The admin token: this variable only. Sent as Authorization: Bearer, never put in a URL or stored.
  var token = null;

  var data = { overview: null, live: null, experiment: null };
  var view = parseHash();
  var conn = { controller: null, state: 'connecting', lostAt: null, retryMs: 1000, retryTimer: null, watchdog: null, retryAt: null };
  var drafts = {};
  var openDetails = {};
  // The version picked for promotion, per experiment: kept across redraws.
  var promoteChoice = {};

  // ------------------------------------------------------------ DOM helpers

  function h(tag, attrs, children) {
    var el = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) return;
        if (k === 'text') el.textContent = String(v);
        else if (k === 'class') el.className = v;
        else if (k === 'on') Object.keys(v).forEach(function (ev) { el.addEventListener(ev, v[ev]); });
        else el.setAttribute(k, v === true ? '' : String(v));
      });
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    if (children === null || children === undefined || children === false) return;
    if (!Array.isArray(children)) children = [children];
    children.forEach(function (c) {
      if (c === null || c === undefined || c === false) return;
      el.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)));
    });
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
  }

  function $(id) {
    return document.getElementById(id);
  }

  // ------------------------------------------------------------ formatting

  function num(x) {
    if (x === null || x === undefined) return '-';
    if (!isFinite(x)) return x > 0 ? '\u221e' : '-\u221e';
    if (x === 0) return '0';
    if (Math.abs(x) >= 100) return String(Math.round(x));
    if (Number.isInteger(x)) return String(x);
    if (Math.abs(x) < 0.001) return x.toExponential(2);
    return String(Number(x.toPrecision(3)));
  }
  function pct(x) {
    if (x === null || x === undefined) return '-';
    var p = x * 100;
    return (p !== 0 && Math.abs(p) < 10 ? p.toFixed(2) : p.toFixed(1)) + '%';
  }
  function signedPct(x) {
    if (x === null || x === undefined) return '-';
    if (!isFinite(x)) return x > 0 ? '+\u221e' : '-\u221e';
    return (x >= 0 ? '+' : '') + (x * 100).toFixed(1) + '%';
  }
  function ms(x) {
    return x === null || x === undefined ? '-' : num(x) + ' ms';
  }
  function prob(x) {
    return x === null || x === undefined ? '-' : x.toFixed(3);
  }
  function interval(iv, f) {
    return iv ? ' [' + f(iv[0]) + ', ' + f(iv[1]) + ']' : '';
  }
  function metricText(metric, x) {
    if (x === null || x === undefined) return '-';
    if (metric.indexOf('latency-') === 0) return ms(x);
    if (/-rate$/.test(metric)) return pct(x);
    return num(x);
  }
  function timeOf(iso) {
    if (!iso) return '-';
    var d = new Date(iso);
    return isNaN(d.getTime()) ? iso : d.toLocaleTimeString();
  }
  function dateTime(iso) {
    if (!iso) return '-';
    var d = new Date(iso);
    return isNaN(d.getTime()) ? iso : d.toLocaleString();
  }
  function countdown(at) {
    if (at === null || at === undefined) return '-';
    var s = Math.round((at - Date.now()) / 1000);
    return s <= 0 ? 'due now' : 'in ' + s + ' s';
  }
  function weightsText(w, order) {
    var names = order || Object.keys(w || {});
    return names.filter(function (n) { return w && w[n] !== undefined; }).map(function (n) { return n + ' ' + w[n] + '%'; }).join(', ') || '-';
  }

  // ------------------------------------------------------------ pieces

  function stateBadge(state, ending) {
    var text = ending ? state + ' \u2192 ' + ending : state;
    return h('span', { class: 'state state-' + String(state).toLowerCase(), text: text });
  }

  function weightsBar(w, order, colours, label) {
    var names = order || Object.keys(w || {});
    var bar = h('span', { class: 'bar', role: 'img', 'aria-label': (label ? label + ': ' : '') + weightsText(w, names) });
    names.forEach(function (n) {
      var v = w ? w[n] || 0 : 0;
      if (v <= 0) return;
      var seg = h('span', { title: n + ' ' + v + '%' });
      seg.style.width = v + '%';
      seg.style.backgroundColor = (colours && colours[n]) || '#888';
      bar.appendChild(seg);
    });
    return h('span', { class: 'weights' }, [bar, h('span', { class: 'wtext', 'aria-hidden': 'true', text: weightsText(w, names) })]);
  }

  function swatch(colour) {
    var s = h('span', { class: 'swatch', 'aria-hidden': 'true' });
    s.style.backgroundColor = colour || '#888';
    return s;
  }

  function table(caption, headers, rows, opts) {
    opts = opts || {};
    var head = h('tr', null, headers.map(function (c, i) {
      return h('th', { scope: 'col', class: opts.numeric && opts.numeric[i] ? 'num' : null, text: c });
    }));
    var body = rows.map(function (cells) {
      return h('tr', null, cells.map(function (c, i) {
        var cell = c && typeof c === 'object' && !(c instanceof Node) ? c : { content: c };
        var tag = i === 0 && opts.rowHeaders ? 'th' : 'td';
        var cls = [cell.class, opts.numeric && opts.numeric[i] ? 'num' : null].filter(Boolean).join(' ') || null;
        return h(tag, { scope: tag === 'th' ? 'row' : null, class: cls, 'data-live': cell.live || null, 'aria-label': cell.label || null }, cell.content === undefined ? '-' : cell.content);
      }));
    });
    return h('div', { class: 'table-wrap' }, h('table', { id: opts.id || null }, [h('caption', { text: caption }), h('thead', null, head), h('tbody', null, body)]));
  }

  function details(id, summary, content) {
    var d = h('details', { id: id, open: !!openDetails[id] }, [h('summary', { text: summary }), content]);
    d.addEventListener('toggle', function () { openDetails[id] = d.open; });
    return d;
  }

  function chartFigure(chart, experiment) {
    var box = h('div', { class: 'svg', id: 'chart-' + chart.id });
    // Drawn and escaped by the server (common/svg-chart.ts): the one place markup from the server is inserted.
    box.innerHTML = chart.svg;
    var tbl = table(chart.title + ' (data)', chart.table.headers, chart.table.rows, { rowHeaders: true, id: 'chart-' + chart.id + '-table' });
    return h('figure', { 'aria-labelledby': 'cap-' + chart.id }, [
      box,
      h('figcaption', { id: 'cap-' + chart.id }, [h('strong', { text: chart.title + '. ' }), chart.caption]),
      details('details-' + experiment + '-' + chart.id, 'The chart as a table', tbl),
    ]);
  }

  // ------------------------------------------------------------ layout

  var root = {};

  function build() {
    var body = document.body;
    clear(body);
    root.procText = h('span', { class: 'proc', id: 'process' });
    root.navExperiments = h('a', { href: '#/experiments', text: 'Experiments' });
    root.navRoutes = h('a', { href: '#/routes', text: 'Routes' });
    root.conn = h('p', { class: 'conn', id: 'connection', role: 'status' });
    root.signOut = h('button', { type: 'button', id: 'sign-out', hidden: true, text: 'Forget token', on: { click: function () { signOut(); } } });
    var header = h('header', { class: 'top' }, [
      h('h1', { text: 'Sluice' }),
      root.procText,
      h('nav', { 'aria-label': 'Views' }, h('ul', null, [h('li', null, root.navExperiments), h('li', null, root.navRoutes)])),
      root.conn,
      root.signOut,
    ]);
    root.main = h('main', { id: 'main', tabindex: '-1' });
    root.banners = h('div', { id: 'banners' });
    root.login = buildLogin();
    root.content = h('div', { id: 'content', class: 'data' });
    append(root.main, [root.banners, root.login, root.content]);
    root.toast = h('div', { class: 'toast', id: 'toast', role: 'alert' });
    append(body, [header, root.main, root.toast]);
    if (!READ_ONLY) {
      root.dialog = buildDialog();
      body.appendChild(root.dialog.el);
    }
  }

  function buildLogin() {
    var input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true, 'aria-describedby': 'login-help' });
    var message = h('p', { id: 'login-message', class: 'error-text', role: 'alert' });
    var form = h('form', { class: 'login', id: 'login', hidden: true, 'aria-labelledby': 'login-title' }, [
      h('h2', { id: 'login-title', text: 'Sign in' }),
      h('p', { id: 'login-help', class: 'note', text: 'This admin API needs its token. It is kept in this page only (never in the address, a cookie or storage) and is forgotten when the page is closed or reloaded.' }),
      h('label', { for: 'token', text: 'Admin token' }),
      input,
      message,
      h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary', id: 'sign-in', text: 'Sign in' })),
    ]);
    form.addEventListener('submit', function (e) {
      e.preventDefault();
      var value = input.value.trim();
      input.value = '';
      if (value === '') return;
      token = value;
      message.textContent = '';
      form.hidden = true;
      root.signOut.hidden = false;
      connect();
    });
    form.input = input;
    form.message = message;
    return form;
  }

  function buildDialog() {
    var title = h('h2', { id: 'confirm-title' });
    var text = h('p', { id: 'confirm-text' });
    var ok = h('button', { type: 'button', class: 'primary', id: 'confirm-ok' });
    var cancel = h('button', { type: 'button', id: 'confirm-cancel', text: 'Cancel' });
    var el = h('dialog', { id: 'confirm', 'aria-labelledby': 'confirm-title', 'aria-describedby': 'confirm-text' }, [title, text, h('div', { class: 'row' }, [cancel, ok])]);
    var resolve = null;
    function done(answer) {
      if (el.open) el.close();
      if (resolve) resolve(answer);
      resolve = null;
    }
    ok.addEventListener('click', function () { done(true); });
    cancel.addEventListener('click', function () { done(false); });
    el.addEventListener('cancel', function () { done(false); });
    return {
      el: el,
      ask: function (t, body, label, danger) {
        title.textContent = t;
        text.textContent = body;
        ok.textContent = label;
        ok.className = danger ? 'primary danger' : 'primary';
        el.showModal();
        cancel.focus();
        return new Promise(function (r) { resolve = r; });
      },
    };
  }

  // ------------------------------------------------------------ views

  function parseHash() {
    var m = /^#\/experiments\/(.+)$/.exec(location.hash);
    if (m) {
      try {
        return { name: 'experiment', experiment: decodeURIComponent(m[1]) };
      } catch (e) {
        return { name: 'experiments' };
      }
    }
    if (location.hash === '#/routes') return { name: 'routes' };
    return { name: 'experiments' };
  }

  function render() {
    var o = data.overview;
    root.navExperiments.setAttribute('aria-current', view.name === 'routes' ? 'false' : 'page');
    root.navRoutes.setAttribute('aria-current', view.name === 'routes' ? 'page' : 'false');
    renderBanners();
    if (!o) return;
    var p = o.process;
    root.procText.textContent = p.kind + (p.leader === true ? ' (leader)' : p.leader === false ? ' (standby)' : '') + (READ_ONLY ? ', read-only' : '');
    var focused = document.activeElement && document.activeElement.id ? document.activeElement.id : null;
    var content = root.content;
    clear(content);
    if (view.name === 'routes') renderRoutes(content, o);
    else if (view.name === 'experiment') renderExperiment(content, o, view.experiment);
    else renderExperiments(content, o);
    if (focused && $(focused) && document.activeElement !== $(focused)) $(focused).focus();
    updateCountdowns();
  }

  function renderBanners() {
    var b = root.banners;
    clear(b);
    var o = data.overview;
    if (conn.state === 'down' && conn.lostAt) {
      b.appendChild(h('p', { class: 'banner error', id: 'disconnected', text: 'Connection lost at ' + conn.lostAt.toLocaleTimeString() + ': the figures below are as of then. Reconnecting' + (conn.retryAt ? ' ' + countdown(conn.retryAt) : '') + '\u2026' }));
    }
    if (!o) return;
    var p = o.process;
    if (p.error) b.appendChild(h('p', { class: 'banner warning', text: p.error }));
    if (p.kind === 'proxy') b.appendChild(h('p', { class: 'banner', text: 'A proxy in Redis mode: its own routes and counters. Experiments and weight changes are on the control plane (sluice control, port 9902), which every proxy follows.' }));
    if (p.kind === 'control' && p.leader === false) b.appendChild(h('p', { class: 'banner', text: 'This control-plane replica is a standby: it shows the shared state; the leader runs the experiments and is the one that takes actions (a standby refuses them with 409 SLUICE_FENCED).' }));
  }

  function renderExperiments(content, o) {
    document.title = 'Experiments \u00b7 Sluice';
    append(content, h('h2', { text: 'Experiments' }));
    if (!o.process.experiments) {
      append(content, h('p', { class: 'note', text: 'This process runs no experiments: a proxy in Redis mode follows the control plane. See Routes for its traffic.' }));
      return;
    }
    if (o.experiments.length === 0) {
      append(content, h('p', { class: 'note', text: 'No experiments. Apply one with sluice apply -f exp.yaml.' }));
      return;
    }
    var rows = o.experiments.map(function (e) {
      return [
        h('a', { href: '#/experiments/' + encodeURIComponent(e.name), text: e.name }),
        e.route,
        e.testingPattern + ', ' + e.deploymentPattern,
        stateBadge(e.state, e.ending),
        { content: e.iteration + '/' + e.maxIterations, class: 'num' },
        { content: h('span', { 'data-next-at': e.nextIterationAt === null ? null : e.nextIterationAt, text: countdown(e.nextIterationAt) }) },
        e.winner || '-',
        weightsBar(e.weights, e.versions, e.colours, 'weights of ' + e.name),
      ];
    });
    append(content, table('Experiments (' + o.experiments.length + ')', ['Name', 'Route', 'Pattern', 'State', 'Iteration', 'Next iteration', 'Winner', 'Weights'], rows, { rowHeaders: true, id: 'experiments' }));
  }

  function liveOf(route, version) {
    var l = data.live && data.live.routes && data.live.routes[route];
    return (l && l.versions && l.versions[version]) || null;
  }

  var LIVE_FIELDS = {
    rps: function (l) { return l.rps === null ? '-' : num(l.rps); },
    errorRate: function (l) { return pct(l.errorRate); },
    p50: function (l) { return ms(l.p50); },
    p95: function (l) { return ms(l.p95); },
    p99: function (l) { return ms(l.p99); },
    requests: function (l) { return num(l.requests); },
    mirror: function (l) { return mirrorText(l.mirror); },
  };

  function liveCell(route, version, field) {
    var l = liveOf(route, version);
    return { content: l ? LIVE_FIELDS[field](l) : '-', live: route + '|' + version + '|' + field, class: field === 'mirror' ? null : 'num' };
  }

  function mirrorText(m) {
    if (!m) return '-';
    return 'ok ' + m.ok + ', error ' + m.error + ', dropped ' + m.dropped + (m.compared > 0 ? ', mismatch ' + m.mismatch + ' of ' + m.compared + ' compared' : '');
  }

  function updateLive() {
    var cells = document.querySelectorAll('[data-live]');
    for (var i = 0; i < cells.length; i++) {
      var parts = cells[i].getAttribute('data-live').split('|');
      var l = liveOf(parts[0], parts[1]);
      cells[i].textContent = l ? LIVE_FIELDS[parts[2]](l) : '-';
    }
    var w = $('live-window');
    if (w) w.textContent = liveWindowText();
    var box = $('mirror-alerts');
    if (box && data.experiment && !data.experiment.missing) fillMirrorAlerts(box, data.experiment.summary.route, data.experiment.summary.versions);
  }

  function liveWindowText() {
    var s = data.live && data.live.windowS;
    return s ? 'Rates, errors and latency over the last ' + num(s) + ' s.' : 'Rates, errors and latency appear from the second update on.';
  }

  function fillMirrorAlerts(box, route, versions) {
    clear(box);
    versions.forEach(function (v) {
      var l = liveOf(route, v);
      var m = l && l.mirror;
      if (m && m.mismatch > 0) {
        box.appendChild(h('li', { class: 'warning', text: 'Mirror mismatch: ' + m.mismatch + ' of ' + m.compared + ' shadow answers from ' + v + ' differed from the primary (' + pct(m.compared > 0 ? m.mismatch / m.compared : null) + ').' }));
      }
    });
  }

  function renderExperiment(content, o, name) {
    document.title = name + ' \u00b7 Sluice';
    var e = data.experiment;
    append(content, h('p', null, h('a', { href: '#/experiments', text: '\u2190 All experiments' })));
    if (!e || e.name !== name) {
      append(content, h('p', { class: 'note', text: 'Loading ' + name + '\u2026' }));
      return;
    }
    if (e.missing) {
      append(content, [h('h2', { text: name }), h('p', { class: 'note', text: e.reason })]);
      return;
    }
    var s = e.summary;
    append(content, h('h2', { id: 'experiment-title' }, [s.name + ' ', stateBadge(s.state, s.ending)]));
    append(content, h('dl', { class: 'facts' }, [
      h('dt', { text: 'Route' }), h('dd', null, h('a', { href: '#/routes', text: s.route })),
      h('dt', { text: 'Pattern' }), h('dd', { text: s.testingPattern + ', ' + s.deploymentPattern + (s.deploymentPattern === 'Progressive' ? ' (' + e.algorithm + ')' : '') }),
      h('dt', { text: 'Iteration' }), h('dd', { id: 'iteration', text: s.iteration + '/' + s.maxIterations + ' (every ' + num(s.intervalSeconds) + ' s)' }),
      h('dt', { text: 'Next iteration' }), h('dd', null, h('span', { id: 'next-iteration', 'data-next-at': s.nextIterationAt === null ? null : s.nextIterationAt, text: countdown(s.nextIterationAt) })),
      h('dt', { text: 'Winner' }), h('dd', { id: 'winner', text: s.winner || '-' }),
      h('dt', { text: 'Reason' }), h('dd', { id: 'reason', text: s.reason }),
      h('dt', { text: 'Recommended weights' }), h('dd', null, weightsBar(s.weights, s.versions, s.colours, 'recommended weights')),
      h('dt', { text: 'Applied weights' }), h('dd', null, e.appliedWeights ? weightsBar(e.appliedWeights, s.versions, s.colours, 'applied weights') : '-'),
      h('dt', { text: 'Criteria' }), h('dd', { text: 'confidence ' + e.criteria.confidence + ', minSamples ' + e.criteria.minSamples + (e.criteria.reward ? ', reward ' + e.criteria.reward.metric + ' (' + e.criteria.reward.preferredDirection + ')' : '') + ', maxCandidateWeight ' + e.limits.maxCandidateWeight + '%' }),
      h('dt', { text: 'Started' }), h('dd', { text: dateTime(e.startedAt) }),
    ].concat(e.finishedAt ? [h('dt', { text: 'Finished' }), h('dd', { text: dateTime(e.finishedAt) })] : [])));

    var alerts = h('ul', { class: 'alerts', id: 'alerts', 'aria-label': 'Alerts' }, e.alerts.map(function (a) { return h('li', { class: a.level, text: a.text }); }));
    var mirrorAlerts = h('ul', { class: 'alerts', id: 'mirror-alerts', 'aria-label': 'Mirror alerts' });
    fillMirrorAlerts(mirrorAlerts, s.route, s.versions);
    append(content, [alerts, mirrorAlerts]);

    if (!READ_ONLY && o.process.experiments) append(content, actionsBar(e, o.process.leader === false));

    append(content, h('h3', { text: 'Versions' }));
    append(content, h('p', { class: 'note', id: 'live-window', text: liveWindowText() }));
    var hasReward = !!e.criteria.reward;
    var headers = ['Version', 'Samples', 'Req/s', 'Errors', 'p50', 'p95', 'p99'];
    if (hasReward) headers = headers.concat([e.criteria.reward.metric + ' [interval]', 'Lift over ' + e.baseline + ' [interval]', 'P(best)']);
    headers = headers.concat(['P(feasible)', 'Verdict']);
    var rows = e.versions.map(function (v) {
      var cells = [
        h('span', null, [swatch(v.colour), v.name + (v.baseline ? ' (baseline)' : '')]),
        { content: v.samples === null ? '-' : String(v.samples), class: 'num' },
        liveCell(s.route, v.name, 'rps'),
        liveCell(s.route, v.name, 'errorRate'),
        liveCell(s.route, v.name, 'p50'),
        liveCell(s.route, v.name, 'p95'),
        liveCell(s.route, v.name, 'p99'),
      ];
      if (hasReward) {
        var r = v.reward;
        cells.push(r && r.estimate !== null ? num(r.estimate) + interval(r.interval, num) : '-');
        cells.push(v.baseline ? '-' : r && r.lift !== null ? signedPct(r.lift) + interval(r.liftInterval, signedPct) + (r.eliminatedBy ? ' (out: ' + r.eliminatedBy + ' is better)' : '') : '-');
        cells.push({ content: prob(v.pBest), class: 'num' });
      }
      cells.push({ content: prob(v.pFeasible), class: 'num' });
      cells.push({ content: v.verdict || '-', class: v.verdict ? 'v-' + v.verdict : null });
      return cells;
    });
    append(content, table('Per version: live traffic (last seconds) and the last iteration\u2019s verdicts', headers, rows, { rowHeaders: true, id: 'versions' }));

    if (e.criteria.objectives.length > 0) {
      append(content, h('h3', { text: 'SLOs' }));
      append(content, h('p', { class: 'note', text: '\u2713: P(holds) \u2265 ' + e.criteria.confidence + '; \u2717: P(fails) \u2265 ' + e.criteria.confidence + '; ?: not decided yet (or fewer than ' + e.criteria.minSamples + ' samples).' }));
      var sloRows = e.criteria.objectives.map(function (obj, oi) {
        return [obj.text].concat(e.versions.map(function (v) {
          var c = v.objectives[oi];
          var mark = c.holds === 'yes' ? '\u2713' : c.holds === 'no' ? '\u2717' : '?';
          var word = c.holds === 'yes' ? 'holds' : c.holds === 'no' ? 'fails' : 'undecided';
          var value = obj.relative ? (c.value === null ? '-' : num(c.value) + 'x') : metricText(obj.metric, c.value);
          var text = mark + ' ' + value + ' (P ' + prob(c.pHolds) + ')';
          return { content: text, class: c.holds, label: v.name + ': ' + word + ', ' + value + ', P(holds) ' + prob(c.pHolds) };
        }));
      });
      append(content, table('SLO matrix: each objective per version', ['Objective'].concat(e.versions.map(function (v) { return v.name; })), sloRows, { rowHeaders: true, id: 'slo' }));
    }

    append(content, h('h3', { text: 'Charts' }));
    e.charts.forEach(function (c) { append(content, chartFigure(c, e.name)); });

    append(content, h('h3', { text: 'Timeline' }));
    if (e.timeline.length === 0) append(content, h('p', { class: 'note', text: 'No iteration yet.' }));
    else {
      var tl = e.timeline.map(function (t) {
        return [
          String(t.iteration),
          timeOf(t.at),
          weightsText(t.weights, s.versions),
          s.versions.map(function (n) { return n + ' ' + (t.verdicts[n] || '-'); }).join(', '),
          t.srm === null ? '-' : t.srm ? 'mismatch' : 'ok',
          t.reason,
        ];
      });
      var more = e.timelineTotal > e.timeline.length ? ' (newest ' + e.timeline.length + ' of ' + e.timelineTotal + ')' : '';
      append(content, table('Iterations, newest first' + more, ['Iteration', 'Time', 'Weights set', 'Verdicts', 'SRM', 'Reason'], tl, { rowHeaders: true, id: 'timeline' }));
    }

    append(content, h('h3', { text: 'Tasks' }));
    if (e.tasks.length === 0) append(content, h('p', { class: 'note', text: 'No task has run.' }));
    else {
      var tr = e.tasks.map(function (t) {
        return [t.name, t.phase, t.task, String(t.iteration), { content: t.state + (t.continued ? ' (continued)' : ''), class: 't-' + t.state }, t.durationMs === null ? '-' : num(t.durationMs / 1000) + ' s', t.result];
      });
      append(content, table('Task runs', ['Task', 'Phase', 'Kind', 'Iteration', 'State', 'Took', 'Result'], tr, { rowHeaders: true, id: 'tasks' }));
    }
  }

  // standby: a control-plane replica that does not lead refuses every change (409 SLUICE_FENCED).
  function actionsBar(e, standby) {
    var s = e.summary;
    var st = s.state;
    var active = st === 'Pending' || st === 'Running' || st === 'Paused';
    var bar = h('section', { class: 'actions', 'aria-labelledby': 'actions-title' }, h('h3', { id: 'actions-title', text: 'Actions' }));
    if (standby) bar.appendChild(h('p', { class: 'note', text: 'This replica is a standby: take actions on the leader’s dashboard.' }));
    function button(id, label, enabled, cls, run) {
      var b = h('button', { type: 'button', id: id, class: cls || null, text: label, disabled: standby || !enabled || !!s.ending });
      b.addEventListener('click', run);
      return b;
    }
    var path = '/experiments/' + encodeURIComponent(s.name);
    append(bar, [
      button('action-pause', 'Pause', st === 'Running', null, function () {
        confirmThen('Pause ' + s.name + '?', 'No iteration runs while it is paused, and the weights stay as they are (' + weightsText(s.weights, s.versions) + ').', 'Pause', false, function () { return act('POST', path + '/pause', null, 'Paused ' + s.name + '.'); });
      }),
      button('action-resume', 'Resume', st === 'Paused', null, function () {
        confirmThen('Resume ' + s.name + '?', 'Iterations start again, the next one an interval from now.', 'Resume', false, function () { return act('POST', path + '/resume', null, 'Resumed ' + s.name + '.'); });
      }),
      button('action-abort', 'Abort', active, 'danger', function () {
        confirmThen('Abort ' + s.name + '?', 'The experiment ends Aborted and all traffic goes back to ' + e.baseline + '. This cannot be undone.', 'Abort', true, function () { return act('POST', path + '/abort', null, 'Aborted ' + s.name + '.'); });
      }),
    ]);
    var canPromote = st === 'Running' || st === 'Paused' || st === 'Completed' || st === 'Failed';
    // Offered first: the winner, else the version most likely best, else the first candidate.
    var likely = s.winner;
    var bestP = -1;
    if (!likely) {
      e.versions.forEach(function (v) {
        if (v.pBest !== null && v.pBest > bestP) {
          likely = v.name;
          bestP = v.pBest;
        }
      });
    }
    likely = likely || s.versions[1] || s.versions[0];
    var select = h('select', { id: 'promote-version', disabled: standby || !canPromote || !!s.ending }, s.versions.map(function (v) {
      return h('option', { value: v, selected: v === (promoteChoice[s.name] || likely), text: v });
    }));
    select.addEventListener('change', function () { promoteChoice[s.name] = select.value; });
    append(bar, [
      h('label', { for: 'promote-version', text: 'Promote' }),
      select,
      button('action-promote', 'Promote', canPromote, null, function () {
        var v = select.value;
        confirmThen('Promote ' + v + '?', s.name + ' ends Completed with ' + v + ' as the winner, and all traffic on route ' + s.route + ' goes to ' + v + '.', 'Promote ' + v, true, function () { return act('POST', path + '/promote', { version: v }, 'Promoted ' + v + '.'); });
      }),
    ]);
    return bar;
  }

  function renderRoutes(content, o) {
    document.title = 'Routes \u00b7 Sluice';
    append(content, h('h2', { text: 'Routes' }));
    append(content, h('p', { class: 'note', id: 'live-window', text: liveWindowText() }));
    if (o.routes.length === 0) append(content, h('p', { class: 'note', text: 'No routes.' }));
    o.routes.forEach(function (r) {
      var id = 'route-' + r.name;
      var section = h('section', { id: id, 'aria-labelledby': id + '-title' });
      append(section, h('h3', { id: id + '-title', text: r.name }));
      var facts = [h('dt', { text: 'Weights' }), h('dd', null, weightsBar(r.weights, r.versions.map(function (v) { return v.name; }), r.colours, 'weights of route ' + r.name)),
        h('dt', { text: 'Generation' }), h('dd', { text: String(r.generation) }),
        h('dt', { text: 'Owned by' }), h('dd', null, r.owner ? h('a', { href: '#/experiments/' + encodeURIComponent(r.owner), text: 'experiment ' + r.owner }) : 'no experiment: weights may be set by hand')];
      if (r.match) facts.push(h('dt', { text: 'Match' }), h('dd', { text: (r.match.host ? 'host ' + r.match.host + ', ' : '') + 'path prefix ' + r.match.pathPrefix + (r.rules ? ', ' + r.rules + ' rule(s)' : '') + (r.sticky ? ', sticky ' + JSON.stringify(r.sticky) : '') }));
      append(section, h('dl', { class: 'facts' }, facts));
      var rows = r.versions.map(function (v) {
        return [
          h('span', null, [swatch(r.colours[v.name]), v.name]),
          v.url,
          { content: (r.weights[v.name] || 0) + '%', class: 'num' },
          liveCell(r.name, v.name, 'rps'),
          liveCell(r.name, v.name, 'errorRate'),
          liveCell(r.name, v.name, 'p50'),
          liveCell(r.name, v.name, 'p95'),
          liveCell(r.name, v.name, 'p99'),
          liveCell(r.name, v.name, 'requests'),
          liveCell(r.name, v.name, 'mirror'),
        ];
      });
      append(section, table('Versions of ' + r.name, ['Version', 'URL', 'Weight', 'Req/s', 'Errors', 'p50', 'p95', 'p99', 'Requests', 'Mirrored copies'], rows, { rowHeaders: true, id: 'versions-' + r.name }));
      if (r.mirrors && r.mirrors.length > 0) {
        append(section, table('Mirrors of ' + r.name, ['Version', 'Percent', 'Compared', 'Outcomes'], r.mirrors.map(function (m) {
          return [m.version, { content: m.percent + '%', class: 'num' }, m.compare ? 'yes' : 'no', liveCell(r.name, m.version, 'mirror')];
        }), { rowHeaders: true, id: 'mirrors-' + r.name }));
      }
      if (!READ_ONLY && o.process.weightEdits && o.process.leader !== false && !r.owner) append(section, weightEditor(r));
      content.appendChild(section);
    });
  }

  function weightEditor(r) {
    var draft = drafts[r.name] && drafts[r.name].generation === r.generation ? drafts[r.name].weights : null;
    var inputs = {};
    var total = h('output', { id: 'total-' + r.name, 'aria-live': 'polite' });
    var error = h('p', { class: 'error-text', id: 'weights-error-' + r.name, role: 'alert' });
    function sum() {
      var t = 0;
      Object.keys(inputs).forEach(function (n) { t += Number(inputs[n].value) || 0; });
      total.textContent = 'total ' + t + '%';
      return t;
    }
    var fields = r.versions.map(function (v) {
      var id = 'weight-' + r.name + '-' + v.name;
      var input = h('input', { id: id, type: 'number', min: '0', max: '100', step: '1', inputmode: 'numeric', value: String(draft ? draft[v.name] : r.weights[v.name] || 0) });
      input.addEventListener('input', function () {
        var w = {};
        Object.keys(inputs).forEach(function (n) { w[n] = Number(inputs[n].value) || 0; });
        drafts[r.name] = { generation: r.generation, weights: w };
        sum();
      });
      inputs[v.name] = input;
      return h('label', { for: id }, [v.name + ' (%)', input]);
    });
    var apply = h('button', { type: 'submit', class: 'primary', id: 'apply-weights-' + r.name, text: 'Set weights' });
    var form = h('form', { class: 'editor', id: 'editor-' + r.name, 'aria-label': 'Set the weights of ' + r.name + ' by hand' }, [
      h('fieldset', null, [h('legend', { text: 'Set weights of ' + r.name + ' (integers summing to 100)' })].concat(fields, [total, apply])),
      error,
    ]);
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var w = {};
      Object.keys(inputs).forEach(function (n) { w[n] = Number(inputs[n].value); });
      if (sum() !== 100) {
        error.textContent = 'The weights must sum to 100 (they sum to ' + sum() + ').';
        return;
      }
      error.textContent = '';
      confirmThen('Set the weights of ' + r.name + '?', 'Traffic moves at once to ' + weightsText(w) + '.', 'Set weights', false, function () {
        return act('PUT', '/routes/' + encodeURIComponent(r.name) + '/weights', w, 'Weights of ' + r.name + ' set to ' + weightsText(w) + '.').then(function () { delete drafts[r.name]; });
      });
    });
    sum();
    return form;
  }

  // ------------------------------------------------------------ actions

  function confirmThen(title, text, label, danger, run) {
    if (READ_ONLY || !root.dialog) return;
    root.dialog.ask(title, text, label, danger).then(function (yes) {
      if (yes) run().catch(function () {});
    });
  }

  function authHeaders(extra) {
    var headers = extra || {};
    if (token !== null) headers.authorization = 'Bearer ' + token;
    return headers;
  }

  function act(method, path, body, done) {
    return fetch(path, {
      method: method,
      headers: authHeaders(body ? { 'content-type': 'application/json' } : {}),
      body: body ? JSON.stringify(body) : undefined,
      cache: 'no-store',
      credentials: 'omit',
    }).then(function (res) {
      return res.text().then(function (text) {
        var json = null;
        try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
        if (res.status === 401) {
          needLogin('The token was refused: sign in again.');
          throw new Error('unauthorized');
        }
        if (!res.ok) {
          var err = json && json.error;
          var message = err ? err.message + ' [' + err.code + ']' + (err.details && err.details.length ? ': ' + err.details.map(function (d) { return (d.path ? d.path + ': ' : '') + d.message; }).join('; ') : '') : 'HTTP ' + res.status;
          toast(message, true);
          throw new Error(message);
        }
        toast(done, false);
        return json;
      });
    }, function (err) {
      toast('The request failed: ' + err.message, true);
      throw err;
    });
  }

  var toastTimer = null;
  function toast(text, isError) {
    root.toast.className = 'toast' + (isError ? ' error' : '');
    root.toast.textContent = text;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { root.toast.textContent = ''; }, isError ? 12000 : 5000);
  }

  // ------------------------------------------------------------ the feed

  function setConn(state) {
    conn.state = state;
    var c = root.conn;
    c.className = 'conn' + (state === 'live' ? ' live' : state === 'down' ? ' down' : '');
    c.textContent = state === 'live' ? 'Live' : state === 'down' ? 'Disconnected' : state === 'signed-out' ? 'Signed out' : 'Connecting\u2026';
    root.main.classList.toggle('stale', state === 'down');
    renderBanners();
  }

  function stopStream() {
    if (conn.controller) conn.controller.abort();
    conn.controller = null;
    clearTimeout(conn.retryTimer);
    clearTimeout(conn.watchdog);
  }

  function needLogin(message) {
    token = null;
    stopStream();
    root.signOut.hidden = true;
    root.login.hidden = false;
    root.login.message.textContent = message || '';
    clear(root.content);
    data = { overview: null, live: null, experiment: null };
    setConn('signed-out');
    root.login.input.focus();
  }

  function signOut() {
    needLogin('');
  }

  function feedUrl() {
    return '/dashboard/events' + (view.name === 'experiment' ? '?experiment=' + encodeURIComponent(view.experiment) : '');
  }

  function connect() {
    stopStream();
    var ctl = new AbortController();
    conn.controller = ctl;
    if (conn.state !== 'down') setConn('connecting');
    fetch(feedUrl(), { headers: authHeaders({ accept: 'text/event-stream' }), cache: 'no-store', credentials: 'omit', signal: ctl.signal })
      .then(function (res) {
        if (res.status === 401) {
          needLogin(token === null ? '' : 'The token was refused.');
          return null;
        }
        if (!res.ok || !res.body) throw new Error('HTTP ' + res.status);
        conn.retryMs = 1000;
        conn.lostAt = null;
        setConn('live');
        return read(res.body.getReader(), ctl);
      })
      .then(function (r) {
        if (r !== null && !ctl.signal.aborted) lost();
      })
      .catch(function () {
        if (!ctl.signal.aborted) lost();
      });
  }

  function lost() {
    stopStream();
    if (!conn.lostAt) conn.lostAt = new Date();
    conn.retryAt = Date.now() + conn.retryMs;
    setConn('down');
    conn.retryTimer = setTimeout(connect, conn.retryMs);
    conn.retryMs = Math.min(conn.retryMs * 2, RETRY_MAX_MS);
  }

  function read(reader, ctl) {
    var decoder = new TextDecoder();
    var buffer = '';
    function arm() {
      clearTimeout(conn.watchdog);
      // Silence past the heartbeat: the connection is gone without saying so.
      conn.watchdog = setTimeout(function () { ctl.abort(); lost(); }, WATCHDOG_MS);
    }
    arm();
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) return false;
        arm();
        buffer += decoder.decode(chunk.value, { stream: true });
        var end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          var block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          dispatch(block);
        }
        return pump();
      });
    }
    return pump();
  }

  function dispatch(block) {
    var event = 'message';
    var lines = [];
    block.split('\n').forEach(function (line) {
      if (line.indexOf('event:') === 0) event = line.slice(6).trim();
      else if (line.indexOf('data:') === 0) lines.push(line.slice(5).replace(/^ /, ''));
    });
    if (lines.length === 0) return;
    var value;
    try { value = JSON.parse(lines.join('\n')); } catch (e) { return; }
    if (event === 'live') {
      data.live = value;
      updateLive();
      return;
    }
    if (event === 'overview') data.overview = value;
    else if (event === 'experiment') {
      if (view.name !== 'experiment' || value.name !== view.experiment) return;
      data.experiment = value;
    } else return;
    render();
  }

  function updateCountdowns() {
    var els = document.querySelectorAll('[data-next-at]');
    for (var i = 0; i < els.length; i++) els[i].textContent = countdown(Number(els[i].getAttribute('data-next-at')));
    if (conn.state === 'down') {
      var d = $('disconnected');
      if (d && conn.lostAt) d.textContent = 'Connection lost at ' + conn.lostAt.toLocaleTimeString() + ': the figures below are as of then. Reconnecting ' + countdown(conn.retryAt) + '\u2026';
    }
  }

  window.addEventListener('hashchange', function () {
    var before = view;
    view = parseHash();
    var changed = view.name === 'experiment' ? before.name !== 'experiment' || before.experiment !== view.experiment : before.name === 'experiment';
    if (view.name !== 'experiment') data.experiment = null;
    render();
    root.main.focus();
    if (changed && conn.state !== 'signed-out') connect();
  });

  build();
  setConn('connecting');
  render();
  setInterval(updateCountdowns, 1000);
  if (TOKEN_REQUIRED) needLogin('');
  else connect();
})();
`;
