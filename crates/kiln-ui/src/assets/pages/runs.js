// Kiln web UI: the runs list: filters in the URL, pages, kept fresh by the server's run events.

import { api, errorBox, followEvents } from '../lib/api.js';
import { enc, h, put, toast } from '../lib/dom.js';
import { go, later, setTitle } from '../lib/router.js';
import { loadPipelines, runTable, runTrigger } from '../lib/runs.js';

// The runs list: filters in the URL (`?pipeline=P/N&state=S&trigger=T&branch=B`), pages of
// 200 (`&before=ID`, the last run of the page before; `&per_page=N`), kept fresh by the server's run
// events (GET /runs/events), not by polling.
export async function viewRuns(p, el) {
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
  followEvents(p, '/api/v1/runs/events' + (slash > 0 ? '?project=' + enc(f.pipeline.slice(0, slash)) : ''),
    () => { load(); }, () => { load(); }, (msg) => { panel.dataset.live = 'off'; toast('Live updates are off: ' + msg); });
}

/** @type {import('../lib/router.js').Route[]} */
export const routes = [
  { path: /^\/runs$/, view: viewRuns, nav: 'runs' },
];
