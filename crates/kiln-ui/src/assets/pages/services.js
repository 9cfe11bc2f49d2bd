// Kiln web UI: the services list and a service's page: instances by node, versions, metrics, controls.

import { api, errorBox } from '../lib/api.js';
import { clear, enc, h, put, stateBadge, toast } from '../lib/dom.js';
import { fmtAgo, fmtNum, fmtSpan, fmtTime } from '../lib/format.js';
import { linePlot } from '../lib/plot.js';
import { deploysPath, projectPath } from '../lib/project.js';
import { later, setTitle } from '../lib/router.js';
import { me } from '../lib/session.js';

// Instance and service states in the state colours: healthy green, starting and staging blue,
// unhealthy amber, stopping grey, lost and failed red.
const INSTANCE_STATE = { healthy: 'success', starting: 'running', staging: 'running', unhealthy: 'waiting', stopping: 'canceled', lost: 'failure', failed: 'failure' };

const SERVICE_STATE = { running: 'success', deploying: 'running', updating: 'running', stopped: 'canceled' };

function labelChips(labels) {
  const all = Object.entries(labels || {});
  if (!all.length) return h('span', { class: 'muted' }, '–');
  return h('span', { class: 'chips' }, all.map(([k, v]) => h('span', { class: 'chip', 'data-label': k }, v === '' ? k : k + '=' + v)));
}

export function healthyCount(sv) {
  return h('span', { class: 'healthy' + (sv.healthy < sv.replicas ? ' short' : ''), 'data-healthy': sv.healthy, 'data-replicas': sv.replicas }, sv.healthy + '/' + sv.replicas);
}

/**
 * Who a service belongs to, when the server says (a service a run started): a run's id, or
 * an object naming the run (`run`, and `pipeline`, `number`, `job` when given), or text.
 */
function ownerOf(sv) {
  const o = sv.owner;
  if ((o === undefined || o === null) && sv.deployed) {
    // A deployed service: only deploys change it; its deployments' page says what it runs.
    const d = sv.deployed;
    return h('a', { class: 'owner', 'data-deployed': d.service + '/' + d.environment, href: deploysPath(sv.project, d.service, d.environment) }, 'deploy ' + d.service + ' to ' + d.environment);
  }
  if (o === undefined || o === null) return null;
  if (typeof o !== 'object') return h('span', { class: 'owner' }, String(o));
  const run = o.run || o.run_id || null;
  const what = [o.pipeline ? o.pipeline + (o.number !== undefined ? ' #' + o.number : '') : null, o.job].filter(Boolean).join(' / ')
    || (run ? 'run ' + run : Object.entries(o).map(([k, v]) => k + '=' + v).join(' '));
  return run ? h('a', { class: 'owner', href: '/runs/' + enc(run) }, what) : h('span', { class: 'owner' }, what);
}

function servicePath(sv) { return '/services/' + enc(sv.project) + '/' + enc(sv.name); }

export async function viewServices(p, el) {
  setTitle('Services');
  el.append(h('div', { class: 'head' }, h('h1', {}, 'Services')));
  const panel = h('section', { class: 'panel', 'aria-label': 'Services' }, h('div', { class: 'body muted' }, 'Loading…'));
  el.append(panel);
  let shown = null;
  const load = async () => {
    let list;
    try {
      list = await api('GET', '/services', undefined, { signal: p.ctl.signal });
    } catch (e) {
      if (e.name === 'AbortError') return;
      shown = null;
      if (e.status === 404) {
        put(panel, h('div', { class: 'body' }, h('div', { class: 'notice', 'data-unavailable': 'services' }, h('b', {}, 'Not available on this server yet. '),
          'Services and their instances appear here once the server runs them.')));
        return;
      }
      put(panel, h('div', { class: 'body' }, errorBox('Could not load the services', e)));
      later(p, 3000, load);
      return;
    }
    // Redrawn only on a change, so keyboard focus in the table survives the refresh.
    const key = JSON.stringify(list.map((sv) => [sv.project, sv.name, sv.state, sv.healthy, sv.replicas, sv.version, sv.labels, sv.owner, sv.deployed]));
    if (key !== shown) { shown = key; put(panel, serviceTable(list)); }
    later(p, 3000, load);
  };
  await load();
}

