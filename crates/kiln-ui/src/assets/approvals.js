// Kiln web UI: approvals. The "Waiting for approval" page (GET /approvals: every paused run,
// its stage and question, its effective params with defaults marked, how long it has waited;
// approve or reject with a comment), the approval box of a run's page (with the same comment
// field) and the decisions a run recorded, with their comments. An ES module loaded by app.js;
// it gets app.js' helpers as `k`.

/** Longest comment the server keeps (kiln_store::MAX_COMMENT_CHARS). */
const MAX_COMMENT = 4000;

/** A comment field: a labelled textarea (`id` unique on the page). */
function commentField(k, id) {
  const input = k.h('textarea', { id, name: 'comment', rows: 2, maxlength: MAX_COMMENT, placeholder: 'Why (optional, stored with the decision)' });
  return { input, el: k.h('div', { class: 'field comment' }, k.h('label', { for: id }, 'Comment'), input) };
}

/** POSTs a decision on `stage` of run `id`. */
function decide(k, id, stage, decision, comment) {
  const body = { decision };
  if (comment.trim()) body.comment = comment.trim();
  return k.api('POST', '/runs/' + k.enc(id) + '/stages/' + k.enc(stage) + '/decision', body);
}

/**
 * The box of a run's page while it waits at a stage: the question, a comment field, Approve
 * and Reject. `act(label, done, method, path, body)` is the page's action runner.
 */
export function approvalBox(k, r, act) {
  const h = k.h;
  const st = r.stages.find((x) => x.name === r.paused_at) || {};
  const c = commentField(k, 'approval-comment');
  const path = '/runs/' + k.enc(r.id) + '/stages/' + k.enc(r.paused_at) + '/decision';
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

/** The decisions a run recorded (who, when, and what they wrote), or null when none. */
export function decisions(k, r) {
  const h = k.h;
  const decided = r.stages.filter((s) => s.decision);
  if (!decided.length) return null;
  return h('section', { class: 'panel', 'aria-label': 'Approvals', id: 'decisions' }, h('h2', {}, 'Approvals'),
    h('ul', { class: 'decisions' }, decided.map((s) => h('li', { 'data-stage': s.name },
      h('b', {}, s.name), ' ', k.badge(s.decision.decision), ' by ', h('b', {}, s.decision.by), ' ',
      h('span', { class: 'muted', title: k.fmtTime(s.decision.at) }, k.fmtAgo(s.decision.at)),
      s.decision.comment ? h('blockquote', { class: 'decision-comment' }, s.decision.comment) : null))));
}

/** The "Waiting for approval" page, kept fresh by the server's run events. */
export async function viewApprovals(k, p, el) {
  const h = k.h;
  k.setTitle('Waiting for approval');
  el.append(h('div', { class: 'head' }, h('h1', {}, 'Waiting for approval')));
  const problem = h('div');
  const panel = h('section', { class: 'panel', 'aria-label': 'Runs waiting for approval' }, h('div', { class: 'body muted' }, 'Loading…'));
  el.append(problem, panel);
  let busy = false, shown = null, list = [];
  // Comments typed but not sent survive a redraw (keyed by run and stage).
  const typed = new Map();

  const row = (a) => {
    const key = a.run.id + '/' + a.stage;
    const c = commentField(k, 'comment-' + a.run.id);
    c.input.value = typed.get(key) || '';
    c.input.addEventListener('input', () => typed.set(key, c.input.value));
    const go = async (decision) => {
      if (busy) return;
      if (decision === 'reject' && !confirm('Reject stage ' + a.stage + ' of ' + a.run.pipeline + ' #' + a.run.number + '? The run stops.')) return;
      busy = true;
      k.clear(problem);
      try {
        await decide(k, a.run.id, a.stage, decision, c.input.value);
        typed.delete(key);
        k.toast(decision === 'approve' ? 'Approved' : 'Rejected');
      } catch (e) {
        problem.append(k.errorBox((decision === 'approve' ? 'Approve' : 'Reject') + ' failed', e));
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
      h('td', { class: 'waited', title: 'since ' + k.fmtTime(a.waiting_since) }, k.fmtDuration(a.waited_ms)),
      h('td', { class: 'mono params' }, params.length
        ? params.map(([name, v]) => h('div', { 'data-param': name }, name + '=' + v, a.defaults.includes(name) ? h('span', { class: 'muted' }, ' (default)') : null))
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
        if (td) td.textContent = k.fmtDuration(a.waited_ms);
      }
      return;
    }
    shown = key;
    if (!list.length) {
      k.put(panel, h('div', { class: 'empty' }, 'No run waits for approval. A workflow asks for one with a stage of ',
        h('code', {}, 'approval:'), ' (see docs/workflow.md).'));
      return;
    }
    k.put(panel, h('div', { class: 'scroll' }, h('table', { class: 'approvals' },
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
          list = await k.api('GET', '/approvals', undefined, { signal: p.ctl.signal });
        } catch (e) {
          if (e.name === 'AbortError') return;
          k.put(panel, k.errorBox('Could not load the runs waiting for approval', e));
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
  const tick = () => { load(); k.later(p, 30000, tick); };
  k.later(p, 30000, tick);
  const live = k.followEvents(p, '/api/v1/runs/events', () => { load(); }, () => { load(); },
    (msg) => { panel.dataset.live = 'off'; k.toast('Live updates are off: ' + msg); });
  if (!live) await load();
}
