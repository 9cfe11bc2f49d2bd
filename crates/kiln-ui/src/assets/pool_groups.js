// The pool page's elastic pool section (an ES module app.js imports on the pool page): the
// node groups (bounds, nodes by state, provider, its failure) and the autoscaler's latest
// events with their reasons, from `GET /api/v1/pool/groups` and `GET /api/v1/pool/events`,
// refreshed every 3 s while the page is open. The helpers come from app.js (`kit`).

const STATE = { ready: 'success', coming: 'running', draining: 'waiting', removing: 'canceled' };
const KIND = {
  'scale-out': 'running', 'node-registered': 'success', drain: 'waiting', 'drain-canceled': 'running',
  'scale-in': 'waiting', 'node-removed': 'canceled', 'provider-failed': 'failure', 'boot-timeout': 'failure',
  'no-group-fits': 'failure', 'at-max': 'waiting', 'group-applied': 'success', 'group-deleted': 'canceled',
};

function groupsTable(kit, groups) {
  const { h } = kit;
  if (!groups.length) {
    return h('div', { class: 'empty' }, 'No node group: add one with ', h('code', {}, 'kiln pool group apply FILE'), ' (docs/pool.md#elastic-pool).');
  }
  return h('div', { class: 'scroll' }, h('table', { class: 'node-groups' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Group'), h('th', { class: 'num' }, 'Min'), h('th', { class: 'num' }, 'Max'),
      h('th', {}, 'Nodes'), h('th', { class: 'hide-sm' }, 'Template'), h('th', { class: 'hide-sm' }, 'Provider'), h('th', {}, 'Provider state'))),
    h('tbody', {}, groups.map((g) => {
      const s = g.spec;
      const prov = s.provider.command ? s.provider.command.join(' ') : (s.provider.http || '–');
      const n = s.node;
      return h('tr', { 'data-group': s.name },
        h('td', {}, h('b', {}, s.name)),
        h('td', { class: 'num' }, String(s.min)),
        h('td', { class: 'num' }, String(s.max)),
        h('td', { class: 'group-nodes' }, g.nodes.length ? g.nodes.map((x) => h('span', { class: 'badge s-' + (STATE[x.state] || 'waiting'), 'data-node': x.name, 'data-state': x.state, title: x.state + (x.running ? ', ' + x.running + ' running' : '') }, x.name + ' ' + x.state)) : h('span', { class: 'muted' }, 'none')),
        h('td', { class: 'hide-sm mono small' }, String(n.cpus) + ' CPU, ' + String(n.memory) + ', ' + (n.capacity || 4) + ' slots'),
        h('td', { class: 'hide-sm mono small' }, prov),
        h('td', { class: 'provider-state' }, g.failure
          ? h('span', { class: 'error-text', 'data-failing': 'true', title: 'next try ' + kit.fmtTime(g.failure.retry_at) }, g.failure.action + ' failed ' + g.failure.failures + '×: ' + g.failure.error)
          : h('span', { class: 'muted' }, 'ok')));
    }))));
}

function eventsTable(kit, events) {
  const { h } = kit;
  if (!events.length) return h('div', { class: 'empty' }, 'No pool event yet.');
  return h('div', { class: 'scroll' }, h('table', { class: 'pool-events' },
    h('thead', {}, h('tr', {}, h('th', {}, 'When'), h('th', {}, 'Group'), h('th', {}, 'Event'), h('th', { class: 'hide-sm' }, 'Nodes'), h('th', {}, 'Reason'))),
    h('tbody', {}, events.slice().reverse().map((e) => h('tr', { 'data-kind': e.kind },
      h('td', {}, h('span', { title: kit.fmtTime(e.at) }, kit.fmtAgo(e.at))),
      h('td', {}, e.group || h('span', { class: 'muted' }, '–')),
      h('td', {}, h('span', { class: 'badge s-' + (KIND[e.kind] || 'waiting') }, e.kind)),
      h('td', { class: 'hide-sm mono small' }, e.nodes.length ? e.nodes.join(', ') : '–'),
      h('td', { class: 'reason' }, e.reason))))));
}

/** Fills `section` (already on the page) and keeps it current while page `p` is shown. */
export function elasticSection(kit, p, section) {
  const { h, api, put, errorBox, later } = kit;
  const groupsBody = h('div', { class: 'body muted' }, 'Loading…');
  const eventsBody = h('div', { class: 'body muted' }, 'Loading…');
  section.append(h('h2', {}, 'Elastic pool ', h('span', { class: 'muted small' }, 'node groups and the autoscaler’s decisions')),
    groupsBody, h('h3', {}, 'Latest events'), eventsBody);
  let shown = null;
  const refresh = async () => {
    try {
      const opts = { signal: p.ctl.signal };
      const [groups, events] = await Promise.all([api('GET', '/pool/groups', undefined, opts), api('GET', '/pool/events?limit=50', undefined, opts)]);
      const key = JSON.stringify([groups, events]);
      if (key !== shown) {
        shown = key;
        put(groupsBody, groupsTable(kit, groups)).className = 'body flush';
        put(eventsBody, eventsTable(kit, events)).className = 'body flush';
      }
    } catch (e) {
      if (e.name === 'AbortError') return;
      shown = null;
      put(groupsBody, errorBox('Could not load the node groups', e)).className = 'body';
    }
    later(p, 3000, refresh);
  };
  refresh();
}
