// @ts-check
// Kiln web UI: approvals. The "Waiting for approval" page (GET /approvals: every paused run,
// its stage and question, its effective params with defaults marked, how long it has waited;
// approve or reject with a comment), the approval box of a run's page (with the same comment
// field, used by pages/run.js) and the decisions a run recorded, with their comments.

import { api, errorBox, followEvents } from '../lib/api.js';
import { badge, clear, enc, h, put, toast } from '../lib/dom.js';
import { fmtAgo, fmtDuration, fmtTime } from '../lib/format.js';
import { later, setTitle } from '../lib/router.js';

/** Longest comment the server keeps (kiln_store::MAX_COMMENT_CHARS). */
const MAX_COMMENT = 4000;

/** A comment field: a labelled textarea (`id` unique on the page). */
function commentField(id) {
  const input = h('textarea', { id, name: 'comment', rows: 2, maxlength: MAX_COMMENT, placeholder: 'Why (optional, stored with the decision)' });
  return { input, el: h('div', { class: 'field comment' }, h('label', { for: id }, 'Comment'), input) };
}

/** POSTs a decision on `stage` of run `id`. */
function decide(id, stage, decision, comment) {
  const body = { decision };
  if (comment.trim()) body.comment = comment.trim();
  return api('POST', '/runs/' + enc(id) + '/stages/' + enc(stage) + '/decision', body);
}

/**
 * The box of a run's page while it waits at a stage: the question, a comment field, Approve
 * and Reject. `act(label, done, method, path, body)` is the page's action runner.
 * @param {import('../lib/api-types.js').RunDetail} r
 * @param {(label: string, done: string, method: string, path: string, body: unknown) => unknown} act
 */
export function approvalBox(r, act) {
  /** @type {Partial<import('../lib/api-types.js').StageInfo>} */
  const st = r.stages.find((x) => x.name === r.paused_at) || {};
  const c = commentField('approval-comment');
  const path = '/runs/' + enc(r.id) + '/stages/' + enc(r.paused_at) + '/decision';
  const body = (decision) => {
    const b = { decision };
    if (c.input.value.trim()) b.comment = c.input.value.trim();
    return b;
  };
  return h('div', { class: 'approval', role: 'region', 'aria-label': 'Approval' },
    h('div', { class: 'q' }, h('b', {}, 'Stage “' + r.paused_at + '” waits for approval'), st.description || 'Approve to go on, reject to stop the run.'),
    c.el,
    h('button', { class: 'primary', type: 'button', id: 'approve', onclick: () => act('Approve', 'Approved', 'POST', path, body('approve')) }, 'Approve'),
    h('button', { class: 'danger', type: 'button', id: 'reject', onclick: () => {
      if (confirm('Reject stage ' + r.paused_at + '? The run stops.')) act('Reject', 'Rejected', 'POST', path, body('reject'));
    } }, 'Reject'));
}

/**
 * The decisions a run recorded (who, when, and what they wrote), or null when none.
 * @param {import('../lib/api-types.js').RunDetail} r
 */
export function decisions(r) {
  const decided = r.stages.filter((s) => s.decision);
  if (!decided.length) return null;
  return h('section', { class: 'panel', 'aria-label': 'Approvals', id: 'decisions' }, h('h2', {}, 'Approvals'),
    h('ul', { class: 'decisions' }, decided.map((s) => h('li', { 'data-stage': s.name },
      h('b', {}, s.name), ' ', badge(s.decision.decision), ' by ', h('b', {}, s.decision.by), ' ',
      h('span', { class: 'muted', title: fmtTime(s.decision.at) }, fmtAgo(s.decision.at)),
      s.decision.comment ? h('blockquote', { class: 'decision-comment' }, s.decision.comment) : null))));
}

