// Kiln web UI: run lists shared by pages: the runs table (with each run's failed job and params,
// lib/triage.js), what started a run, the pipelines.

import { api } from './api.js';
import { badge, enc, h } from './dom.js';
import { fmtAgo, fmtDuration, fmtTime } from './format.js';
import { runCells, runHeads } from './triage.js';

export async function loadPipelines(p) {
  const projects = await api('GET', '/projects', undefined, { signal: p.ctl.signal });
  const lists = await Promise.all(projects.map((pr) => api('GET', '/projects/' + enc(pr.name) + '/pipelines', undefined, { signal: p.ctl.signal })));
  return lists.flat();
}

export function runTable(runs, showPipeline) {
  if (!runs.length) return h('div', { class: 'empty' }, 'No runs yet.');
  return h('div', { class: 'scroll' }, h('table', {},
    h('thead', {}, h('tr', {}, h('th', {}, 'State'), h('th', {}, 'Run'), runHeads(), h('th', { class: 'hide-sm' }, 'By'),
      h('th', {}, 'Started'), h('th', { class: 'num' }, 'Duration'))),
    h('tbody', {}, runs.map((r) => h('tr', { 'data-run': r.id, 'data-state': r.state },
      h('td', {}, badge(r.state)),
      h('td', {}, h('a', { href: '/runs/' + r.id }, (showPipeline ? r.project + '/' + r.pipeline : '') + '#' + r.number),
        r.retry_of ? h('span', { class: 'muted' }, ' retry') : null),
      runCells(r),
      h('td', { class: 'hide-sm' }, r.triggered_by),
      h('td', { title: fmtTime(r.created_at) }, fmtAgo(r.created_at)),
      h('td', { class: 'num' }, fmtDuration(r.duration_ms)))))));
}

/** What started a run, as the runs list filters it: `api`, `schedule`, a source event… */
export function runTrigger(r) {
  if (r.source) return r.source.provider + ' ' + r.source.event;
  const by = r.triggered_by || '';
  if (r.parent || by.startsWith('job ')) return 'pipeline';
  if (by.startsWith('schedule ')) return 'schedule';
  if (by.includes('(image push ')) return 'image push';
  return 'api';
}