function serviceTable(list) {
  if (!list.length) {
    return h('div', { class: 'empty' }, 'No service yet. Start one with ', h('code', {}, 'kiln service apply FILE --project P'), '.');
  }
  const owners = list.some((sv) => (sv.owner !== undefined && sv.owner !== null) || sv.deployed);
  return h('div', { class: 'scroll' }, h('table', { class: 'services' },
    h('thead', {}, h('tr', {}, h('th', { class: 'hide-sm' }, 'Project'), h('th', {}, 'Service'), h('th', {}, 'State'),
      h('th', { class: 'num' }, 'Healthy'), h('th', { class: 'num hide-sm' }, 'Version'), h('th', { class: 'hide-sm' }, 'Labels'),
      owners ? h('th', { class: 'hide-sm' }, 'Owner') : null)),
    h('tbody', {}, list.map((sv) => h('tr', { 'data-service': sv.project + '/' + sv.name },
      h('td', { class: 'hide-sm' }, sv.project),
      h('td', {}, h('a', { class: 'pl-name', href: servicePath(sv) }, sv.name)),
      h('td', {}, stateBadge(SERVICE_STATE, sv.state)),
      h('td', { class: 'num' }, healthyCount(sv)),
      h('td', { class: 'num hide-sm version' }, sv.version),
      h('td', { class: 'hide-sm' }, labelChips(sv.labels)),
      owners ? h('td', { class: 'hide-sm' }, ownerOf(sv) || h('span', { class: 'muted' }, '–')) : null)))));
}

export async function viewService(p, el, project, name) {
  setTitle(project + '/' + name);
  const base = '/projects/' + enc(project) + '/services/' + enc(name);
  const opts = { signal: p.ctl.signal };
  const { developer } = await me(p);
  const state = h('span');
  const head = h('div', { class: 'head' }, h('h1', {}, name), state);
  const meta = h('div', { class: 'meta' });
  const problem = h('div');
  const instances = h('div', { class: 'body muted' }, 'Loading…');
  const waits = h('section', { class: 'panel', 'aria-label': 'Waiting slots', hidden: true }, h('h2', {}, 'Waiting slots'));
  const versions = h('div', { class: 'body muted' }, 'Loading…');
  el.append(h('div', { class: 'crumbs' }, h('a', { href: '/services' }, 'Services'), ' / ', h('a', { href: projectPath(project) }, project)), head, meta, problem,
    h('section', { class: 'panel', 'aria-label': 'Instances' }, h('h2', {}, 'Instances by node'), instances),
    waits,
    h('section', { class: 'panel', 'aria-label': 'Versions' }, h('h2', {}, 'Versions'), versions));

  let sv = null, busy = false, shown = null, shownVersions = null;
  // `label` names the change in an error ("Scale failed"); `done` is the toast after it.
  const act = async (label, done, question, action, body) => {
    if (busy || !confirm(question)) return false;
    busy = true;
    clear(problem);
    try {
      await api('POST', base + '/' + action, body);
      toast(done);
      return true;
    } catch (e) {
      problem.append(errorBox(label + ' failed', e));
      return false;
    } finally {
      busy = false;
      refresh(false);
    }
  };
  const controls = developer ? serviceControls(() => sv, act) : null;
  if (controls) head.append(controls);

  const refresh = async (loop = true) => {
    let history;
    try {
      // Both at once; the service's own error first when both fail (a missing service).
      const versionsAsked = api('GET', base + '/history', undefined, opts);
      versionsAsked.catch(() => {});
      sv = await api('GET', base, undefined, opts);
      history = await versionsAsked;
    } catch (e) {
      if (e.name === 'AbortError') return;
      if (!sv) { put(el, errorBox('Could not load service ' + project + '/' + name, e)); return; }
      put(problem, errorBox('Live updates stopped: could not reload the service', e));
      if (loop) later(p, 5000, refresh);
      return;
    }
    // Redrawn only on a change (and once a minute, for the times shown as "N min ago"), so
    // the focus stays where it is.
    const key = JSON.stringify([Math.floor(Date.now() / 60000), Object.assign({}, sv, { updated_at: null })]);
    if (key !== shown) {
      shown = key;
      put(state, stateBadge(SERVICE_STATE, sv.state));
      if (controls) controls.fill(sv);
      put(meta, serviceSummary(sv));
      put(instances, instanceGroups(sv)).className = sv.instances.length ? 'body' : 'body flush';
      waits.hidden = !sv.waits.length;
      put(waits, h('h2', {}, 'Waiting slots'), waitTable(sv.waits));
    }
    const vkey = JSON.stringify([Math.floor(Date.now() / 60000), history]);
    if (vkey !== shownVersions) {
      shownVersions = vkey;
      put(versions, versionTable(history, sv, developer, act)).className = 'body flush';
    }
    if (loop) later(p, 3000, refresh);
  };
  await refresh();
  if (sv) el.append(metricsPanel(p, base));
}

