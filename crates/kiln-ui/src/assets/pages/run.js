// Kiln web UI: A run's page: state, actions, why its jobs failed (lib/triage.js), the approval
// box and decisions (pages/approvals.js), the graph, the jobs, the artifacts.

import { api, errorBox } from '../lib/api.js';
import { badge, clear, enc, h, put, saveBlob, toast, truncate } from '../lib/dom.js';
import { FINAL, fmtAgo, fmtBytes, fmtDuration, fmtTime } from '../lib/format.js';
import { jobFacts, legend, runGraph } from '../lib/graph.js';
import { projectPath } from '../lib/project.js';
import { go, later, setTitle } from '../lib/router.js';
import { paramTexts, showFailures } from '../lib/triage.js';
import { approvalBox, decisions } from './approvals.js';

export async function viewRun(p, el, id) {
  const crumbs = h('div', { class: 'crumbs' });
  const head = h('div', { class: 'head' });
  const meta = h('div', { class: 'meta' });
  const banner = h('div');
  const problem = h('div');
  const failures = h('div'); // why its jobs failed
  const decided = h('div'); // its approvals' decisions and comments
  const graph = h('div', { class: 'graph-wrap' });
  const jobs = h('div');
  const arts = h('div', { class: 'body' }, h('p', { class: 'muted' }, 'Loading…'));
  el.append(crumbs, head, meta, problem, banner, failures,
    h('section', { class: 'panel', 'aria-label': 'Graph' }, h('h2', {}, 'Graph'), graph, legend()),
    h('section', { class: 'panel', 'aria-label': 'Jobs' }, h('h2', {}, 'Jobs'), jobs),
    h('section', { class: 'panel', 'aria-label': 'Artifacts' }, h('h2', {}, 'Artifacts'), arts), decided);
  let lastKey = null, artsLoaded = false, busy = false;
  /** @type {import('../lib/api-types.js').RunDetail | null} */
  let shownRun = null;
  // The graph: matrix groups opened by a click stay open across refreshes; stages as rows on
  // a phone's width, as columns on a wider screen (drawn again when that changes).
  const narrow = matchMedia('(max-width: 599px)');
  const open = new Set();
  const drawGraph = () => {
    if (!shownRun) return;
    const focused = document.activeElement && graph.contains(document.activeElement)
      ? document.activeElement.getAttribute('data-group') : null;
    put(graph, runGraph(shownRun, {
      open, vertical: narrow.matches,
      toggle: (name) => { if (open.has(name)) open.delete(name); else open.add(name); drawGraph(); },
    }));
    const again = focused && graph.querySelector('[data-group="' + CSS.escape(focused) + '"].node');
    if (again) /** @type {SVGElement} */ (again).focus();
  };
  narrow.addEventListener('change', drawGraph);
  p.ctl.signal.addEventListener('abort', () => narrow.removeEventListener('change', drawGraph));

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
    const key = JSON.stringify([r.state, r.paused_at, r.jobs.map((j) => [j.state, j.attempts, j.duration_ms === null, j.waiting, j.node, j.placement && j.placement.node]), r.stages.map((x) => x.gate)]);
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
      Object.keys(r.params || {}).length ? h('span', {}, 'params ', h('b', { class: 'mono' }, paramTexts(r.params).join(' '))) : null,
      r.retry_of ? h('span', {}, 'retry of ', h('a', { href: '/runs/' + r.retry_of }, 'an earlier run')) : null,
      r.reason ? h('span', {}, 'reason ', h('b', {}, r.reason)) : null);
    if (key !== lastKey) {
      lastKey = key;
      clear(banner);
      if (r.paused_at) banner.append(approvalBox(r, act));
      put(decided, decisions(r));
      showFailures(p, failures, r);
      shownRun = r;
      drawGraph();
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

function jobTable(r) {
  return h('div', { class: 'scroll' }, h('table', {},
    h('thead', {}, h('tr', {}, h('th', {}, 'Job'), h('th', {}, 'State'), h('th', { class: 'hide-sm' }, 'Stage'),
      h('th', { class: 'num hide-sm' }, 'Attempts'), h('th', { class: 'num hide-sm' }, 'Exit'), h('th', { class: 'hide-sm' }, 'Node'), h('th', { class: 'num hide-sm' }, 'Queued'),
      h('th', { class: 'num' }, 'Duration'), h('th', { class: 'hide-sm' }, 'Note'))),
    h('tbody', {}, r.jobs.map((j) => [j, jobFacts(r, j)]).map(([j, f]) => h('tr', { 'data-job': j.id },
      h('td', {}, h('a', { href: '/runs/' + r.id + '/jobs/' + enc(j.id) }, j.id)),
      h('td', {}, badge(j.state)),
      h('td', { class: 'hide-sm' }, j.stage),
      h('td', { class: 'num hide-sm' }, j.attempts),
      h('td', { class: 'num hide-sm' }, j.exit_code === null ? '–' : j.exit_code),
      h('td', { class: 'hide-sm mono node' }, f.node || '–'),
      h('td', { class: 'num hide-sm queued' }, f.queued === null ? '–' : fmtDuration(f.queued)),
      h('td', { class: 'num' }, fmtDuration(j.duration_ms)),
      h('td', { class: 'hide-sm muted note' }, j.reason
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

/** @type {import('../lib/router.js').Route[]} */
export const routes = [
  { path: /^\/runs\/([^/]+)$/, view: viewRun, nav: 'runs' },
];
