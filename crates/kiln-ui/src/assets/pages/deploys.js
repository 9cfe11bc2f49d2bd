// Kiln web UI: deploys: the environments board (shown by the environments page) and a service's deployments to an environment.

import { api, errorBox } from '../lib/api.js';
import { clear, enc, h, put, shortDigest, stateBadge, toast } from '../lib/dom.js';
import { fmtAgo, fmtTime } from '../lib/format.js';
import { deploymentsApi, deploysPath, projectCrumbs, projectPath, protectedBadge } from '../lib/project.js';
import { later, setTitle } from '../lib/router.js';
import { me } from '../lib/session.js';
import { healthyCount } from './services.js';

// Deployment states in the state colours: pending amber (it waits for approval), running
// blue, succeeded green, failed red, rolled back orange, rejected dark grey, superseded (a
// later one succeeded) light grey.
const DEPLOY_STATE = { pending: 'waiting', running: 'running', succeeded: 'success', failed: 'failure', rolled_back: 'timeout', rejected: 'canceled', superseded: 'skipped' };

/** What a deployment is: `deploy`, `rollback to 1`, `auto-rollback to 2`, `promote from dev`. */
function deployKind(d) {
  if ((d.kind === 'rollback' || d.kind === 'auto-rollback') && d.rollback_of) return d.kind + ' to ' + d.rollback_of;
  if (d.kind === 'promote' && d.promoted_from) return 'promote from ' + d.promoted_from;
  return d.kind;
}

/** An image as asked, without the registry's host: `shop/web:7`. */
function imageName(image) {
  const parts = String(image).split('/');
  if (parts.length > 2 && (/[.:]/.test(parts[0]) || parts[0] === 'localhost')) parts.shift();
  return parts.join('/');
}

/** Its last part: the repository's name and tag, `web:7` (`web` for an image asked by digest). */
function imageTag(image) {
  const last = String(image).split('/').pop();
  const at = last.indexOf('@');
  return at >= 0 ? last.slice(0, at) : last;
}

/** When a deployment became what it is: its end, else its approval, else when it was asked. */
function deploySince(d) { return d.finished_at || d.approved_at || d.asked_at; }

/** The config release it runs with: `r3` (the application in its tooltip), or `–`. */
function deployConfig(d) {
  return d.config ? h('span', { class: 'cfg', title: 'config ' + d.config.app + ', release ' + d.config.release, 'data-config': d.config.release }, 'r' + d.config.release)
    : h('span', { class: 'muted', title: 'a service without config' }, '–');
}

/** Who asked and when, with the run that asked when one did. */
function deployAsked(d) {
  return [h('span', { class: 'asker' }, d.asked_by), ' ', h('span', { class: 'muted', title: fmtTime(d.asked_at) }, fmtAgo(d.asked_at)),
    d.run ? [' ', h('a', { class: 'small', href: '/runs/' + enc(d.run.id), title: 'job ' + d.run.job }, d.run.name)] : null];
}

/** Redraws `box` with `draw()` and puts the focus back on the control (by its `data-key`) that had it. */
function redrawKeepingFocus(box, draw) {
  const had = document.activeElement && box.contains(document.activeElement) ? /** @type {HTMLElement} */ (document.activeElement).dataset.key : null;
  draw();
  const again = had && box.querySelector('[data-key="' + CSS.escape(had) + '"]');
  if (again) again.focus();
}

/**
 * The environments board (`GET …/environments/board`): a row per deployed service, a column
 * per environment in order, each cell the current deployment (number, image and digest,
 * config release, state, since when and by whom, healthy/replicas, the service), the one
 * waiting for approval (highlighted, with Approve for anyone but who asked, and Reject) or
 * running, and Promote to the next environment (a dry run first, then Confirm). Refreshed
 * every 3 s, redrawn only on a change. `show(envs)` gives the environments (for their
 * protected badges) and returns the board with the promotion panel under it.
 */
