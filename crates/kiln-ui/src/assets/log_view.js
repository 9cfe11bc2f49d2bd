// Kiln web UI: the job log page, a windowed viewer over the paged log API. Only the lines on
// screen (and a margin around them) are in the DOM; pages of PAGE lines are fetched as they
// come into view (`GET …/logs?from=&limit=`, one seek on the server whatever the log's length)
// and at most KEEP_PAGES of them are kept. The page opens at the log's tail, or at a linked
// line or range (`#L42`, `#L10-L20`), then follows the live stream (SSE) while the view is at
// the end. A page module (its `routes` are registered by app.js).

import { readSse } from './conn.js';
import { api, errorBox, token } from './lib/api.js';
import { badge, enc, h, put, saveBlob } from './lib/dom.js';
import { FINAL, fmtDuration } from './lib/format.js';
import { go, later, setTitle } from './lib/router.js';

/** Lines per fetched page (the server's pages are by seq: page n holds seqs n*PAGE+1…). */
const PAGE = 1000;
/** Pages kept in memory at most, besides those on screen. */
const KEEP_PAGES = 48;
/** Rows rendered above and below the visible ones. */
const MARGIN = 40;
/** The tallest scroll height used: a longer log is scaled into it (Chromium lays out at most ~33 M px). */
const MAX_PX = 15000000;
/** Lines a search reads through at most before it says where it stopped (a page is PAGE lines). */
const SEARCH_PAGES = 2000;

// eslint-disable-next-line no-control-regex
const ESCAPES = /\x1b\[[0-9;]*[A-Za-z]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>]/g;

/** `t` without its terminal escapes. */
export function stripAnsi(t) { return t.replace(ESCAPES, ''); }

/** Appends text with ANSI SGR colours as spans to `parent`; other escapes are dropped. */
export function ansi(parent, text) {
  // eslint-disable-next-line no-control-regex
  const re = /\x1b\[([0-9;]*)([A-Za-z])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>]/g;
  const reset = () => ({ fg: null, bg: null, b: false, d: false, i: false, u: false, r: false, fgRgb: null, bgRgb: null });
  let st = reset();
  let last = 0, m;
  const flush = (chunk) => {
    if (!chunk) return;
    const plain = st.fg === null && st.bg === null && !st.b && !st.d && !st.i && !st.u && !st.r && !st.fgRgb && !st.bgRgb;
    if (plain) { parent.append(chunk); return; }
    // Reverse video (SGR 7) swaps the two colours; a default one becomes the log's own
    // background (a-rf) or text colour (a-rb), as a terminal shows it.
    let { fg, bg, fgRgb, bgRgb } = st;
    if (st.r) { [fg, bg, fgRgb, bgRgb] = [bg, fg, bgRgb, fgRgb]; }
    const cls = [];
    if (fg !== null) cls.push('f' + fg);
    if (bg !== null) cls.push('b' + bg);
    if (st.r && fg === null && !fgRgb) cls.push('a-rf');
    if (st.r && bg === null && !bgRgb) cls.push('a-rb');
    if (st.b) cls.push('a-b');
    if (st.d) cls.push('a-d');
    if (st.i) cls.push('a-i');
    if (st.u) cls.push('a-u');
    const sp = document.createElement('span');
    if (cls.length) sp.className = cls.join(' ');
    sp.textContent = chunk;
    if (fgRgb) sp.style.color = fgRgb;
    if (bgRgb) sp.style.background = bgRgb;
    parent.append(sp);
  };
  while ((m = re.exec(text))) {
    flush(text.slice(last, m.index));
    last = re.lastIndex;
    if (m[2] !== 'm') continue;
    const codes = (m[1] === '' ? '0' : m[1]).split(';').map(Number);
    for (let k = 0; k < codes.length; k++) {
      const c = codes[k];
      if (c === 0) st = reset();
      else if (c === 1) st.b = true;
      else if (c === 2) st.d = true;
      else if (c === 3) st.i = true;
      else if (c === 4) st.u = true;
      else if (c === 7) st.r = true;
      else if (c === 27) st.r = false;
      else if (c === 22) { st.b = false; st.d = false; }
      else if (c === 23) st.i = false;
      else if (c === 24) st.u = false;
      else if (c >= 30 && c <= 37) { st.fg = c - 30; st.fgRgb = null; }
      else if (c >= 90 && c <= 97) { st.fg = c - 90 + 8; st.fgRgb = null; }
      else if (c === 39) { st.fg = null; st.fgRgb = null; }
      else if (c >= 40 && c <= 47) { st.bg = c - 40; st.bgRgb = null; }
      else if (c >= 100 && c <= 107) { st.bg = c - 100 + 8; st.bgRgb = null; }
      else if (c === 49) { st.bg = null; st.bgRgb = null; }
      else if (c === 38 || c === 48) {
        let colour = null;
        if (codes[k + 1] === 5 && k + 2 < codes.length) { colour = xterm256(codes[k + 2]); k += 2; }
        else if (codes[k + 1] === 2 && k + 4 < codes.length) { colour = rgb(codes[k + 2], codes[k + 3], codes[k + 4]); k += 4; }
        if (colour && c === 38) { st.fg = colour.idx === undefined ? null : colour.idx; st.fgRgb = colour.idx === undefined ? colour.css : null; }
        if (colour && c === 48) { st.bg = colour.idx === undefined ? null : colour.idx; st.bgRgb = colour.idx === undefined ? colour.css : null; }
      }
    }
  }
  flush(text.slice(last));
}
function rgb(r, g, b) {
  const c = (v) => Math.max(0, Math.min(255, v | 0));
  return { css: 'rgb(' + c(r) + ',' + c(g) + ',' + c(b) + ')' };
}
function xterm256(n) {
  if (n < 16) return { idx: n };
  if (n < 232) {
    n -= 16;
    const v = (x) => (x ? 55 + x * 40 : 0);
    return rgb(v(Math.floor(n / 36)), v(Math.floor(n / 6) % 6), v(n % 6));
  }
  const g = 8 + (n - 232) * 10;
  return rgb(g, g, g);
}

