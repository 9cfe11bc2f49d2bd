// @ts-check
// Kiln web UI: failure triage. On a run's page, why each failed job failed without opening
// its log (GET /runs/{id}/failures: the failing script entry, its exit status, the node, the
// lines before it, linked to the log at that line); in run tables, the failing job and the
// params of each run.

import { ansi } from '../log_view.js';
import { api, errorBox } from './api.js';
import { badge, clear, enc, h, put } from './dom.js';

/**
 * The params of a run as `k=v` texts (strings as they are, others as JSON).
 * @param {Record<string, unknown> | null | undefined} params
 */
export function paramTexts(params) {
  return Object.entries(params || {}).map(([key, v]) => key + '=' + (typeof v === 'string' ? v : JSON.stringify(v)));
}

/** Headers of the columns `runCells` adds to a run table. */
export function runHeads() {
  return [h('th', { class: 'hide-sm' }, 'Failed job'), h('th', { class: 'hide-sm' }, 'Params')];
}

/**
 * Cells of a run's row in a run table: its first failed job (linked to its log) and its params.
 * @param {import('./api-types.js').RunSummary} r
 */
export function runCells(r) {
  const more = r.failed_jobs > 1 ? h('span', { class: 'muted' }, ' +' + (r.failed_jobs - 1)) : null;
  const failed = r.failed_job
    ? h('td', { class: 'hide-sm failed-job' }, h('a', { href: '/runs/' + r.id + '/jobs/' + enc(r.failed_job) }, r.failed_job), more)
    : h('td', { class: 'hide-sm muted' }, '–');
  const texts = paramTexts(r.params);
  const params = h('td', { class: 'hide-sm mono run-params', title: texts.join('\n') || null },
    texts.length ? texts.join(' ') : h('span', { class: 'muted' }, '–'));
  return [failed, params];
}

/**
 * Fills `box` with the failures of run `r`, loaded again only when the set of failed jobs
 * changes; empties it when none failed.
 * @param {import('./api.js').Page} p
 * @param {HTMLElement} box
 * @param {import('./api-types.js').RunDetail} r
 */
export async function showFailures(p, box, r) {
  const failed = r.jobs.filter((j) => j.state === 'failure' || j.state === 'timeout');
  const key = JSON.stringify(failed.map((j) => [j.id, j.attempts, j.state]));
  if (box.dataset.key === key) return;
  if (!failed.length) { clear(box); box.dataset.key = key; return; }
  /** @type {import('./api-types.js').JobFailure[]} */
  let list;
  try {
    list = await api('GET', '/runs/' + enc(r.id) + '/failures', undefined, { signal: p.ctl.signal });
  } catch (e) {
    if (e instanceof Error && e.name === 'AbortError') return;
    put(box, errorBox('Could not load why the jobs failed', e));
    return;
  }
  box.dataset.key = key;
  put(box, h('section', { class: 'panel failures', 'aria-label': 'Failures', id: 'failures' },
    h('h2', {}, list.length === 1 ? 'Why it failed' : 'Why they failed', h('span', { class: 'muted small' }, list.length + ' failed job' + (list.length === 1 ? '' : 's'))),
    list.map((f) => failure(r, f))));
}

/**
 * One failed job: what failed, where, and the lines before it.
 * @param {import('./api-types.js').RunDetail} r
 * @param {import('./api-types.js').JobFailure} f
 */
function failure(r, f) {
  const log = '/runs/' + r.id + '/jobs/' + enc(f.job);
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
      badge(f.state),
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
