// Kiln web UI: the queue depth and pool use plot (`GET /stats/queue`), on the pipelines and pool pages.

import { api, errorBox } from './api.js';
import { clear, h, put } from './dom.js';
import { linePlot } from './plot.js';

/** Queue depth and pool use over time, when the server keeps that history. */
export function statsPanel(p) {
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