/** The "Waiting for approval" page, kept fresh by the server's run events. */
export async function viewApprovals(p, el) {
  setTitle('Waiting for approval');
  el.append(h('div', { class: 'head' }, h('h1', {}, 'Waiting for approval')));
  const problem = h('div');
  const panel = h('section', { class: 'panel', 'aria-label': 'Runs waiting for approval' }, h('div', { class: 'body muted' }, 'Loading…'));
  el.append(problem, panel);
  let busy = false, shown = null;
  /** @type {import('../lib/api-types.js').PendingApproval[]} */
  let list = [];
  // Comments typed but not sent survive a redraw (keyed by run and stage).
  const typed = new Map();

  /** @param {import('../lib/api-types.js').PendingApproval} a */
  const row = (a) => {
    const key = a.run.id + '/' + a.stage;
    const c = commentField('comment-' + a.run.id);
    c.input.value = typed.get(key) || '';
    c.input.addEventListener('input', () => typed.set(key, c.input.value));
    const go = async (decision) => {
      if (busy) return;
      if (decision === 'reject' && !confirm('Reject stage ' + a.stage + ' of ' + a.run.pipeline + ' #' + a.run.number + '? The run stops.')) return;
      busy = true;
      clear(problem);
      try {
        await decide(a.run.id, a.stage, decision, c.input.value);
        typed.delete(key);
        toast(decision === 'approve' ? 'Approved' : 'Rejected');
      } catch (e) {
        problem.append(errorBox((decision === 'approve' ? 'Approve' : 'Reject') + ' failed', e));
      } finally {
        busy = false;
        shown = null;
        load();
      }
    };
    const params = Object.entries(a.params);
    return h('tr', { 'data-run': a.run.id, 'data-stage': a.stage },
      h('td', {}, h('a', { href: '/runs/' + a.run.id }, a.run.project + '/' + a.run.pipeline + '#' + a.run.number),
        h('div', { class: 'muted small' }, 'by ' + a.run.triggered_by)),
      h('td', {}, h('b', {}, a.stage), a.description ? h('div', { class: 'muted' }, a.description) : null),
      h('td', { class: 'waited', title: 'since ' + fmtTime(a.waiting_since) }, fmtDuration(a.waited_ms)),
      h('td', { class: 'mono params' }, params.length
        ? params.map(([name, v]) => h('div', { 'data-param': name }, name + '=' + v, (a.defaults || []).includes(name) ? h('span', { class: 'muted' }, ' (default)') : null))
        : h('span', { class: 'muted' }, '–')),
      h('td', { class: 'decide' }, c.el,
        h('div', { class: 'actions' },
          h('button', { class: 'primary', type: 'button', 'data-action': 'approve', onclick: () => go('approve') }, 'Approve'),
          h('button', { class: 'danger', type: 'button', 'data-action': 'reject', onclick: () => go('reject') }, 'Reject'))));
  };

  const draw = () => {
    const key = JSON.stringify(list.map((a) => [a.run.id, a.stage]));
    if (key === shown) {
      // The same runs: only the waiting times move (keeps focus and typed comments).
      for (const a of list) {
        const td = panel.querySelector('tr[data-run="' + CSS.escape(a.run.id) + '"] td.waited');
        if (td) td.textContent = fmtDuration(a.waited_ms);
      }
      return;
    }
    shown = key;
    if (!list.length) {
      put(panel, h('div', { class: 'empty' }, 'No run waits for approval. A workflow asks for one with a stage of ',
        h('code', {}, 'approval:'), ' (see docs/workflow.md).'));
      return;
    }
    put(panel, h('div', { class: 'scroll' }, h('table', { class: 'approvals' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Run'), h('th', {}, 'Stage'), h('th', {}, 'Waiting'), h('th', {}, 'Params'), h('th', {}, 'Decision'))),
      h('tbody', {}, list.map(row)))));
  };

  let loading = null, again = false;
  const load = async () => {
    if (loading) { again = true; return loading; }
    loading = (async () => {
      do {
        again = false;
        try {
          list = await api('GET', '/approvals', undefined, { signal: p.ctl.signal });
        } catch (e) {
          if (e.name === 'AbortError') return;
          put(panel, errorBox('Could not load the runs waiting for approval', e));
          shown = null;
          return;
        }
        draw();
      } while (again && !p.ctl.signal.aborted);
    })();
    try { await loading; } finally { loading = null; }
  };
  // The waiting times move: read again every 30 s; run events (a run paused, decided,
  // ended) read again at once.
  const tick = () => { load(); later(p, 30000, tick); };
  later(p, 30000, tick);
  followEvents(p, '/api/v1/runs/events', () => { load(); }, () => { load(); },
    (msg) => { panel.dataset.live = 'off'; toast('Live updates are off: ' + msg); load(); });
}

/** @type {import('../lib/router.js').Route[]} */
export const routes = [
  { path: /^\/approvals$/, view: viewApprovals, nav: 'approvals' },
];