/**
 * Reads an SSE stream through fetch() (so the Authorization header is sent), calling
 * onEvent(type, data, id); resumes with Last-Event-ID after a dropped connection until an
 * `end` event, the page leaving, or a refusal. `lastId`: the last event already seen (sent
 * as Last-Event-ID from the first request on), or null.
 */
export async function followSse(p, url, onEvent, onState, lastId) {
  let tries = 0;
  if (lastId === undefined) lastId = null;
  for (;;) {
    if (p.ctl.signal.aborted) return;
    const headers = { Authorization: 'Bearer ' + token(), Accept: 'text/event-stream' };
    if (lastId !== null) headers['Last-Event-ID'] = String(lastId);
    let ended = false;
    try {
      const resp = await fetch(url, { headers, signal: p.ctl.signal });
      if (!resp.ok) {
        let msg = resp.statusText;
        try { msg = (await resp.json()).error.message; } catch (_) { /* not JSON */ }
        onState('error', 'GET ' + url + ' answered ' + resp.status + ': ' + msg);
        return;
      }
      onState('live');
      tries = 0;
      await readSse(resp, (type, data, id) => {
        if (id !== null) lastId = id;
        if (type === 'end') ended = true;
        if (data.length || type === 'end') onEvent(type, data.join('\n'), id);
      });
    } catch (e) {
      if (e.name === 'AbortError' || p.ctl.signal.aborted) return;
    }
    if (ended) { onState('ended'); return; }
    tries++;
    onState('reconnecting');
    await new Promise((res) => later(p, Math.min(5000, 300 * tries), () => res(undefined)));
  }
}

/** `#L42` or `#L10-L20` as [first, last], else null. */
export function parseTarget(hash) {
  const m = /^#L(\d+)(?:-L?(\d+))?$/.exec(hash || '');
  if (!m) return null;
  const a = Number(m[1]), b = m[2] ? Number(m[2]) : a;
  return a >= 1 ? [Math.min(a, b), Math.max(a, b)] : null;
}

const pad2 = (n) => (n < 10 ? '0' : '') + n;
/** A line's time as the page shows it: local HH:MM:SS.mmm. */
function fmtClock(iso) {
  const d = new Date(iso);
  if (isNaN(d.getTime())) return '';
  return pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds()) + '.' + String(d.getMilliseconds()).padStart(3, '0');
}

