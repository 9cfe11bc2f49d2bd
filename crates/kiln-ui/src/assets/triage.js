// Kiln web UI: failure triage. On a run's page, why each failed job failed without opening
// its log (GET /runs/{id}/failures: the failing script entry, its exit status, the node, the
// lines before it, linked to the log at that line); in run lists, the failing job and the
// params of each run. An ES module loaded by app.js; it gets app.js' helpers as `k`.

import { ansi } from '/assets/log_view.js';

/** The params of a run as `k=v` texts (strings as they are, others as JSON). */
export function paramTexts(params) {
  return Object.entries(params || {}).map(([key, v]) => key + '=' + (typeof v === 'string' ? v : JSON.stringify(v)));
}

/** Headers of the columns `runCells` adds to a run table. */
export function runHeads(k) {
  return [k.h('th', { class: 'hide-sm' }, 'Failed job'), k.h('th', { class: 'hide-sm' }, 'Params')];
}

/** Cells of a run's row in a run table: its first failed job (linked to its log) and its params. */
export function runCells(k, r) {
  const more = r.failed_jobs > 1 ? k.h('span', { class: 'muted' }, ' +' + (r.failed_jobs - 1)) : null;
  const failed = r.failed_job
    ? k.h('td', { class: 'hide-sm failed-job' }, k.h('a', { href: '/runs/' + r.id + '/jobs/' + k.enc(r.failed_job) }, r.failed_job), more)
    : k.h('td', { class: 'hide-sm muted' }, '–');
  const texts = paramTexts(r.params);
  const params = k.h('td', { class: 'hide-sm mono run-params', title: texts.join('\n') || null },
    texts.length ? texts.join(' ') : k.h('span', { class: 'muted' }, '–'));
  return [failed, params];
}

/**
 * Fills `box` with the failures of run `r` (a RunDetail), loaded again only when the set of
 * failed jobs changes; empties it when none failed.
 */
export async function showFailures(k, p, box, r) {
  const failed = r.jobs.filter((j) => j.state === 'failure' || j.state === 'timeout');
  const key = JSON.stringify(failed.map((j) => [j.id, j.attempts, j.state]));
  if (box.dataset.key === key) return;
  if (!failed.length) { k.clear(box); box.dataset.key = key; return; }
  let list;
  try {
    list = await k.api('GET', '/runs/' + k.enc(r.id) + '/failures', undefined, { signal: p.ctl.signal });
  } catch (e) {
    if (e.name === 'AbortError') return;
    k.put(box, k.errorBox('Could not load why the jobs failed', e));
    return;
  }
  box.dataset.key = key;
  k.put(box, k.h('section', { class: 'panel failures', 'aria-label': 'Failures', id: 'failures' },
    k.h('h2', {}, list.length === 1 ? 'Why it failed' : 'Why they failed', k.h('span', { class: 'muted small' }, list.length + ' failed job' + (list.length === 1 ? '' : 's'))),
    list.map((f) => failure(k, r, f))));
}

/** One failed job: what failed, where, and the lines before it. */
function failure(k, r, f) {
  const h = k.h;
  const log = '/runs/' + r.id + '/jobs/' + k.enc(f.job);
  const at = f.exit_line || (f.lines.length ? f.lines[f.lines.length - 1].seq : null);
  const facts = [
    f.step_status !== null && f.step_status !== undefined ? h('span', {}, 'exit status ', h('b', { class: 'exit-status' }, f.step_status)) : null,
    f.exit_code !== null && f.exit_code !== undefined && f.exit_code !== f.step_status ? h('span', {}, 'exit code ', h('b', { class: 'exit-code' }, f.exit_code)) : null,
    h('span', {}, 'node ', h('b', { class: 'node-name' }, f.node || '–')),
    f.attempt > 1 ? h('span', {}, 'attempt ', h('b', {}, f.attempt)) : null,
    f.reason ? h('span', { class: 'reason' }, f.reason) : null,
  ];
  const rows = f.lines.map((l) => {
    const mark = l.mark ? l.mark.kind : '';
    const row = h('a', { class: 'ln' + (mark ? ' mark-' + mark : '') + (l.seq === f.exit_line ? ' failed' : ''), href: log + '#L' + l.seq, 'data-seq': l.seq },
      h('span', { class: 'no' }, l.seq));
    const txt = h('span', { class: 'txt' });
    ansi(txt, l.text);
    row.append(txt);
    return row;
  });
  return h('article', { class: 'failure', 'data-job': f.job, 'aria-label': 'Failure of job ' + f.job },
    h('div', { class: 'failure-head' },
      k.badge(f.state),
      h('a', { class: 'job', href: log }, f.job),
      f.step ? h('code', { class: 'step', title: 'the script entry that failed' }, '$ ' + f.step) : h('span', { class: 'muted' }, 'no script entry failed (see its reason)')),
    h('div', { class: 'meta failure-facts' }, facts),
    rows.length
      ? h('div', { class: 'excerpt', role: 'group', 'aria-label': 'Last lines of ' + f.job }, rows)
      : h('p', { class: 'muted' }, 'Its log is empty.'),
    h('div', { class: 'failure-more' },
      at ? h('a', { href: log + '#L' + at }, 'Open the log at line ' + at) : h('a', { href: log }, 'Open the log'),
      h('span', { class: 'muted' }, ' · ' + f.log_lines + ' lines')));
}
