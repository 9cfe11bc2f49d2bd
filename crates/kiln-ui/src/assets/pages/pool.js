// Kiln web UI: the pool page: nodes, their offers, the waiting work, node controls for admins.

import { api, errorBox } from '../lib/api.js';
import { clear, enc, h, put, stateBadge, toast } from '../lib/dom.js';
import { fmtAgo, fmtBytes, fmtTime } from '../lib/format.js';
import { later, setTitle } from '../lib/router.js';
import { me } from '../lib/session.js';
import { statsPanel } from '../lib/stats.js';

export async function viewPool(p, el) {
  setTitle('Pool');
  el.append(h('div', { class: 'head' }, h('h1', {}, 'Pool')));
  const opts = { signal: p.ctl.signal };
  const waiting = h('section', { class: 'panel', 'aria-label': 'Waiting work' }, h('h2', {}, 'Waiting work'), h('div', { class: 'body muted' }, 'Loading…'));
  const { admin } = await me(p);
  const problem = h('div');
  const nodesBody = h('div', { class: 'body muted' }, 'Loading…');
  const offersBody = h('div', { class: 'body muted' }, 'Loading…');
  let nodes = [];
  const editor = admin ? attributeForm(() => nodes, (...a) => act(...a)) : null;
  el.append(problem,
    h('section', { class: 'panel', 'aria-label': 'Nodes' }, h('h2', {}, 'Nodes'), nodesBody, editor),
    h('section', { class: 'panel', 'aria-label': 'Offers' }, h('h2', {}, 'Offers ', h('span', { class: 'muted small' }, 'what each node has free')), offersBody),
    waiting, h('div', { class: 'grid2' }, statsPanel(p)));

  let busy = false, shown = null;
  const act = async (label, done, node, body) => {
    if (busy) return false;
    busy = true;
    clear(problem);
    try {
      await api('PATCH', '/nodes/' + enc(node), body);
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

  const refresh = async (loop = true) => {
    let offers;
    try {
      [nodes, offers] = await Promise.all([api('GET', '/nodes', undefined, opts), api('GET', '/offers', undefined, opts)]);
      // Redrawn only when something changed (a redraw would take the focus off a button).
      const key = JSON.stringify([nodes.map((n) => Object.assign({}, n, { last_seen: null })), offers]);
      if (key !== shown) {
        shown = key;
        put(nodesBody, nodeTable(nodes, admin, act)).className = 'body flush';
        put(offersBody, offerCards(nodes, offers)).className = 'body';
        if (editor) editor.fill();
      }
    } catch (e) {
      if (e.name === 'AbortError') return;
      shown = null;
      put(nodesBody, errorBox('Could not load the nodes', e)).className = 'body';
    }
    try {
      const w = await waitingWork(p, nodes);
      waiting.lastChild.replaceWith(w);
    } catch (e) {
      if (e.name === 'AbortError') return;
      waiting.lastChild.replaceWith(h('div', { class: 'body' }, errorBox('Could not load the waiting work', e)));
    }
    if (loop) later(p, 3000, refresh);
  };
  await refresh();
}

function slotBar(running, capacity) {
  return h('div', { class: 'slots' }, h('div', { class: 'bar', role: 'img', 'aria-label': running + ' of ' + capacity + ' slots in use' },
    h('span', { 'data-w': capacity ? Math.min(100, Math.round((100 * running) / capacity)) : 0 })), h('span', { class: 'muted' }, running + ' / ' + capacity));
}

/** An attribute's value as `kiln nodes` prints it: 8, shenzhen, {gz,sz}. */
function fmtAttr(v) {
  if (Array.isArray(v)) return '{' + v.join(',') + '}';
  return String(v);
}

/** A value typed by an operator, read as the server and Mesos read it: a number, {a,b} a set, else text. */
function parseAttr(text) {
  const v = text.trim();
  if (v.startsWith('{')) {
    if (!v.endsWith('}')) throw new Error('a set is written {a,b,c}');
    const inner = v.slice(1, -1);
    if (!inner.trim()) return [];
    const members = inner.split(',').map((m) => m.trim());
    if (members.some((m) => !m)) throw new Error('a set is written {a,b,c} with non-empty members');
    return [...new Set(members)].sort();
  }
  if (/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(v) && Number.isFinite(Number(v))) return Number(v);
  return v;
}

const NODE_STATE = { ready: 'success', lost: 'failure', down: 'canceled' };

/** The nodes as `kiln nodes` lists them, with one column per attribute. */
function nodeTable(nodes, admin, act) {
  if (!nodes.length) return h('div', { class: 'empty' }, 'No node has joined: start one with ', h('code', {}, 'kiln agent --server ' + location.origin + ' --token-file FILE'), '.');
  const keys = [...new Set(nodes.flatMap((n) => Object.keys(n.attributes)))].sort();
  return h('div', { class: 'scroll' }, h('table', { class: 'nodes' },
    h('thead', {}, h('tr', {}, h('th', { class: 'num' }, '#'), h('th', {}, 'Name'), h('th', { class: 'hide-sm' }, 'IP'), h('th', { class: 'hide-sm' }, 'Hostname'),
      h('th', {}, 'State'), h('th', {}, 'Disabled'), h('th', {}, 'Running'),
      keys.map((k) => h('th', { class: 'attr', 'data-attr': k }, k)),
      h('th', { class: 'hide-sm' }, 'Last seen'), admin ? h('th', {}, h('span', { class: 'sr' }, 'Actions')) : null)),
    h('tbody', {}, nodes.map((n) => h('tr', { 'data-node': n.name, 'data-state': n.state, 'data-disabled': n.disabled ? 'true' : 'false' },
      h('td', { class: 'num' }, n.index),
      h('td', { class: 'name' }, h('b', {}, n.name), h('div', { class: 'muted small' }, n.executor)),
      h('td', { class: 'hide-sm mono' }, n.ip || '–'),
      h('td', { class: 'hide-sm' }, n.hostname || '–'),
      h('td', {}, stateBadge(NODE_STATE, n.state)),
      h('td', { class: 'disabled-cell' }, n.disabled ? h('span', { class: 'badge s-waiting', 'data-state': 'disabled' }, 'disabled') : h('span', { class: 'muted' }, 'no')),
      h('td', {}, slotBar(n.running, n.capacity)),
      keys.map((k) => {
        const has = Object.prototype.hasOwnProperty.call(n.attributes, k);
        const op = Object.prototype.hasOwnProperty.call(n.operator_attributes || {}, k);
        return h('td', { class: 'attr mono' + (op ? ' op' : ''), 'data-attr': k, title: op ? 'set by an operator' : null },
          has ? fmtAttr(n.attributes[k]) : h('span', { class: 'muted' }, '–'));
      }),
      h('td', { class: 'hide-sm' }, n.last_seen ? h('span', { title: fmtTime(n.last_seen) }, fmtAgo(n.last_seen)) : '–'),
      admin ? h('td', {}, n.disabled
        ? h('button', { type: 'button', class: 'node-toggle', 'data-action': 'enable', onclick: () => act('Enable', 'Enabled ' + n.name, n.name, { disabled: false }) }, 'Enable')
        : h('button', { type: 'button', class: 'danger node-toggle', 'data-action': 'disable', onclick: () => {
          if (confirm('Disable node ' + n.name + '? No new work is placed on it; what runs there finishes.')) act('Disable', 'Disabled ' + n.name, n.name, { disabled: true });
        } }, 'Disable')) : null)))));
}

/** Admins set or unset an attribute of a node (`kiln nodes set/unset`). */
function attributeForm(nodesNow, act) {
  const node = h('select', { id: 'attr-node', 'aria-label': 'Node' });
  const key = h('input', { id: 'attr-key', placeholder: 'city', 'aria-label': 'Attribute', autocomplete: 'off', required: true });
  const value = h('input', { id: 'attr-value', placeholder: 'shenzhen, 8 or {gz,sz}', 'aria-label': 'Value', autocomplete: 'off' });
  const err = h('div');
  const fill = () => {
    const keep = node.value;
    put(node, nodesNow().map((n) => h('option', { value: n.name, selected: n.name === keep }, n.name)));
  };
  const send = async (unset) => {
    clear(err);
    const k = key.value.trim();
    if (!k) { key.focus(); return; }
    let body;
    if (unset) body = { unset: [k] };
    else {
      try { body = { set: { [k]: parseAttr(value.value) } }; } catch (e) {
        err.append(h('div', { class: 'error', role: 'alert' }, h('b', {}, 'Value of ' + k + ' is not valid'), e.message));
        return;
      }
    }
    if (await act(unset ? 'Unset' : 'Set', (unset ? 'Unset ' : 'Set ') + k + ' on ' + node.value, node.value, body) && !unset) value.value = '';
  };
  const form = h('form', { class: 'attr-form', 'aria-label': 'Set an attribute', onsubmit: (ev) => { ev.preventDefault(); send(false); } },
    h('span', { class: 'label' }, 'Attribute'), node, key, h('span', { 'aria-hidden': 'true' }, '='), value,
    h('button', { type: 'submit', id: 'attr-set' }, 'Set'),
    h('button', { type: 'button', id: 'attr-unset', title: 'Remove the value an operator set (the agent’s own shows again)', onclick: () => send(true) }, 'Unset'));
  const box = h('div', { class: 'attr-box' }, form, err);
  box.fill = fill; // called with each new list of nodes
  return box;
}

/** Each node's CPUs, memory and disk as bars (in use of all), its free slots and host ports. */
function offerCards(nodes, offers) {
  if (!nodes.length) return h('div', { class: 'empty' }, 'No node, no offer.');
  const by = new Map(offers.map((o) => [o.name, o]));
  const num = (m) => { const c = m / 1000; return Number.isInteger(c) ? String(c) : c.toFixed(1); };
  /** @typedef {[(n: number) => string, (used: number, total: number) => string]} Says how much of all, and how much is used */
  /** @type {Says} */
  const cpus = [(m) => num(m) + (m === 1000 ? ' CPU' : ' CPUs'), (u, t) => num(u) + ' of ' + num(t) + (t === 1000 ? ' CPU' : ' CPUs')];
  /** @type {Says} */
  const bytes = [fmtBytes, (u, t) => fmtBytes(u) + ' of ' + fmtBytes(t)];
  const ports = (rs) => rs.map((r) => r.start === r.end ? String(r.start) : r.start + '–' + r.end).join(', ');
  const bar = (what, total, free, [all, part]) => {
    if (!total) return h('div', { class: 'res', 'data-res': what }, h('span', { class: 'rl' }, what), h('span', { class: 'muted small' }, 'not declared'));
    const used = free === null ? null : Math.max(0, total - free);
    const pct = used === null ? 0 : Math.round((100 * used) / total);
    const text = used === null ? all(total) + ' in all' : part(used, total) + ' in use';
    return h('div', { class: 'res', 'data-res': what, 'data-used': used === null ? '' : used, 'data-total': total },
      h('span', { class: 'rl' }, what),
      h('div', { class: 'bar' + (pct >= 90 ? ' full' : '') + (used === null ? ' off' : ''), role: 'img', 'aria-label': what + ': ' + text }, h('span', { 'data-w': pct })),
      h('span', { class: 'rv small' }, text));
  };
  return h('div', { class: 'offers' }, nodes.map((n) => {
    const o = by.get(n.name) || null;
    const f = o ? o.free : null;
    const why = o ? null : n.state !== 'ready' ? n.state + ': offers nothing' : n.disabled ? 'disabled: offers nothing' : 'offers nothing';
    return h('div', { class: 'offer' + (o ? '' : ' none'), 'data-offer': n.name },
      h('div', { class: 'offer-head' }, h('b', {}, n.name), h('span', { class: 'muted small mono' }, n.ip), why ? h('span', { class: 'badge s-canceled' }, why) : null),
      bar('CPU', n.resources.cpu_millis, f && f.cpu_millis, cpus),
      bar('Memory', n.resources.memory_bytes, f && f.memory_bytes, bytes),
      bar('Disk', n.resources.disk_bytes, f && f.disk_bytes, bytes),
      h('div', { class: 'offer-foot small' },
        h('span', {}, 'free slots ', h('b', { class: 'free-slots' }, o ? o.free_slots + ' of ' + n.capacity : '–')),
        h('span', {}, 'free ports ', h('b', { class: 'free-ports mono' }, o ? (ports(o.free_ports) || 'none') : '–'))));
  }));
}

/**
 * Runs waiting for a concurrency slot and jobs waiting for a node, each with why: the job's
 * own `waiting` reason when the server gives one, else what the agents' slots say.
 */
async function waitingWork(p, nodes) {
  const opts = { signal: p.ctl.signal };
  // A run whose jobs all wait for a node is `scheduling`; one with some running, `running`.
  const [pending, scheduling, running] = await Promise.all([
    api('GET', '/runs?state=pending&limit=100', undefined, opts),
    api('GET', '/runs?state=scheduling&limit=30', undefined, opts),
    api('GET', '/runs?state=running&limit=30', undefined, opts)]);
  const active = scheduling.concat(running);
  const details = await Promise.all(active.map((r) => api('GET', '/runs/' + enc(r.id), undefined, opts)));
  const pool = nodes.filter((n) => n.state === 'ready' && !n.disabled);
  const total = pool.reduce((n, a) => n + a.capacity, 0);
  const busy = pool.reduce((n, a) => n + Math.min(a.running, a.capacity), 0);
  const why = !pool.length ? 'no node is ready and enabled'
    : busy >= total ? 'all agent slots are busy (' + busy + ' of ' + total + ' in use)'
        : 'being handed to an agent (' + (total - busy) + ' slots free)';
  const rows = [];
  for (const r of pending.slice().reverse()) {
    rows.push([r, null, 'the pipeline’s concurrency: limit is reached; it starts when an earlier run ends', r.created_at]);
  }
  for (const d of details) {
    for (const j of d.jobs) if (j.state === 'queued') rows.push([d, j, j.waiting ? 'waits for a node: ' + j.waiting : why, d.created_at]);
  }
  if (!rows.length) return h('div', { class: 'empty' }, 'Nothing is waiting.');
  return h('div', { class: 'scroll' }, h('table', {},
    h('thead', {}, h('tr', {}, h('th', {}, 'Run'), h('th', {}, 'Job'), h('th', {}, 'Why it waits'), h('th', { class: 'hide-sm' }, 'Since'))),
    h('tbody', {}, rows.map(([r, j, reason, since]) => h('tr', { 'data-waiting': r.pipeline + '#' + r.number + (j ? '/' + j.id : '') },
      h('td', {}, h('a', { href: '/runs/' + r.id }, r.project + '/' + r.pipeline + ' #' + r.number)),
      h('td', {}, j ? h('a', { href: '/runs/' + r.id + '/jobs/' + enc(j.id) }, j.id) : h('span', { class: 'muted' }, 'whole run')),
      h('td', { class: 'why' }, reason),
      h('td', { class: 'hide-sm' }, since ? fmtAgo(since) : '–'))))));
}

/** @type {import('../lib/router.js').Route[]} */
export const routes = [
  { path: /^\/pool$/, view: viewPool, nav: 'pool' },
];
