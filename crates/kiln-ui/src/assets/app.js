// Kiln web UI: a small single-page app over the REST API (/api/v1). Hand-written, no
// dependencies, no build step. Every element is built with DOM calls (never innerHTML from
// data), so nothing a pipeline prints can inject markup.
'use strict';

(function () {
  const TOKEN_KEY = 'kiln.token';
  const FINAL = ['success', 'failure', 'canceled', 'timeout'];
  const SVGNS = 'http://www.w3.org/2000/svg';

  // ---------------------------------------------------------------- helpers

  /** Builds an element: h('a', {href: '/', class: 'x', onclick: f}, 'text', child). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }
  /** Builds an SVG element. */
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVGNS, tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }
  function setAttrs(el, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'text') el.textContent = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }
  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }
  /** Replaces el's children (null and false children are left out, unlike Element.append). */
  function put(el, ...children) { append(clear(el), children); return el; }
  const enc = encodeURIComponent;

  function fmtDuration(ms) {
    if (ms === null || ms === undefined) return '–';
    const sec = Math.round(ms / 1000);
    if (ms < 1000) return ms + ' ms';
    if (sec < 60) return (ms / 1000).toFixed(sec < 10 ? 1 : 0) + ' s';
    const m = Math.floor(sec / 60), r = sec % 60;
    if (m < 60) return m + 'm ' + String(r).padStart(2, '0') + 's';
    return Math.floor(m / 60) + 'h ' + String(m % 60).padStart(2, '0') + 'm';
  }
  function fmtAgo(iso) {
    if (!iso) return '–';
    const d = (Date.now() - new Date(iso).getTime()) / 1000;
    if (d < 5) return 'just now';
    if (d < 60) return Math.floor(d) + ' s ago';
    if (d < 3600) return Math.floor(d / 60) + ' min ago';
    if (d < 86400) return Math.floor(d / 3600) + ' h ago';
    return Math.floor(d / 86400) + ' d ago';
  }
  function fmtTime(iso) { return iso ? new Date(iso).toLocaleString() : '–'; }
  function fmtBytes(n) {
    if (n < 1024) return n + ' B';
    const u = ['KiB', 'MiB', 'GiB', 'TiB'];
    let i = -1;
    do { n /= 1024; i++; } while (n >= 1024 && i < u.length - 1);
    return n.toFixed(n < 10 ? 1 : 0) + ' ' + u[i];
  }
  function badge(state, label) {
    return h('span', { class: 'badge s-' + state, 'data-state': state }, label || state);
  }
  /** A badge for a state of another kind (a node's, a service's), in the colour `colours` maps it to. */
  function stateBadge(colours, state) {
    return h('span', { class: 'badge s-' + (colours[state] || 'pending'), 'data-state': state }, state);
  }
  function toast(msg) {
    const t = document.getElementById('toast');
    t.textContent = msg;
    t.classList.add('show');
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => t.classList.remove('show'), 2500);
  }

  // ---------------------------------------------------------------- API

  // The connection to the server (conn.js): the banner while it is away, live event streams.
  let conn = null, connModule = null;
  // An array job's progress on the run page (array_progress.js), loaded at start.
  let arrayModule = null;
  import('/assets/array_progress.js').then((m) => { arrayModule = m; }).catch(() => { /* the note shows the reason instead */ });
  /** Follows a server event stream for the page `p` (see conn.js `followEvents`). */
  function followEvents(p, url, onOpen, onEvent, onError) {
    if (!connModule) return false;
    connModule.followEvents(conn, url, { signal: p.ctl.signal, token, onOpen, onEvent, onError });
    return true;
  }

  class ApiError extends Error {
    constructor(what, status, code, message, diagnostics) {
      super(message);
      this.what = what; this.status = status; this.code = code; this.diagnostics = diagnostics || [];
    }
  }
  function token() { return sessionStorage.getItem(TOKEN_KEY); }

  /** Calls the API; throws ApiError saying which call failed and what the server said. */
  async function api(method, path, body, opts) {
    const what = method + ' ' + path;
    const headers = { Authorization: 'Bearer ' + token() };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let resp;
    try {
      resp = await fetch(path.startsWith('/') && !path.startsWith('/api/') && !path.startsWith('/v2/') ? '/api/v1' + path : path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        signal: opts && opts.signal,
      });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      if (conn) conn.down('the server did not answer ' + what);
      throw new ApiError(what, 0, 'network', 'the server did not answer (' + e.message + ')');
    }
    // A gateway's 502/503/504: the server is away too. Any other answer: it is there.
    if (conn) { if ([502, 503, 504].includes(resp.status)) conn.down(what + ' answered ' + resp.status); else conn.up(); }
    if (resp.status === 401 && !(opts && opts.noSignOut)) {
      signOut('Your token was not accepted (it may have been revoked). Sign in again.');
      throw new ApiError(what, 401, 'unauthorized', 'not signed in');
    }
    if (!resp.ok) {
      let code = 'http_' + resp.status, message = resp.statusText || 'error', diags = [];
      try {
        const j = await resp.json();
        if (j && j.error) { code = j.error.code; message = j.error.message; diags = j.error.diagnostics; }
      } catch (_) { /* not JSON */ }
      throw new ApiError(what, resp.status, code, message, diags);
    }
    if (opts && opts.raw) return resp;
    if (resp.status === 204) return null;
    return resp.json();
  }

  /** A box that says which call failed, with the server's message. */
  function errorBox(title, e) {
    const box = h('div', { class: 'error', role: 'alert' }, h('b', {}, title));
    if (e instanceof ApiError) {
      box.append(e.what + (e.status ? ' answered ' + e.status + ' ' + e.code : ' failed') + ': ' + e.message);
      if (e.diagnostics && e.diagnostics.length) {
        box.append(h('ul', {}, e.diagnostics.map((d) => h('li', {}, d.file + ':' + d.line + ':' + d.column + ': ' + d.message))));
      }
    } else {
      box.append(String(e && e.message || e));
    }
    return box;
  }

  // ---------------------------------------------------------------- routing

  let page = null; // { ctl: AbortController, timers: [] } of the page on screen
  const main = () => document.getElementById('main');

  function leave() {
    if (!page) return;
    page.ctl.abort();
    page.timers.forEach(clearTimeout);
    page = null;
  }
  function newPage() {
    leave();
    page = { ctl: new AbortController(), timers: [] };
    return page;
  }
  /** Runs f again after ms while the page is still on screen. */
  function later(p, ms, f) {
    if (p.ctl.signal.aborted) return;
    p.timers.push(setTimeout(() => { if (!p.ctl.signal.aborted) f(); }, ms));
  }

  function go(path, replace) {
    if (replace) history.replaceState(null, '', path); else history.pushState(null, '', path);
    render();
  }

  const routes = [
    [/^\/signin$/, viewSignIn, null],
    [/^\/$/, viewPipelines, 'pipelines'],
    [/^\/runs$/, viewRuns, 'runs'],
    [/^\/p\/([^/]+)\/([^/]+)$/, viewPipeline, 'pipelines'],
    [/^\/runs\/([^/]+)$/, viewRun, 'runs'],
    [/^\/runs\/([^/]+)\/jobs\/([^/]+)$/, viewLog, 'runs'],
    [/^\/services$/, viewServices, 'services'],
    [/^\/services\/([^/]+)\/([^/]+)$/, viewService, 'services'],
    [/^\/pool$/, viewPool, 'pool'],
    [/^\/registry$/, viewRegistry, 'registry'],
    [/^\/registry\/([a-z0-9][a-z0-9._\/-]*)$/, viewRepository, 'registry'],
    [/^\/projects$/, viewProjects, 'projects'],
    [/^\/projects\/([^/]+)$/, viewProject, 'projects'],
    [/^\/projects\/([^/]+)\/environments$/, viewEnvironments, 'projects'],
    [/^\/projects\/([^/]+)\/config$/, viewConfigApps, 'projects'],
    [/^\/projects\/([^/]+)\/config\/([^/]+)$/, viewConfigApp, 'projects'],
    [/^\/projects\/([^/]+)\/deploys\/([^/]+)\/([^/]+)$/, viewDeploys, 'projects'],
  ];

  async function render() {
    const path = location.pathname;
    if (!token() && path !== '/signin') {
      sessionStorage.setItem('kiln.next', path + location.search + location.hash);
      history.replaceState(null, '', '/signin');
      return render();
    }
    const p = newPage();
    for (const [re, view, nav] of routes) {
      const m = path.match(re);
      if (!m) continue;
      for (const a of document.querySelectorAll('#nav a')) {
        if (a.dataset.nav === nav) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
      }
      document.getElementById('nav').hidden = !token();
      renderWho();
      if (token() && !whoami && nav) {
        api('GET', '/info', undefined, { signal: p.ctl.signal }).then((w) => { whoami = w; renderWho(); }).catch(() => {});
      }
      const el = clear(main());
      try {
        await view(p, el, ...m.slice(1).map(decodeURIComponent));
      } catch (e) {
        if (e.name === 'AbortError' || p.ctl.signal.aborted) return;
        if (e instanceof ApiError && e.status === 401) return;
        el.append(errorBox('This page could not be shown', e));
      }
      return;
    }
    clear(main()).append(h('div', { class: 'notice' }, h('b', {}, 'No such page: '), path, ' — ', h('a', { href: '/' }, 'go to the pipelines')));
  }

  function setTitle(t) { document.title = t ? t + ' · Kiln' : 'Kiln'; }

  document.addEventListener('click', (ev) => {
    const a = ev.target.closest && ev.target.closest('a');
    if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
    const href = a.getAttribute('href');
    if (!href || !href.startsWith('/') || href.startsWith('/api/') || a.hasAttribute('download') || a.getAttribute('target')) return;
    ev.preventDefault();
    if (href.startsWith('#')) return;
    if (!leaveUnsaved()) return;
    go(href);
  });
  window.addEventListener('popstate', render);
  // A page the browser keeps in its back/forward cache would keep its event streams open
  // (and the browser allows 6 connections to a server): close them when it goes, and load
  // the page again if it comes back from that cache.
  window.addEventListener('pagehide', () => leave());
  window.addEventListener('pageshow', (ev) => { if (ev.persisted) render(); });
  /** Whether the page on screen may go: nothing unsaved in it, or the user says so. */
  function leaveUnsaved() {
    return !(page && page.unsaved && page.unsaved()) || confirm('Leave this page? Your unsaved changes are lost.');
  }
  window.addEventListener('beforeunload', (ev) => {
    if (page && page.unsaved && page.unsaved()) { ev.preventDefault(); ev.returnValue = ''; }
  });

  // ---------------------------------------------------------------- sign in

  let whoami = null;
  function renderWho() {
    const w = clear(document.getElementById('who'));
    if (!token()) return;
    if (whoami) w.append(h('span', { class: 'name', title: 'role: ' + whoami.role }, whoami.token + ' · ' + whoami.role));
    w.append(h('button', { type: 'button', onclick: () => signOut() }, 'Sign out'));
  }
  function signOut(why) {
    sessionStorage.removeItem(TOKEN_KEY);
    whoami = null;
    if (why) sessionStorage.setItem('kiln.why', why);
    if (location.pathname !== '/signin') sessionStorage.setItem('kiln.next', location.pathname);
    go('/signin', true);
  }

  async function viewSignIn(p, el) {
    setTitle('Sign in');
    document.getElementById('nav').hidden = true;
    const why = sessionStorage.getItem('kiln.why');
    sessionStorage.removeItem('kiln.why');
    const input = h('input', { id: 'token', type: 'password', autocomplete: 'current-password', required: true, placeholder: 'kiln_…', 'aria-describedby': 'token-help' });
    const err = h('div');
    const form = h('form', {
      onsubmit: async (ev) => {
        ev.preventDefault();
        clear(err);
        const secret = input.value.trim();
        if (!secret) return;
        sessionStorage.setItem(TOKEN_KEY, secret);
        try {
          whoami = await api('GET', '/info', undefined, { noSignOut: true });
        } catch (e) {
          sessionStorage.removeItem(TOKEN_KEY);
          err.append(e.status === 401
            ? h('div', { class: 'error', role: 'alert' }, h('b', {}, 'That token was not accepted.'), 'Check it was copied whole and has not been revoked.')
            : errorBox('Could not sign in', e));
          input.focus();
          return;
        }
        const next = sessionStorage.getItem('kiln.next') || '/';
        sessionStorage.removeItem('kiln.next');
        go(next === '/signin' ? '/' : next, true);
      },
    },
    h('div', { class: 'field' }, h('label', { for: 'token' }, 'API token'), input,
      h('span', { class: 'help', id: 'token-help' },
        'On its first start the server writes the admin token to ', h('code', {}, '<data>/admin.token'),
        '. Make more with ', h('code', {}, 'kiln token create NAME --role developer'), '. It is kept in this tab only.')),
    err,
    h('button', { class: 'primary', type: 'submit' }, 'Sign in'));
    el.append(h('div', { class: 'signin' },
      why ? h('div', { class: 'error', role: 'alert' }, why) : null,
      h('div', { class: 'panel' }, h('div', { class: 'body' }, h('h1', {}, 'Sign in to Kiln'),
        h('p', { class: 'muted' }, 'Paste an API token.'), form))));
    input.focus();
  }

  // ---------------------------------------------------------------- pipelines

  async function loadPipelines(p) {
    const projects = await api('GET', '/projects', undefined, { signal: p.ctl.signal });
    const lists = await Promise.all(projects.map((pr) => api('GET', '/projects/' + enc(pr.name) + '/pipelines', undefined, { signal: p.ctl.signal })));
    return lists.flat();
  }

  // The pipelines page, kept fresh by the server's run events (GET /runs/events).
  async function viewPipelines(p, el) {
    setTitle('Pipelines');
    el.append(h('div', { class: 'head' }, h('h1', {}, 'Pipelines')));
    const body = h('div');
    el.append(body);
    let table = null, plot = null, shown = null, loading = null, again = false;
    const draw = (pipelines, runs) => {
      if (!pipelines.length) {
        put(body, h('div', { class: 'notice' }, h('b', {}, 'No pipelines yet. '),
          'Store one with ', h('code', {}, 'kiln pipeline apply workflow.yml --project PROJECT'), '.'));
        table = null;
        return;
      }
      const key = JSON.stringify([Math.floor(Date.now() / 60000), pipelines.map((pl) => pl.project + '/' + pl.name), runs.map((r) => [r.id, r.state])]);
      if (key === shown) return;
      shown = key;
      const byPipe = new Map();
      for (const r of runs) {
        const k = r.project + '/' + r.pipeline;
        if (!byPipe.has(k)) byPipe.set(k, []);
        byPipe.get(k).push(r);
      }
      const rows = pipelines.map((pl) => {
        const rs = byPipe.get(pl.project + '/' + pl.name) || [];
        const last = rs[0];
        return h('tr', { 'data-pipeline': pl.project + '/' + pl.name },
          h('td', {}, last ? h('a', { href: '/runs/' + last.id, 'aria-label': 'last run ' + last.state }, badge(last.state)) : h('span', { class: 'muted' }, 'never run')),
          h('td', {}, h('a', { class: 'pl-name', href: '/p/' + enc(pl.project) + '/' + enc(pl.name) }, pl.name),
            h('div', { class: 'muted' }, pl.project)),
          h('td', { class: 'hide-sm' }, last ? h('a', { href: '/runs/' + last.id }, '#' + last.number) : '–',
            last ? h('div', { class: 'muted' }, fmtAgo(last.created_at)) : null),
          h('td', { class: 'num hide-sm' }, last ? fmtDuration(last.duration_ms) : '–'),
          h('td', { class: 'trend-cell hide-sm' }, sparkline(rs.slice(0, 20).reverse())),
          h('td', { class: 'num' }, h('a', { class: 'btn', href: '/p/' + enc(pl.project) + '/' + enc(pl.name) + '#trigger' }, 'Trigger')));
      });
      const newTable = h('div', { class: 'panel' }, h('div', { class: 'scroll' }, h('table', {},
        h('thead', {}, h('tr', {}, h('th', {}, 'Last run'), h('th', {}, 'Pipeline'), h('th', { class: 'hide-sm' }, 'Latest'),
          h('th', { class: 'num hide-sm' }, 'Duration'), h('th', { class: 'hide-sm' }, 'Duration trend'), h('th', { class: 'num' }, h('span', { class: 'hide-sm' }, 'Run')))),
        h('tbody', {}, rows))));
      if (table) {
        table.replaceWith(newTable);
        put(plot, durationPlot(runs));
      } else {
        plot = h('div', { class: 'body' }, durationPlot(runs));
        put(body, newTable, h('div', { class: 'grid2' },
          h('section', { class: 'panel', 'aria-label': 'Run durations' }, h('h2', {}, 'Run durations per pipeline'), plot),
          statsPanel(p)));
      }
      table = newTable;
    };
    const load = async () => {
      // One load at a time; events that come during one load once more after it.
      if (loading) { again = true; return loading; }
      loading = (async () => {
        do {
          again = false;
          let pipelines, runs;
          try {
            [pipelines, runs] = await Promise.all([loadPipelines(p), api('GET', '/runs?limit=500', undefined, { signal: p.ctl.signal })]);
          } catch (e) {
            if (e.name === 'AbortError') return;
            put(body, errorBox('Could not load the pipelines', e));
            table = null; shown = null;
            return;
          }
          draw(pipelines, runs);
        } while (again && !p.ctl.signal.aborted);
      })();
      try { await loading; } finally { loading = null; }
    };
    if (!followEvents(p, '/api/v1/runs/events', () => { load(); }, () => { load(); })) await load();
  }

  /** Bars of the last runs' durations, coloured by state. */
  function sparkline(runs) {
    const W = 140, H = 28, n = 20, bw = W / n;
    const max = Math.max(1, ...runs.map((r) => r.duration_ms || 0));
    const svg = s('svg', { class: 'spark', width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img',
      'aria-label': runs.length ? 'durations of the last ' + runs.length + ' runs' : 'no runs' });
    runs.forEach((r, i) => {
      const hgt = Math.max(2, ((r.duration_ms || 0) / max) * (H - 2));
      svg.append(s('rect', { x: i * bw + 1, y: H - hgt, width: bw - 2, height: hgt, rx: 1, fill: stateColour(r.state) },
        s('title', {}, '#' + r.number + ' ' + r.state + ' ' + fmtDuration(r.duration_ms))));
    });
    return svg;
  }

  function stateColour(state) {
    const v = getComputedStyle(document.documentElement).getPropertyValue('--st-' + (state === 'waiting' ? 'paused' : state === 'scheduling' ? 'queued' : state)).trim();
    return v || '#8c959f';
  }

  const PALETTE = ['#0b5cad', '#c4231c', '#1a7f37', '#8250df', '#b04500', '#1b7c83', '#bf3989', '#57606a'];

  /**
   * A line plot: series [{name, points: [[x(ms since epoch), y]]}], y formatted by fmtY.
   * opts: minTop (the y axis reaches at least this), from and to (a fixed time span, in ms
   * since the epoch; else the data's). Returns a figure with the SVG and a legend.
   */
  function linePlot(series, fmtY, label, opts) {
    const o = opts || {};
    const W = 560, H = 200, L = 52, R = 12, T = 10, B = 26;
    const pts = series.flatMap((s_) => s_.points);
    if (!pts.length) return h('div', { class: 'empty' }, 'No data yet.');
    let x0 = o.from !== undefined ? o.from : Math.min(...pts.map((q) => q[0]));
    let x1 = o.to !== undefined ? o.to : Math.max(...pts.map((q) => q[0]));
    if (x1 === x0) { x0 -= 60000; x1 += 60000; }
    const [y1, ticks] = niceMax(Math.max(o.minTop || 0, ...pts.map((q) => q[1])));
    const X = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
    const Y = (y) => T + (1 - y / y1) * (H - T - B);
    const svg = s('svg', { class: 'plot', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label });
    for (let i = 0; i <= ticks; i++) {
      const y = (y1 * i) / ticks;
      svg.append(s('line', { class: 'grid', x1: L, x2: W - R, y1: Y(y), y2: Y(y) }),
        s('text', { x: L - 6, y: Y(y) + 4, 'text-anchor': 'end' }, fmtY(y)));
    }
    for (let i = 0; i <= 3; i++) {
      const x = x0 + ((x1 - x0) * i) / 3;
      const d = new Date(x);
      const span = x1 - x0;
      const label = span < 600000 ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' })
        : span < 86400000 ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
          : d.toLocaleDateString([], { month: 'short', day: 'numeric' });
      svg.append(s('text', { x: X(x), y: H - 8, 'text-anchor': i === 0 ? 'start' : i === 3 ? 'end' : 'middle' }, label));
    }
    svg.append(s('line', { class: 'axis', x1: L, x2: W - R, y1: Y(0), y2: Y(0) }));
    series.forEach((se, i) => {
      const c = se.colour || PALETTE[i % PALETTE.length];
      const sorted = se.points.slice().sort((a, b) => a[0] - b[0]);
      if (sorted.length > 1) {
        svg.append(s('polyline', { class: 'series', stroke: c, points: sorted.map((q) => X(q[0]).toFixed(1) + ',' + Y(q[1]).toFixed(1)).join(' ') }));
      }
      // Dots for few points (each with a tooltip); a dense series is a line only.
      if (sorted.length <= 60) for (const q of sorted) {
        svg.append(s('circle', { cx: X(q[0]), cy: Y(q[1]), r: 3, fill: q[2] ? stateColour(q[2]) : c, stroke: c, 'stroke-width': 1 },
          s('title', {}, se.name + ': ' + fmtY(q[1]) + (q[3] ? ' (' + q[3] + ')' : ''))));
      }
    });
    return h('figure', { class: 'fig', style: null },
      svg,
      h('figcaption', { class: 'plot-legend' }, series.map((se, i) => h('span', {}, h('i', { 'data-c': i }), se.name))));
  }
  /** A round top for an axis and how many steps to cut it into (round steps too). */
  function niceMax(v) {
    if (v <= 0) return [1, 1];
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const [m, t] of [[1, 5], [2, 4], [2.5, 5], [5, 5], [10, 5]]) if (m * p >= v) return [m * p, t];
    return [10 * p, 5];
  }
  // Legend swatches get their colour through the CSSOM (the page's CSP allows no inline styles).
  new MutationObserver(() => {
    for (const i of document.querySelectorAll('.plot-legend i[data-c]:not([data-done])')) {
      i.style.background = PALETTE[Number(i.dataset.c) % PALETTE.length];
      i.dataset.done = '1';
    }
    for (const b of document.querySelectorAll('.bar > span[data-w]:not([data-done])')) {
      b.style.width = b.dataset.w + '%';
      b.dataset.done = '1';
    }
  }).observe(document.documentElement, { childList: true, subtree: true });

  function durationPlot(runs) {
    const by = new Map();
    for (const r of runs) {
      if (r.duration_ms === null || !FINAL.includes(r.state)) continue;
      const k = r.project + '/' + r.pipeline;
      if (!by.has(k)) by.set(k, []);
      by.get(k).push([new Date(r.created_at).getTime(), r.duration_ms, r.state, '#' + r.number + ' ' + r.state]);
    }
    const series = [...by.entries()].slice(0, PALETTE.length).map(([name, points]) => ({ name, points }));
    return linePlot(series, (ms) => fmtDuration(ms), 'run durations per pipeline over time');
  }

  /** Queue depth and pool use over time, when the server keeps that history. */
  function statsPanel(p) {
    const body = h('div', { class: 'body' }, h('p', { class: 'muted' }, 'Loading…'));
    const panel = h('section', { class: 'panel', 'aria-label': 'Queue and pool' }, h('h2', {}, 'Queue depth and pool use'), body);
    api('GET', '/stats/queue', undefined, { signal: p.ctl.signal }).then((st) => {
      clear(body);
      const t = (x) => new Date(x.time).getTime();
      body.append(linePlot([
        { name: 'jobs queued', points: st.samples.map((x) => [t(x), x.queued_jobs]) },
        { name: 'runs waiting', points: st.samples.map((x) => [t(x), x.pending_runs]) },
        { name: 'slots busy', points: st.samples.map((x) => [t(x), x.busy_slots]) },
        { name: 'slots total', points: st.samples.map((x) => [t(x), x.total_slots]) },
      ], (v) => String(Math.round(v * 10) / 10), 'queue depth and pool use over time', { minTop: 4 }),
      h('p', { class: 'muted' }, 'One sample every ' + (st.interval_ms / 1000) + ' s, kept for the last hour.'));
    }).catch((e) => {
      if (e.name === 'AbortError') return;
      put(body, e.status === 404
        ? h('div', { class: 'notice' }, 'Not available on this server yet.')
        : errorBox('Could not load the queue history', e));
    });
    return panel;
  }

  // ---------------------------------------------------------------- one pipeline

  async function viewPipeline(p, el, project, name) {
    setTitle(project + '/' + name);
    el.append(h('div', { class: 'crumbs' }, h('a', { href: '/' }, 'Pipelines'), ' / ', h('a', { href: projectPath(project) }, project)));
    const head = h('div', { class: 'head' }, h('h1', {}, name));
    el.append(head);
    const base = '/projects/' + enc(project) + '/pipelines/' + enc(name);
    let pl, runs;
    try {
      [pl, runs] = await Promise.all([api('GET', base, undefined, { signal: p.ctl.signal }),
        api('GET', '/runs?project=' + enc(project) + '&pipeline=' + enc(name) + '&limit=100', undefined, { signal: p.ctl.signal })]);
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      el.append(errorBox('Could not load pipeline ' + project + '/' + name, e));
      return;
    }
    el.append(h('div', { class: 'meta' },
      h('span', {}, 'version ', h('b', {}, pl.version)),
      h('span', {}, 'stages ', h('b', {}, pl.stages.join(' → '))),
      h('span', {}, h('b', {}, pl.jobs), ' jobs'),
      pl.concurrency ? h('span', {}, 'at most ', h('b', {}, pl.concurrency), ' at once') : null,
      h('span', {}, 'updated ', h('b', {}, fmtAgo(pl.updated_at)))));

    // A pipeline with `on: { api: false }` is started only by its triggers: list them instead
    // of a form the server would refuse.
    if (pl.triggers && !pl.triggers.some((t) => t.kind === 'api')) {
      el.append(h('section', { class: 'panel', id: 'trigger', 'aria-label': 'Triggers', 'data-manual': 'off' },
        h('h2', {}, 'Started by its triggers only'),
        h('div', { class: 'body' }, h('p', { class: 'muted' }, 'This pipeline says on: { api: false }: runs start from these, not by hand.'),
          h('ul', {}, pl.triggers.map((t) => h('li', { 'data-kind': t.kind }, h('b', {}, t.kind), ' ', t.details))))));
    } else {
      // Trigger form.
      const err = h('div');
      const inputs = {};
      const fields = pl.params.map((pa) => {
        const id = 'param-' + pa.name;
        let input;
        if (pa.kind === 'choice') {
          input = h('select', { id, name: pa.name }, pa.choices.map((c) => h('option', { value: c, selected: c === pa.default }, c)));
        } else if (pa.kind === 'bool') {
          input = h('select', { id, name: pa.name }, ['true', 'false'].map((c) => h('option', { value: c, selected: c === (pa.default || 'false') }, c)));
        } else {
          input = h('input', { id, name: pa.name, type: pa.kind === 'number' ? 'number' : 'text', step: pa.kind === 'number' ? 'any' : null,
            value: pa.default || '', required: pa.required && pa.default === null });
        }
        inputs[pa.name] = input;
        return h('div', { class: 'field' },
          h('label', { for: id }, pa.name, pa.required && pa.default === null ? h('span', { class: 'req', 'aria-hidden': 'true' }, '*') : null,
            ' ', h('span', { class: 'help' }, pa.kind)),
          input,
          pa.description ? h('span', { class: 'help' }, pa.description) : null);
      });
      const submit = h('button', { class: 'primary', type: 'submit', id: 'trigger-submit' }, 'Run pipeline');
      const form = h('form', {
        id: 'trigger-form', 'aria-label': 'Trigger ' + name,
        onsubmit: async (ev) => {
          ev.preventDefault();
          clear(err);
          const params = {};
          for (const [k, input] of Object.entries(inputs)) if (input.value !== '') params[k] = input.value;
          submit.disabled = true;
          try {
            const run = await api('POST', base + '/runs', { params });
            go('/runs/' + run.id);
          } catch (e) {
            submit.disabled = false;
            err.append(errorBox('The run was not started', e));
          }
        },
      }, fields.length ? h('div', { class: 'form-grid' }, fields) : h('p', { class: 'muted' }, 'This pipeline takes no parameters.'), err, submit);
      el.append(h('section', { class: 'panel', id: 'trigger', 'aria-label': 'Trigger' }, h('h2', {}, 'Trigger a run'), h('div', { class: 'body' }, form)));
      if (location.hash === '#trigger') (fields.length ? Object.values(inputs)[0] : submit).focus();
    }

    el.append(h('div', { class: 'grid2' },
      h('section', { class: 'panel', 'aria-label': 'Runs' }, h('h2', {}, 'Runs'), runTable(runs, false)),
      h('section', { class: 'panel', 'aria-label': 'Run durations' }, h('h2', {}, 'Run durations'), h('div', { class: 'body' }, durationPlot(runs)))));
  }

  function runTable(runs, showPipeline) {
    if (!runs.length) return h('div', { class: 'empty' }, 'No runs yet.');
    return h('div', { class: 'scroll' }, h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, 'State'), h('th', {}, 'Run'), h('th', { class: 'hide-sm' }, 'By'),
        h('th', {}, 'Started'), h('th', { class: 'num' }, 'Duration'))),
      h('tbody', {}, runs.map((r) => h('tr', { 'data-run': r.id, 'data-state': r.state },
        h('td', {}, badge(r.state)),
        h('td', {}, h('a', { href: '/runs/' + r.id }, (showPipeline ? r.project + '/' + r.pipeline : '') + '#' + r.number),
          r.retry_of ? h('span', { class: 'muted' }, ' retry') : null),
        h('td', { class: 'hide-sm' }, r.triggered_by),
        h('td', { title: fmtTime(r.created_at) }, fmtAgo(r.created_at)),
        h('td', { class: 'num' }, fmtDuration(r.duration_ms)))))));
  }

  /** What started a run, as the runs list filters it: `api`, `schedule`, a source event… */
  function runTrigger(r) {
    if (r.source) return r.source.provider + ' ' + r.source.event;
    const by = r.triggered_by || '';
    if (r.parent || by.startsWith('job ')) return 'pipeline';
    if (by.startsWith('schedule ')) return 'schedule';
    if (by.includes('(image push ')) return 'image push';
    return 'api';
  }

  // The runs list: filters in the URL (`?pipeline=P/N&state=S&trigger=T&branch=B`), pages of
  // 200 (`&before=ID`, the last run of the page before; `&per_page=N`), kept fresh by the server's run
  // events (GET /runs/events), not by polling.
  async function viewRuns(p, el) {
    setTitle('Runs');
    const q = new URLSearchParams(location.search);
    const f = { pipeline: q.get('pipeline') || '', state: q.get('state') || '', trigger: q.get('trigger') || '', branch: q.get('branch') || '' };
    const before = q.get('before') || '';
    // Runs a page: 200, or `per_page` (1 to 500).
    const PAGE = Math.max(1, Math.min(500, Number(q.get('per_page')) || 200));
    // The list's URL with these filters (a changed filter starts again at the newest).
    const url = (b) => {
      const u = new URLSearchParams();
      for (const [k, v] of Object.entries(f)) if (v) u.set(k, v);
      if (q.get('per_page')) u.set('per_page', String(PAGE));
      if (b) u.set('before', b);
      const qs = u.toString();
      return '/runs' + (qs ? '?' + qs : '');
    };
    const apply = () => go(url(''));
    const pick = (key, id, label, values, anyLabel) => h('select', { id, 'aria-label': label, onchange: (ev) => { f[key] = ev.target.value; apply(); } },
      ['', ...values].map((v) => h('option', { value: v, selected: v === f[key] }, v || anyLabel)));
    const pipeSel = pick('pipeline', 'pipeline-filter', 'Filter by pipeline', f.pipeline ? [f.pipeline] : [], 'any pipeline');
    const triggers = ['api', 'schedule', 'pipeline', 'image push', 'github push', 'github pull_request', 'gitlab push', 'gitea push'];
    if (f.trigger && !triggers.includes(f.trigger)) triggers.push(f.trigger);
    const branch = h('input', { id: 'branch-filter', type: 'search', 'aria-label': 'Filter by branch', placeholder: 'branch', value: f.branch,
      onchange: (ev) => { f.branch = ev.target.value.trim(); apply(); } });
    el.append(h('div', { class: 'head' }, h('h1', {}, 'Runs'), h('div', { class: 'actions filters' },
      pipeSel,
      pick('state', 'state-filter', 'Filter by state', ['pending', 'scheduling', 'running', 'paused', 'success', 'failure', 'canceled', 'timeout'], 'any state'),
      pick('trigger', 'trigger-filter', 'Filter by trigger', triggers, 'any trigger'),
      branch)));
    // The pipelines to pick from (the list loads without them).
    loadPipelines(p).then((pls) => {
      for (const pl of pls) {
        const k = pl.project + '/' + pl.name;
        if (k !== f.pipeline) pipeSel.append(h('option', { value: k }, k));
      }
    }).catch(() => {});
    const panel = h('section', { class: 'panel' });
    el.append(panel);
    let shown = null, runs = null, loading = null, again = false;
    const slash = f.pipeline.indexOf('/');
    const query = '/runs?limit=' + PAGE + (f.state ? '&state=' + enc(f.state) : '') +
      (slash > 0 ? '&project=' + enc(f.pipeline.slice(0, slash)) + '&pipeline=' + enc(f.pipeline.slice(slash + 1)) : '') +
      (before ? '&before=' + enc(before) : '');
    const draw = () => {
      const list = runs.filter((r) => (!f.trigger || runTrigger(r) === f.trigger) &&
        (!f.branch || (r.source && r.source.branch === f.branch)));
      // Redraw only on a change, so keyboard focus in the table survives
      // (and once a minute, for the times shown as "N min ago").
      const key = JSON.stringify([Math.floor(Date.now() / 60000), list.map((r) => [r.id, r.state])]);
      if (key !== shown) {
        shown = key;
        const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' },
          before ? h('a', { href: url(''), id: 'newest-runs' }, '← Newest') : null,
          runs.length === PAGE ? h('a', { href: url(runs[runs.length - 1].id), id: 'older-runs' }, 'Older runs →') : null);
        put(panel, list.length ? runTable(list, true) : h('div', { class: 'empty' }, runs.length ? 'No run on this page matches.' : 'No runs match.'),
          pager.firstChild ? pager : null);
      }
    };
    const load = async () => {
      // One load at a time; events that come during one load once more after it.
      if (loading) { again = true; return loading; }
      loading = (async () => {
        do {
          again = false;
          try {
            runs = await api('GET', query, undefined, { signal: p.ctl.signal });
          } catch (e) {
            if (e.name === 'AbortError') return;
            put(panel, errorBox('Could not load the runs', e));
            shown = null;
            return;
          }
          draw();
        } while (again && !p.ctl.signal.aborted);
      })();
      try { await loading; } finally { loading = null; }
    };
    const minute = () => { if (runs) draw(); later(p, 60000, minute); };
    later(p, 60000, minute);
    const live = followEvents(p, '/api/v1/runs/events' + (slash > 0 ? '?project=' + enc(f.pipeline.slice(0, slash)) : ''),
      () => { load(); }, () => { load(); }, (msg) => { panel.dataset.live = 'off'; toast('Live updates are off: ' + msg); });
    if (!live) await load();
  }

  // ---------------------------------------------------------------- one run

  async function viewRun(p, el, id) {
    const crumbs = h('div', { class: 'crumbs' });
    const head = h('div', { class: 'head' });
    const meta = h('div', { class: 'meta' });
    const banner = h('div');
    const problem = h('div');
    const graph = h('div', { class: 'graph-wrap' });
    const jobs = h('div');
    const arts = h('div', { class: 'body' }, h('p', { class: 'muted' }, 'Loading…'));
    el.append(crumbs, head, meta, problem, banner,
      h('section', { class: 'panel', 'aria-label': 'Graph' }, h('h2', {}, 'Graph'), graph, legend()),
      h('section', { class: 'panel', 'aria-label': 'Jobs' }, h('h2', {}, 'Jobs'), jobs),
      h('section', { class: 'panel', 'aria-label': 'Artifacts' }, h('h2', {}, 'Artifacts'), arts));
    let lastKey = null, artsLoaded = false, busy = false;

    // `label` names the action in an error ("Cancel failed"); `done` is the toast after it.
    const act = async (label, done, method, path, body, after) => {
      if (busy) return;
      busy = true;
      clear(problem);
      try {
        const r = await api(method, path, body);
        toast(done);
        if (after) after(r);
      } catch (e) {
        problem.append(errorBox(label + ' failed', e));
      } finally {
        busy = false;
        lastKey = null;
        refresh(false);
      }
    };

    // `loop`: schedule the next refresh (only the polling loop does; an action's refresh not).
    const refresh = async (loop = true) => {
      let d;
      try {
        d = await api('GET', '/runs/' + enc(id), undefined, { signal: p.ctl.signal });
      } catch (e) {
        if (e.name === 'AbortError') return;
        if (!head.firstChild) { put(el, errorBox('Could not load run ' + id, e)); return; }
        put(problem, errorBox('Live updates stopped: could not reload the run', e));
        if (loop) later(p, 5000, refresh);
        return;
      }
      const r = d;
      const key = JSON.stringify([r.state, r.paused_at, r.jobs.map((j) => [j.state, j.attempts, j.duration_ms === null, j.waiting, j.array && [j.array.succeeded, j.array.failed, j.array.running]]), r.stages.map((x) => x.gate)]);
      setTitle(r.pipeline + ' #' + r.number + ' ' + r.state);
      put(crumbs, h('a', { href: '/' }, 'Pipelines'), ' / ', h('a', { href: projectPath(r.project) }, r.project), ' / ', h('a', { href: '/p/' + enc(r.project) + '/' + enc(r.pipeline) }, r.pipeline));
      const actions = h('div', { class: 'actions' });
      if (!FINAL.includes(r.state)) {
        actions.append(h('button', { class: 'danger', type: 'button', id: 'cancel-run', onclick: () => {
          if (confirm('Cancel ' + r.pipeline + ' #' + r.number + '? Running jobs are stopped.')) act('Cancel', 'Canceled', 'POST', '/runs/' + enc(id) + '/cancel');
        } }, 'Cancel'));
      } else if (r.state !== 'success') {
        actions.append(h('button', { type: 'button', id: 'retry-run', onclick: () => act('Retry', 'Retried as a new run', 'POST', '/runs/' + enc(id) + '/retry', undefined, (n) => go('/runs/' + n.id)) }, 'Retry'));
      }
      put(head, h('h1', {}, r.pipeline + ' #' + r.number), badge(r.state, r.state === 'paused' ? 'waiting for approval' : r.state), actions);
      put(meta, 
        h('span', {}, 'triggered by ', h('b', {}, r.triggered_by), ' ', h('span', { title: fmtTime(r.created_at) }, fmtAgo(r.created_at))),
        h('span', {}, 'duration ', h('b', { id: 'run-duration' }, fmtDuration(r.duration_ms))),
        Object.keys(r.params || {}).length ? h('span', {}, 'params ', h('b', { class: 'mono' }, Object.entries(r.params).map(([k, v]) => k + '=' + (typeof v === 'string' ? v : JSON.stringify(v))).join(' '))) : null,
        r.retry_of ? h('span', {}, 'retry of ', h('a', { href: '/runs/' + r.retry_of }, 'an earlier run')) : null,
        r.reason ? h('span', {}, 'reason ', h('b', {}, r.reason)) : null);
      if (key !== lastKey) {
        lastKey = key;
        clear(banner);
        if (r.paused_at) {
          const st = r.stages.find((x) => x.name === r.paused_at) || {};
          banner.append(h('div', { class: 'approval', role: 'region', 'aria-label': 'Approval' },
            h('div', { class: 'q' }, h('b', {}, 'Stage “' + r.paused_at + '” waits for approval'), st.description || 'Approve to go on, reject to stop the run.'),
            h('button', { class: 'primary', type: 'button', id: 'approve', onclick: () => act('Approve', 'Approved', 'POST', '/runs/' + enc(id) + '/stages/' + enc(r.paused_at) + '/decision', { decision: 'approve' }) }, 'Approve'),
            h('button', { class: 'danger', type: 'button', id: 'reject', onclick: () => {
              if (confirm('Reject stage ' + r.paused_at + '? The run stops.')) act('Reject', 'Rejected', 'POST', '/runs/' + enc(id) + '/stages/' + enc(r.paused_at) + '/decision', { decision: 'reject' });
            } }, 'Reject')));
        }
        put(graph, runGraph(r));
        put(jobs, jobTable(r));
      } else {
        // Same states: only the clocks of running jobs move, updated in place (keeps focus).
        for (const j of r.jobs) {
          if (j.state !== 'running') continue;
          const t = graph.querySelector('a.node[data-job="' + CSS.escape(j.id) + '"] text.sub');
          if (t) t.textContent = truncate('running · ' + fmtDuration(j.duration_ms), 28);
        }
      }
      if (!artsLoaded || !FINAL.includes(r.state)) loadArtifacts(p, id, r, arts).then((ok) => { artsLoaded = ok && FINAL.includes(r.state); });
      if (loop && !FINAL.includes(r.state)) later(p, 1000, refresh);
    };
    await refresh();
  }

  function legend() {
    return h('div', { class: 'legend', 'aria-label': 'Colours' },
      ['success', 'failure', 'running', 'queued', 'pending', 'waiting', 'skipped', 'canceled', 'timeout'].map((x) => badge(x)));
  }

  /** The run as a graph: stages as columns, jobs as nodes coloured by state, edges for needs. */
  function runGraph(r) {
    const NW = 196, NH = 50, CG = 64, RG = 14, TOP = 30, PAD = 8;
    const cols = r.stages.map((st) => ({ st, jobs: r.jobs.filter((j) => j.stage === st.name) }));
    const pos = new Map();
    const colOf = new Map();
    cols.forEach((c, ci) => c.jobs.forEach((j) => colOf.set(j.id, ci)));
    let maxRows = 1;
    cols.forEach((c, ci) => {
      const x = PAD + ci * (NW + CG);
      if (c.st.kind === 'approval') {
        pos.set('stage:' + c.st.name, { x, y: TOP });
      } else {
        c.jobs.forEach((j, ri) => pos.set(j.id, { x, y: TOP + ri * (NH + RG) }));
        maxRows = Math.max(maxRows, c.jobs.length);
      }
    });
    const W = PAD * 2 + cols.length * NW + (cols.length - 1) * CG;
    const H = TOP + maxRows * (NH + RG) - RG + PAD;
    const svg = s('svg', { class: 'graph', width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'group', 'aria-label': 'Run graph' });
    const edges = s('g', { 'aria-hidden': 'true' });
    svg.append(edges);
    const edge = (a, b, gate) => {
      const x1 = a.x + NW, y1 = a.y + NH / 2, x2 = b.x, y2 = b.y + NH / 2, mx = (x1 + x2) / 2;
      edges.append(s('path', { class: 'edge' + (gate ? ' gate' : ''), d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` }));
    };
    cols.forEach((c, ci) => {
      const x = PAD + ci * (NW + CG);
      svg.append(s('text', { class: 'stage-title', x, y: 16 }, truncate(c.st.name, 26)));
      if (c.st.kind === 'approval') {
        const gate = c.st.gate || 'pending';
        const state = { waiting: 'waiting', approved: 'approved', rejected: 'rejected', skipped: 'skipped', canceled: 'canceled' }[gate] || 'pending';
        const sub = c.st.decision ? c.st.decision.decision + ' by ' + c.st.decision.by : gate === 'waiting' ? 'waiting for approval' : 'approval gate';
        svg.append(node(pos.get('stage:' + c.st.name), state, c.st.name, sub, null, 'approval ' + c.st.name + ': ' + gate, true));
        // Every job of the stage before feeds the gate; the gate feeds every job of the stage after.
        const prev = cols[ci - 1], next = cols[ci + 1];
        if (prev) for (const j of prev.jobs) if (pos.has(j.id)) edge(pos.get(j.id), pos.get('stage:' + c.st.name), true);
        if (next) for (const j of next.jobs) if (pos.has(j.id)) edge(pos.get('stage:' + c.st.name), pos.get(j.id), true);
        return;
      }
      for (const j of c.jobs) {
        for (const n of j.needs) {
          // A need across an approval gate is drawn through the gate (its dashed edges).
          const from = colOf.get(n);
          const gated = cols.some((g, gi) => g.st.kind === 'approval' && gi > from && gi < ci);
          if (pos.has(n) && !gated) edge(pos.get(n), pos.get(j.id), false);
        }
        const waits = j.state === 'queued' && j.waiting;
        const sub = j.state === 'running' ? 'running · ' + fmtDuration(j.duration_ms)
          : j.duration_ms !== null ? j.state + ' · ' + fmtDuration(j.duration_ms)
            : waits ? truncate('waits: ' + j.waiting, 25) // the whole reason is in the tooltip
              : j.state + (j.attempts > 1 ? ' · attempt ' + j.attempts : '');
        const label = 'job ' + j.id + ': ' + j.state + (waits ? '; waits for a node: ' + j.waiting : '');
        svg.append(node(pos.get(j.id), j.state, j.id, sub, '/runs/' + r.id + '/jobs/' + enc(j.id), label));
      }
    });
    return svg;

    function node(at, state, title, sub, href, label, gate) {
      const g = href
        ? s('a', { class: 'node n-' + state, href, 'data-job': title, 'data-state': state, 'aria-label': label })
        : s('g', { class: 'node n-' + state, 'data-state': state, role: 'img', 'aria-label': label, 'data-gate': title });
      g.append(s('title', {}, label),
        s('rect', { class: 'box', x: at.x, y: at.y, width: NW, height: NH, rx: 8 }),
        s('rect', { class: 'stripe', x: at.x, y: at.y + 1, width: 5, height: NH - 2, rx: 2 }),
        // A job is a dot; an approval gate is a pause sign.
        gate
          ? s('g', {}, s('rect', { class: 'dot', x: at.x + 13, y: at.y + 12, width: 3.5, height: 12, rx: 1 }),
            s('rect', { class: 'dot', x: at.x + 19.5, y: at.y + 12, width: 3.5, height: 12, rx: 1 }))
          : s('circle', { class: 'dot', cx: at.x + 18, cy: at.y + 18, r: 5 }),
        s('text', { class: 'name', x: at.x + 30, y: at.y + 22 }, truncate(title, 22)),
        s('text', { class: 'sub', x: at.x + 30, y: at.y + 39 }, truncate(sub, 28)));
      return g;
    }
  }
  function truncate(t, n) { return t.length > n ? t.slice(0, n - 1) + '…' : t; }

  function jobTable(r) {
    return h('div', { class: 'scroll' }, h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, 'Job'), h('th', {}, 'State'), h('th', { class: 'hide-sm' }, 'Stage'),
        h('th', { class: 'num hide-sm' }, 'Attempts'), h('th', { class: 'num hide-sm' }, 'Exit'), h('th', { class: 'num' }, 'Duration'), h('th', { class: 'hide-sm' }, 'Note'))),
      h('tbody', {}, r.jobs.map((j) => h('tr', {},
        h('td', {}, h('a', { href: '/runs/' + r.id + '/jobs/' + enc(j.id) }, j.id)),
        h('td', {}, badge(j.state)),
        h('td', { class: 'hide-sm' }, j.stage),
        h('td', { class: 'num hide-sm' }, j.attempts),
        h('td', { class: 'num hide-sm' }, j.exit_code === null ? '–' : j.exit_code),
        h('td', { class: 'num' }, fmtDuration(j.duration_ms)),
        h('td', { class: 'hide-sm muted note' }, j.array && arrayModule ? arrayModule.arrayProgress(h, r.id, j.id, j.array) : j.reason
          || (j.state === 'queued' && j.waiting ? 'waits for a node: ' + j.waiting : '')
          || Object.entries(j.outputs || {}).map(([k, v]) => k + '=' + v).join(' ')))))));
  }

  async function loadArtifacts(p, id, r, box) {
    let list;
    try {
      list = await api('GET', '/runs/' + enc(id) + '/artifacts', undefined, { signal: p.ctl.signal });
    } catch (e) {
      if (e.name === 'AbortError') return false;
      put(box, errorBox('Could not load the artifacts', e));
      return false;
    }
    clear(box);
    if (!list.length) {
      box.append(h('p', { class: 'muted' }, FINAL.includes(r.state) ? 'This run stored no artifacts.' : 'None yet.'));
      return true;
    }
    box.append(h('div', { class: 'scroll' }, h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, 'Job'), h('th', {}, 'Files'), h('th', { class: 'num' }, 'Size'), h('th', { class: 'hide-sm' }, 'Digest'), h('th', {}, ''))),
      h('tbody', {}, list.map((a) => h('tr', {},
        h('td', {}, a.job),
        h('td', {}, a.files.slice(0, 6).map((f) => h('div', { class: 'mono' }, f.path, ' ', h('span', { class: 'muted' }, fmtBytes(f.size)))),
          a.files.length > 6 ? h('div', { class: 'muted' }, '… and ' + (a.files.length - 6) + ' more') : null),
        h('td', { class: 'num' }, fmtBytes(a.size)),
        h('td', { class: 'hide-sm mono', title: a.digest }, a.digest.slice(0, 19) + '…'),
        h('td', { class: 'num' }, h('button', { type: 'button', onclick: () => downloadArtifact(id, r, a) }, 'Download'))))))));
    return true;
  }

  async function downloadArtifact(id, r, a) {
    try {
      const resp = await api('GET', '/runs/' + enc(id) + '/artifacts/' + enc(a.job), undefined, { raw: true });
      saveBlob(await resp.blob(), r.pipeline + '-' + r.number + '-' + a.job + '.tar.gz');
    } catch (e) {
      toast('Download failed: ' + e.message);
    }
  }
  function saveBlob(blob, name) {
    const url = URL.createObjectURL(blob);
    const a = h('a', { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  // ---------------------------------------------------------------- logs

  // The job log page lives in its own ES module (log_view.js), loaded on the first visit;
  // it gets the helpers it shares with the rest of the app from here.
  let logModule = null;
  async function viewLog(p, el, id, job) {
    if (!logModule) logModule = import('/assets/log_view.js');
    let m;
    try {
      m = await logModule;
    } catch (e) {
      logModule = null;
      throw e;
    }
    if (p.ctl.signal.aborted) return;
    const kit = { h, put, clear, enc, api, errorBox, badge, setTitle, fmtDuration, later, token, go, saveBlob, FINAL };
    return m.viewLog(kit, p, el, id, job);
  }

  // ---------------------------------------------------------------- pool and registry

  async function viewPool(p, el) {
    setTitle('Pool');
    el.append(h('div', { class: 'head' }, h('h1', {}, 'Pool')));
    const opts = { signal: p.ctl.signal };
    if (!whoami) {
      try { whoami = await api('GET', '/info', undefined, opts); renderWho(); } catch (e) { if (e.name === 'AbortError') throw e; }
    }
    const waiting = h('section', { class: 'panel', 'aria-label': 'Waiting work' }, h('h2', {}, 'Waiting work'), h('div', { class: 'body muted' }, 'Loading…'));
    const admin = !!whoami && whoami.role === 'admin';
    const problem = h('div');
    const nodesBody = h('div', { class: 'body muted' }, 'Loading…');
    const offersBody = h('div', { class: 'body muted' }, 'Loading…');
    let nodes = [];
    const editor = admin ? attributeForm(() => nodes, (...a) => act(...a)) : null;
    el.append(problem,
      h('section', { class: 'panel', 'aria-label': 'Nodes' }, h('h2', {}, 'Nodes'), nodesBody, editor),
      h('section', { class: 'panel', 'aria-label': 'Offers' }, h('h2', {}, 'Offers ', h('span', { class: 'muted small' }, 'what each node has free')), offersBody),
      waiting, h('div', { class: 'grid2' }, statsPanel(p)));

    let busy = false, shown = null;
    const act = async (label, done, node, body) => {
      if (busy) return false;
      busy = true;
      clear(problem);
      try {
        await api('PATCH', '/nodes/' + enc(node), body);
        toast(done);
        return true;
      } catch (e) {
        problem.append(errorBox(label + ' failed', e));
        return false;
      } finally {
        busy = false;
        refresh(false);
      }
    };

    const refresh = async (loop = true) => {
      let offers;
      try {
        [nodes, offers] = await Promise.all([api('GET', '/nodes', undefined, opts), api('GET', '/offers', undefined, opts)]);
        // Redrawn only when something changed (a redraw would take the focus off a button).
        const key = JSON.stringify([nodes.map((n) => Object.assign({}, n, { last_seen: null })), offers]);
        if (key !== shown) {
          shown = key;
          put(nodesBody, nodeTable(nodes, admin, act)).className = 'body flush';
          put(offersBody, offerCards(nodes, offers)).className = 'body';
          if (editor) editor.fill();
        }
      } catch (e) {
        if (e.name === 'AbortError') return;
        shown = null;
        put(nodesBody, errorBox('Could not load the nodes', e)).className = 'body';
      }
      try {
        const w = await waitingWork(p, nodes);
        waiting.lastChild.replaceWith(w);
      } catch (e) {
        if (e.name === 'AbortError') return;
        waiting.lastChild.replaceWith(h('div', { class: 'body' }, errorBox('Could not load the waiting work', e)));
      }
      if (loop) later(p, 3000, refresh);
    };
    await refresh();
  }

  function slotBar(running, capacity) {
    return h('div', { class: 'slots' }, h('div', { class: 'bar', role: 'img', 'aria-label': running + ' of ' + capacity + ' slots in use' },
      h('span', { 'data-w': capacity ? Math.min(100, Math.round((100 * running) / capacity)) : 0 })), h('span', { class: 'muted' }, running + ' / ' + capacity));
  }

  /** An attribute's value as `kiln nodes` prints it: 8, shenzhen, {gz,sz}. */
  function fmtAttr(v) {
    if (Array.isArray(v)) return '{' + v.join(',') + '}';
    return String(v);
  }
  /** A value typed by an operator, read as the server and Mesos read it: a number, {a,b} a set, else text. */
  function parseAttr(text) {
    const v = text.trim();
    if (v.startsWith('{')) {
      if (!v.endsWith('}')) throw new Error('a set is written {a,b,c}');
      const inner = v.slice(1, -1);
      if (!inner.trim()) return [];
      const members = inner.split(',').map((m) => m.trim());
      if (members.some((m) => !m)) throw new Error('a set is written {a,b,c} with non-empty members');
      return [...new Set(members)].sort();
    }
    if (/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(v) && Number.isFinite(Number(v))) return Number(v);
    return v;
  }
  const NODE_STATE = { ready: 'success', lost: 'failure', down: 'canceled' };

  /** The nodes as `kiln nodes` lists them, with one column per attribute. */
  function nodeTable(nodes, admin, act) {
    if (!nodes.length) return h('div', { class: 'empty' }, 'No node has joined: start one with ', h('code', {}, 'kiln agent --server ' + location.origin + ' --token-file FILE'), '.');
    const keys = [...new Set(nodes.flatMap((n) => Object.keys(n.attributes)))].sort();
    return h('div', { class: 'scroll' }, h('table', { class: 'nodes' },
      h('thead', {}, h('tr', {}, h('th', { class: 'num' }, '#'), h('th', {}, 'Name'), h('th', { class: 'hide-sm' }, 'IP'), h('th', { class: 'hide-sm' }, 'Hostname'),
        h('th', {}, 'State'), h('th', {}, 'Disabled'), h('th', {}, 'Running'),
        keys.map((k) => h('th', { class: 'attr', 'data-attr': k }, k)),
        h('th', { class: 'hide-sm' }, 'Last seen'), admin ? h('th', {}, h('span', { class: 'sr' }, 'Actions')) : null)),
      h('tbody', {}, nodes.map((n) => h('tr', { 'data-node': n.name, 'data-state': n.state, 'data-disabled': n.disabled ? 'true' : 'false' },
        h('td', { class: 'num' }, n.index),
        h('td', { class: 'name' }, h('b', {}, n.name), h('div', { class: 'muted small' }, n.executor)),
        h('td', { class: 'hide-sm mono' }, n.ip || '–'),
        h('td', { class: 'hide-sm' }, n.hostname || '–'),
        h('td', {}, stateBadge(NODE_STATE, n.state)),
        h('td', { class: 'disabled-cell' }, n.disabled ? h('span', { class: 'badge s-waiting', 'data-state': 'disabled' }, 'disabled') : h('span', { class: 'muted' }, 'no')),
        h('td', {}, slotBar(n.running, n.capacity)),
        keys.map((k) => {
          const has = Object.prototype.hasOwnProperty.call(n.attributes, k);
          const op = Object.prototype.hasOwnProperty.call(n.operator_attributes || {}, k);
          return h('td', { class: 'attr mono' + (op ? ' op' : ''), 'data-attr': k, title: op ? 'set by an operator' : null },
            has ? fmtAttr(n.attributes[k]) : h('span', { class: 'muted' }, '–'));
        }),
        h('td', { class: 'hide-sm' }, n.last_seen ? h('span', { title: fmtTime(n.last_seen) }, fmtAgo(n.last_seen)) : '–'),
        admin ? h('td', {}, n.disabled
          ? h('button', { type: 'button', class: 'node-toggle', 'data-action': 'enable', onclick: () => act('Enable', 'Enabled ' + n.name, n.name, { disabled: false }) }, 'Enable')
          : h('button', { type: 'button', class: 'danger node-toggle', 'data-action': 'disable', onclick: () => {
            if (confirm('Disable node ' + n.name + '? No new work is placed on it; what runs there finishes.')) act('Disable', 'Disabled ' + n.name, n.name, { disabled: true });
          } }, 'Disable')) : null)))));
  }

  /** Admins set or unset an attribute of a node (`kiln nodes set/unset`). */
  function attributeForm(nodesNow, act) {
    const node = h('select', { id: 'attr-node', 'aria-label': 'Node' });
    const key = h('input', { id: 'attr-key', placeholder: 'city', 'aria-label': 'Attribute', autocomplete: 'off', required: true });
    const value = h('input', { id: 'attr-value', placeholder: 'shenzhen, 8 or {gz,sz}', 'aria-label': 'Value', autocomplete: 'off' });
    const err = h('div');
    const fill = () => {
      const keep = node.value;
      put(node, nodesNow().map((n) => h('option', { value: n.name, selected: n.name === keep }, n.name)));
    };
    const send = async (unset) => {
      clear(err);
      const k = key.value.trim();
      if (!k) { key.focus(); return; }
      let body;
      if (unset) body = { unset: [k] };
      else {
        try { body = { set: { [k]: parseAttr(value.value) } }; } catch (e) {
          err.append(h('div', { class: 'error', role: 'alert' }, h('b', {}, 'Value of ' + k + ' is not valid'), e.message));
          return;
        }
      }
      if (await act(unset ? 'Unset' : 'Set', (unset ? 'Unset ' : 'Set ') + k + ' on ' + node.value, node.value, body) && !unset) value.value = '';
    };
    const form = h('form', { class: 'attr-form', 'aria-label': 'Set an attribute', onsubmit: (ev) => { ev.preventDefault(); send(false); } },
      h('span', { class: 'label' }, 'Attribute'), node, key, h('span', { 'aria-hidden': 'true' }, '='), value,
      h('button', { type: 'submit', id: 'attr-set' }, 'Set'),
      h('button', { type: 'button', id: 'attr-unset', title: 'Remove the value an operator set (the agent’s own shows again)', onclick: () => send(true) }, 'Unset'));
    const box = h('div', { class: 'attr-box' }, form, err);
    box.fill = fill; // called with each new list of nodes
    return box;
  }

  /** Each node's CPUs, memory and disk as bars (in use of all), its free slots and host ports. */
  function offerCards(nodes, offers) {
    if (!nodes.length) return h('div', { class: 'empty' }, 'No node, no offer.');
    const by = new Map(offers.map((o) => [o.name, o]));
    const num = (m) => { const c = m / 1000; return Number.isInteger(c) ? String(c) : c.toFixed(1); };
    const cpus = [(m) => num(m) + (m === 1000 ? ' CPU' : ' CPUs'), (u, t) => num(u) + ' of ' + num(t) + (t === 1000 ? ' CPU' : ' CPUs')];
    const bytes = [fmtBytes, (u, t) => fmtBytes(u) + ' of ' + fmtBytes(t)];
    const ports = (rs) => rs.map((r) => r.start === r.end ? String(r.start) : r.start + '–' + r.end).join(', ');
    const bar = (what, total, free, [all, part]) => {
      if (!total) return h('div', { class: 'res', 'data-res': what }, h('span', { class: 'rl' }, what), h('span', { class: 'muted small' }, 'not declared'));
      const used = free === null ? null : Math.max(0, total - free);
      const pct = used === null ? 0 : Math.round((100 * used) / total);
      const text = used === null ? all(total) + ' in all' : part(used, total) + ' in use';
      return h('div', { class: 'res', 'data-res': what, 'data-used': used === null ? '' : used, 'data-total': total },
        h('span', { class: 'rl' }, what),
        h('div', { class: 'bar' + (pct >= 90 ? ' full' : '') + (used === null ? ' off' : ''), role: 'img', 'aria-label': what + ': ' + text }, h('span', { 'data-w': pct })),
        h('span', { class: 'rv small' }, text));
    };
    return h('div', { class: 'offers' }, nodes.map((n) => {
      const o = by.get(n.name) || null;
      const f = o ? o.free : null;
      const why = o ? null : n.state !== 'ready' ? n.state + ': offers nothing' : n.disabled ? 'disabled: offers nothing' : 'offers nothing';
      return h('div', { class: 'offer' + (o ? '' : ' none'), 'data-offer': n.name },
        h('div', { class: 'offer-head' }, h('b', {}, n.name), h('span', { class: 'muted small mono' }, n.ip), why ? h('span', { class: 'badge s-canceled' }, why) : null),
        bar('CPU', n.resources.cpu_millis, f && f.cpu_millis, cpus),
        bar('Memory', n.resources.memory_bytes, f && f.memory_bytes, bytes),
        bar('Disk', n.resources.disk_bytes, f && f.disk_bytes, bytes),
        h('div', { class: 'offer-foot small' },
          h('span', {}, 'free slots ', h('b', { class: 'free-slots' }, o ? o.free_slots + ' of ' + n.capacity : '–')),
          h('span', {}, 'free ports ', h('b', { class: 'free-ports mono' }, o ? (ports(o.free_ports) || 'none') : '–'))));
    }));
  }

  /**
   * Runs waiting for a concurrency slot and jobs waiting for a node, each with why: the job's
   * own `waiting` reason when the server gives one, else what the agents' slots say.
   */
  async function waitingWork(p, nodes) {
    const opts = { signal: p.ctl.signal };
    // A run whose jobs all wait for a node is `scheduling`; one with some running, `running`.
    const [pending, scheduling, running] = await Promise.all([
      api('GET', '/runs?state=pending&limit=100', undefined, opts),
      api('GET', '/runs?state=scheduling&limit=30', undefined, opts),
      api('GET', '/runs?state=running&limit=30', undefined, opts)]);
    const active = scheduling.concat(running);
    const details = await Promise.all(active.map((r) => api('GET', '/runs/' + enc(r.id), undefined, opts)));
    const pool = nodes.filter((n) => n.state === 'ready' && !n.disabled);
    const total = pool.reduce((n, a) => n + a.capacity, 0);
    const busy = pool.reduce((n, a) => n + Math.min(a.running, a.capacity), 0);
    const why = !pool.length ? 'no node is ready and enabled'
      : busy >= total ? 'all agent slots are busy (' + busy + ' of ' + total + ' in use)'
          : 'being handed to an agent (' + (total - busy) + ' slots free)';
    const rows = [];
    for (const r of pending.slice().reverse()) {
      rows.push([r, null, 'the pipeline’s concurrency: limit is reached; it starts when an earlier run ends', r.created_at]);
    }
    for (const d of details) {
      for (const j of d.jobs) if (j.state === 'queued') rows.push([d, j, j.waiting ? 'waits for a node: ' + j.waiting : why, d.created_at]);
    }
    if (!rows.length) return h('div', { class: 'empty' }, 'Nothing is waiting.');
    return h('div', { class: 'scroll' }, h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, 'Run'), h('th', {}, 'Job'), h('th', {}, 'Why it waits'), h('th', { class: 'hide-sm' }, 'Since'))),
      h('tbody', {}, rows.map(([r, j, reason, since]) => h('tr', { 'data-waiting': r.pipeline + '#' + r.number + (j ? '/' + j.id : '') },
        h('td', {}, h('a', { href: '/runs/' + r.id }, r.project + '/' + r.pipeline + ' #' + r.number)),
        h('td', {}, j ? h('a', { href: '/runs/' + r.id + '/jobs/' + enc(j.id) }, j.id) : h('span', { class: 'muted' }, 'whole run')),
        h('td', { class: 'why' }, reason),
        h('td', { class: 'hide-sm' }, since ? fmtAgo(since) : '–'))))));
  }

  // ---------------------------------------------------------------- services

  // Instance and service states in the state colours: healthy green, starting and staging blue,
  // unhealthy amber, stopping grey, lost and failed red.
  const INSTANCE_STATE = { healthy: 'success', starting: 'running', staging: 'running', unhealthy: 'waiting', stopping: 'canceled', lost: 'failure', failed: 'failure' };
  const SERVICE_STATE = { running: 'success', deploying: 'running', updating: 'running', stopped: 'canceled' };

  function labelChips(labels) {
    const all = Object.entries(labels || {});
    if (!all.length) return h('span', { class: 'muted' }, '–');
    return h('span', { class: 'chips' }, all.map(([k, v]) => h('span', { class: 'chip', 'data-label': k }, v === '' ? k : k + '=' + v)));
  }
  function healthyCount(sv) {
    return h('span', { class: 'healthy' + (sv.healthy < sv.replicas ? ' short' : ''), 'data-healthy': sv.healthy, 'data-replicas': sv.replicas }, sv.healthy + '/' + sv.replicas);
  }
  /**
   * Who a service belongs to, when the server says (a service a run started): a run's id, or
   * an object naming the run (`run`, and `pipeline`, `number`, `job` when given), or text.
   */
  function ownerOf(sv) {
    const o = sv.owner;
    if ((o === undefined || o === null) && sv.deployed) {
      // A deployed service: only deploys change it; its deployments' page says what it runs.
      const d = sv.deployed;
      return h('a', { class: 'owner', 'data-deployed': d.service + '/' + d.environment, href: deploysPath(sv.project, d.service, d.environment) }, 'deploy ' + d.service + ' to ' + d.environment);
    }
    if (o === undefined || o === null) return null;
    if (typeof o !== 'object') return h('span', { class: 'owner' }, String(o));
    const run = o.run || o.run_id || null;
    const what = [o.pipeline ? o.pipeline + (o.number !== undefined ? ' #' + o.number : '') : null, o.job].filter(Boolean).join(' / ')
      || (run ? 'run ' + run : Object.entries(o).map(([k, v]) => k + '=' + v).join(' '));
    return run ? h('a', { class: 'owner', href: '/runs/' + enc(run) }, what) : h('span', { class: 'owner' }, what);
  }
  function servicePath(sv) { return '/services/' + enc(sv.project) + '/' + enc(sv.name); }

  async function viewServices(p, el) {
    setTitle('Services');
    el.append(h('div', { class: 'head' }, h('h1', {}, 'Services')));
    const panel = h('section', { class: 'panel', 'aria-label': 'Services' }, h('div', { class: 'body muted' }, 'Loading…'));
    el.append(panel);
    let shown = null;
    const load = async () => {
      let list;
      try {
        list = await api('GET', '/services', undefined, { signal: p.ctl.signal });
      } catch (e) {
        if (e.name === 'AbortError') return;
        shown = null;
        if (e.status === 404) {
          put(panel, h('div', { class: 'body' }, h('div', { class: 'notice', 'data-unavailable': 'services' }, h('b', {}, 'Not available on this server yet. '),
            'Services and their instances appear here once the server runs them.')));
          return;
        }
        put(panel, h('div', { class: 'body' }, errorBox('Could not load the services', e)));
        later(p, 3000, load);
        return;
      }
      // Redrawn only on a change, so keyboard focus in the table survives the refresh.
      const key = JSON.stringify(list.map((sv) => [sv.project, sv.name, sv.state, sv.healthy, sv.replicas, sv.version, sv.labels, sv.owner, sv.deployed]));
      if (key !== shown) { shown = key; put(panel, serviceTable(list)); }
      later(p, 3000, load);
    };
    await load();
  }

  function serviceTable(list) {
    if (!list.length) {
      return h('div', { class: 'empty' }, 'No service yet. Start one with ', h('code', {}, 'kiln service apply FILE --project P'), '.');
    }
    const owners = list.some((sv) => (sv.owner !== undefined && sv.owner !== null) || sv.deployed);
    return h('div', { class: 'scroll' }, h('table', { class: 'services' },
      h('thead', {}, h('tr', {}, h('th', { class: 'hide-sm' }, 'Project'), h('th', {}, 'Service'), h('th', {}, 'State'),
        h('th', { class: 'num' }, 'Healthy'), h('th', { class: 'num hide-sm' }, 'Version'), h('th', { class: 'hide-sm' }, 'Labels'),
        owners ? h('th', { class: 'hide-sm' }, 'Owner') : null)),
      h('tbody', {}, list.map((sv) => h('tr', { 'data-service': sv.project + '/' + sv.name },
        h('td', { class: 'hide-sm' }, sv.project),
        h('td', {}, h('a', { class: 'pl-name', href: servicePath(sv) }, sv.name)),
        h('td', {}, stateBadge(SERVICE_STATE, sv.state)),
        h('td', { class: 'num' }, healthyCount(sv)),
        h('td', { class: 'num hide-sm version' }, sv.version),
        h('td', { class: 'hide-sm' }, labelChips(sv.labels)),
        owners ? h('td', { class: 'hide-sm' }, ownerOf(sv) || h('span', { class: 'muted' }, '–')) : null)))));
  }

  async function viewService(p, el, project, name) {
    setTitle(project + '/' + name);
    const base = '/projects/' + enc(project) + '/services/' + enc(name);
    const opts = { signal: p.ctl.signal };
    if (!whoami) {
      try { whoami = await api('GET', '/info', undefined, opts); renderWho(); } catch (e) { if (e.name === 'AbortError') throw e; }
    }
    const developer = !!whoami && whoami.role !== 'viewer';
    const state = h('span');
    const head = h('div', { class: 'head' }, h('h1', {}, name), state);
    const meta = h('div', { class: 'meta' });
    const problem = h('div');
    const instances = h('div', { class: 'body muted' }, 'Loading…');
    const waits = h('section', { class: 'panel', 'aria-label': 'Waiting slots', hidden: true }, h('h2', {}, 'Waiting slots'));
    const versions = h('div', { class: 'body muted' }, 'Loading…');
    el.append(h('div', { class: 'crumbs' }, h('a', { href: '/services' }, 'Services'), ' / ', h('a', { href: projectPath(project) }, project)), head, meta, problem,
      h('section', { class: 'panel', 'aria-label': 'Instances' }, h('h2', {}, 'Instances by node'), instances),
      waits,
      h('section', { class: 'panel', 'aria-label': 'Versions' }, h('h2', {}, 'Versions'), versions));

    let sv = null, busy = false, shown = null, shownVersions = null;
    // `label` names the change in an error ("Scale failed"); `done` is the toast after it.
    const act = async (label, done, question, action, body) => {
      if (busy || !confirm(question)) return false;
      busy = true;
      clear(problem);
      try {
        await api('POST', base + '/' + action, body);
        toast(done);
        return true;
      } catch (e) {
        problem.append(errorBox(label + ' failed', e));
        return false;
      } finally {
        busy = false;
        refresh(false);
      }
    };
    const controls = developer ? serviceControls(() => sv, act) : null;
    if (controls) head.append(controls);

    const refresh = async (loop = true) => {
      let history;
      try {
        // Both at once; the service's own error first when both fail (a missing service).
        const versionsAsked = api('GET', base + '/history', undefined, opts);
        versionsAsked.catch(() => {});
        sv = await api('GET', base, undefined, opts);
        history = await versionsAsked;
      } catch (e) {
        if (e.name === 'AbortError') return;
        if (!sv) { put(el, errorBox('Could not load service ' + project + '/' + name, e)); return; }
        put(problem, errorBox('Live updates stopped: could not reload the service', e));
        if (loop) later(p, 5000, refresh);
        return;
      }
      // Redrawn only on a change (and once a minute, for the times shown as "N min ago"), so
      // the focus stays where it is.
      const key = JSON.stringify([Math.floor(Date.now() / 60000), Object.assign({}, sv, { updated_at: null })]);
      if (key !== shown) {
        shown = key;
        put(state, stateBadge(SERVICE_STATE, sv.state));
        if (controls) controls.fill(sv);
        put(meta, serviceSummary(sv));
        put(instances, instanceGroups(sv)).className = sv.instances.length ? 'body' : 'body flush';
        waits.hidden = !sv.waits.length;
        put(waits, h('h2', {}, 'Waiting slots'), waitTable(sv.waits));
      }
      const vkey = JSON.stringify([Math.floor(Date.now() / 60000), history]);
      if (vkey !== shownVersions) {
        shownVersions = vkey;
        put(versions, versionTable(history, sv, developer, act)).className = 'body flush';
      }
      if (loop) later(p, 3000, refresh);
    };
    await refresh();
    if (sv) el.append(metricsPanel(p, base));
  }

  /** Version, template, replicas, healthy count, labels, update settings and owner, as one line of facts. */
  function serviceSummary(sv) {
    const u = sv.update;
    const owner = ownerOf(sv);
    return [
      h('span', {}, 'version ', h('b', { id: 'svc-version' }, sv.version)),
      h('span', {}, 'template ', h('b', { id: 'svc-template' }, sv.template), sv.stable && sv.stable !== sv.template ? h('span', {}, ' (last stable ', h('b', {}, sv.stable), ')') : null),
      h('span', {}, 'replicas ', h('b', { id: 'svc-replicas' }, sv.replicas)),
      h('span', {}, 'healthy ', h('b', { id: 'svc-healthy' }, healthyCount(sv))),
      h('span', {}, 'labels ', labelChips(sv.labels)),
      u ? h('span', { id: 'svc-update', title: 'a rolling update runs at most replicas + ' + u.surge + ' instances and keeps at least replicas - ' + u.unavailable
        + ' healthy; one not healthy by the deadline rolls back by itself' },
      'update ', h('b', {}, 'max-surge ' + amount(u.max_surge, u.surge) + ', max-unavailable ' + amount(u.max_unavailable, u.unavailable) + ', deadline ' + fmtSpan(u.deadline_ms))) : null,
      owner ? h('span', {}, 'owner ', h('b', {}, owner)) : null,
      h('span', {}, 'updated ', h('b', { title: fmtTime(sv.updated_at) }, fmtAgo(sv.updated_at))),
    ];
  }

  /** An update amount as written, with what it comes to now when that differs: `25% (1)`. */
  function amount(written, now) { return written === String(now) ? written : written + ' (' + now + ')'; }
  /** A duration as a file writes it: 5m, 1h, 30s, 250ms. */
  function fmtSpan(ms) {
    for (const [n, unit] of [[3600000, 'h'], [60000, 'm'], [1000, 's']]) if (ms >= n && ms % n === 0) return ms / n + unit;
    return ms + 'ms';
  }

  /** Scale (a number and a button), Restart and Stop; `fill` shows the service's replicas unless the field was edited. */
  function serviceControls(current, act) {
    const field = h('input', { id: 'scale-replicas', type: 'number', min: 0, step: 1, 'aria-label': 'Replicas', required: true });
    let edited = false;
    field.addEventListener('input', () => { edited = true; });
    const title = () => current().project + '/' + current().name;
    const form = h('form', { class: 'actions scale', 'aria-label': 'Change the service', onsubmit: async (ev) => {
      ev.preventDefault();
      const n = Number(field.value);
      if (await act('Scale', 'Scaled ' + title() + ' to ' + n, 'Scale ' + title() + ' to ' + n + (n === 1 ? ' replica?' : ' replicas?'), 'scale', { replicas: n })) edited = false;
    } },
    field, h('button', { type: 'submit', id: 'scale' }, 'Scale'),
    h('button', { type: 'button', id: 'restart', onclick: () => act('Restart', 'Restarting ' + title(), 'Restart ' + title() + '? Every instance is replaced, a few at a time.', 'restart') }, 'Restart'),
    h('button', { type: 'button', class: 'danger', id: 'stop', onclick: () => act('Stop', 'Stopping ' + title(), 'Stop ' + title() + '? Every instance is stopped (replicas 0); Scale starts it again.', 'stop') }, 'Stop'));
    form.fill = (sv) => { if (!edited && document.activeElement !== field) field.value = sv.replicas; };
    return form;
  }

  /** The instances, a group per node (a group for those not placed yet), each by slot. */
  function instanceGroups(sv) {
    if (!sv.instances.length) return h('div', { class: 'empty' }, sv.replicas ? 'No instance yet.' : 'Stopped: no instance runs. Scale starts it again.');
    const byNode = new Map();
    for (const i of sv.instances) {
      const k = i.node || '';
      if (!byNode.has(k)) byNode.set(k, []);
      byNode.get(k).push(i);
    }
    const nodes = [...byNode.keys()].sort((a, b) => (a === '') - (b === '') || a.localeCompare(b));
    return h('div', { class: 'node-groups' }, nodes.map((node) => {
      const list = byNode.get(node).slice().sort((a, b) => a.slot - b.slot);
      const ip = list.map((i) => i.host_ip).find(Boolean);
      return h('div', { class: 'node-group', 'data-node': node },
        h('h3', {}, node || h('span', { class: 'muted' }, 'not placed yet'), ip ? h('span', { class: 'muted small mono' }, ip) : null,
          h('span', { class: 'muted small' }, list.length + (list.length === 1 ? ' instance' : ' instances'))),
        h('div', { class: 'scroll' }, h('table', { class: 'instances' },
          h('thead', {}, h('tr', {}, h('th', { class: 'num c-slot' }, 'Slot'), h('th', { class: 'hide-sm c-id' }, 'Instance'), h('th', { class: 'c-state' }, 'State'),
            h('th', { class: 'c-ports' }, 'Ports'), h('th', { class: 'num hide-sm c-version' }, 'Version'), h('th', { class: 'hide-sm' }, 'Reason'),
            h('th', { class: 'hide-sm c-since' }, 'Since'))),
          h('tbody', {}, list.map((i) => h('tr', { 'data-instance': i.id, 'data-slot': i.slot },
            h('td', { class: 'num' }, i.slot),
            h('td', { class: 'mono id hide-sm' }, i.id),
            h('td', {}, stateBadge(INSTANCE_STATE, i.state)),
            h('td', { class: 'ports mono' }, portList(i)),
            h('td', { class: 'num hide-sm' }, i.version),
            h('td', { class: 'hide-sm reason' }, i.reason || '', i.restarts ? h('span', { class: 'muted' }, (i.reason ? ' · ' : '') + i.restarts + (i.restarts === 1 ? ' restart' : ' restarts') + ' before it') : null),
            h('td', { class: 'hide-sm nowrap' }, h('span', { title: fmtTime(i.since) }, fmtAgo(i.since)))))))));
    }));
  }
  /** Named ports as `name → ip:port`, one a line. */
  function portList(i) {
    const all = Object.entries(i.ports || {});
    if (!all.length) return h('span', { class: 'muted' }, '–');
    return all.map(([n, port]) => h('div', { 'data-port': n }, n + ' → ' + (i.host_ip || '?') + ':' + port));
  }

  function waitTable(list) {
    return h('div', { class: 'scroll' }, h('table', { class: 'waits' },
      h('thead', {}, h('tr', {}, h('th', { class: 'num' }, 'Slot'), h('th', {}, 'Why it waits'))),
      h('tbody', {}, list.map((w) => h('tr', { 'data-slot': w.slot }, h('td', { class: 'num' }, w.slot), h('td', { class: 'why' }, w.reason))))));
  }

  /** Every version, newest first, with Roll back to N on the older ones (for developers). */
  function versionTable(history, sv, developer, act) {
    if (!history.length) return h('div', { class: 'empty' }, 'No version.');
    const title = sv.project + '/' + sv.name;
    return h('div', { class: 'scroll' }, h('table', { class: 'versions' },
      h('thead', {}, h('tr', {}, h('th', { class: 'num' }, 'Version'), h('th', {}, 'Kind'), h('th', { class: 'num' }, 'Template'), h('th', { class: 'num' }, 'Replicas'),
        h('th', { class: 'hide-sm' }, 'Who'), h('th', {}, 'When'), h('th', { class: 'hide-sm' }, 'Note'), developer ? h('th', {}, h('span', { class: 'sr' }, 'Actions')) : null)),
      h('tbody', {}, history.slice().reverse().map((v) => h('tr', { 'data-version': v.version, 'data-kind': v.kind },
        h('td', { class: 'num' }, h('b', {}, v.version), v.version === sv.version ? h('span', { class: 'muted' }, ' current') : null),
        h('td', { class: 'kind' }, v.kind),
        h('td', { class: 'num' }, v.template),
        h('td', { class: 'num' }, v.replicas),
        h('td', { class: 'hide-sm' }, v.by),
        h('td', { class: 'nowrap' }, h('span', { title: fmtTime(v.at) }, fmtAgo(v.at))),
        h('td', { class: 'hide-sm muted note' }, v.note || ''),
        developer ? h('td', { class: 'num' }, v.version === sv.version ? null
          : h('button', { type: 'button', class: 'rollback', 'data-rollback': v.version, onclick: () => act('Roll back', 'Rolled ' + title + ' back to version ' + v.version,
            'Roll back ' + title + ' to version ' + v.version + '? It runs that version’s template with its ' + v.replicas + (v.replicas === 1 ? ' replica.' : ' replicas.'),
            'rollback', { to: v.version }) }, 'Roll back to ' + v.version)) : null)))));
  }

  /**
   * The service's scraped metrics over the last hour (`GET …/metrics?since=`, answering
   * {series: [{name, labels: {instance, node, slot, …}, points: [[ms, value]]}]}): one plot per
   * metric name with a line per instance, refreshed every 5 s.
   */
  function metricsPanel(p, base) {
    const body = h('div', { class: 'body' }, h('p', { class: 'muted' }, 'Loading…'));
    const panel = h('section', { class: 'panel', 'aria-label': 'Metrics' }, h('h2', {}, 'Metrics ', h('span', { class: 'muted small' }, 'last hour')), body);
    const load = async () => {
      const to = Date.now(), from = to - 3600000;
      let got;
      try {
        got = await api('GET', base + '/metrics?since=' + from, undefined, { signal: p.ctl.signal });
      } catch (e) {
        if (e.name === 'AbortError') return;
        if (e.status !== 404) {
          put(body, errorBox('Could not load the metrics', e));
          later(p, 5000, load);
          return;
        }
        got = { series: [] }; // no scrape rule (or a server without scraping)
      }
      const byName = metricSeries(got.series || []);
      put(body, byName.size
        ? h('div', { class: 'plots' }, [...byName].map(([metric, lines]) => h('div', { class: 'metric', 'data-metric': metric },
          h('h3', { class: 'mono' }, metric),
          linePlot(lines, fmtNum, metric + ' per instance over the last hour', { from, to }))))
        : h('div', { class: 'notice', 'data-metrics': 'none' }, 'No scrape rule matches this service (see ', h('code', {}, 'kiln metric apply FILE --project P'), ').'));
      later(p, 5000, load);
    };
    load();
    return panel;
  }
  /**
   * Scraped series grouped by metric name, as linePlot lines named by instance: `slot 0 on
   * node-1`, with the other labels after it, and the instance's id when two lines would read
   * the same (a slot whose instance was replaced within the hour).
   */
  function metricSeries(series) {
    const own = ['instance', 'node', 'slot'];
    const byName = new Map();
    for (const se of series) {
      const l = se.labels || {};
      const extra = Object.entries(l).filter(([k]) => !own.includes(k)).map(([k, v]) => k + '=' + v).join(' ');
      const line = {
        name: (l.slot !== undefined ? 'slot ' + l.slot : l.instance || 'instance') + (l.node ? ' on ' + l.node : '') + (extra ? ' ' + extra : ''),
        instance: l.instance,
        points: (se.points || []).filter((q) => Number.isFinite(q[0]) && Number.isFinite(q[1])),
      };
      if (!byName.has(se.name)) byName.set(se.name, []);
      byName.get(se.name).push(line);
    }
    for (const lines of byName.values()) {
      const twice = new Set(lines.filter((line, i) => lines.findIndex((o) => o.name === line.name) !== i).map((line) => line.name));
      for (const line of lines) if (twice.has(line.name) && line.instance) line.name += ' (' + line.instance + ')';
      lines.sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
    }
    return byName;
  }
  /** A value for an axis: 1234567 as 1.2M, 0.25 as 0.25. */
  function fmtNum(v) {
    const a = Math.abs(v);
    for (const [n, unit] of [[1e9, 'G'], [1e6, 'M'], [1e3, 'k']]) {
      if (a >= n) return (v / n).toFixed(a >= 10 * n ? 0 : 1) + unit;
    }
    return String(Math.round(v * 100) / 100);
  }

  // ---------------------------------------------------------------- registry

  /** Basic auth with the Kiln token, which `/v2/` takes on every call (no token flow needed). */
  function registryAuth() { return 'Basic ' + btoa('kiln:' + token()); }
  const MANIFEST_TYPES = ['application/vnd.oci.image.manifest.v1+json', 'application/vnd.oci.image.index.v1+json',
    'application/vnd.docker.distribution.manifest.v2+json', 'application/vnd.docker.distribution.manifest.list.v2+json'].join(', ');

  /** An image's size from its manifest: its config and layers; an index says how many images it names. */
  async function imageSize(p, repo, digest) {
    const resp = await fetch('/v2/' + repo + '/manifests/' + digest, { headers: { Authorization: registryAuth(), Accept: MANIFEST_TYPES }, signal: p.ctl.signal });
    if (!resp.ok) throw new Error('GET /v2/' + repo + '/manifests/… answered ' + resp.status);
    const m = await resp.json();
    if (Array.isArray(m.manifests)) return { index: m.manifests.length };
    const sum = (m.layers || []).reduce((n, l) => n + (l.size || 0), 0) + ((m.config && m.config.size) || 0);
    return { bytes: sum, layers: (m.layers || []).length };
  }

  /** Copies text to the clipboard; where the browser refuses, selects it for Ctrl+C. */
  async function copyText(text, el) {
    try {
      await navigator.clipboard.writeText(text);
      toast('Copied: ' + text);
      return;
    } catch (_) { /* not allowed here (plain HTTP, no permission): select instead */ }
    const range = document.createRange();
    range.selectNodeContents(el);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    let copied = false;
    try { copied = document.execCommand('copy'); } catch (_) { copied = false; }
    toast(copied ? 'Copied: ' + text : 'Selected: press Ctrl+C to copy');
  }
  function pullCommand(repo, tag) {
    const cmd = 'docker pull ' + location.host + '/' + repo + ':' + tag;
    const code = h('code', { class: 'pull-cmd' }, cmd);
    return h('div', { class: 'pull' }, code,
      h('button', { type: 'button', class: 'copy', 'aria-label': 'Copy the pull command of ' + tag, onclick: () => copyText(cmd, code) }, 'Copy'));
  }
  function shortDigest(d) {
    const [alg, hex] = String(d).split(':');
    return h('span', { class: 'mono digest', title: d, 'data-digest': d }, hex ? [h('span', { class: 'hide-sm' }, alg + ':'), hex.slice(0, 12)] : d);
  }
  function visibilityBadge(pub) {
    return pub ? h('span', { class: 'badge s-success', 'data-visibility': 'public' }, 'public')
      : h('span', { class: 'badge s-canceled', 'data-visibility': 'private' }, 'private');
  }
  function eventTable(events, withRepo) {
    if (!events.length) return h('div', { class: 'empty' }, 'No push yet.');
    return h('div', { class: 'scroll' }, h('table', { class: 'events' },
      h('thead', {}, h('tr', {}, withRepo ? h('th', {}, 'Repository') : null, h('th', {}, 'Tag'), h('th', { class: withRepo ? 'hide-sm' : null }, 'Digest'), h('th', {}, 'Who'), h('th', {}, 'When'))),
      h('tbody', {}, events.map((e) => h('tr', { 'data-event': e.id },
        withRepo ? h('td', {}, h('a', { href: '/registry/' + e.repository }, e.repository)) : null,
        h('td', { class: 'tag' }, e.action === 'vulnerability'
          ? h('span', { 'data-action': 'vulnerability', title: 'newly imported advisories match this image' }, severityBadge('advisory'), ' ', (e.tags || []).join(', ') || 'untagged', h('span', { class: 'muted' }, ': ' + (e.advisories || []).join(', ')))
          : (e.tag || h('span', { class: 'muted' }, 'by digest'))),
        h('td', { class: withRepo ? 'hide-sm' : null }, shortDigest(e.digest)),
        h('td', { class: 'actor' }, e.actor),
        h('td', { class: 'nowrap' }, h('span', { title: fmtTime(e.created_at) }, fmtAgo(e.created_at))))))));
  }

  const SEVERITIES = ['critical', 'high', 'medium', 'low', 'unknown'];
  function severityBadge(sev) {
    const cls = { critical: 's-failure', high: 's-failure', medium: 's-waiting', low: 's-canceled', unknown: 's-canceled' }[sev] || 's-canceled';
    return h('span', { class: 'badge sev ' + cls, 'data-severity': sev }, sev);
  }
  /** An image's findings counted by severity (`2 critical · 1 high`), or its scan's state. */
  function vulnSummary(s) {
    if (s.state !== 'scanned') return h('span', { class: 'muted', title: s.error || '', 'data-scan': s.state }, s.state === 'failed' ? 'scan failed' : s.state);
    if (!s.findings.length) return h('span', { class: 'muted', 'data-scan': 'clean' }, 'none found');
    const counts = SEVERITIES.map((sev) => [sev, s.findings.filter((f) => f.severity === sev).length]).filter(([, n]) => n);
    return h('span', { 'data-scan': 'findings', 'data-count': s.findings.length }, counts.map(([sev, n], i) => [i ? ' · ' : '', h('b', { class: 'sev-' + sev }, n + ' ' + sev)]));
  }
  function vulnTable(s) {
    const when = s.scanned_at ? h('span', { title: fmtTime(s.scanned_at) }, 'scanned ' + fmtAgo(s.scanned_at)) : 'not scanned yet';
    const meta = h('div', { class: 'body muted' }, shortDigest(s.digest), ' · ', s.packages + ' packages · ', when,
      s.error ? [' · ', h('span', { class: 'scan-error' }, s.error)] : null);
    if (!s.findings.length) return [meta, h('div', { class: 'body empty' }, s.state === 'scanned' ? 'No known vulnerability in its packages.' : 'No findings.')];
    return [meta, h('div', { class: 'scroll' }, h('table', { class: 'findings' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Severity'), h('th', {}, 'Advisory'), h('th', {}, 'Package'), h('th', {}, 'Installed'), h('th', {}, 'Fixed in'), h('th', { class: 'hide-sm' }, 'Found in'))),
      h('tbody', {}, s.findings.map((f) => h('tr', { 'data-advisory': f.advisory, 'data-package': f.package },
        h('td', {}, severityBadge(f.severity)),
        h('td', { title: f.summary }, h('b', {}, f.advisory), f.aliases.length ? h('span', { class: 'muted' }, ' ' + f.aliases.join(', ')) : null),
        h('td', {}, f.package, h('span', { class: 'muted' }, ' (' + f.ecosystem + ')')),
        h('td', { class: 'mono' }, f.installed),
        h('td', { class: 'mono fixed' }, f.fixed || h('span', { class: 'muted' }, 'no fix yet')),
        h('td', { class: 'mono hide-sm' }, f.source))))))];
  }

  /** Whether the server has a registry: `GET /v2/` answers 404 on one without. */
  async function registryHere(p, body) {
    let resp;
    try {
      resp = await fetch('/v2/', { headers: { Authorization: registryAuth() }, signal: p.ctl.signal });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      put(body, h('div', { class: 'body' }, errorBox('Could not reach the registry', e)));
      return false;
    }
    if (resp.status === 404) {
      put(body, h('div', { class: 'body' }, h('div', { class: 'notice', 'data-unavailable': 'registry' },
        h('b', {}, 'Not available on this server yet. '), 'Repositories, tags, digests, sizes and the pull command appear here once the server has a registry.')));
      return false;
    }
    return true;
  }

  async function viewRegistry(p, el) {
    setTitle('Registry');
    el.append(h('div', { class: 'head' }, h('h1', {}, 'Registry')));
    const body = h('section', { class: 'panel', 'aria-label': 'Repositories' }, h('div', { class: 'body muted' }, 'Loading…'));
    el.append(body);
    if (!(await registryHere(p, body))) return;
    const opts = { signal: p.ctl.signal };
    let repos;
    try {
      repos = await api('GET', '/registry/repositories', undefined, opts);
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      put(body, h('div', { class: 'body' }, errorBox('Could not load the repositories', e)));
      return;
    }
    put(body, h('h2', {}, 'Repositories'), repos.length ? h('div', { class: 'scroll' }, h('table', { class: 'repos' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Repository'), h('th', { class: 'hide-sm' }, 'Project'), h('th', {}, 'Visibility'), h('th', { class: 'hide-sm' }, 'Created'))),
      h('tbody', {}, repos.map((r) => h('tr', { 'data-repo': r.name },
        h('td', {}, h('a', { class: 'pl-name', href: '/registry/' + r.name }, r.name)),
        h('td', { class: 'hide-sm' }, r.project),
        h('td', {}, visibilityBadge(r.public)),
        h('td', { class: 'hide-sm' }, h('span', { title: fmtTime(r.created_at) }, fmtAgo(r.created_at))))))))
      : h('div', { class: 'empty' }, 'No repository yet. Push one: ', h('code', {}, 'docker push ' + location.host + '/PROJECT/NAME:TAG'), '.'));
    const events = h('section', { class: 'panel', 'aria-label': 'Recent pushes' }, h('h2', {}, 'Recent pushes'), h('div', { class: 'body muted' }, 'Loading…'));
    el.append(events);
    try {
      events.lastChild.replaceWith(h('div', { class: 'body flush' }, eventTable(await api('GET', '/registry/events?limit=20', undefined, opts), true)));
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      events.lastChild.replaceWith(h('div', { class: 'body' }, errorBox('Could not load the pushes', e)));
    }
  }

  async function viewRepository(p, el, repo) {
    setTitle(repo);
    const project = repo.split('/')[0];
    const opts = { signal: p.ctl.signal };
    const problem = h('div');
    const head = h('div', { class: 'head' }, h('h1', {}, repo));
    el.append(h('div', { class: 'crumbs' }, h('a', { href: '/registry' }, 'Registry'), ' / ', project), head, problem);
    const tagsPanel = h('section', { class: 'panel', 'aria-label': 'Tags' }, h('h2', {}, 'Tags'), h('div', { class: 'body muted' }, 'Loading…'));
    const eventsPanel = h('section', { class: 'panel', 'aria-label': 'Recent pushes' }, h('h2', {}, 'Recent pushes'), h('div', { class: 'body muted' }, 'Loading…'));
    el.append(tagsPanel, eventsPanel);
    if (!(await registryHere(p, tagsPanel))) return;
    const [repos, tags, events] = await Promise.all([
      api('GET', '/registry/repositories', undefined, opts),
      api('GET', '/registry/tags?repository=' + enc(repo), undefined, opts),
      api('GET', '/registry/events?project=' + enc(project) + '&limit=200', undefined, opts).catch((e) => e)]);
    const info = repos.find((r) => r.name === repo);
    const mine = Array.isArray(events) ? events.filter((e) => e.repository === repo) : [];
    const admin = whoami && whoami.role === 'admin';
    const meta = h('div', { class: 'meta' });
    const drawMeta = (r) => put(meta, h('span', {}, 'project ', h('b', {}, r.project)), h('span', { class: 'vis' }, visibilityBadge(r.public)),
      h('span', {}, 'created ', h('b', { title: fmtTime(r.created_at) }, fmtAgo(r.created_at))),
      admin ? h('button', { type: 'button', id: 'visibility', 'data-public': r.public ? 'true' : 'false', onclick: async (ev) => {
        ev.target.disabled = true;
        clear(problem);
        try {
          const next = await api('PUT', '/registry/visibility', { repository: repo, public: !r.public });
          toast(repo + ' is now ' + (next.public ? 'public' : 'private'));
          drawMeta(next);
        } catch (e) {
          problem.append(errorBox('Changing the visibility failed', e));
          ev.target.disabled = false;
        }
      } }, r.public ? 'Make private' : 'Make public') : null);
    if (info) { drawMeta(info); head.after(meta); }
    const pushed = (t) => mine.find((e) => e.tag === t.tag && e.digest === t.digest);
    const sizes = new Map();
    const sizeCell = (t) => {
      const td = h('td', { class: 'num size hide-sm' }, h('span', { class: 'muted' }, '…'));
      if (!sizes.has(t.digest)) sizes.set(t.digest, imageSize(p, repo, t.digest));
      sizes.get(t.digest).then((s) => put(td, s.index !== undefined ? h('span', { title: 'an index of ' + s.index + ' manifests' }, s.index + ' images')
        : h('span', { title: s.layers + ' layers and the config, compressed', 'data-bytes': s.bytes }, fmtBytes(s.bytes))),
      (e) => { if (e.name !== 'AbortError') put(td, h('span', { class: 'muted', title: e.message }, '?')); });
      return td;
    };
    const vulnsPanel = h('section', { class: 'panel', 'aria-label': 'Vulnerabilities', id: 'vulns' }, h('h2', {}, 'Vulnerabilities'),
      h('div', { class: 'body muted' }, tags.length ? 'Loading…' : 'No tagged image to show.'));
    tagsPanel.after(vulnsPanel);
    const scans = new Map();
    const scanOf = (digest) => {
      if (!scans.has(digest)) scans.set(digest, api('GET', '/registry/vulns?image=' + enc(repo + '@' + digest), undefined, opts));
      return scans.get(digest);
    };
    const showVulns = (t) => scanOf(t.digest).then((s) => put(vulnsPanel, h('h2', {}, 'Vulnerabilities of ', h('span', { class: 'tag' }, t.tag)),
      vulnTable(s)), (e) => { if (e.name !== 'AbortError') put(vulnsPanel, h('h2', {}, 'Vulnerabilities'), h('div', { class: 'body' }, errorBox('Could not load the findings', e))); });
    const vulnCell = (t) => {
      const td = h('td', { class: 'vulns hide-sm' }, h('span', { class: 'muted' }, '…'));
      scanOf(t.digest).then((s) => put(td, h('button', { type: 'button', class: 'link', 'data-vulns': t.tag, onclick: () => showVulns(t) }, vulnSummary(s))),
        (e) => { if (e.name !== 'AbortError') put(td, h('span', { class: 'muted', title: e.message }, '?')); });
      return td;
    };
    if (tags.length) showVulns(tags.find((t) => t.tag === 'latest') || tags[0]);
    put(tagsPanel, h('h2', {}, 'Tags'), tags.length ? h('div', { class: 'scroll' }, h('table', { class: 'tags' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Tag'), h('th', {}, 'Digest'), h('th', { class: 'num hide-sm' }, 'Size'), h('th', { class: 'hide-sm' }, 'Pushed'), h('th', { class: 'hide-sm' }, 'Vulnerabilities'), h('th', {}, 'Pull'))),
      h('tbody', {}, tags.map((t) => {
        const e = pushed(t);
        return h('tr', { 'data-tag': t.tag },
          h('td', { class: 'tag' }, h('b', {}, t.tag)),
          h('td', {}, shortDigest(t.digest)),
          sizeCell(t),
          h('td', { class: 'hide-sm' }, e ? h('span', { title: fmtTime(e.created_at) }, fmtAgo(e.created_at), h('span', { class: 'muted' }, ' by ' + e.actor)) : h('span', { class: 'muted' }, '–')),
          vulnCell(t),
          h('td', {}, pullCommand(repo, t.tag)));
      }))))
      : h('div', { class: 'body empty' }, 'No tag: every manifest is untagged.'));
    put(eventsPanel, h('h2', {}, 'Recent pushes'), Array.isArray(events) ? h('div', { class: 'body flush' }, eventTable(mine.slice(0, 20), false))
      : h('div', { class: 'body' }, errorBox('Could not load the pushes', events)));
  }

  // ---------------------------------------------------------------- projects

  /** Who the caller is (`GET /info`, once per sign-in) and what their role lets them change. */
  async function me(p) {
    if (!whoami) {
      try { whoami = await api('GET', '/info', undefined, { signal: p.ctl.signal }); renderWho(); } catch (e) { if (e.name === 'AbortError') throw e; }
    }
    return { developer: !!whoami && whoami.role !== 'viewer', admin: !!whoami && whoami.role === 'admin', name: whoami ? whoami.token : null };
  }

  /** `/projects/P` or `/projects/P/rest` (rest already encoded). */
  function projectPath(project, rest) { return '/projects/' + enc(project) + (rest ? '/' + rest : ''); }

  /** A project's pages as tabs. */
  function projectTabs(project, current) {
    return h('nav', { class: 'tabs project-tabs', 'aria-label': 'Project ' + project },
      [['overview', 'Overview', projectPath(project)], ['environments', 'Environments', projectPath(project, 'environments')], ['config', 'Config', projectPath(project, 'config')]]
        .map(([k, label, href]) => h('a', { href, class: 'tab', 'data-tab': k, 'aria-current': k === current ? 'page' : null }, label)));
  }
  function projectCrumbs(project, ...rest) {
    return h('div', { class: 'crumbs' }, h('a', { href: '/projects' }, 'Projects'), ' / ', h('a', { href: projectPath(project) }, project), rest.map((r) => [' / ', r]));
  }
  function protectedBadge() {
    return h('span', { class: 'badge s-waiting prot', 'data-protected': 'true', title: 'protected: a change here needs the approval of a second person' }, 'protected');
  }
  /** Environments in their order: `dev → staging → prod`, an arrow where one comes right after the one before. */
  function envOrder(envs) {
    return h('div', { class: 'env-order', 'aria-label': 'Order' }, envs.map((e, i) => [
      i ? h('span', { class: 'arrow', 'aria-hidden': 'true' }, envs[i - 1].name === e.after ? '→' : '·') : null,
      h('span', { class: 'env-chip', 'data-env': e.name }, e.name, e.protected ? protectedBadge() : null)]));
  }

  async function viewProjects(p, el) {
    setTitle('Projects');
    el.append(h('div', { class: 'head' }, h('h1', {}, 'Projects')));
    const list = await api('GET', '/projects', undefined, { signal: p.ctl.signal });
    if (!list.length) {
      el.append(h('div', { class: 'notice' }, h('b', {}, 'No project yet. '), 'An admin makes one with ', h('code', {}, 'kiln project create NAME'), '.'));
      return;
    }
    el.append(h('section', { class: 'panel', 'aria-label': 'Projects' }, h('div', { class: 'scroll' }, h('table', { class: 'projects' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Project'), h('th', {}, 'Pages'), h('th', { class: 'hide-sm' }, 'Created'))),
      h('tbody', {}, list.map((pr) => h('tr', { 'data-project': pr.name },
        h('td', {}, h('a', { class: 'pl-name', href: projectPath(pr.name) }, pr.name)),
        h('td', { class: 'links' }, h('a', { href: projectPath(pr.name, 'environments') }, 'Environments'), h('a', { href: projectPath(pr.name, 'config') }, 'Config')),
        h('td', { class: 'hide-sm' }, h('span', { title: fmtTime(pr.created_at) }, fmtAgo(pr.created_at))))))))));
  }

  async function viewProject(p, el, project) {
    setTitle(project);
    el.append(h('div', { class: 'crumbs' }, h('a', { href: '/projects' }, 'Projects')), h('div', { class: 'head' }, h('h1', {}, project)), projectTabs(project, 'overview'));
    const opts = { signal: p.ctl.signal };
    const soft = (e) => { if (e.name === 'AbortError') throw e; return e; };
    const [pipelines, envs, apps] = await Promise.all([
      api('GET', projectPath(project, 'pipelines'), undefined, opts),
      api('GET', projectPath(project, 'environments'), undefined, opts).catch(soft),
      api('GET', projectPath(project, 'apps'), undefined, opts).catch(soft)]);
    el.append(h('section', { class: 'panel', 'aria-label': 'Pipelines' }, h('h2', {}, 'Pipelines'),
      pipelines.length ? h('div', { class: 'scroll' }, h('table', {}, h('tbody', {}, pipelines.map((pl) => h('tr', { 'data-pipeline': pl.name },
        h('td', {}, h('a', { class: 'pl-name', href: '/p/' + enc(project) + '/' + enc(pl.name) }, pl.name)),
        h('td', { class: 'muted' }, pl.jobs + (pl.jobs === 1 ? ' job' : ' jobs')),
        h('td', { class: 'muted hide-sm' }, 'updated ', h('span', { title: fmtTime(pl.updated_at) }, fmtAgo(pl.updated_at))))))))
        : h('div', { class: 'empty' }, 'No pipeline yet.')),
    h('div', { class: 'grid2' },
      h('section', { class: 'panel', 'aria-label': 'Environments' }, h('h2', {}, h('a', { href: projectPath(project, 'environments') }, 'Environments')),
        h('div', { class: 'body' }, !Array.isArray(envs) ? errorBox('Could not load the environments', envs)
          : envs.length ? envOrder(envs) : h('p', { class: 'muted' }, 'None yet.'))),
      h('section', { class: 'panel', 'aria-label': 'Config' }, h('h2', {}, h('a', { href: projectPath(project, 'config') }, 'Config')),
        Array.isArray(apps) ? appTable(project, apps) : h('div', { class: 'body' }, errorBox('Could not load the config', apps)))));
  }

  // ---------------------------------------------------------------- environments

  async function viewEnvironments(p, el, project) {
    setTitle(project + ' environments');
    const who = await me(p);
    const base = projectPath(project, 'environments');
    const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
    const board = deployBoard(p, project, who);
    el.append(projectCrumbs(project), h('div', { class: 'head' }, h('h1', {}, 'Environments')), projectTabs(project, 'environments'), body);

    // Draws the page again; `focus` (a selector) gets the focus back after a change.
    const load = async (focus) => {
      let envs;
      try {
        envs = await api('GET', base, undefined, { signal: p.ctl.signal });
      } catch (e) {
        if (e.name === 'AbortError') return;
        put(body, errorBox('Could not load the environments of ' + project, e));
        return;
      }
      put(body,
        envs.length ? h('div', { class: 'meta' }, h('span', {}, 'in their order'), envOrder(envs))
          : h('div', { class: 'notice', 'data-empty': 'environments' }, h('b', {}, 'No environment yet. '),
            who.admin ? 'Create the first one below.' : ['An admin makes them with ', h('code', {}, 'kiln env create dev --project ' + project), '.']),
        envs.length ? board.show(envs) : null,
        envs.length ? h('div', { class: 'envs' }, envs.map(envCard)) : null,
        who.admin ? createForm(envs) : null);
      const f = focus && body.querySelector(focus);
      if (f) f.focus();
    };

    /** One environment: protected or not, what it comes after, its variables, the form to set one. */
    const envCard = (e) => {
      const err = h('div');
      const here = 'section[data-env="' + CSS.escape(e.name) + '"]';
      const unset = async (v) => {
        if (!confirm('Unset ' + v.name + ' in ' + e.name + '?')) return;
        clear(err);
        try {
          await api('DELETE', base + '/' + enc(e.name) + '/variables/' + enc(v.name));
          toast('Unset ' + v.name + ' in ' + e.name);
          await load(here + ' .var-name');
        } catch (x) {
          err.append(errorBox('Unsetting ' + v.name + ' failed', x));
        }
      };
      return h('section', { class: 'panel env', 'data-env': e.name, 'aria-label': 'Environment ' + e.name },
        h('h2', {}, h('span', { class: 'env-name' }, e.name), e.protected ? protectedBadge() : null,
          h('span', { class: 'muted small after' }, e.after ? 'after ' + e.after : 'first')),
        e.variables.length
          ? h('div', { class: 'scroll' }, h('table', { class: 'vars' },
            h('thead', {}, h('tr', {}, h('th', {}, 'Variable'), h('th', {}, 'Value'), who.developer ? h('th', {}, h('span', { class: 'sr' }, 'Actions')) : null)),
            h('tbody', {}, e.variables.map((v) => h('tr', { 'data-var': v.name, 'data-secret': v.secret ? 'true' : 'false' },
              h('td', { class: 'mono name' }, v.name),
              h('td', { class: 'mono value' }, h('span', { class: 'v' }, v.value), v.secret ? h('span', { class: 'tag', title: 'a secret: stored sealed, never shown, masked in logs' }, 'secret') : null),
              who.developer ? h('td', { class: 'num' }, (v.secret ? who.admin : true)
                ? h('button', { type: 'button', class: 'small-btn', 'data-unset': v.name, 'aria-label': 'Unset ' + v.name + ' in ' + e.name, onclick: () => unset(v) }, 'Unset') : null) : null)))))
          : h('div', { class: 'empty small', 'data-vars': 'none' }, 'No variables.'),
        who.developer ? varForm(e, err, here) : null,
        h('div', { class: 'env-err' }, err));
    };

    /** NAME = value [secret] Set: a developer sets plain values, an admin secrets too. */
    const varForm = (e, err, here) => {
      const name = h('input', { class: 'var-name mono', 'aria-label': 'Variable name in ' + e.name, placeholder: 'NAME', autocapitalize: 'characters', spellcheck: 'false', autocomplete: 'off', required: true });
      const value = h('input', { class: 'var-value mono', 'aria-label': 'Value of the variable in ' + e.name, placeholder: 'value', spellcheck: 'false', autocomplete: 'off' });
      const secret = who.admin ? h('input', { type: 'checkbox', class: 'var-secret' }) : null;
      if (secret) secret.addEventListener('change', () => { value.type = secret.checked ? 'password' : 'text'; });
      return h('form', {
        class: 'var-form', 'aria-label': 'Set a variable in ' + e.name,
        onsubmit: async (ev) => {
          ev.preventDefault();
          clear(err);
          const n = name.value.trim();
          const isSecret = !!(secret && secret.checked);
          try {
            await api('PUT', base + '/' + enc(e.name) + '/variables/' + enc(n), { value: value.value, secret: isSecret });
            toast('Set ' + n + ' in ' + e.name + (isSecret ? ' (a secret)' : ''));
            await load(here + ' .var-name');
          } catch (x) {
            err.append(errorBox('Setting ' + n + ' failed', x));
          }
        },
      }, name, h('span', { class: 'eq', 'aria-hidden': 'true' }, '='), value,
      secret ? h('label', { class: 'check small' }, secret, 'secret') : null,
      h('button', { type: 'submit', class: 'set-var' }, 'Set'));
    };

    /** Name, after, protected: an admin's small form. */
    const createForm = (envs) => {
      const err = h('div');
      const name = h('input', { id: 'env-name', required: true, placeholder: envs.length ? 'qa' : 'dev', spellcheck: 'false', autocomplete: 'off' });
      const after = h('select', { id: 'env-after' }, h('option', { value: '' }, '(first)'),
        envs.map((e, i) => h('option', { value: e.name, selected: i === envs.length - 1 }, e.name)));
      const prot = h('input', { type: 'checkbox', id: 'env-protected' });
      return h('section', { class: 'panel', 'aria-label': 'New environment' }, h('h2', {}, 'New environment'),
        h('div', { class: 'body' }, h('form', {
          class: 'inline-form', id: 'env-create',
          onsubmit: async (ev) => {
            ev.preventDefault();
            clear(err);
            try {
              const made = await api('POST', base, { name: name.value.trim(), after: after.value || null, protected: prot.checked });
              toast('Created ' + made.name);
              await load('section[data-env="' + CSS.escape(made.name) + '"] .var-name');
            } catch (x) {
              err.append(errorBox('Creating the environment failed', x));
            }
          },
        },
        h('div', { class: 'field' }, h('label', { for: 'env-name' }, 'Name'), name),
        h('div', { class: 'field' }, h('label', { for: 'env-after' }, 'After'), after),
        h('div', { class: 'field check' }, prot, h('label', { for: 'env-protected' }, 'Protected'), h('span', { class: 'help' }, 'releases need a second person')),
        h('button', { class: 'primary', type: 'submit' }, 'Create')), err));
    };
    await load();
  }

  // ---------------------------------------------------------------- deploys

  // Deployment states in the state colours: pending amber (it waits for approval), running
  // blue, succeeded green, failed red, rolled back orange, rejected dark grey, superseded (a
  // later one succeeded) light grey.
  const DEPLOY_STATE = { pending: 'waiting', running: 'running', succeeded: 'success', failed: 'failure', rolled_back: 'timeout', rejected: 'canceled', superseded: 'skipped' };

  /** The page of a service's deployments to an environment. */
  function deploysPath(project, service, env) { return projectPath(project, 'deploys/' + enc(service) + '/' + enc(env)); }
  /** The API path of the same: `/projects/P/deployments/S/E`. */
  function deploymentsApi(project, service, env) { return projectPath(project, 'deployments/' + enc(service) + '/' + enc(env)); }
  /** What a deployment is: `deploy`, `rollback to 1`, `auto-rollback to 2`, `promote from dev`. */
  function deployKind(d) {
    if ((d.kind === 'rollback' || d.kind === 'auto-rollback') && d.rollback_of) return d.kind + ' to ' + d.rollback_of;
    if (d.kind === 'promote' && d.promoted_from) return 'promote from ' + d.promoted_from;
    return d.kind;
  }
  /** An image as asked, without the registry's host: `shop/web:7`. */
  function imageName(image) {
    const parts = String(image).split('/');
    if (parts.length > 2 && (/[.:]/.test(parts[0]) || parts[0] === 'localhost')) parts.shift();
    return parts.join('/');
  }
  /** Its last part: the repository's name and tag, `web:7` (`web` for an image asked by digest). */
  function imageTag(image) {
    const last = String(image).split('/').pop();
    const at = last.indexOf('@');
    return at >= 0 ? last.slice(0, at) : last;
  }
  /** When a deployment became what it is: its end, else its approval, else when it was asked. */
  function deploySince(d) { return d.finished_at || d.approved_at || d.asked_at; }
  /** The config release it runs with: `r3` (the application in its tooltip), or `–`. */
  function deployConfig(d) {
    return d.config ? h('span', { class: 'cfg', title: 'config ' + d.config.app + ', release ' + d.config.release, 'data-config': d.config.release }, 'r' + d.config.release)
      : h('span', { class: 'muted', title: 'a service without config' }, '–');
  }
  /** Who asked and when, with the run that asked when one did. */
  function deployAsked(d) {
    return [h('span', { class: 'asker' }, d.asked_by), ' ', h('span', { class: 'muted', title: fmtTime(d.asked_at) }, fmtAgo(d.asked_at)),
      d.run ? [' ', h('a', { class: 'small', href: '/runs/' + enc(d.run.id), title: 'job ' + d.run.job }, d.run.name)] : null];
  }
  /** Redraws `box` with `draw()` and puts the focus back on the control (by its `data-key`) that had it. */
  function redrawKeepingFocus(box, draw) {
    const had = document.activeElement && box.contains(document.activeElement) ? document.activeElement.dataset.key : null;
    draw();
    const again = had && box.querySelector('[data-key="' + CSS.escape(had) + '"]');
    if (again) again.focus();
  }

  /**
   * The environments board (`GET …/environments/board`): a row per deployed service, a column
   * per environment in order, each cell the current deployment (number, image and digest,
   * config release, state, since when and by whom, healthy/replicas, the service), the one
   * waiting for approval (highlighted, with Approve for anyone but who asked, and Reject) or
   * running, and Promote to the next environment (a dry run first, then Confirm). Refreshed
   * every 3 s, redrawn only on a change. `show(envs)` gives the environments (for their
   * protected badges) and returns the board with the promotion panel under it.
   */
  function deployBoard(p, project, who) {
    const table = h('div', { class: 'body muted' }, 'Loading…');
    const problem = h('div', { class: 'board-msg' });
    const promo = h('div', { class: 'promote-area' });
    const wrap = h('div', { class: 'board-wrap' },
      h('section', { class: 'panel board', 'aria-label': 'Deployments' },
        h('h2', {}, 'Deployments', h('span', { class: 'muted small' }, 'what runs where')), problem, table), promo);
    let envs = [], order = [], shown = null, busy = false, started = false, promoSeq = 0;
    const envOf = (name) => envs.find((e) => e.name === name) || { name, protected: false };

    const load = async (loop = true) => {
      let b;
      try {
        b = await api('GET', projectPath(project, 'environments/board'), undefined, { signal: p.ctl.signal });
      } catch (e) {
        if (e.name === 'AbortError') return;
        shown = null;
        if (e.status === 404) {
          put(table, h('div', { class: 'notice', 'data-unavailable': 'deploys' }, h('b', {}, 'Deployments: not available on this server yet. '),
            'What runs in each environment shows here once the server has deploys.')).className = 'body';
          return;
        }
        put(table, errorBox('Could not load the deployments of ' + project, e)).className = 'body';
        if (loop) later(p, 3000, load);
        return;
      }
      order = b.environments;
      // Redrawn on a change (and once a minute, for the times shown as "N min ago").
      const key = JSON.stringify([Math.floor(Date.now() / 60000), b, envs.map((e) => [e.name, e.protected]), who.name]);
      if (key !== shown) {
        shown = key;
        redrawKeepingFocus(table, () => draw(b));
      }
      if (loop) later(p, 3000, load);
    };

    const draw = (b) => {
      if (!b.cells.length) {
        put(table, h('div', { class: 'empty', 'data-board': 'empty' }, 'Nothing deployed yet. Deploy a service file with ',
          h('code', {}, 'kiln deploy FILE --env ' + (b.environments[0] || 'dev') + ' --image ' + project + '/NAME:TAG --project ' + project), '.')).className = 'body flush';
        return;
      }
      const services = [...new Set(b.cells.map((c) => c.service))].sort();
      const cellOf = new Map(b.cells.map((c) => [c.service + '\n' + c.environment, c]));
      put(table, h('div', { class: 'scroll' }, h('table', { class: 'board' },
        h('thead', {}, h('tr', {}, h('th', { scope: 'col', class: 'svc' }, 'Service'),
          b.environments.map((name) => h('th', { scope: 'col', 'data-env': name }, name, envOf(name).protected ? protectedBadge() : null)))),
        h('tbody', {}, services.map((sv) => h('tr', { 'data-service': sv },
          h('th', { scope: 'row', class: 'svc' }, sv),
          b.environments.map((env, i) => boardCell(sv, env, cellOf.get(sv + '\n' + env), b.environments[i + 1])))))))).className = 'body flush';
    };

    const boardCell = (service, env, c, next) => {
      const key = service + '/' + env;
      // The environment's name above the cell on a phone, where the board is stacked.
      const label = env + (envOf(env).protected ? ' · protected' : '');
      if (!c) return h('td', { class: 'cell none', 'data-cell': key, 'data-env': env, 'data-label': label }, h('span', { class: 'muted small' }, 'not deployed'));
      const d = c.deployment;
      const a = c.active;
      // Before its first success the newest deployment is the one shown; when that is the one
      // waiting or running, it is shown as such only.
      const only = !!a && a.number === d.number;
      const pending = !!a && a.state === 'pending';
      const mine = pending && a.asked_by === who.name;
      return h('td', { class: 'cell' + (pending ? ' pending' : ''), 'data-cell': key, 'data-env': env, 'data-label': label, 'data-number': only ? null : d.number, 'data-state': only ? null : d.state, 'data-digest': only ? null : d.digest },
        only ? h('div', { class: 'muted small none-yet' }, 'nothing runs here yet')
          : h('div', { class: 'dep' },
            h('div', { class: 'dep-top' },
              h('a', { class: 'dep-num', href: deploysPath(project, service, env), 'data-key': 'history:' + key, title: 'The deployments of ' + service + ' to ' + env }, '#' + d.number),
              stateBadge(DEPLOY_STATE, d.state), d.kind !== 'deploy' ? h('span', { class: 'kind muted small' }, deployKind(d)) : null),
            h('div', { class: 'dep-img' }, h('span', { class: 'mono img', title: d.image }, imageTag(d.image)), ' ', shortDigest(d.digest)),
            h('div', { class: 'dep-facts small' }, h('span', { title: 'healthy instances of ' + d.service_name + ' / its replicas' }, healthyCount(c), ' healthy'), ' · config ', deployConfig(d)),
            h('div', { class: 'dep-who small muted' }, 'by ', h('span', { class: 'by' }, d.asked_by), ' · ', h('span', { class: 'since', title: fmtTime(deploySince(d)) }, fmtAgo(deploySince(d))),
              d.approved_by ? [' · approved by ', h('span', { class: 'approver' }, d.approved_by)] : null),
            h('div', { class: 'dep-links small' }, h('a', { class: 'svc-link', href: '/services/' + enc(project) + '/' + enc(d.service_name), 'data-key': 'service:' + key, title: 'The service that runs it' }, d.service_name),
              who.developer && next && d.state === 'succeeded'
                ? h('button', { type: 'button', class: 'small-btn promote', 'data-promote': key, 'data-key': 'promote:' + key, onclick: () => promote(service, env) }, 'Promote to ' + next) : null)),
        a ? h('div', { class: 'dep-active', 'data-active': a.number, 'data-state': a.state, role: pending ? 'group' : null, 'aria-label': pending ? 'Deployment ' + a.number + ' of ' + service + ' to ' + env + ' waits for approval' : null },
          h('div', { class: 'dep-top' }, h('a', { class: 'dep-num', href: deploysPath(project, service, env), 'data-key': 'active:' + key }, '#' + a.number), stateBadge(DEPLOY_STATE, a.state),
            a.kind !== 'deploy' ? h('span', { class: 'kind muted small' }, deployKind(a)) : null),
          h('div', { class: 'dep-img' }, h('span', { class: 'mono img', title: a.image }, imageTag(a.image)), ' ', shortDigest(a.digest)),
          h('div', { class: 'small' }, pending ? 'waits for approval · ' : 'deploying · ', 'asked by ', h('span', { class: 'asker' }, a.asked_by), ' ', h('span', { class: 'muted', title: fmtTime(a.asked_at) }, fmtAgo(a.asked_at))),
          pending && who.developer ? h('div', { class: 'dep-decide' },
            mine ? h('span', { class: 'muted small mine' }, 'Someone other than you must approve it.')
              : h('button', { type: 'button', class: 'primary small-btn', 'data-approve': key + '/' + a.number, 'data-key': 'approve:' + key, onclick: () => decide(a, true) }, 'Approve'),
            h('button', { type: 'button', class: 'danger small-btn', 'data-reject': key + '/' + a.number, 'data-key': 'reject:' + key, onclick: () => decide(a, false) }, 'Reject')) : null) : null);
    };

    const decide = async (d, approve) => {
      const what = 'deployment ' + d.number + ' of ' + d.service + ' to ' + d.environment;
      if (busy || (!approve && !confirm('Reject ' + what + '? Nothing of it runs; it stays in the history, rejected.'))) return;
      busy = true;
      clear(problem);
      try {
        await api('POST', deploymentsApi(project, d.service, d.environment) + '/' + d.number + (approve ? '/approve' : '/reject'));
        toast((approve ? 'Approved ' : 'Rejected ') + what);
      } catch (e) {
        put(problem, errorBox((approve ? 'Approving ' : 'Rejecting ') + what + ' failed', e));
      } finally {
        busy = false;
        await load(false);
      }
    };

    /** The promotion panel: the server's dry run of promoting `service` from `from` to the next environment, then Confirm. */
    const promote = async (service, from) => {
      const ticket = ++promoSeq;
      const to = order[order.indexOf(from) + 1];
      const target = envOf(to);
      const close = () => {
        promoSeq++;
        clear(promo);
        const back = table.querySelector('[data-key="' + CSS.escape('promote:' + service + '/' + from) + '"]');
        if (back) back.focus();
      };
      const fromPick = h('select', { id: 'promote-from', 'aria-label': 'Promote from', onchange: (ev) => promote(service, ev.target.value) },
        order.slice(0, -1).map((n) => h('option', { value: n, selected: n === from }, n)));
      const heading = h('h2', { tabindex: '-1' }, 'Promote ', h('span', { class: 'mono' }, service), ' from ', fromPick, ' to ', h('b', { id: 'promote-to' }, to),
        target.protected ? protectedBadge() : null, h('span', { class: 'spacer' }),
        h('button', { type: 'button', class: 'small-btn', id: 'promote-cancel', onclick: close }, 'Cancel'));
      const out = h('div', { class: 'body' }, h('p', { class: 'muted' }, 'Asking the server what would change…'));
      put(promo, h('section', { class: 'panel promote', 'aria-label': 'Promote', 'data-service': service, 'data-from': from, 'data-to': to }, heading, out));
      heading.focus();
      promo.scrollIntoView({ block: 'nearest' });
      const path = projectPath(project, 'deployments/' + enc(service) + '/promote');
      let r;
      try {
        r = await api('POST', path, { from, to, dry_run: true }, { signal: p.ctl.signal });
      } catch (e) {
        if (e.name === 'AbortError' || ticket !== promoSeq) return;
        put(out, errorBox('The server would not promote ' + service + ' from ' + from + ' to ' + to, e));
        return;
      }
      if (ticket !== promoSeq) return;
      const note = h('input', { id: 'promote-note', placeholder: 'why (kept with the deployment)', autocomplete: 'off' });
      const err = h('div');
      put(out,
        h('p', { class: 'muted small' }, 'What changes in ', h('b', {}, to), ' (the server’s dry run: nothing is stored until you confirm). It runs ', from, '’s image and spec with ', to, '’s own config.'),
        promoteChanges(r.changes),
        target.protected ? h('p', { class: 'notice small waits', 'data-waits': to }, h('b', {}, to + ' is protected: '), 'the deployment waits until someone other than you approves it.') : null,
        h('form', {
          class: 'inline-form promote-form',
          onsubmit: async (ev) => {
            ev.preventDefault();
            if (busy) return;
            busy = true;
            clear(err);
            try {
              const res = await api('POST', path, { from, to, note: note.value.trim() || null });
              const d = res.deployment;
              const waits = d.state === 'pending';
              toast('Promoted ' + service + ' to ' + to + (waits ? ': it waits for approval' : ''));
              promoSeq++;
              put(promo, h('div', { class: 'notice outcome', role: 'status', 'data-outcome': waits ? 'pending' : 'promoted', 'data-deployment': d.number },
                h('b', {}, 'Promoted: '), 'deployment ' + d.number + ' of ' + service + ' to ' + to + ' is ' + d.state,
                waits ? ': it waits until someone other than you approves it. ' : '. ',
                h('a', { href: deploysPath(project, service, to) }, 'Its history')));
              const cell = table.querySelector('[data-key="' + CSS.escape('history:' + service + '/' + from) + '"]');
              if (cell) cell.focus();
            } catch (x) {
              put(err, errorBox('Promoting ' + service + ' to ' + to + ' failed', x));
            } finally {
              busy = false;
              await load(false);
            }
          },
        },
        h('div', { class: 'field grow' }, h('label', { for: 'promote-note' }, 'Note'), note),
        h('button', { class: 'primary', type: 'submit', id: 'promote-confirm' }, 'Confirm: promote to ' + to)), err);
    };

    return {
      show(list) {
        envs = list;
        if (!started) { started = true; load(); }
        return wrap;
      },
    };
  }

  /** What a promotion changes in its target: digest, config release (each from → to) and whether the spec changes. */
  function promoteChanges(ch) {
    const mark = (changed) => changed ? h('span', { class: 'chg c-changed' }, 'changes') : h('span', { class: 'muted small' }, 'unchanged');
    const none = (text) => h('span', { class: 'muted' }, text);
    const rel = (n) => n === null || n === undefined ? none('–') : h('span', { 'data-config': n }, 'r' + n);
    const cfgFrom = ch.config_from === undefined ? null : ch.config_from;
    const cfgTo = ch.config_to === undefined ? null : ch.config_to;
    const row = (k, label, from, to, changed) => h('tr', { 'data-change': k, 'data-changed': changed ? 'true' : 'false' },
      h('th', { scope: 'row' }, label), h('td', { class: 'from' }, from), h('td', { class: 'arrow', 'aria-label': 'to' }, '→'), h('td', { class: 'to' }, to), h('td', { class: 'mark' }, mark(changed)));
    return h('div', { class: 'scroll' }, h('table', { class: 'changes' }, h('tbody', {},
      row('digest', 'Image digest', ch.digest_from ? shortDigest(ch.digest_from) : none('nothing deployed yet'), shortDigest(ch.digest_to), ch.digest_from !== ch.digest_to),
      row('config', 'Config release', rel(cfgFrom), rel(cfgTo), cfgFrom !== cfgTo),
      h('tr', { 'data-change': 'spec', 'data-changed': ch.spec_changed ? 'true' : 'false' }, h('th', { scope: 'row' }, 'Service spec'),
        h('td', { colspan: 3, class: 'muted small' }, 'everything but the image'), h('td', { class: 'mark' }, mark(ch.spec_changed))))));
  }

  /**
   * A service's deployments to an environment, newest first (`GET …/deployments/S/E`): number,
   * kind, state, image and digest, config release, who asked and when, who approved, note and
   * reason; Approve and Reject for one waiting; Roll back to N (developers, after confirming)
   * on one that ran there before the current one. Refreshed every 3 s.
   */
  async function viewDeploys(p, el, project, service, env) {
    setTitle(service + ' in ' + env + ' · ' + project);
    const who = await me(p);
    const opts = { signal: p.ctl.signal };
    const base = deploymentsApi(project, service, env);
    const state = h('span');
    const meta = h('div', { class: 'meta' });
    const problem = h('div');
    const banners = h('div');
    const body = h('div', { class: 'body muted' }, 'Loading…');
    el.append(projectCrumbs(project, h('a', { href: projectPath(project, 'environments') }, 'Environments'), service + ' in ' + env),
      h('div', { class: 'head' }, h('h1', {}, service, h('span', { class: 'muted' }, ' in '), env), state),
      meta, problem, banners,
      h('section', { class: 'panel', 'aria-label': 'Deployments' }, h('h2', {}, 'Deployments', h('span', { class: 'muted small' }, 'newest first')), body));

    let busy = false, shown = null, loaded = false;
    const act = async (label, question, path, payload, done) => {
      if (busy || (question && !confirm(question))) return;
      busy = true;
      clear(problem);
      try {
        const d = await api('POST', path, payload);
        toast(done(d));
      } catch (e) {
        put(problem, errorBox(label + ' failed', e));
      } finally {
        busy = false;
        await load(false);
      }
    };

    const load = async (loop = true) => {
      let list, sv = null;
      try {
        list = await api('GET', base, undefined, opts);
        const cur = list.find((d) => d.state === 'succeeded') || list[0];
        if (cur) {
          sv = await api('GET', '/projects/' + enc(project) + '/services/' + enc(cur.service_name), undefined, opts)
            .catch((e) => { if (e.name === 'AbortError') throw e; return null; });
        }
      } catch (e) {
        if (e.name === 'AbortError') return;
        if (!loaded) { put(el, errorBox('Could not load the deployments of ' + service + ' to ' + env, e)); return; }
        put(problem, errorBox('Live updates stopped: could not reload the deployments', e));
        if (loop) later(p, 5000, load);
        return;
      }
      loaded = true;
      const key = JSON.stringify([Math.floor(Date.now() / 60000), list, sv && [sv.healthy, sv.replicas, sv.state]]);
      if (key !== shown) {
        shown = key;
        redrawKeepingFocus(el, () => draw(list, sv));
      }
      if (loop) later(p, 3000, load);
    };

    const draw = (list, sv) => {
      const cur = list.find((d) => d.state === 'succeeded');
      const active = list.find((d) => d.state === 'pending' || d.state === 'running');
      put(state, cur ? stateBadge(DEPLOY_STATE, cur.state) : null);
      const name = (cur || list[0] || {}).service_name;
      put(meta, list.length ? [
        h('span', {}, 'current ', cur ? h('b', { id: 'dep-current' }, '#' + cur.number) : h('b', { id: 'dep-current' }, 'none: nothing runs here yet')),
        cur ? h('span', {}, 'image ', h('b', { class: 'mono' }, imageName(cur.image)), ' ', shortDigest(cur.digest)) : null,
        cur ? h('span', {}, 'config ', h('b', {}, deployConfig(cur))) : null,
        name ? h('span', {}, 'runs as ', h('a', { id: 'dep-service', href: '/services/' + enc(project) + '/' + enc(name) }, name)) : null,
        sv ? h('span', {}, 'healthy ', h('b', {}, healthyCount(sv))) : null,
        h('span', {}, h('a', { href: projectPath(project, 'environments') }, 'the environments board')),
      ] : null);
      put(banners, list.filter((d) => d.state === 'pending').map((d) => {
        const what = 'deployment ' + d.number + ' of ' + service + ' to ' + env;
        return h('div', { class: 'approval', role: 'region', 'aria-label': 'Deployment ' + d.number + ' waits', 'data-pending': d.number },
          h('div', { class: 'q' }, h('b', {}, 'Deployment ' + d.number + ' (' + deployKind(d) + ', ' + imageName(d.image) + ') waits for approval'),
            h('span', {}, 'asked by ', h('strong', { class: 'asker' }, d.asked_by), ' ', h('span', { title: fmtTime(d.asked_at) }, fmtAgo(d.asked_at)), d.note ? ['; “', d.note, '”'] : null),
            who.developer && d.asked_by === who.name ? h('div', { class: 'muted small' }, 'Someone other than you must approve it.') : null),
          who.developer && d.asked_by !== who.name ? h('button', { class: 'primary', type: 'button', id: 'approve-deployment', 'data-key': 'approve', onclick: () => act('Approve', null, base + '/' + d.number + '/approve', undefined, () => 'Approved ' + what) }, 'Approve') : null,
          who.developer ? h('button', { class: 'danger', type: 'button', id: 'reject-deployment', 'data-key': 'reject', onclick: () => act('Reject', 'Reject ' + what + '? Nothing of it runs; it stays in the history, rejected.', base + '/' + d.number + '/reject', undefined, () => 'Rejected ' + what) }, 'Reject') : null);
      }));
      if (!list.length) {
        put(body, h('div', { class: 'empty', 'data-deployments': 'none' }, 'No deployment of ', h('b', {}, service), ' to ', h('b', {}, env), ' yet. Deploy it with ',
          h('code', {}, 'kiln deploy ' + service + '.yml --env ' + env + ' --image ' + project + '/' + service + ':TAG --project ' + project), '.')).className = 'body flush';
        return;
      }
      // Roll back to N: one that ran here before the current one, while nothing is pending or
      // running; not to the one the current deployment already brings back.
      const rollback = (d) => {
        const cfg = d.config && cur && cur.config && cur.config.release !== d.config.release
          ? ', with config release r' + d.config.release + ' again (a config rollback release in ' + env + ')' : '';
        act('Roll back', 'Roll ' + service + ' in ' + env + ' back to deployment ' + d.number + '? It runs deployment ' + d.number + '’s image (' + imageName(d.image) + ', '
          + d.digest.slice(0, 19) + '…) and spec again' + cfg + '. No approval is needed.',
        base + '/rollback', { to: d.number }, (made) => 'Rolling back: deployment ' + made.number + ' of ' + service + ' to ' + env);
      };
      put(body, h('div', { class: 'scroll' }, h('table', { class: 'deployments' },
        h('thead', {}, h('tr', {}, h('th', { class: 'num' }, '#'), h('th', {}, 'Kind'), h('th', {}, 'State'), h('th', {}, 'Image'), h('th', { class: 'hide-sm' }, 'Config'),
          h('th', {}, 'Asked'), h('th', { class: 'hide-sm' }, 'Approved by'), h('th', { class: 'hide-sm' }, 'Note / reason'), who.developer ? h('th', {}, h('span', { class: 'sr' }, 'Actions')) : null)),
        h('tbody', {}, list.map((d) => h('tr', { 'data-deployment': d.number, 'data-state': d.state, 'data-kind': d.kind, 'data-digest': d.digest },
          h('td', { class: 'num' }, h('b', {}, d.number), d === cur ? h('span', { class: 'tag cur' }, 'current') : null),
          h('td', { class: 'kind nowrap' }, deployKind(d)),
          h('td', {}, stateBadge(DEPLOY_STATE, d.state)),
          h('td', { class: 'image' }, h('div', { class: 'mono img' }, imageName(d.image)), shortDigest(d.digest)),
          h('td', { class: 'hide-sm config' }, deployConfig(d)),
          h('td', { class: 'asked' }, deployAsked(d)),
          h('td', { class: 'hide-sm approved' }, d.approved_by || ''),
          h('td', { class: 'hide-sm note' }, d.note ? h('div', { class: 'n' }, d.note) : null, d.reason ? h('div', { class: 'reason' }, d.reason) : null),
          who.developer ? h('td', { class: 'num' }, cur && !active && d.state === 'superseded' && !(cur.rollback_of === d.number && cur.kind.endsWith('rollback'))
            ? h('button', { type: 'button', class: 'small-btn rollback', 'data-rollback': d.number, 'data-key': 'rollback:' + d.number, onclick: () => rollback(d) }, 'Roll back to ' + d.number) : null) : null)))))).className = 'body flush';
    };
    await load();
  }

  // ---------------------------------------------------------------- the config center

  const CONFIG_TABS = [['templates', 'Templates'], ['values', 'Values'], ['preview', 'Preview'], ['diff', 'Diff'], ['releases', 'Releases'], ['audit', 'Audit log']];
  const RELEASE_STATE = { released: 'success', pending: 'waiting', rejected: 'canceled' };

  function appTable(project, apps) {
    if (!apps.length) return h('div', { class: 'empty' }, 'No application has config yet.');
    return h('div', { class: 'scroll' }, h('table', { class: 'apps' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Application'), h('th', {}, 'Files'), h('th', { class: 'hide-sm' }, 'Values for'), h('th', { class: 'hide-sm' }, 'Updated'))),
      h('tbody', {}, apps.map((a) => h('tr', { 'data-app': a.name },
        h('td', {}, h('a', { class: 'pl-name', href: projectPath(a.project, 'config/' + enc(a.name)) }, a.name)),
        h('td', { class: 'mono files' }, a.files.length ? a.files.join(', ') : h('span', { class: 'muted' }, '–')),
        h('td', { class: 'hide-sm' }, a.environments.length ? a.environments.join(', ') : h('span', { class: 'muted' }, 'shared only')),
        h('td', { class: 'hide-sm' }, h('span', { title: fmtTime(a.updated_at) }, fmtAgo(a.updated_at))))))));
  }

  async function viewConfigApps(p, el, project) {
    setTitle(project + ' config');
    const who = await me(p);
    el.append(projectCrumbs(project), h('div', { class: 'head' }, h('h1', {}, 'Config')), projectTabs(project, 'config'));
    const apps = await api('GET', projectPath(project, 'apps'), undefined, { signal: p.ctl.signal });
    el.append(h('section', { class: 'panel', 'aria-label': 'Applications' }, h('h2', {}, 'Applications'), appTable(project, apps)));
    if (!who.developer) return;
    const name = h('input', { id: 'app-name', required: true, placeholder: 'api', spellcheck: 'false', autocomplete: 'off' });
    const file = h('input', { id: 'app-file', required: true, value: 'app.yaml', spellcheck: 'false', autocomplete: 'off' });
    el.append(h('section', { class: 'panel', 'aria-label': 'New application' }, h('h2', {}, 'New application'), h('div', { class: 'body' },
      h('form', {
        class: 'inline-form', id: 'app-create',
        onsubmit: (ev) => {
          ev.preventDefault();
          go(projectPath(project, 'config/' + enc(name.value.trim())) + '?file=' + enc(file.value.trim()));
        },
      },
      h('div', { class: 'field' }, h('label', { for: 'app-name' }, 'Name'), name),
      h('div', { class: 'field' }, h('label', { for: 'app-file' }, 'First file'), file),
      h('button', { class: 'primary', type: 'submit' }, 'Open the editor')),
      h('p', { class: 'muted small' }, 'Nothing is stored until you save the file: the application is made with its first file or values.'))));
  }

  /** The server's diagnostics as a list: `file:line:column: message`, the place a button when `pick` can show it. */
  function diagList(diags, pick) {
    return h('ul', { class: 'diags' }, diags.map((d) => {
      const where = d.file + (d.line ? ':' + d.line + (d.column ? ':' + d.column : '') : '');
      return h('li', { 'data-file': d.file, 'data-line': d.line, 'data-column': d.column },
        pick ? h('button', { type: 'button', class: 'link mono', title: 'Show it in the editor', onclick: () => pick(d) }, where) : h('span', { class: 'mono' }, where),
        ': ' + d.message);
    }));
  }
  /** What failed, with the diagnostics (see diagList) when the server gave some. */
  function problemBox(title, e, pick) {
    if (!(e instanceof ApiError) || !e.diagnostics || !e.diagnostics.length) return errorBox(title, e);
    // The message ends with the first diagnostic ("…; the first: app.yaml:3:9: …"), listed below anyway.
    const cut = e.message.indexOf('; the first: ');
    return h('div', { class: 'error problems', role: 'alert' }, h('b', {}, title), cut > 0 ? e.message.slice(0, cut) : e.message, diagList(e.diagnostics, pick));
  }

  /**
   * A text editor for a template or a values file: a textarea with line numbers, Save (also
   * Ctrl+S) and Revert, an "unsaved changes" mark, Enter keeping the line's indentation, and
   * the server's diagnostics under it (each one puts the cursor on its line and column; its
   * line number turns red).
   * o: { key, title, value, readOnly, fresh (never stored), help, save(value) -> Promise,
   *      saved(result), changed(), extra (more buttons) }
   */
  function codeEditor(o) {
    let saved = o.value;
    let fresh = !!o.fresh;
    let busy = false;
    let bad = new Set();
    const id = 'ed-' + o.key.replace(/[^A-Za-z0-9_-]/g, '_');
    const gutter = h('div', { class: 'ed-gutter', 'aria-hidden': 'true' });
    const ta = h('textarea', { class: 'ed-text', id, spellcheck: 'false', autocapitalize: 'off', autocomplete: 'off', wrap: 'off', rows: 16, readonly: !!o.readOnly, 'aria-describedby': id + '-help' });
    ta.value = o.value;
    const mark = h('span', { class: 'ed-dirty', hidden: true }, 'unsaved changes');
    const pos = h('span', { class: 'ed-pos muted small', 'aria-hidden': 'true' });
    const diags = h('div', { class: 'ed-diags', 'aria-live': 'polite' });
    const saveBtn = o.readOnly ? null : h('button', { type: 'button', class: 'primary ed-save', onclick: () => save() }, 'Save');
    const revertBtn = o.readOnly ? null : h('button', { type: 'button', class: 'ed-revert', title: 'Back to what is stored', onclick: () => { ta.value = saved; problems(null); changed(); } }, 'Revert');
    const el = h('div', { class: 'editor', 'data-editor': o.key },
      h('div', { class: 'ed-bar' }, h('label', { for: id, class: 'mono ed-title' }, o.title), mark, h('span', { class: 'spacer' }), pos, revertBtn, o.extra, saveBtn),
      h('div', { class: 'ed-box' }, gutter, ta),
      h('div', { class: 'ed-help muted small', id: id + '-help' }, o.help, o.readOnly ? ' Read only: your role cannot change it.' : ' Ctrl+S saves; Tab moves on to the next control.'),
      diags);
    let drawn = -1;
    const drawGutter = (force) => {
      const n = ta.value.split('\n').length;
      if (n === drawn && !force) return;
      drawn = n;
      const rows = [];
      for (let i = 1; i <= n; i++) rows.push(h('div', { class: bad.has(i) ? 'bad' : null, 'data-line': i }, i));
      put(gutter, rows, h('div', { class: 'ed-pad' }));
      gutter.scrollTop = ta.scrollTop;
    };
    const dirty = () => fresh || ta.value !== saved;
    const changed = () => {
      mark.hidden = !dirty();
      el.dataset.dirty = dirty() ? 'true' : 'false';
      drawGutter(false);
      if (o.changed) o.changed();
    };
    const showPos = () => {
      const before = ta.value.slice(0, ta.selectionStart).split('\n');
      pos.textContent = 'Ln ' + before.length + ', Col ' + (before[before.length - 1].length + 1);
    };
    /** The server's answer under the editor, its lines marked (null: none). */
    const problems = (box, lines) => {
      put(diags, box);
      bad = new Set(lines || []);
      drawGutter(true);
    };
    const goTo = (line, column) => {
      const ls = ta.value.split('\n');
      const l = Math.max(1, Math.min(line || 1, ls.length));
      let at = 0;
      for (let i = 0; i < l - 1; i++) at += ls[i].length + 1;
      at += Math.max(0, Math.min((column || 1) - 1, ls[l - 1].length));
      ta.focus();
      ta.setSelectionRange(at, at);
      const lh = parseFloat(getComputedStyle(ta).lineHeight) || 18;
      ta.scrollTop = Math.max(0, (l - 1) * lh - ta.clientHeight / 2);
      gutter.scrollTop = ta.scrollTop;
      showPos();
    };
    const save = async () => {
      if (busy || o.readOnly) return;
      busy = true;
      saveBtn.disabled = true;
      const value = ta.value;
      try {
        const r = await o.save(value);
        saved = value;
        fresh = false;
        problems(null);
        changed();
        if (o.saved) o.saved(r);
      } catch (e) {
        const mine = (e.diagnostics || []).filter((d) => d.file === o.title);
        problems(problemBox(fresh ? 'Not saved' : 'Not saved: the stored ' + o.title + ' is unchanged', e, (d) => goTo(d.line, d.column)), mine.map((d) => d.line));
        if (mine.length) goTo(mine[0].line, mine[0].column);
      } finally {
        busy = false;
        saveBtn.disabled = false;
      }
    };
    ta.addEventListener('input', changed);
    ta.addEventListener('scroll', () => { gutter.scrollTop = ta.scrollTop; });
    for (const ev of ['keyup', 'click', 'focus']) ta.addEventListener(ev, showPos);
    ta.addEventListener('keydown', (ev) => {
      if ((ev.ctrlKey || ev.metaKey) && !ev.altKey && ev.key.toLowerCase() === 's') {
        ev.preventDefault();
        save();
        return;
      }
      if (ev.key === 'Enter' && !ev.ctrlKey && !ev.metaKey && !ev.altKey && !ev.shiftKey && !o.readOnly) {
        const start = ta.selectionStart;
        const lineStart = ta.value.lastIndexOf('\n', start - 1) + 1;
        const indent = /^[ \t]*/.exec(ta.value.slice(lineStart, start))[0];
        if (!indent) return;
        ev.preventDefault();
        // insertText keeps the browser's undo history; setRangeText where it is missing.
        if (!document.execCommand('insertText', false, '\n' + indent)) {
          ta.setRangeText('\n' + indent, start, ta.selectionEnd, 'end');
          changed();
        }
      }
    });
    drawGutter(true);
    changed();
    return {
      el, dirty, goTo, problems, save,
      value: () => ta.value,
      /** Takes a stored value (after a reload) unless the text was edited. */
      stored: (v) => { if (!dirty()) { saved = v; ta.value = v; changed(); } else { saved = v; changed(); } },
      focus: () => ta.focus(),
    };
  }

  /** A rendered file with line numbers. */
  function fileView(name, text) {
    const lines = text.split('\n');
    if (lines.length > 1 && lines[lines.length - 1] === '') lines.pop();
    return h('div', { class: 'code-file', 'data-file': name },
      h('div', { class: 'code-head' }, h('span', { class: 'mono' }, name),
        h('span', { class: 'muted small' }, lines.length + (lines.length === 1 ? ' line · ' : ' lines · ') + fmtBytes(new TextEncoder().encode(text).length))),
      h('div', { class: 'scroll' }, h('table', { class: 'code' }, h('tbody', {},
        lines.map((l, i) => h('tr', {}, h('td', { class: 'ln' }, i + 1), h('td', { class: 'tx' }, l)))))));
  }

  /** A config diff, file by file: added lines green, removed lines red, hunks blue, with the old and new line numbers. */
  function diffView(d) {
    if (!d.files.length) {
      return h('div', { class: 'empty', 'data-diff': 'none' }, 'No difference: ', h('b', {}, d.from), ' and ', h('b', {}, d.to), ' are the same files.');
    }
    return h('div', { class: 'diff', 'data-from': d.from, 'data-to': d.to }, d.files.map((f) => {
      const rows = [];
      let a = 0, b = 0, plus = 0, minus = 0;
      for (const line of f.unified.split('\n')) {
        if (line === '') continue;
        const hunk = /^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@/.exec(line);
        let kind, na = '', nb = '';
        if (line.startsWith('--- ') || line.startsWith('+++ ')) kind = 'fh';
        else if (hunk) { kind = 'hunk'; a = Number(hunk[1]); b = Number(hunk[2]); }
        else if (line[0] === '+') { kind = 'add'; nb = b++; plus++; }
        else if (line[0] === '-') { kind = 'del'; na = a++; minus++; }
        else if (line[0] === '\\') kind = 'meta';
        else { kind = 'ctx'; na = a++; nb = b++; }
        rows.push(h('tr', { class: 'dl ' + kind, 'data-kind': kind }, h('td', { class: 'ln' }, na), h('td', { class: 'ln' }, nb), h('td', { class: 'tx' }, line)));
      }
      return h('div', { class: 'diff-file', 'data-file': f.file, 'data-change': f.change },
        h('div', { class: 'code-head' }, h('span', { class: 'mono' }, f.file), h('span', { class: 'chg c-' + f.change }, f.change),
          h('span', { class: 'muted small' }, h('span', { class: 'plus' }, '+' + plus), ' ', h('span', { class: 'minus' }, '−' + minus))),
        h('div', { class: 'scroll' }, h('table', { class: 'code diff-lines' }, h('tbody', {}, rows))));
    }));
  }

  async function viewConfigApp(p, el, project, name) {
    setTitle(name + ' config');
    const who = await me(p);
    const opts = { signal: p.ctl.signal };
    const base = projectPath(project, 'apps/' + enc(name));
    const q = new URLSearchParams(location.search);
    const [envs, stored] = await Promise.all([
      api('GET', projectPath(project, 'environments'), undefined, opts),
      // A developer may open an application that has no config yet: it is made with its first save.
      api('GET', base, undefined, opts).catch((e) => { if (e.status === 404 && who.developer) return null; throw e; })]);
    let cfg = stored || { project, name, items: [], shared_values: '', values: [], updated_at: null };
    let env = envs.some((e) => e.name === q.get('env')) ? q.get('env') : envs.length ? envs[0].name : null;
    let tab = CONFIG_TABS.some(([k]) => k === q.get('tab')) ? q.get('tab') : 'templates';
    const envOf = (n) => envs.find((e) => e.name === n);
    const tplEditors = new Map(); // by file
    const valEditors = new Map(); // '' is the shared values, else an environment's
    let currentFile = null;
    let outcome = null; // the answer to the last release asked here, shown until the environment changes
    let acting = false;
    const envPath = (e) => base + '/environments/' + enc(e);

    const meta = h('div', { class: 'meta' });
    const problem = h('div');
    const envBar = h('div', { class: 'env-pick', role: 'group', 'aria-label': 'Environment' });
    const tabBar = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Config of ' + name });
    const panels = {};
    for (const [k, label] of CONFIG_TABS) {
      panels[k] = h('section', { class: 'tab-panel', role: 'tabpanel', id: 'tab-' + k, 'aria-label': label, hidden: true });
    }
    el.append(projectCrumbs(project, h('a', { href: projectPath(project, 'config') }, 'Config')),
      h('div', { class: 'head' }, h('h1', {}, name)), meta, problem,
      h('div', { class: 'cfg-bar' }, tabBar, envBar), ...Object.values(panels));

    const drawMeta = () => put(meta,
      h('span', {}, h('b', {}, cfg.items.length), cfg.items.length === 1 ? ' file' : ' files'),
      h('span', {}, 'values for ', h('b', {}, cfg.values.length ? cfg.values.map((v) => v.environment).join(', ') : 'no environment yet')),
      cfg.updated_at ? h('span', {}, 'updated ', h('b', { title: fmtTime(cfg.updated_at) }, fmtAgo(cfg.updated_at))) : h('span', { class: 'new-app' }, h('b', {}, 'new: '), 'nothing stored yet'));
    // After a save: the application as stored (for the summary and the other editors' baselines).
    const reload = async () => {
      try {
        cfg = await api('GET', base, undefined, opts);
        drawMeta();
      } catch (e) { if (e.name !== 'AbortError') put(problem, errorBox('Could not reload ' + name, e)); }
    };

    // ------------------------------------------------ releases of each environment (the bar)
    const heads = new Map();
    const loadHeads = async () => {
      const lists = await Promise.all(envs.map((e) => api('GET', envPath(e.name) + '/releases', undefined, opts)
        .catch((x) => { if (x.name === 'AbortError') throw x; return x.status === 404 ? [] : x; })));
      envs.forEach((e, i) => heads.set(e.name, Array.isArray(lists[i]) ? lists[i] : []));
      const failed = lists.find((x) => !Array.isArray(x));
      if (failed) put(problem, errorBox('Could not load the releases', failed));
      drawEnvBar();
    };
    const drawEnvBar = () => {
      if (!envs.length) {
        put(envBar, h('span', { class: 'muted small' }, 'No environment: values per environment, previews and releases need one (',
          h('a', { href: projectPath(project, 'environments') }, 'Environments'), ').'));
        return;
      }
      put(envBar, h('span', { class: 'label muted small' }, 'Environment'), envs.map((e) => {
        const list = heads.get(e.name) || [];
        const cur = list.find((r) => r.current);
        const waiting = list.filter((r) => r.state === 'pending').length;
        return h('button', {
          type: 'button', class: 'env-btn' + (waiting ? ' waits' : ''), 'data-env': e.name, 'aria-pressed': e.name === env ? 'true' : 'false',
          title: e.name + (e.protected ? ' (protected)' : '') + ': ' + (cur ? 'release ' + cur.number + ' is current' : 'no release yet') + (waiting ? '; ' + waiting + ' waiting for approval' : ''),
          onclick: () => setEnv(e.name),
        }, h('span', { class: 'env-name' }, e.name), e.protected ? h('span', { class: 'lock' }, 'protected') : null,
        h('span', { class: 'rel mono', 'data-release': cur ? cur.number : '' }, cur ? 'r' + cur.number : 'no release'),
        waiting ? h('span', { class: 'pend' }, waiting + ' waiting') : null);
      }));
    };

    // ------------------------------------------------ tabs
    const drawTabs = () => put(tabBar, CONFIG_TABS.map(([k, label]) => h('button', {
      type: 'button', role: 'tab', class: 'tab', id: 'tabbtn-' + k, 'data-tab': k, 'aria-controls': 'tab-' + k, 'aria-selected': k === tab ? 'true' : 'false', onclick: () => showTab(k),
    }, label, k === 'templates' && dirtyTemplates() ? h('span', { class: 'dirty-dot', title: 'unsaved changes' }, '●') : null,
    k === 'values' && dirtyValues() ? h('span', { class: 'dirty-dot', title: 'unsaved changes' }, '●') : null)));
    const setQuery = () => {
      const u = new URLSearchParams();
      if (env) u.set('env', env);
      if (tab !== 'templates') u.set('tab', tab);
      if (tab === 'templates' && currentFile) u.set('file', currentFile);
      history.replaceState(null, '', location.pathname + (u.toString() ? '?' + u : ''));
    };
    const fills = {};
    const showTab = (k) => {
      tab = k;
      for (const [t, panel] of Object.entries(panels)) panel.hidden = t !== k;
      drawTabs();
      setQuery();
      if (fills[k]) fills[k]();
    };
    const setEnv = (e) => {
      if (e === env) return;
      env = e;
      outcome = null;
      drawEnvBar();
      setQuery();
      showEnvValues();
      if (fills[tab]) fills[tab]();
    };
    // Answers for an environment that is no longer the one shown are dropped.
    const seqs = {};
    const ticket = (k) => { seqs[k] = (seqs[k] || 0) + 1; const n = seqs[k]; return () => n === seqs[k] && !p.ctl.signal.aborted; };

    // ------------------------------------------------ templates
    const fileList = h('ul', { class: 'files', 'aria-label': 'Files' });
    const editorSlot = h('div', { class: 'editor-slot' });
    const dirtyTemplates = () => [...tplEditors.values()].some((ed) => ed.dirty());
    const dirtyValues = () => [...valEditors.values()].some((ed) => ed.dirty());
    p.unsaved = () => dirtyTemplates() || dirtyValues();
    const drawFiles = () => {
      put(fileList, [...tplEditors.keys()].sort().map((f) => h('li', {},
        h('button', { type: 'button', class: 'file', 'data-file': f, 'aria-current': f === currentFile ? 'true' : null, onclick: () => selectFile(f) },
          h('span', { class: 'mono' }, f), tplEditors.get(f).dirty() ? h('span', { class: 'dirty-dot', title: 'unsaved changes' }, '●') : null))));
      if (!tplEditors.size) fileList.append(h('li', { class: 'muted small none' }, 'No file yet.'));
    };
    const selectFile = (f) => {
      currentFile = f;
      for (const [k, ed] of tplEditors) ed.el.hidden = k !== f;
      noFile.hidden = !!f;
      drawFiles();
      if (tab === 'templates') setQuery();
    };
    const noFile = h('div', { class: 'empty' }, who.developer ? 'Add a file to start.' : 'This application has no file.');
    editorSlot.append(noFile);
    const onEdit = () => { drawFiles(); drawTabs(); };
    const templateEditor = (file, text, fresh) => {
      const ed = codeEditor({
        key: 'template:' + file, title: file, value: text, readOnly: !who.developer, fresh,
        help: 'A minijinja template: {{ db.host }}, {% if x is defined %}, {% for f in features %}, | default(…); kiln.environment names where it renders; a value no environment defines is an error.',
        save: (value) => api('PUT', base + '/templates/' + enc(file), { template: value }),
        saved: (r) => { toast(r.change === 'unchanged' ? file + ' is unchanged' : 'Saved ' + file); reload(); },
        changed: onEdit,
        extra: who.developer ? h('button', { type: 'button', class: 'danger ed-remove', onclick: () => removeFile(file) }, 'Remove') : null,
      });
      tplEditors.set(file, ed);
      editorSlot.append(ed.el);
      return ed;
    };
    const removeFile = async (file) => {
      const ed = tplEditors.get(file);
      const storedItem = cfg.items.some((i) => i.file === file);
      if (!confirm(storedItem ? 'Remove ' + file + ' from ' + name + '? Releases made after this have no ' + file + '.' : 'Drop the new file ' + file + '? It was never saved.')) return;
      if (storedItem) {
        try {
          await api('DELETE', base + '/templates/' + enc(file));
        } catch (e) {
          ed.problems(errorBox('Removing ' + file + ' failed', e));
          return;
        }
        toast('Removed ' + file);
        await reload();
      }
      ed.el.remove();
      tplEditors.delete(file);
      selectFile([...tplEditors.keys()].sort()[0] || null);
      drawTabs();
    };
    const addFile = (file) => {
      if (!tplEditors.has(file)) templateEditor(file, '', true);
      selectFile(file);
      tplEditors.get(file).focus();
    };
    for (const item of cfg.items) templateEditor(item.file, item.template, false);
    const asked = q.get('file');
    if (asked && !tplEditors.has(asked) && who.developer) templateEditor(asked, '', true);
    let newFile = null;
    if (who.developer) {
      const input = h('input', { id: 'new-file', class: 'mono', placeholder: 'conf.d/db.conf', spellcheck: 'false', autocomplete: 'off', required: true, 'aria-label': 'New file name' });
      newFile = h('form', { class: 'new-file', 'aria-label': 'Add a file', onsubmit: (ev) => { ev.preventDefault(); const f = input.value.trim(); if (f) { input.value = ''; addFile(f); } } },
        input, h('button', { type: 'submit' }, 'Add'));
    }
    put(panels.templates, h('div', { class: 'tpl-grid' },
      h('div', { class: 'panel files-panel' }, h('h2', {}, 'Files'), fileList, newFile),
      h('div', { class: 'panel editor-panel' }, editorSlot)));
    selectFile(tplEditors.has(asked) ? asked : [...tplEditors.keys()].sort()[0] || null);

    // ------------------------------------------------ values
    const valuesEditor = (e) => {
      const ed = codeEditor({
        key: 'values:' + (e || 'shared'), title: e ? 'values/' + e + '.yml' : 'values/shared.yml', readOnly: !who.developer,
        value: e ? ((cfg.values.find((v) => v.environment === e) || {}).yaml || '') : cfg.shared_values,
        help: e ? 'A YAML map laid over the shared values in ' + e + ': maps merge key by key, anything else replaces the shared value.' : 'A YAML map every environment gets.',
        save: (yaml) => api('PUT', base + '/values' + (e ? '/' + enc(e) : ''), { yaml }),
        saved: (r) => { toast(r.change === 'unchanged' ? 'The values are unchanged' : 'Saved ' + (e ? e + '’s values' : 'the shared values')); reload(); },
        changed: onEdit,
      });
      valEditors.set(e, ed);
      return ed;
    };
    const envValuesSlot = h('div', { class: 'env-values' });
    const showEnvValues = () => {
      for (const [k, ed] of valEditors) if (k) ed.el.hidden = k !== env;
      if (env && !valEditors.has(env)) envValuesSlot.append(valuesEditor(env).el);
    };
    put(panels.values, h('div', { class: 'grid2 values-grid' },
      h('div', { class: 'panel' }, h('h2', {}, 'Shared ', h('span', { class: 'muted small' }, 'every environment')), h('div', { class: 'body' }, valuesEditor('').el)),
      h('div', { class: 'panel' }, h('h2', {}, 'Per environment ', h('span', { class: 'muted small' }, 'laid over the shared values')),
        h('div', { class: 'body' }, env ? envValuesSlot : h('p', { class: 'muted' }, 'No environment yet.')))));
    showEnvValues();

    /** Shows the place a diagnostic names: a template's or a values file's line. */
    const pick = (d) => {
      const m = /^values\/(.+)\.yml$/.exec(d.file);
      let ed = null;
      if (m && (m[1] === 'shared' || envOf(m[1]))) {
        if (m[1] !== 'shared') setEnv(m[1]);
        ed = valEditors.get(m[1] === 'shared' ? '' : m[1]);
        showTab('values');
      } else if (tplEditors.has(d.file)) {
        selectFile(d.file);
        showTab('templates');
        ed = tplEditors.get(d.file);
      }
      if (ed) {
        ed.problems(h('div', { class: 'error problems', role: 'alert' }, h('b', {}, 'Does not render in ' + env), diagList([d], (x) => ed.goTo(x.line, x.column))), [d.line]);
        ed.goTo(d.line, d.column);
      }
    };
    const unsavedNote = () => (dirtyTemplates() || dirtyValues())
      ? h('div', { class: 'notice small unsaved' }, h('b', {}, 'Unsaved changes are not in this: '), 'the server renders what is stored. Save them first.') : null;
    const noEnv = () => h('div', { class: 'notice' }, 'Make an environment first (', h('a', { href: projectPath(project, 'environments') }, 'Environments'), ').');

    // ------------------------------------------------ preview
    fills.preview = async () => {
      const mine = ticket('preview');
      if (!env) { put(panels.preview, noEnv()); return; }
      put(panels.preview, h('p', { class: 'muted' }, 'Rendering for ' + env + '…'));
      let r;
      try {
        r = await api('GET', envPath(env) + '/render', undefined, opts);
      } catch (e) {
        if (e.name === 'AbortError' || !mine()) return;
        put(panels.preview, unsavedNote(), problemBox('The draft does not render in ' + env, e, pick));
        return;
      }
      if (!mine()) return;
      const files = Object.entries(r.files);
      put(panels.preview, unsavedNote(),
        h('div', { class: 'meta' }, h('span', {}, 'the draft rendered for ', h('b', { id: 'preview-env' }, env)), h('span', {}, 'digest ', shortDigest(r.digest)),
          h('span', {}, h('b', {}, files.length), files.length === 1 ? ' file' : ' files'), h('span', { class: 'muted' }, 'nothing is stored')),
        h('div', { class: 'rendered' }, files.length ? files.map(([f, text]) => fileView(f, text)) : h('div', { class: 'empty' }, 'No file: add a template.')));
    };

    // ------------------------------------------------ diff
    const diffState = { mode: 'current', against: null, from: null, to: null };
    fills.diff = async () => {
      const mine = ticket('diff');
      if (!env) { put(panels.diff, noEnv()); return; }
      const others = envs.filter((e) => e.name !== env);
      // By default the environment before this one (what a promotion brings here), else the first other.
      if (!others.some((e) => e.name === diffState.against)) {
        const before = envOf(env).after;
        diffState.against = others.some((e) => e.name === before) ? before : others.length ? others[0].name : null;
      }
      const rels = (heads.get(env) || []).slice().reverse();
      const numbers = rels.map((r) => r.number);
      if (!numbers.includes(diffState.to)) diffState.to = (rels.find((r) => r.current) || rels[0] || {}).number || null;
      if (!numbers.includes(diffState.from)) diffState.from = (rels.find((r) => r.number !== diffState.to) || {}).number || null;
      if (diffState.mode === 'env' && !diffState.against) diffState.mode = 'current';
      if (diffState.mode === 'releases' && numbers.length < 2) diffState.mode = 'current';
      const radio = (mode, label, ...more) => h('label', { class: 'mode' },
        h('input', { type: 'radio', name: 'diff-mode', value: mode, checked: diffState.mode === mode, onchange: () => { diffState.mode = mode; fills.diff(); } }), label, ...more);
      const sel = (id, list, value, set) => h('select', { id, onchange: (ev) => { set(ev.target.value); fills.diff(); } },
        list.map(([v, label]) => h('option', { value: v, selected: String(v) === String(value) }, label)));
      const out = h('div', { class: 'diff-out' }, h('p', { class: 'muted' }, 'Comparing…'));
      put(panels.diff, h('fieldset', { class: 'diff-modes' }, h('legend', { class: 'sr' }, 'What to compare'),
        radio('current', 'The draft against the current release of ', h('b', {}, env)),
        others.length ? radio('env', '', sel('diff-against', others.map((e) => [e.name, e.name]), diffState.against, (v) => { diffState.against = v; diffState.mode = 'env'; }), ' against ', h('b', {}, env), ' (both drafts)') : null,
        numbers.length > 1 ? radio('releases', 'Release ', sel('diff-from', numbers.map((n) => [n, String(n)]), diffState.from, (v) => { diffState.from = Number(v); diffState.mode = 'releases'; }),
          ' to release ', sel('diff-to', numbers.map((n) => [n, String(n)]), diffState.to, (v) => { diffState.to = Number(v); diffState.mode = 'releases'; }), ' of ', h('b', {}, env)) : null),
      unsavedNote(), out);
      const query = diffState.mode === 'env' ? '?against=' + enc(diffState.against)
        : diffState.mode === 'releases' ? '?from=' + diffState.from + '&to=' + diffState.to : '';
      let d;
      try {
        d = await api('GET', envPath(env) + '/diff' + query, undefined, opts);
      } catch (e) {
        if (e.name === 'AbortError' || !mine()) return;
        put(out, problemBox('Could not compare', e, pick));
        return;
      }
      if (!mine()) return;
      put(out, h('div', { class: 'meta' }, h('span', {}, h('b', { class: 'diff-from' }, d.from), ' → ', h('b', { class: 'diff-to' }, d.to)),
        d.files.length ? h('span', {}, h('b', {}, d.files.length), d.files.length === 1 ? ' file differs' : ' files differ') : null), diffView(d));
    };

    // ------------------------------------------------ releases
    const decide = async (label, method, path, body, question) => {
      if (acting || (question && !confirm(question))) return;
      acting = true;
      clear(problem);
      try {
        const r = await api(method, path, body);
        outcome = r;
        toast(r.message);
      } catch (e) {
        outcome = null;
        put(problem, problemBox(label + ' failed', e, pick));
      } finally {
        acting = false;
        await loadHeads();
        if (tab === 'releases') await fills.releases();
      }
    };
    fills.releases = async () => {
      const mine = ticket('releases');
      if (!env) { put(panels.releases, noEnv()); return; }
      const e = envOf(env);
      let list, d;
      try {
        [list, d] = await Promise.all([
          api('GET', envPath(env) + '/releases', undefined, opts).catch((x) => { if (x.status === 404) return []; throw x; }),
          api('GET', envPath(env) + '/diff', undefined, opts).catch((x) => { if (x.name === 'AbortError') throw x; return x; })]);
      } catch (x) {
        if (x.name === 'AbortError' || !mine()) return;
        put(panels.releases, errorBox('Could not load the releases in ' + env, x));
        return;
      }
      if (!mine()) return;
      heads.set(env, list);
      drawEnvBar();
      const cur = list.find((r) => r.current);
      const out = outcome ? h('div', { class: 'notice outcome', 'data-outcome': outcome.outcome, role: 'status' }, h('b', {}, outcome.outcome + ': '), outcome.message) : null;
      const banners = list.filter((r) => r.state === 'pending').map((r) => h('div', { class: 'approval', role: 'region', 'aria-label': 'Release ' + r.number + ' waits', 'data-pending': r.number },
        h('div', { class: 'q' }, h('b', {}, 'Release ' + r.number + ' to ' + env + ' waits for approval'),
          h('span', {}, 'asked by ', h('strong', { class: 'asker' }, r.requested_by), ' ', h('span', { title: fmtTime(r.requested_at) }, fmtAgo(r.requested_at)),
            r.note ? ['; “', r.note, '”'] : null, r.rollback_of ? ' (a rollback to release ' + r.rollback_of + ')' : null),
          who.developer && r.requested_by === who.name ? h('div', { class: 'muted small' }, 'Someone other than you must approve it.') : null),
        who.developer && r.requested_by !== who.name ? h('button', { class: 'primary', type: 'button', id: 'approve-release', onclick: () => decide('Approve', 'POST', envPath(env) + '/releases/' + r.number + '/approve') }, 'Approve') : null,
        who.developer ? h('button', { class: 'danger', type: 'button', id: 'reject-release', onclick: () => decide('Reject', 'POST', envPath(env) + '/releases/' + r.number + '/reject', undefined, 'Reject release ' + r.number + ' to ' + env + '? It is kept in the history, rejected.') }, 'Reject') : null));
      const gray = list.find((r) => r.gray);
      const grayBanner = gray ? h('div', { class: 'notice gray', 'data-gray': gray.number }, h('b', {}, 'Release ' + gray.number + ' is out to ' + gray.instances.join(', ') + ' only. '),
        'Every other consumer keeps ' + (cur ? 'release ' + cur.number : 'the release before') + '. ',
        who.developer ? h('button', { type: 'button', id: 'release-all', onclick: () => decide('Release to everyone', 'POST', envPath(env) + '/releases', { all: true }, 'Release ' + gray.number + ' to every consumer in ' + env + '?') }, 'Release to everyone') : null) : null;
      let form = null;
      const waiting = list.find((r) => r.state === 'pending');
      if (who.developer && waiting) {
        form = h('div', { class: 'notice small', 'data-blocked': waiting.number }, 'One release waits at a time: approve or reject release ' + waiting.number + ' before releasing again.');
      } else if (who.developer) {
        const note = h('input', { id: 'release-note', placeholder: 'why (kept with the release)', autocomplete: 'off' });
        const only = h('input', { id: 'release-instances', class: 'mono', placeholder: 'every consumer', autocomplete: 'off', spellcheck: 'false' });
        const changes = !(d instanceof Error) ? (d.files.length ? diffView(d) : h('div', { class: 'empty', 'data-diff': 'none' }, 'Nothing to release: ', h('b', {}, env), ' already gets these files', cur ? ' from release ' + cur.number : '', '.'))
          : problemBox('The draft does not render in ' + env, d, pick);
        form = h('section', { class: 'panel', 'aria-label': 'Release' }, h('h2', {}, 'Release the draft to ' + env, e.protected ? protectedBadge() : null),
          h('div', { class: 'body' },
            h('p', { class: 'muted small' }, 'What changes for ', env, ' (the draft against ', cur ? 'release ' + cur.number : 'no release', '):'),
            unsavedNote(), changes,
            h('form', {
              class: 'inline-form release-form',
              onsubmit: (ev) => {
                ev.preventDefault();
                decide('Release', 'POST', envPath(env) + '/releases', { note: note.value.trim() || null, instances: only.value.split(/[\s,]+/).filter(Boolean) });
              },
            },
            h('div', { class: 'field grow' }, h('label', { for: 'release-note' }, 'Note'), note),
            h('div', { class: 'field' }, h('label', { for: 'release-instances' }, 'Only to instances ', h('span', { class: 'help' }, 'a gray release')), only),
            h('button', { class: 'primary', type: 'submit', id: 'release' }, 'Release to ' + env)),
            e.protected ? h('p', { class: 'muted small' }, env + ' is protected: the release waits until someone other than you approves it.') : null));
      }
      put(panels.releases, out, banners, grayBanner, form,
        h('section', { class: 'panel', 'aria-label': 'History' }, h('h2', {}, 'History in ' + env), releaseTable(list, cur)));
    };
    const releaseTable = (list, cur) => {
      if (!list.length) return h('div', { class: 'empty' }, 'No release in ' + env + ' yet.');
      return h('div', { class: 'scroll' }, h('table', { class: 'releases' },
        h('thead', {}, h('tr', {}, h('th', { class: 'num' }, 'Release'), h('th', {}, 'State'), h('th', {}, 'Kind'), h('th', { class: 'hide-sm' }, 'Digest'),
          h('th', { class: 'hide-sm' }, 'Note'), h('th', {}, 'Asked'), h('th', { class: 'hide-sm' }, 'Decided'), h('th', {}, h('span', { class: 'sr' }, 'Actions')))),
        // A release with the current files: nothing to compare or roll back to (the server would say so).
        h('tbody', {}, list.slice().reverse().map((r) => [r, !!cur && r.digest === cur.digest]).map(([r, same]) => h('tr', { 'data-release': r.number, 'data-state': r.state, 'data-kind': r.kind },
          h('td', { class: 'num' }, h('b', {}, r.number)),
          h('td', {}, stateBadge(RELEASE_STATE, r.state), r.current ? h('span', { class: 'tag cur' }, 'current') : null, r.gray ? h('span', { class: 'tag', title: r.instances.join(', ') }, 'gray') : null),
          h('td', { class: 'kind' }, r.kind === 'rollback' ? 'rollback to ' + r.rollback_of : r.instances.length ? 'gray: ' + r.instances.join(', ') : 'release'),
          h('td', { class: 'hide-sm' }, shortDigest(r.digest)),
          h('td', { class: 'hide-sm note' }, r.note || ''),
          h('td', { class: 'nowrap' }, r.requested_by, ' ', h('span', { class: 'muted', title: fmtTime(r.requested_at) }, fmtAgo(r.requested_at))),
          h('td', { class: 'hide-sm' }, r.decided_by ? [r.state === 'rejected' ? 'rejected by ' : 'approved by ', r.decided_by] : '', r.promoted_by ? [' to everyone by ', r.promoted_by] : ''),
          h('td', { class: 'num nowrap' },
            cur && !same ? h('button', { type: 'button', class: 'small-btn', 'data-compare': r.number, title: 'Diff release ' + r.number + ' against release ' + cur.number,
              onclick: () => { Object.assign(diffState, { mode: 'releases', from: r.number, to: cur.number }); showTab('diff'); } }, 'Diff') : null,
            who.developer && r.state === 'released' && !same && !r.gray ? h('button', {
              type: 'button', class: 'small-btn rollback', 'data-rollback': r.number,
              onclick: () => decide('Roll back', 'POST', envPath(env) + '/rollback', { to: r.number },
                'Roll back ' + name + ' in ' + env + ' to release ' + r.number + '? A new release with release ' + r.number + '’s files' + (envOf(env).protected ? ', waiting for approval (' + env + ' is protected).' : '.')),
            }, 'Roll back to ' + r.number) : null))))));
    };

    // ------------------------------------------------ audit log
    let auditEnv = '';
    fills.audit = async () => {
      const mine = ticket('audit');
      let list;
      try {
        list = await api('GET', base + '/audit', undefined, opts).catch((x) => { if (x.status === 404 && !stored && !cfg.updated_at) return []; throw x; });
      } catch (e) {
        if (e.name === 'AbortError' || !mine()) return;
        put(panels.audit, errorBox('Could not load the audit log', e));
        return;
      }
      if (!mine()) return;
      const names = [...new Set(list.map((x) => x.environment).filter(Boolean))];
      const filter = h('select', { id: 'audit-env', 'aria-label': 'Environment', onchange: (ev) => { auditEnv = ev.target.value; fills.audit(); } },
        h('option', { value: '' }, 'every change'), h('option', { value: '-', selected: auditEnv === '-' }, 'no environment (templates, shared values)'),
        names.map((n) => h('option', { value: n, selected: n === auditEnv }, n)));
      const shown = list.filter((x) => !auditEnv || (auditEnv === '-' ? !x.environment : x.environment === auditEnv)).reverse();
      put(panels.audit, h('section', { class: 'panel', 'aria-label': 'Audit log' }, h('h2', {}, 'Every change of ' + name, h('span', { class: 'spacer' }), filter),
        shown.length ? h('div', { class: 'scroll' }, h('table', { class: 'audit' },
          h('thead', {}, h('tr', {}, h('th', {}, 'When'), h('th', {}, 'Who'), h('th', {}, 'Environment'), h('th', {}, 'What'), h('th', {}, 'Detail'))),
          h('tbody', {}, shown.map((x) => h('tr', { 'data-audit': x.id, 'data-action': x.action },
            h('td', { class: 'nowrap' }, h('span', { title: fmtTime(x.at) }, fmtAgo(x.at))),
            h('td', {}, x.by),
            h('td', {}, x.environment || h('span', { class: 'muted' }, '–')),
            h('td', { class: 'action nowrap' }, x.action),
            h('td', { class: 'detail' }, x.detail))))))
          : h('div', { class: 'empty' }, 'No change yet.')));
    };

    drawMeta();
    drawEnvBar();
    drawTabs();
    await loadHeads();
    showTab(tab);
  }

  // ---------------------------------------------------------------- start

  // The connection module (conn.js) is loaded before the first page: it must be in the
  // browser before the server can go away. When the server answers again after it was
  // away, the page on screen is loaded again (unless it holds unsaved changes).
  import('/assets/conn.js').then((m) => {
    connModule = m;
    conn = m.createConnection({
      onBack: () => {
        toast('Connected to the server again');
        if (page && page.unsaved && page.unsaved()) return;
        render();
      },
    });
  }).catch(() => { /* without it the pages work, only without the banner */ }).finally(render);
})();