/** The job log page: `/runs/ID/jobs/JOB[?attempt=N][#L42]`. */
async function viewLog(p, el, id, job) {
  const signal = p.ctl.signal;
  setTitle(job + ' log');
  const crumbs = h('div', { class: 'crumbs' }, h('a', { href: '/' }, 'Pipelines'), ' / …');
  const state = h('span');
  const head = h('div', { class: 'head' }, h('h1', {}, job), state);
  const info = h('div', { class: 'meta' });
  const problem = h('div');
  el.append(crumbs, head, info, problem);

  let d;
  try {
    d = await api('GET', '/runs/' + enc(id), undefined, { signal });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    el.append(errorBox('Could not load run ' + id, e));
    return;
  }
  const j0 = d.jobs.find((x) => x.id === job);
  if (!j0) {
    el.append(h('div', { class: 'error', role: 'alert' }, h('b', {}, 'No such job'), 'Run ' + d.pipeline + ' #' + d.number + ' has no job “' + job + '”.'));
    return;
  }
  put(crumbs, h('a', { href: '/' }, 'Pipelines'), ' / ', d.project, ' / ',
    h('a', { href: '/p/' + enc(d.project) + '/' + enc(d.pipeline) }, d.pipeline), ' / ',
    h('a', { href: '/runs/' + d.id }, '#' + d.number));
  const attempt = new URLSearchParams(location.search).get('attempt');
  const base = '/runs/' + enc(id) + '/jobs/' + enc(job) + '/logs';
  const att = attempt ? 'attempt=' + enc(attempt) : '';

  // ------------------------------------------------ the page's parts
  const log = h('div', { class: 'log', id: 'log', role: 'log', 'aria-label': 'Log of ' + job, tabindex: '0' });
  const sizer = h('div', { class: 'log-sizer' });
  const rows = h('div', { class: 'log-rows' });
  sizer.append(rows);
  log.append(sizer);
  const status = h('div', { class: 'status', 'aria-live': 'polite' }, 'Connecting…');
  const search = h('input', { type: 'search', id: 'log-search', placeholder: 'Search the log  (press / )', 'aria-label': 'Search the log' });
  const count = h('span', { class: 'count', 'aria-live': 'polite' });
  const prevBtn = h('button', { type: 'button', id: 'log-prev', title: 'Previous match (Shift+Enter)', 'aria-label': 'Previous match' }, '↑');
  const nextBtn = h('button', { type: 'button', id: 'log-next', title: 'Next match (Enter)', 'aria-label': 'Next match' }, '↓');
  const caseBox = h('input', { type: 'checkbox', id: 'log-case' });
  const follow = h('input', { type: 'checkbox', id: 'follow' });
  const wrap = h('input', { type: 'checkbox', id: 'wrap', checked: localStorage.getItem('kiln.log.wrap') !== '0' });
  const stamps = h('input', { type: 'checkbox', id: 'timestamps', checked: localStorage.getItem('kiln.log.ts') === '1' });
  const endBtn = h('button', { type: 'button', id: 'log-end', title: 'Go to the last line and follow new ones' }, 'Jump to end');
  const download = h('button', { type: 'button', id: 'download', title: 'The stored log as plain text, as the server has it' }, 'Download raw');
  const attemptSel = j0.attempts > 1
    ? h('select', { 'aria-label': 'Attempt', onchange: (ev) => go('/runs/' + id + '/jobs/' + enc(job) + '?attempt=' + ev.target.value) },
      Array.from({ length: j0.attempts }, (_, i) => h('option', { value: i + 1, selected: String(i + 1) === (attempt || String(j0.attempts)) }, 'attempt ' + (i + 1))))
    : null;
  el.append(h('div', { class: 'log-panel' },
    h('div', { class: 'log-tools' }, search, prevBtn, nextBtn, count,
      h('label', { for: 'log-case', title: 'Match case' }, caseBox, 'Aa'),
      h('label', { for: 'follow' }, follow, 'Follow'), h('label', { for: 'wrap' }, wrap, 'Wrap'),
      h('label', { for: 'timestamps' }, stamps, 'Times'), endBtn, attemptSel, download),
    log, status));
  log.classList.toggle('nowrap', !wrap.checked);
  log.classList.toggle('times', stamps.checked);

  // ------------------------------------------------ the lines known
  // Page n holds lines from `start` (n*PAGE+1, or later for the end of a log's tail) on.
  const pages = new Map(); // page number -> { start, lines: [LogLine], used: tick }
  const inflight = new Map(); // page number -> Promise
  let total = 0; // last seq known
  let tick = 0;
  let target = parseTarget(location.hash); // [first, last] highlighted
  let following = false;
  let painted = false;
  // Sections: each echoed script line (mark `command`) opens one that the next closes, and
  // a script's own markers (`::group::`, `section_start:`) open nested ones. Worked out over
  // the lines held (`sectionize`): a header line gets `sec` { collapsed, dur }, the lines of a
  // collapsed section `hid` (no rows), end markers always `hid`.
  const open = new Map(); // header seq -> collapsed (as the user left it)
  let sectioned = false; // some line takes no rows: the row math goes line by line
  const simple = () => !wrap.checked && !sectioned;

  const lineAt = (seq) => {
    const pg = pages.get(Math.floor((seq - 1) / PAGE));
    return pg && seq >= pg.start ? pg.lines[seq - pg.start] : undefined;
  };
  const pageComplete = (n) => {
    const pg = pages.get(n);
    return !!pg && pg.start === n * PAGE + 1 && pg.lines.length >= Math.min(PAGE, total - n * PAGE);
  };
  const fetchPage = (n) => {
    if (inflight.has(n)) return inflight.get(n);
    const q = '?from=' + (n * PAGE + 1) + '&limit=' + PAGE + (att ? '&' + att : '');
    const pr = api('GET', base + q, undefined, { signal }).then((pg) => {
      noteTotal(Math.max(pg.last || 0, pg.lines.length ? pg.lines[pg.lines.length - 1].seq : 0));
      const had = pages.get(n);
      if (!had || had.start !== n * PAGE + 1 || had.lines.length < pg.lines.length) {
        changeRows(() => pages.set(n, { start: n * PAGE + 1, lines: pg.lines, used: ++tick }));
      }
      evict();
      schedule();
      return pages.get(n);
    }).finally(() => inflight.delete(n));
    inflight.set(n, pr);
    pr.catch((e) => {
      if (e.name === 'AbortError') return;
      put(problem, errorBox('Could not load lines ' + (n * PAGE + 1) + '–' + ((n + 1) * PAGE) + ' of the log', e));
    });
    return pr;
  };
  /** The log's last PAGE lines (`?tail=`), in one request: the pages they fall in. */
  const fetchTail = () => api('GET', base + '?tail=' + PAGE + (att ? '&' + att : ''), undefined, { signal }).then((pg) => {
    noteTotal(Math.max(pg.last || 0, pg.lines.length ? pg.lines[pg.lines.length - 1].seq : 0));
    changeRows(() => {
      for (let i = 0; i < pg.lines.length; ) {
        const n = Math.floor((pg.lines[i].seq - 1) / PAGE);
        let j = i;
        while (j < pg.lines.length && Math.floor((pg.lines[j].seq - 1) / PAGE) === n) j++;
        if (!pageComplete(n)) pages.set(n, { start: pg.lines[i].seq, lines: pg.lines.slice(i, j), used: ++tick });
        i = j;
      }
    });
    evict();
    schedule();
    return pg;
  });
  /** Drops the least recently shown pages beyond KEEP_PAGES (never the one at the tail). */
  const evict = () => {
    if (pages.size <= KEEP_PAGES) return;
    const tail = Math.floor((total - 1) / PAGE);
    const old = [...pages.entries()].filter(([n]) => n !== tail).sort((a, b) => a[1].used - b[1].used);
    changeRows(() => { for (const [n] of old.slice(0, pages.size - KEEP_PAGES)) pages.delete(n); });
  };
  /** A line from the live stream: kept when it continues a page held (or starts one). */
  const addLive = (l) => {
    const n = Math.floor((l.seq - 1) / PAGE);
    const pg = pages.get(n);
    if (pg && pg.start + pg.lines.length === l.seq) pg.lines.push(l);
    else if (!pg && (l.seq - 1) % PAGE === 0) pages.set(n, { start: l.seq, lines: [l], used: ++tick });
    noteTotal(l.seq);
    if (pg) pg.rows = undefined;
  };
  const noteTotal = (last) => {
    if (last > total) { total = last; layoutDirty = true; }
  };

  // ------------------------------------------------ geometry
  // Every line is `rowsOf` rows of rowH px: one without wrapping; with wrapping, its length
  // over the columns that fit (a monospace font), one for a line not loaded. A page's rows are
  // summed once; prefix[n] is the rows before page n.
  let rowH = 19, charW = 7.5, cols = 120, digits = 0, layoutDirty = true, prefix = [0], totalRows = 0, scale = 1;
  const measure = () => {
    digits = Math.max(4, String(total).length + 1);
    log.style.setProperty('--num', digits + 'ch');
    const probe = h('div', { class: 'ln' }, h('a', { class: 'num' }, '0'),
      stamps.checked ? h('span', { class: 'ts' }, '00:00:00.000') : null,
      h('span', { class: 'txt' }, h('span', {}, 'x'.repeat(50))));
    // Measured in a hidden box at the top of the panel: far down a long log, client rects
    // are floats too coarse for a row's height.
    const meter = h('div', { class: 'log log-meter', 'aria-hidden': 'true' }, h('div', { class: 'log-rows' }, probe));
    meter.style.width = log.clientWidth + 'px';
    log.parentNode.append(meter);
    const r = probe.getBoundingClientRect();
    const txt = probe.querySelector('.txt');
    if (r.height > 0) rowH = r.height;
    const cw = txt.firstChild.getBoundingClientRect().width / 50;
    if (cw > 0) charW = cw;
    cols = Math.max(8, Math.floor(txt.clientWidth / charW));
    meter.remove();
    for (const pg of pages.values()) pg.rows = undefined;
    layoutDirty = true;
  };
  const plainLen = (l) => {
    if (l.n === undefined) {
      const t = stripAnsi(l.text);
      let n = t.length;
      for (let i = t.indexOf('\t'); i >= 0; i = t.indexOf('\t', i + 1)) n += 7;
      l.n = n;
    }
    return l.n;
  };
  const rowsOf = (l) => (l && l.hid ? 0 : !wrap.checked || !l ? 1 : Math.max(1, Math.ceil(plainLen(l) / cols)));
  const pageRows = (n) => {
    const size = Math.max(0, Math.min(PAGE, total - n * PAGE));
    const pg = pages.get(n);
    if (simple() || !pg) return size;
    if (pg.rows === undefined || pg.rowsFor !== size) {
      let r = size - pg.lines.length;
      for (const l of pg.lines) r += rowsOf(l);
      pg.rows = r; pg.rowsFor = size;
    }
    return pg.rows;
  };
  const layout = () => {
    if (!layoutDirty) return;
    layoutDirty = false;
    const n = Math.ceil(total / PAGE);
    if (simple()) {
      totalRows = total;
    } else {
      prefix = new Array(n + 1);
      prefix[0] = 0;
      for (let i = 0; i < n; i++) prefix[i + 1] = prefix[i] + pageRows(i);
      totalRows = prefix[n];
    }
    const real = totalRows * rowH;
    scale = Math.max(1, real / MAX_PX);
    sizer.style.height = Math.ceil(real / scale) + 'px';
  };
  /** Rows before line `seq`. */
  const rowOf = (seq) => {
    if (simple()) return seq - 1;
    const n = Math.floor((seq - 1) / PAGE);
    let r = prefix[Math.min(n, prefix.length - 1)];
    const upto = seq - 1 - n * PAGE;
    if (!pages.has(n)) return r + upto;
    for (let i = 0; i < upto; i++) r += rowsOf(lineAt(n * PAGE + 1 + i));
    return r;
  };
  /** The line at row `r`. */
  const seqAtRow = (r) => {
    r = Math.max(0, Math.min(r, Math.max(0, totalRows - 1)));
    if (simple()) return Math.min(total, Math.floor(r) + 1);
    let lo = 0, hi = prefix.length - 2;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (prefix[mid] <= r) lo = mid; else hi = mid - 1; }
    let at = prefix[lo], seq = lo * PAGE + 1;
    if (!pages.has(lo)) return Math.min(total, seq + Math.floor(r - at));
    const end = Math.min(total, (lo + 1) * PAGE);
    for (; seq <= end; seq++) { const n = rowsOf(lineAt(seq)); if (at + n > r) return seq; at += n; }
    return Math.min(total, seq + Math.floor(r - at));
  };
  /**
   * Runs `f`, which changes rows (a page loaded or dropped, the columns), keeping the line at
   * the top of the view where it is (unless following: then the end stays in view).
   */
  const changeRows = (f) => {
    if (simple() && !changesSections || following || !total) { f(); sectionize(); layoutDirty = true; return; }
    layout();
    const realTop = log.scrollTop * scale;
    const anchor = seqAtRow(realTop / rowH);
    const off = realTop - rowOf(anchor) * rowH;
    f();
    sectionize();
    for (const pg of pages.values()) pg.rows = undefined;
    layoutDirty = true;
    layout();
    setScroll((rowOf(anchor) * rowH + off) / scale);
  };

  /** Works out sections over the runs of consecutive lines held (see `open`). */
  const sectionize = () => {
    let any = false, stack = [], next = 0;
    const close = (upto, at) => {
      while (stack.length > upto) {
        const s = stack.pop();
        s.l.sec.dur = at ? Date.parse(at.time) - Date.parse(s.l.time) : undefined;
      }
    };
    for (const n of [...pages.keys()].sort((a, b) => a - b)) {
      const pg = pages.get(n);
      if (pg.start !== next) { close(0); } // a gap: what was open is not known
      for (const l of pg.lines) {
        const seq = l.seq;
        const m = l.mark;
        const hidden = stack.some((x) => x.l.sec.collapsed);
        let hid = hidden;
        if (m && (m.kind === 'command' || m.kind === 'exit')) {
          close(0, l);
          hid = false;
        }
        if (m && m.kind === 'section_end') {
          hid = true;
          const i = m.name ? stack.findLastIndex((x) => x.name === m.name) : stack.findLastIndex((x) => x.name !== null);
          if (i >= 0) close(i, l);
        }
        if (m && (m.kind === 'command' || m.kind === 'section_start')) {
          const def = m.kind === 'section_start' && m.collapsed;
          l.sec = { collapsed: open.has(seq) ? open.get(seq) : def, dur: l.sec ? l.sec.dur : undefined };
          stack.push({ l, name: m.kind === 'command' ? null : m.name });
        } else if (l.sec) {
          l.sec = undefined;
        }
        if (hid !== !!l.hid) { l.hid = hid; pg.rows = undefined; }
        if (hid || (l.sec && l.sec.collapsed)) any = true;
      }
      next = pg.start + pg.lines.length;
    }
    if (any !== sectioned) { sectioned = any; layoutDirty = true; }
  };
  let changesSections = false;
  /** Collapses or expands the section whose header is line `seq`. */
  const toggleSection = (seq) => {
    const l = lineAt(seq);
    if (!l || !l.sec) return;
    open.set(seq, !l.sec.collapsed);
    changesSections = true;
    changeRows(() => {});
    changesSections = false;
    for (const pg of pages.values()) pg.rows = undefined;
    for (const n of [...rowEls.keys()]) rowEls.delete(n);
    layoutDirty = true;
    schedule();
  };

  // ------------------------------------------------ scrolling
  let autoScroll = -1;
  const setScroll = (top) => {
    const max = log.scrollHeight - log.clientHeight;
    const t = Math.max(0, Math.min(max, Math.round(top)));
    if (Math.abs(log.scrollTop - t) >= 1) { autoScroll = t; log.scrollTop = t; }
  };
  const atEnd = () => log.scrollHeight - log.scrollTop - log.clientHeight < Math.max(24, rowH);
  const scrollToEnd = () => { layout(); setScroll(log.scrollHeight); };
  const scrollToSeq = (seq) => {
    layout();
    setScroll((rowOf(seq) * rowH - (log.clientHeight - rowH) / 2) / scale);
  };
  const setFollow = (on) => {
    following = on;
    follow.checked = on;
    if (on) { scrollToEnd(); schedule(); }
  };
  follow.addEventListener('change', () => setFollow(follow.checked));
  endBtn.addEventListener('click', () => setFollow(true));
  log.addEventListener('scroll', () => {
    const programmatic = autoScroll >= 0 && Math.abs(log.scrollTop - autoScroll) < 2;
    autoScroll = -1;
    if (!programmatic && following && !atEnd()) { following = false; follow.checked = false; }
    schedule();
  }, { passive: true });
  wrap.addEventListener('change', () => {
    localStorage.setItem('kiln.log.wrap', wrap.checked ? '1' : '0');
    log.classList.toggle('nowrap', !wrap.checked);
    relayoutKeeping();
  });
  stamps.addEventListener('change', () => {
    localStorage.setItem('kiln.log.ts', stamps.checked ? '1' : '0');
    log.classList.toggle('times', stamps.checked);
    relayoutKeeping();
  });
  /** Measures again (the columns changed) keeping the first line in view where it is. */
  const relayoutKeeping = () => {
    layout();
    const realTop = log.scrollTop * scale;
    const anchor = total ? seqAtRow(realTop / rowH) : 1;
    const off = total ? Math.min(rowH, realTop - rowOf(anchor) * rowH) : 0;
    measure();
    for (const n of [...rowEls.keys()]) rowEls.delete(n);
    layout();
    if (following) scrollToEnd(); else setScroll((rowOf(anchor) * rowH + off) / scale);
    schedule();
  };
  if (window.ResizeObserver) {
    let width = 0;
    const ro = new ResizeObserver(() => { if (log.clientWidth !== width) { width = log.clientWidth; if (wrap.checked) relayoutKeeping(); else schedule(); } });
    ro.observe(log);
    signal.addEventListener('abort', () => ro.disconnect());
  }

  // ------------------------------------------------ drawing
  const rowEls = new Map(); // seq -> { el, key }
  let needle = '', curHit = 0, scheduled = false;
  const schedule = () => { if (!scheduled) { scheduled = true; requestAnimationFrame(draw); } };
  const plainOf = (l) => {
    if (l.p === undefined) l.p = stripAnsi(l.text);
    return l.p;
  };
  const matches = (l) => {
    if (!needle || !l) return false;
    return caseBox.checked ? plainOf(l).includes(needle) : plainOf(l).toLowerCase().includes(needle.toLowerCase());
  };
  const rowFor = (seq) => {
    const l = lineAt(seq);
    const key = (l ? 1 : 0) + (stamps.checked ? 2 : 0) + (l && l.sec ? (l.sec.collapsed ? 4 : 8) + ':' + l.sec.dur : '');
    const had = rowEls.get(seq);
    if (had && had.key === key) return had.el;
    const num = h('a', { class: 'num', href: '#L' + seq, tabindex: '-1', 'aria-hidden': 'true' }, String(seq));
    const txt = h('span', { class: 'txt' });
    const el = h('div', { class: 'ln', id: 'L' + seq, 'data-seq': seq }, num);
    if (l) {
      if (l.stream === 'stderr') el.classList.add('err');
      if (stamps.checked) el.append(h('span', { class: 'ts', title: l.time }, fmtClock(l.time)));
      const m = l.mark;
      if (m) el.classList.add('mark-' + m.kind);
      if (l.sec) {
        el.classList.add('sec');
        el.append(h('button', { type: 'button', class: 'sec-toggle', 'aria-expanded': String(!l.sec.collapsed), 'aria-label': (l.sec.collapsed ? 'Expand' : 'Collapse') + ' section', 'data-seq': seq }, l.sec.collapsed ? '▸' : '▾'));
      }
      if (m && m.kind === 'section_start') { const t = h('b'); ansi(t, m.title || m.name || ''); txt.append(t); } else ansi(txt, l.text);
    } else {
      el.classList.add('loading');
      if (stamps.checked) el.append(h('span', { class: 'ts' }, ''));
      txt.textContent = '…';
    }
    el.append(txt);
    if (l && l.sec && l.sec.dur !== undefined) el.append(h('span', { class: 'sec-dur', title: 'Duration' }, fmtDuration(l.sec.dur)));
    rowEls.set(seq, { el, key });
    return el;
  };
  function draw() {
    scheduled = false;
    if (signal.aborted) return;
    if (Math.max(4, String(total).length + 1) !== digits) measure(); // wider line numbers
    layout();
    if (following) setScroll(log.scrollHeight);
    if (!total) { rows.replaceChildren(); return; }
    const realTop = log.scrollTop * scale;
    const first = seqAtRow(realTop / rowH);
    const last = seqAtRow((realTop + log.clientHeight) / rowH);
    const from = Math.max(1, first - MARGIN), to = Math.min(total, last + MARGIN);
    const want = [];
    const keep = new Set();
    ++tick;
    for (let n = Math.floor((from - 1) / PAGE); n <= Math.floor((to - 1) / PAGE); n++) {
      const pg = pages.get(n);
      if (pg) pg.used = tick;
      if (!pageComplete(n) && !(following && n === Math.floor((total - 1) / PAGE) && pg)) fetchPage(n);
    }
    let loaded = 0;
    for (let seq = from; seq <= to; seq++) {
      const l = lineAt(seq);
      if (l && l.hid) continue;
      const el = rowFor(seq);
      if (l) loaded++;
      el.classList.toggle('hit', matches(l));
      el.classList.toggle('cur', !!needle && seq === curHit);
      el.classList.toggle('target', !!target && seq >= target[0] && seq <= target[1]);
      want.push(el);
      keep.add(seq);
    }
    for (const seq of [...rowEls.keys()]) if (!keep.has(seq)) rowEls.delete(seq);
    rows.replaceChildren(...want);
    rows.style.top = Math.round(log.scrollTop - realTop + rowOf(from) * rowH) + 'px';
    if (loaded && !painted) {
      painted = true;
      // For the benchmark: the first screen of lines is laid out now, painted at the next frame.
      requestAnimationFrame(() => performance.mark('kiln-log-painted'));
    }
  }

  // ------------------------------------------------ line links
  const goTarget = (t, center) => {
    target = t;
    if (!t) { schedule(); return; }
    setFollow(false);
    if (center) {
      const n = Math.floor((t[0] - 1) / PAGE);
      const show = () => { scrollToSeq(t[0]); schedule(); };
      if (pageComplete(n) || t[0] > total) show(); else fetchPage(n).then(show, () => {});
    }
    schedule();
  };
  rows.addEventListener('click', (ev) => {
    const tg = ev.target.closest('button.sec-toggle');
    if (tg) { toggleSection(Number(tg.dataset.seq)); return; }
    const a = ev.target.closest('a.num');
    if (!a) return;
    ev.preventDefault();
    const seq = Number(a.closest('.ln').dataset.seq);
    const t = ev.shiftKey && target ? [Math.min(target[0], seq), Math.max(target[0], seq)] : [seq, seq];
    history.replaceState(null, '', location.pathname + location.search + (t[0] === t[1] ? '#L' + t[0] : '#L' + t[0] + '-L' + t[1]));
    goTarget(t, false);
  });
  window.addEventListener('hashchange', () => goTarget(parseTarget(location.hash), true), { signal });

  // ------------------------------------------------ search
  // Over the pages held, then on through the log a page at a time (the server's pages), so a
  // match anywhere is found; `i of n` when the whole log is held, else the line it is on.
  let searchGen = 0;
  const heldAll = () => { for (let n = 0; n * PAGE < total; n++) if (!pageComplete(n)) return false; return true; };
  const allHits = () => {
    const out = [];
    for (let seq = 1; seq <= total; seq++) if (matches(lineAt(seq))) out.push(seq);
    return out;
  };
  const showCount = () => {
    if (!needle) { count.textContent = ''; return; }
    if (heldAll()) {
      const hits = allHits();
      const i = hits.indexOf(curHit);
      count.textContent = hits.length ? (i >= 0 ? (i + 1) + ' of ' + hits.length : hits.length + ' matches') : 'no match';
    } else if (curHit) {
      count.textContent = 'line ' + curHit;
    }
  };
  /** The next match after `seq` (dir 1) or before it (dir -1), wrapping round once; null if none. */
  const findFrom = async (seq, dir, gen) => {
    let s = seq, seen = 0, steps = 0;
    while (seen < total) {
      s += dir;
      if (s > total) s = 1; else if (s < 1) s = total;
      const n = Math.floor((s - 1) / PAGE);
      if (!pageComplete(n)) {
        if (++steps > SEARCH_PAGES) return null;
        count.textContent = 'searching… line ' + s;
        try { await fetchPage(n); } catch (_) { return null; }
        if (gen !== searchGen) return undefined;
        if (!pageComplete(n)) return null;
      }
      // The rest of this page in the direction of travel.
      const end = dir > 0 ? Math.min(total, (n + 1) * PAGE) : n * PAGE + 1;
      for (;;) {
        seen++;
        if (matches(lineAt(s))) return s;
        if (s === end || seen >= total) break;
        s += dir;
      }
      pages.get(n).used = ++tick;
    }
    return null;
  };
  const runSearch = async (dir, fresh) => {
    needle = search.value;
    const gen = ++searchGen;
    if (!needle) { curHit = 0; showCount(); schedule(); return; }
    layout();
    const realTop = log.scrollTop * scale;
    const from = fresh ? Math.max(0, seqAtRow(realTop / rowH) - 1) : curHit || seqAtRow(realTop / rowH);
    const found = await findFrom(from, dir, gen);
    if (found === undefined || gen !== searchGen) return;
    if (found === null) { curHit = 0; count.textContent = 'no match'; schedule(); return; }
    curHit = found;
    setFollow(false);
    const n = Math.floor((found - 1) / PAGE);
    if (!pageComplete(n)) await fetchPage(n).catch(() => {});
    scrollToSeq(found);
    showCount();
    schedule();
  };
  search.addEventListener('input', () => runSearch(1, true));
  caseBox.addEventListener('change', () => runSearch(1, true));
  search.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') { ev.preventDefault(); runSearch(ev.shiftKey ? -1 : 1, false); } });
  nextBtn.addEventListener('click', () => runSearch(1, false));
  prevBtn.addEventListener('click', () => runSearch(-1, false));
  document.addEventListener('keydown', (ev) => {
    if (ev.key === '/' && document.activeElement !== search && !/INPUT|SELECT|TEXTAREA/.test(document.activeElement.tagName)) { ev.preventDefault(); search.focus(); }
  }, { signal });

  download.addEventListener('click', async () => {
    try {
      const resp = await api('GET', base + '/download' + (att ? '?' + att : ''), undefined, { signal, raw: true });
      saveBlob(await resp.blob(), d.pipeline + '-' + d.number + '-' + job + (attempt ? '-' + attempt : '') + '.log');
    } catch (e) {
      if (e.name !== 'AbortError') put(problem, errorBox('Download failed', e));
    }
  });

  // ------------------------------------------------ the job's state
  const refreshJob = async (loop = true) => {
    try {
      d = await api('GET', '/runs/' + enc(id), undefined, { signal });
    } catch (e) {
      if (e.name !== 'AbortError' && loop) later(p, 5000, refreshJob);
      return;
    }
    const j = d.jobs.find((x) => x.id === job);
    put(state, badge(j.state));
    put(info, h('span', {}, 'stage ', h('b', {}, j.stage)),
      h('span', {}, 'attempt ', h('b', {}, attempt || j.attempts || '–')),
      h('span', {}, 'duration ', h('b', {}, fmtDuration(j.duration_ms))),
      h('span', {}, 'lines ', h('b', { id: 'log-lines' }, total.toLocaleString('en'))),
      j.exit_code !== null ? h('span', {}, 'exit code ', h('b', {}, j.exit_code)) : null,
      j.reason ? h('span', {}, h('b', {}, j.reason)) : null);
    if (j.attempts === 0 && (FINAL.includes(j.state) || j.state === 'skipped')) {
      status.textContent = 'This job did not run' + (j.reason ? ': ' + j.reason : '.');
      status.dataset.state = 'not-run';
    }
    if (loop && !FINAL.includes(j.state) && j.state !== 'skipped') later(p, 1500, refreshJob);
  };
  refreshJob();

  // ------------------------------------------------ open: a first page, then the stream
  measure();
  let firstPage;
  try {
    firstPage = await (target ? fetchPage(Math.floor((target[0] - 1) / PAGE)) : fetchTail());
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    if (!target) put(problem, errorBox('Could not load the end of the log', e)); // else fetchPage showed it
    return;
  }
  if (!firstPage) return;
  if (target && target[0] <= total) {
    goTarget(target, true);
  } else {
    target = null;
    setFollow(true);
  }
  schedule();

  let batch = [];
  const flushLive = () => {
    const lines = batch;
    batch = [];
    changeRows(() => { for (const l of lines) addLive(l); });
    const shown = document.getElementById('log-lines');
    if (shown) shown.textContent = total.toLocaleString('en');
    if (needle) showCount();
    schedule();
  };
  const url = '/api/v1' + base + '/stream' + (att ? '?' + att : '');
  followSse(p, url, (type, data) => {
    if (status.dataset.state === 'not-run') return;
    if (type === 'line') {
      if (!batch.length) requestAnimationFrame(flushLive);
      batch.push(JSON.parse(data));
    } else if (type === 'error') {
      problem.append(h('div', { class: 'error', role: 'alert' }, h('b', {}, 'The log stream reported an error'), data));
    }
  }, (st, msg) => {
    if (status.dataset.state === 'not-run') return;
    status.textContent = {
      live: 'Live: new lines appear as the job writes them.',
      ended: 'End of log.',
      reconnecting: 'Connection lost; reconnecting…',
    }[st] || '';
    status.dataset.state = st;
    if (st === 'ended') {
      if (!total && !batch.length) status.textContent = 'This job wrote no output.';
      refreshJob(false); // the job's final state, without waiting for the next poll
    }
    if (st === 'error') {
      status.textContent = '';
      problem.append(h('div', { class: 'error', role: 'alert' }, h('b', {}, 'Could not load the log'), msg));
    }
  }, total);
}

/** @type {import('./lib/router.js').Route[]} */
export const routes = [
  { path: /^\/runs\/([^/]+)\/jobs\/([^/]+)$/, view: viewLog, nav: 'runs' },
];