export function deployBoard(p, project, who) {
  const table = h('div', { class: 'body muted' }, 'Loading…');
  const problem = h('div', { class: 'board-msg' });
  const promo = h('div', { class: 'promote-area' });
  const wrap = h('div', { class: 'board-wrap' },
    h('section', { class: 'panel board', 'aria-label': 'Deployments' },
      h('h2', {}, 'Deployments', h('span', { class: 'muted small' }, 'what runs where')), problem, table), promo);
  let envs = [], order = [], shown = null, busy = false, started = false, promoSeq = 0;
  const envOf = (name) => envs.find((e) => e.name === name) || { name, protected: false };

  const load = async (loop = true) => {
    let b;
    try {
      b = await api('GET', projectPath(project, 'environments/board'), undefined, { signal: p.ctl.signal });
    } catch (e) {
      if (e.name === 'AbortError') return;
      shown = null;
      if (e.status === 404) {
        put(table, h('div', { class: 'notice', 'data-unavailable': 'deploys' }, h('b', {}, 'Deployments: not available on this server yet. '),
          'What runs in each environment shows here once the server has deploys.')).className = 'body';
        return;
      }
      put(table, errorBox('Could not load the deployments of ' + project, e)).className = 'body';
      if (loop) later(p, 3000, load);
      return;
    }
    order = b.environments;
    // Redrawn on a change (and once a minute, for the times shown as "N min ago").
    const key = JSON.stringify([Math.floor(Date.now() / 60000), b, envs.map((e) => [e.name, e.protected]), who.name]);
    if (key !== shown) {
      shown = key;
      redrawKeepingFocus(table, () => draw(b));
    }
    if (loop) later(p, 3000, load);
  };

  const draw = (b) => {
    if (!b.cells.length) {
      put(table, h('div', { class: 'empty', 'data-board': 'empty' }, 'Nothing deployed yet. Deploy a service file with ',
        h('code', {}, 'kiln deploy FILE --env ' + (b.environments[0] || 'dev') + ' --image ' + project + '/NAME:TAG --project ' + project), '.')).className = 'body flush';
      return;
    }
    const services = [...new Set(b.cells.map((c) => c.service))].sort();
    const cellOf = new Map(b.cells.map((c) => [c.service + '\n' + c.environment, c]));
    put(table, h('div', { class: 'scroll' }, h('table', { class: 'board' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col', class: 'svc' }, 'Service'),
        b.environments.map((name) => h('th', { scope: 'col', 'data-env': name }, name, envOf(name).protected ? protectedBadge() : null)))),
      h('tbody', {}, services.map((sv) => h('tr', { 'data-service': sv },
        h('th', { scope: 'row', class: 'svc' }, sv),
        b.environments.map((env, i) => boardCell(sv, env, cellOf.get(sv + '\n' + env), b.environments[i + 1])))))))).className = 'body flush';
  };

  const boardCell = (service, env, c, next) => {
    const key = service + '/' + env;
    // The environment's name above the cell on a phone, where the board is stacked.
    const label = env + (envOf(env).protected ? ' · protected' : '');
    if (!c) return h('td', { class: 'cell none', 'data-cell': key, 'data-env': env, 'data-label': label }, h('span', { class: 'muted small' }, 'not deployed'));
    const d = c.deployment;
    const a = c.active;
    // Before its first success the newest deployment is the one shown; when that is the one
    // waiting or running, it is shown as such only.
    const only = !!a && a.number === d.number;
    const pending = !!a && a.state === 'pending';
    const mine = pending && a.asked_by === who.name;
    return h('td', { class: 'cell' + (pending ? ' pending' : ''), 'data-cell': key, 'data-env': env, 'data-label': label, 'data-number': only ? null : d.number, 'data-state': only ? null : d.state, 'data-digest': only ? null : d.digest },
      only ? h('div', { class: 'muted small none-yet' }, 'nothing runs here yet')
        : h('div', { class: 'dep' },
          h('div', { class: 'dep-top' },
            h('a', { class: 'dep-num', href: deploysPath(project, service, env), 'data-key': 'history:' + key, title: 'The deployments of ' + service + ' to ' + env }, '#' + d.number),
            stateBadge(DEPLOY_STATE, d.state), d.kind !== 'deploy' ? h('span', { class: 'kind muted small' }, deployKind(d)) : null),
          h('div', { class: 'dep-img' }, h('span', { class: 'mono img', title: d.image }, imageTag(d.image)), ' ', shortDigest(d.digest)),
          h('div', { class: 'dep-facts small' }, h('span', { title: 'healthy instances of ' + d.service_name + ' / its replicas' }, healthyCount(c), ' healthy'), ' · config ', deployConfig(d)),
          h('div', { class: 'dep-who small muted' }, 'by ', h('span', { class: 'by' }, d.asked_by), ' · ', h('span', { class: 'since', title: fmtTime(deploySince(d)) }, fmtAgo(deploySince(d))),
            d.approved_by ? [' · approved by ', h('span', { class: 'approver' }, d.approved_by)] : null),
          h('div', { class: 'dep-links small' }, h('a', { class: 'svc-link', href: '/services/' + enc(project) + '/' + enc(d.service_name), 'data-key': 'service:' + key, title: 'The service that runs it' }, d.service_name),
            who.developer && next && d.state === 'succeeded'
              ? h('button', { type: 'button', class: 'small-btn promote', 'data-promote': key, 'data-key': 'promote:' + key, onclick: () => promote(service, env) }, 'Promote to ' + next) : null)),
      a ? h('div', { class: 'dep-active', 'data-active': a.number, 'data-state': a.state, role: pending ? 'group' : null, 'aria-label': pending ? 'Deployment ' + a.number + ' of ' + service + ' to ' + env + ' waits for approval' : null },
        h('div', { class: 'dep-top' }, h('a', { class: 'dep-num', href: deploysPath(project, service, env), 'data-key': 'active:' + key }, '#' + a.number), stateBadge(DEPLOY_STATE, a.state),
          a.kind !== 'deploy' ? h('span', { class: 'kind muted small' }, deployKind(a)) : null),
        h('div', { class: 'dep-img' }, h('span', { class: 'mono img', title: a.image }, imageTag(a.image)), ' ', shortDigest(a.digest)),
        h('div', { class: 'small' }, pending ? 'waits for approval · ' : 'deploying · ', 'asked by ', h('span', { class: 'asker' }, a.asked_by), ' ', h('span', { class: 'muted', title: fmtTime(a.asked_at) }, fmtAgo(a.asked_at))),
        pending && who.developer ? h('div', { class: 'dep-decide' },
          mine ? h('span', { class: 'muted small mine' }, 'Someone other than you must approve it.')
            : h('button', { type: 'button', class: 'primary small-btn', 'data-approve': key + '/' + a.number, 'data-key': 'approve:' + key, onclick: () => decide(a, true) }, 'Approve'),
          h('button', { type: 'button', class: 'danger small-btn', 'data-reject': key + '/' + a.number, 'data-key': 'reject:' + key, onclick: () => decide(a, false) }, 'Reject')) : null) : null);
  };

  const decide = async (d, approve) => {
    const what = 'deployment ' + d.number + ' of ' + d.service + ' to ' + d.environment;
    if (busy || (!approve && !confirm('Reject ' + what + '? Nothing of it runs; it stays in the history, rejected.'))) return;
    busy = true;
    clear(problem);
    try {
      await api('POST', deploymentsApi(project, d.service, d.environment) + '/' + d.number + (approve ? '/approve' : '/reject'));
      toast((approve ? 'Approved ' : 'Rejected ') + what);
    } catch (e) {
      put(problem, errorBox((approve ? 'Approving ' : 'Rejecting ') + what + ' failed', e));
    } finally {
      busy = false;
      await load(false);
    }
  };

  /** The promotion panel: the server's dry run of promoting `service` from `from` to the next environment, then Confirm. */
  const promote = async (service, from) => {
    const ticket = ++promoSeq;
    const to = order[order.indexOf(from) + 1];
    const target = envOf(to);
    const close = () => {
      promoSeq++;
      clear(promo);
      const back = table.querySelector('[data-key="' + CSS.escape('promote:' + service + '/' + from) + '"]');
      if (back) back.focus();
    };
    const fromPick = h('select', { id: 'promote-from', 'aria-label': 'Promote from', onchange: (ev) => promote(service, ev.target.value) },
      order.slice(0, -1).map((n) => h('option', { value: n, selected: n === from }, n)));
    const heading = h('h2', { tabindex: '-1' }, 'Promote ', h('span', { class: 'mono' }, service), ' from ', fromPick, ' to ', h('b', { id: 'promote-to' }, to),
      target.protected ? protectedBadge() : null, h('span', { class: 'spacer' }),
      h('button', { type: 'button', class: 'small-btn', id: 'promote-cancel', onclick: close }, 'Cancel'));
    const out = h('div', { class: 'body' }, h('p', { class: 'muted' }, 'Asking the server what would change…'));
    put(promo, h('section', { class: 'panel promote', 'aria-label': 'Promote', 'data-service': service, 'data-from': from, 'data-to': to }, heading, out));
    heading.focus();
    promo.scrollIntoView({ block: 'nearest' });
    const path = projectPath(project, 'deployments/' + enc(service) + '/promote');
    let r;
    try {
      r = await api('POST', path, { from, to, dry_run: true }, { signal: p.ctl.signal });
    } catch (e) {
      if (e.name === 'AbortError' || ticket !== promoSeq) return;
      put(out, errorBox('The server would not promote ' + service + ' from ' + from + ' to ' + to, e));
      return;
    }
    if (ticket !== promoSeq) return;
    const note = h('input', { id: 'promote-note', placeholder: 'why (kept with the deployment)', autocomplete: 'off' });
    const err = h('div');
    put(out,
      h('p', { class: 'muted small' }, 'What changes in ', h('b', {}, to), ' (the server’s dry run: nothing is stored until you confirm). It runs ', from, '’s image and spec with ', to, '’s own config.'),
      promoteChanges(r.changes),
      target.protected ? h('p', { class: 'notice small waits', 'data-waits': to }, h('b', {}, to + ' is protected: '), 'the deployment waits until someone other than you approves it.') : null,
      h('form', {
        class: 'inline-form promote-form',
        onsubmit: async (ev) => {
          ev.preventDefault();
          if (busy) return;
          busy = true;
          clear(err);
          try {
            const res = await api('POST', path, { from, to, note: note.value.trim() || null });
            const d = res.deployment;
            const waits = d.state === 'pending';
            toast('Promoted ' + service + ' to ' + to + (waits ? ': it waits for approval' : ''));
            promoSeq++;
            put(promo, h('div', { class: 'notice outcome', role: 'status', 'data-outcome': waits ? 'pending' : 'promoted', 'data-deployment': d.number },
              h('b', {}, 'Promoted: '), 'deployment ' + d.number + ' of ' + service + ' to ' + to + ' is ' + d.state,
              waits ? ': it waits until someone other than you approves it. ' : '. ',
              h('a', { href: deploysPath(project, service, to) }, 'Its history')));
            const cell = table.querySelector('[data-key="' + CSS.escape('history:' + service + '/' + from) + '"]');
            if (cell) cell.focus();
          } catch (x) {
            put(err, errorBox('Promoting ' + service + ' to ' + to + ' failed', x));
          } finally {
            busy = false;
            await load(false);
          }
        },
      },
      h('div', { class: 'field grow' }, h('label', { for: 'promote-note' }, 'Note'), note),
      h('button', { class: 'primary', type: 'submit', id: 'promote-confirm' }, 'Confirm: promote to ' + to)), err);
  };

  return {
    show(list) {
      envs = list;
      if (!started) { started = true; load(); }
      return wrap;
    },
  };
}