/** Version, template, replicas, healthy count, labels, update settings and owner, as one line of facts. */
function serviceSummary(sv) {
  const u = sv.update;
  const owner = ownerOf(sv);
  return [
    h('span', {}, 'version ', h('b', { id: 'svc-version' }, sv.version)),
    h('span', {}, 'template ', h('b', { id: 'svc-template' }, sv.template), sv.stable && sv.stable !== sv.template ? h('span', {}, ' (last stable ', h('b', {}, sv.stable), ')') : null),
    h('span', {}, 'replicas ', h('b', { id: 'svc-replicas' }, sv.replicas)),
    h('span', {}, 'healthy ', h('b', { id: 'svc-healthy' }, healthyCount(sv))),
    h('span', {}, 'labels ', labelChips(sv.labels)),
    u ? h('span', { id: 'svc-update', title: 'a rolling update runs at most replicas + ' + u.surge + ' instances and keeps at least replicas - ' + u.unavailable
      + ' healthy; one not healthy by the deadline rolls back by itself' },
    'update ', h('b', {}, 'max-surge ' + amount(u.max_surge, u.surge) + ', max-unavailable ' + amount(u.max_unavailable, u.unavailable) + ', deadline ' + fmtSpan(u.deadline_ms))) : null,
    owner ? h('span', {}, 'owner ', h('b', {}, owner)) : null,
    h('span', {}, 'updated ', h('b', { title: fmtTime(sv.updated_at) }, fmtAgo(sv.updated_at))),
  ];
}

/** An update amount as written, with what it comes to now when that differs: `25% (1)`. */
function amount(written, now) { return written === String(now) ? written : written + ' (' + now + ')'; }

/** Scale (a number and a button), Restart and Stop; `fill` shows the service's replicas unless the field was edited. */
function serviceControls(current, act) {
  const field = h('input', { id: 'scale-replicas', type: 'number', min: 0, step: 1, 'aria-label': 'Replicas', required: true });
  let edited = false;
  field.addEventListener('input', () => { edited = true; });
  const title = () => current().project + '/' + current().name;
  const form = h('form', { class: 'actions scale', 'aria-label': 'Change the service', onsubmit: async (ev) => {
    ev.preventDefault();
    const n = Number(field.value);
    if (await act('Scale', 'Scaled ' + title() + ' to ' + n, 'Scale ' + title() + ' to ' + n + (n === 1 ? ' replica?' : ' replicas?'), 'scale', { replicas: n })) edited = false;
  } },
  field, h('button', { type: 'submit', id: 'scale' }, 'Scale'),
  h('button', { type: 'button', id: 'restart', onclick: () => act('Restart', 'Restarting ' + title(), 'Restart ' + title() + '? Every instance is replaced, a few at a time.', 'restart') }, 'Restart'),
  h('button', { type: 'button', class: 'danger', id: 'stop', onclick: () => act('Stop', 'Stopping ' + title(), 'Stop ' + title() + '? Every instance is stopped (replicas 0); Scale starts it again.', 'stop') }, 'Stop'));
  form.fill = (sv) => { if (!edited && document.activeElement !== field) field.value = sv.replicas; };
  return form;
}

