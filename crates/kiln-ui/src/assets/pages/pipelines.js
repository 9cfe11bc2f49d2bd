// Kiln web UI: the pipelines page (kept fresh by the server's run events) and a pipeline's page with its trigger form.

import { api, errorBox, followEvents } from '../lib/api.js';
import { badge, clear, enc, h, put } from '../lib/dom.js';
import { fmtAgo, fmtDuration } from '../lib/format.js';
import { durationPlot, sparkline } from '../lib/plot.js';
import { projectPath } from '../lib/project.js';
import { go, setTitle } from '../lib/router.js';
import { loadPipelines, runTable } from '../lib/runs.js';
import { statsPanel } from '../lib/stats.js';

// The pipelines page, kept fresh by the server's run events (GET /runs/events).
export async function viewPipelines(p, el) {
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
  followEvents(p, '/api/v1/runs/events', () => { load(); }, () => { load(); });
}

export async function viewPipeline(p, el, project, name) {
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

/** @type {import('../lib/router.js').Route[]} */
export const routes = [
  { path: /^\/$/, view: viewPipelines, nav: 'pipelines' },
  { path: /^\/p\/([^/]+)\/([^/]+)$/, view: viewPipeline, nav: 'pipelines' },
];