/** What a promotion changes in its target: digest, config release (each from → to) and whether the spec changes. */
function promoteChanges(ch) {
  const mark = (changed) => changed ? h('span', { class: 'chg c-changed' }, 'changes') : h('span', { class: 'muted small' }, 'unchanged');
  const none = (text) => h('span', { class: 'muted' }, text);
  const rel = (n) => n === null || n === undefined ? none('–') : h('span', { 'data-config': n }, 'r' + n);
  const cfgFrom = ch.config_from === undefined ? null : ch.config_from;
  const cfgTo = ch.config_to === undefined ? null : ch.config_to;
  const row = (k, label, from, to, changed) => h('tr', { 'data-change': k, 'data-changed': changed ? 'true' : 'false' },
    h('th', { scope: 'row' }, label), h('td', { class: 'from' }, from), h('td', { class: 'arrow', 'aria-label': 'to' }, '→'), h('td', { class: 'to' }, to), h('td', { class: 'mark' }, mark(changed)));
  return h('div', { class: 'scroll' }, h('table', { class: 'changes' }, h('tbody', {},
    row('digest', 'Image digest', ch.digest_from ? shortDigest(ch.digest_from) : none('nothing deployed yet'), shortDigest(ch.digest_to), ch.digest_from !== ch.digest_to),
    row('config', 'Config release', rel(cfgFrom), rel(cfgTo), cfgFrom !== cfgTo),
    h('tr', { 'data-change': 'spec', 'data-changed': ch.spec_changed ? 'true' : 'false' }, h('th', { scope: 'row' }, 'Service spec'),
      h('td', { colspan: 3, class: 'muted small' }, 'everything but the image'), h('td', { class: 'mark' }, mark(ch.spec_changed))))));
}