/** The instances, a group per node (a group for those not placed yet), each by slot. */
function instanceGroups(sv) {
  if (!sv.instances.length) return h('div', { class: 'empty' }, sv.replicas ? 'No instance yet.' : 'Stopped: no instance runs. Scale starts it again.');
  const byNode = new Map();
  for (const i of sv.instances) {
    const k = i.node || '';
    if (!byNode.has(k)) byNode.set(k, []);
    byNode.get(k).push(i);
  }
  const nodes = [...byNode.keys()].sort((a, b) => Number(a === '') - Number(b === '') || a.localeCompare(b));
  return h('div', { class: 'node-groups' }, nodes.map((node) => {
    const list = byNode.get(node).slice().sort((a, b) => a.slot - b.slot);
    const ip = list.map((i) => i.host_ip).find(Boolean);
    return h('div', { class: 'node-group', 'data-node': node },
      h('h3', {}, node || h('span', { class: 'muted' }, 'not placed yet'), ip ? h('span', { class: 'muted small mono' }, ip) : null,
        h('span', { class: 'muted small' }, list.length + (list.length === 1 ? ' instance' : ' instances'))),
      h('div', { class: 'scroll' }, h('table', { class: 'instances' },
        h('thead', {}, h('tr', {}, h('th', { class: 'num c-slot' }, 'Slot'), h('th', { class: 'hide-sm c-id' }, 'Instance'), h('th', { class: 'c-state' }, 'State'),
          h('th', { class: 'c-ports' }, 'Ports'), h('th', { class: 'num hide-sm c-version' }, 'Version'), h('th', { class: 'hide-sm' }, 'Reason'),
          h('th', { class: 'hide-sm c-since' }, 'Since'))),
        h('tbody', {}, list.map((i) => h('tr', { 'data-instance': i.id, 'data-slot': i.slot },
          h('td', { class: 'num' }, i.slot),
          h('td', { class: 'mono id hide-sm' }, i.id),
          h('td', {}, stateBadge(INSTANCE_STATE, i.state)),
          h('td', { class: 'ports mono' }, portList(i)),
          h('td', { class: 'num hide-sm' }, i.version),
          h('td', { class: 'hide-sm reason' }, i.reason || '', i.restarts ? h('span', { class: 'muted' }, (i.reason ? ' · ' : '') + i.restarts + (i.restarts === 1 ? ' restart' : ' restarts') + ' before it') : null),
          h('td', { class: 'hide-sm nowrap' }, h('span', { title: fmtTime(i.since) }, fmtAgo(i.since)))))))));
  }));
}

/** Named ports as `name → ip:port`, one a line. */
function portList(i) {
  const all = Object.entries(i.ports || {});
  if (!all.length) return h('span', { class: 'muted' }, '–');
  return all.map(([n, port]) => h('div', { 'data-port': n }, n + ' → ' + (i.host_ip || '?') + ':' + port));
}

function waitTable(list) {
  return h('div', { class: 'scroll' }, h('table', { class: 'waits' },
    h('thead', {}, h('tr', {}, h('th', { class: 'num' }, 'Slot'), h('th', {}, 'Why it waits'))),
    h('tbody', {}, list.map((w) => h('tr', { 'data-slot': w.slot }, h('td', { class: 'num' }, w.slot), h('td', { class: 'why' }, w.reason))))));
}

/** Every version, newest first, with Roll back to N on the older ones (for developers). */
function versionTable(history, sv, developer, act) {
  if (!history.length) return h('div', { class: 'empty' }, 'No version.');
  const title = sv.project + '/' + sv.name;
  return h('div', { class: 'scroll' }, h('table', { class: 'versions' },
    h('thead', {}, h('tr', {}, h('th', { class: 'num' }, 'Version'), h('th', {}, 'Kind'), h('th', { class: 'num' }, 'Template'), h('th', { class: 'num' }, 'Replicas'),
      h('th', { class: 'hide-sm' }, 'Who'), h('th', {}, 'When'), h('th', { class: 'hide-sm' }, 'Note'), developer ? h('th', {}, h('span', { class: 'sr' }, 'Actions')) : null)),
    h('tbody', {}, history.slice().reverse().map((v) => h('tr', { 'data-version': v.version, 'data-kind': v.kind },
      h('td', { class: 'num' }, h('b', {}, v.version), v.version === sv.version ? h('span', { class: 'muted' }, ' current') : null),
      h('td', { class: 'kind' }, v.kind),
      h('td', { class: 'num' }, v.template),
      h('td', { class: 'num' }, v.replicas),
      h('td', { class: 'hide-sm' }, v.by),
      h('td', { class: 'nowrap' }, h('span', { title: fmtTime(v.at) }, fmtAgo(v.at))),
      h('td', { class: 'hide-sm muted note' }, v.note || ''),
      developer ? h('td', { class: 'num' }, v.version === sv.version ? null
        : h('button', { type: 'button', class: 'rollback', 'data-rollback': v.version, onclick: () => act('Roll back', 'Rolled ' + title + ' back to version ' + v.version,
          'Roll back ' + title + ' to version ' + v.version + '? It runs that version’s template with its ' + v.replicas + (v.replicas === 1 ? ' replica.' : ' replicas.'),
          'rollback', { to: v.version }) }, 'Roll back to ' + v.version)) : null)))));
}

/**
 * The service's scraped metrics over the last hour (`GET …/metrics?since=`, answering
 * {series: [{name, labels: {instance, node, slot, …}, points: [[ms, value]]}]}): one plot per
 * metric name with a line per instance, refreshed every 5 s.
 */
function metricsPanel(p, base) {
  const body = h('div', { class: 'body' }, h('p', { class: 'muted' }, 'Loading…'));
  const panel = h('section', { class: 'panel', 'aria-label': 'Metrics' }, h('h2', {}, 'Metrics ', h('span', { class: 'muted small' }, 'last hour')), body);
  const load = async () => {
    const to = Date.now(), from = to - 3600000;
    let got;
    try {
      got = await api('GET', base + '/metrics?since=' + from, undefined, { signal: p.ctl.signal });
    } catch (e) {
      if (e.name === 'AbortError') return;
      if (e.status !== 404) {
        put(body, errorBox('Could not load the metrics', e));
        later(p, 5000, load);
        return;
      }
      got = { series: [] }; // no scrape rule (or a server without scraping)
    }
    const byName = metricSeries(got.series || []);
    put(body, byName.size
      ? h('div', { class: 'plots' }, [...byName].map(([metric, lines]) => h('div', { class: 'metric', 'data-metric': metric },
        h('h3', { class: 'mono' }, metric),
        linePlot(lines, fmtNum, metric + ' per instance over the last hour', { from, to }))))
      : h('div', { class: 'notice', 'data-metrics': 'none' }, 'No scrape rule matches this service (see ', h('code', {}, 'kiln metric apply FILE --project P'), ').'));
    later(p, 5000, load);
  };
  load();
  return panel;
}

/**
 * Scraped series grouped by metric name, as linePlot lines named by instance: `slot 0 on
 * node-1`, with the other labels after it, and the instance's id when two lines would read
 * the same (a slot whose instance was replaced within the hour).
 */
function metricSeries(series) {
  const own = ['instance', 'node', 'slot'];
  const byName = new Map();
  for (const se of series) {
    const l = se.labels || {};
    const extra = Object.entries(l).filter(([k]) => !own.includes(k)).map(([k, v]) => k + '=' + v).join(' ');
    const line = {
      name: (l.slot !== undefined ? 'slot ' + l.slot : l.instance || 'instance') + (l.node ? ' on ' + l.node : '') + (extra ? ' ' + extra : ''),
      instance: l.instance,
      points: (se.points || []).filter((q) => Number.isFinite(q[0]) && Number.isFinite(q[1])),
    };
    if (!byName.has(se.name)) byName.set(se.name, []);
    byName.get(se.name).push(line);
  }
  for (const lines of byName.values()) {
    const twice = new Set(lines.filter((line, i) => lines.findIndex((o) => o.name === line.name) !== i).map((line) => line.name));
    for (const line of lines) if (twice.has(line.name) && line.instance) line.name += ' (' + line.instance + ')';
    lines.sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
  }
  return byName;
}

/** @type {import('../lib/router.js').Route[]} */
export const routes = [
  { path: /^\/services$/, view: viewServices, nav: 'services' },
  { path: /^\/services\/([^/]+)\/([^/]+)$/, view: viewService, nav: 'services' },
];