/**
 * A service's deployments to an environment, newest first (`GET …/deployments/S/E`): number,
 * kind, state, image and digest, config release, who asked and when, who approved, note and
 * reason; Approve and Reject for one waiting; Roll back to N (developers, after confirming)
 * on one that ran there before the current one. Refreshed every 3 s.
 */
export async function viewDeploys(p, el, project, service, env) {
  setTitle(service + ' in ' + env + ' · ' + project);
  const who = await me(p);
  const opts = { signal: p.ctl.signal };
  const base = deploymentsApi(project, service, env);
  const state = h('span');
  const meta = h('div', { class: 'meta' });
  const problem = h('div');
  const banners = h('div');
  const body = h('div', { class: 'body muted' }, 'Loading…');
  el.append(projectCrumbs(project, h('a', { href: projectPath(project, 'environments') }, 'Environments'), service + ' in ' + env),
    h('div', { class: 'head' }, h('h1', {}, service, h('span', { class: 'muted' }, ' in '), env), state),
    meta, problem, banners,
    h('section', { class: 'panel', 'aria-label': 'Deployments' }, h('h2', {}, 'Deployments', h('span', { class: 'muted small' }, 'newest first')), body));

  let busy = false, shown = null, loaded = false;
  const act = async (label, question, path, payload, done) => {
    if (busy || (question && !confirm(question))) return;
    busy = true;
    clear(problem);
    try {
      const d = await api('POST', path, payload);
      toast(done(d));
    } catch (e) {
      put(problem, errorBox(label + ' failed', e));
    } finally {
      busy = false;
      await load(false);
    }
  };

  const load = async (loop = true) => {
    let list, sv = null;
    try {
      list = await api('GET', base, undefined, opts);
      const cur = list.find((d) => d.state === 'succeeded') || list[0];
      if (cur) {
        sv = await api('GET', '/projects/' + enc(project) + '/services/' + enc(cur.service_name), undefined, opts)
          .catch((e) => { if (e.name === 'AbortError') throw e; return null; });
      }
    } catch (e) {
      if (e.name === 'AbortError') return;
      if (!loaded) { put(el, errorBox('Could not load the deployments of ' + service + ' to ' + env, e)); return; }
      put(problem, errorBox('Live updates stopped: could not reload the deployments', e));
      if (loop) later(p, 5000, load);
      return;
    }
    loaded = true;
    const key = JSON.stringify([Math.floor(Date.now() / 60000), list, sv && [sv.healthy, sv.replicas, sv.state]]);
    if (key !== shown) {
      shown = key;
      redrawKeepingFocus(el, () => draw(list, sv));
    }
    if (loop) later(p, 3000, load);
  };

  const draw = (list, sv) => {
    const cur = list.find((d) => d.state === 'succeeded');
    const active = list.find((d) => d.state === 'pending' || d.state === 'running');
    put(state, cur ? stateBadge(DEPLOY_STATE, cur.state) : null);
    const name = (cur || list[0] || {}).service_name;
    put(meta, list.length ? [
      h('span', {}, 'current ', cur ? h('b', { id: 'dep-current' }, '#' + cur.number) : h('b', { id: 'dep-current' }, 'none: nothing runs here yet')),
      cur ? h('span', {}, 'image ', h('b', { class: 'mono' }, imageName(cur.image)), ' ', shortDigest(cur.digest)) : null,
      cur ? h('span', {}, 'config ', h('b', {}, deployConfig(cur))) : null,
      name ? h('span', {}, 'runs as ', h('a', { id: 'dep-service', href: '/services/' + enc(project) + '/' + enc(name) }, name)) : null,
      sv ? h('span', {}, 'healthy ', h('b', {}, healthyCount(sv))) : null,
      h('span', {}, h('a', { href: projectPath(project, 'environments') }, 'the environments board')),
    ] : null);
    put(banners, list.filter((d) => d.state === 'pending').map((d) => {
      const what = 'deployment ' + d.number + ' of ' + service + ' to ' + env;
      return h('div', { class: 'approval', role: 'region', 'aria-label': 'Deployment ' + d.number + ' waits', 'data-pending': d.number },
        h('div', { class: 'q' }, h('b', {}, 'Deployment ' + d.number + ' (' + deployKind(d) + ', ' + imageName(d.image) + ') waits for approval'),
          h('span', {}, 'asked by ', h('strong', { class: 'asker' }, d.asked_by), ' ', h('span', { title: fmtTime(d.asked_at) }, fmtAgo(d.asked_at)), d.note ? ['; “', d.note, '”'] : null),
          who.developer && d.asked_by === who.name ? h('div', { class: 'muted small' }, 'Someone other than you must approve it.') : null),
        who.developer && d.asked_by !== who.name ? h('button', { class: 'primary', type: 'button', id: 'approve-deployment', 'data-key': 'approve', onclick: () => act('Approve', null, base + '/' + d.number + '/approve', undefined, () => 'Approved ' + what) }, 'Approve') : null,
        who.developer ? h('button', { class: 'danger', type: 'button', id: 'reject-deployment', 'data-key': 'reject', onclick: () => act('Reject', 'Reject ' + what + '? Nothing of it runs; it stays in the history, rejected.', base + '/' + d.number + '/reject', undefined, () => 'Rejected ' + what) }, 'Reject') : null);
    }));
    if (!list.length) {
      put(body, h('div', { class: 'empty', 'data-deployments': 'none' }, 'No deployment of ', h('b', {}, service), ' to ', h('b', {}, env), ' yet. Deploy it with ',
        h('code', {}, 'kiln deploy ' + service + '.yml --env ' + env + ' --image ' + project + '/' + service + ':TAG --project ' + project), '.')).className = 'body flush';
      return;
    }
    // Roll back to N: one that ran here before the current one, while nothing is pending or
    // running; not to the one the current deployment already brings back.
    const rollback = (d) => {
      const cfg = d.config && cur && cur.config && cur.config.release !== d.config.release
        ? ', with config release r' + d.config.release + ' again (a config rollback release in ' + env + ')' : '';
      act('Roll back', 'Roll ' + service + ' in ' + env + ' back to deployment ' + d.number + '? It runs deployment ' + d.number + '’s image (' + imageName(d.image) + ', '
        + d.digest.slice(0, 19) + '…) and spec again' + cfg + '. No approval is needed.',
      base + '/rollback', { to: d.number }, (made) => 'Rolling back: deployment ' + made.number + ' of ' + service + ' to ' + env);
    };
    put(body, h('div', { class: 'scroll' }, h('table', { class: 'deployments' },
      h('thead', {}, h('tr', {}, h('th', { class: 'num' }, '#'), h('th', {}, 'Kind'), h('th', {}, 'State'), h('th', {}, 'Image'), h('th', { class: 'hide-sm' }, 'Config'),
        h('th', {}, 'Asked'), h('th', { class: 'hide-sm' }, 'Approved by'), h('th', { class: 'hide-sm' }, 'Note / reason'), who.developer ? h('th', {}, h('span', { class: 'sr' }, 'Actions')) : null)),
      h('tbody', {}, list.map((d) => h('tr', { 'data-deployment': d.number, 'data-state': d.state, 'data-kind': d.kind, 'data-digest': d.digest },
        h('td', { class: 'num' }, h('b', {}, d.number), d === cur ? h('span', { class: 'tag cur' }, 'current') : null),
        h('td', { class: 'kind nowrap' }, deployKind(d)),
        h('td', {}, stateBadge(DEPLOY_STATE, d.state)),
        h('td', { class: 'image' }, h('div', { class: 'mono img' }, imageName(d.image)), shortDigest(d.digest)),
        h('td', { class: 'hide-sm config' }, deployConfig(d)),
        h('td', { class: 'asked' }, deployAsked(d)),
        h('td', { class: 'hide-sm approved' }, d.approved_by || ''),
        h('td', { class: 'hide-sm note' }, d.note ? h('div', { class: 'n' }, d.note) : null, d.reason ? h('div', { class: 'reason' }, d.reason) : null),
        who.developer ? h('td', { class: 'num' }, cur && !active && d.state === 'superseded' && !(cur.rollback_of === d.number && cur.kind.endsWith('rollback'))
          ? h('button', { type: 'button', class: 'small-btn rollback', 'data-rollback': d.number, 'data-key': 'rollback:' + d.number, onclick: () => rollback(d) }, 'Roll back to ' + d.number) : null) : null)))))).className = 'body flush';
  };
  await load();
}

/** @type {import('../lib/router.js').Route[]} */
export const routes = [
  { path: /^\/projects\/([^/]+)\/deploys\/([^/]+)\/([^/]+)$/, view: viewDeploys, nav: 'projects' },
];
