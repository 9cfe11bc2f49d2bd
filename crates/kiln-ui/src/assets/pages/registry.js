// Kiln web UI: the registry pages: repositories, pushes, a repository's tags with sizes, pull commands and vulnerabilities.

import { api, errorBox, token } from '../lib/api.js';
import { clear, enc, h, put, shortDigest, toast } from '../lib/dom.js';
import { fmtAgo, fmtBytes, fmtTime } from '../lib/format.js';
import { setTitle } from '../lib/router.js';
import { me } from '../lib/session.js';

/** Basic auth with the Kiln token, which `/v2/` takes on every call (no token flow needed). */
function registryAuth() { return 'Basic ' + btoa('kiln:' + token()); }

const MANIFEST_TYPES = ['application/vnd.oci.image.manifest.v1+json', 'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json', 'application/vnd.docker.distribution.manifest.list.v2+json'].join(', ');

/** An image's size from its manifest: its config and layers; an index says how many images it names. */
async function imageSize(p, repo, digest) {
  const resp = await fetch('/v2/' + repo + '/manifests/' + digest, { headers: { Authorization: registryAuth(), Accept: MANIFEST_TYPES }, signal: p.ctl.signal });
  if (!resp.ok) throw new Error('GET /v2/' + repo + '/manifests/… answered ' + resp.status);
  const m = await resp.json();
  if (Array.isArray(m.manifests)) return { index: m.manifests.length };
  const sum = (m.layers || []).reduce((n, l) => n + (l.size || 0), 0) + ((m.config && m.config.size) || 0);
  return { bytes: sum, layers: (m.layers || []).length };
}

/** Copies text to the clipboard; where the browser refuses, selects it for Ctrl+C. */
async function copyText(text, el) {
  try {
    await navigator.clipboard.writeText(text);
    toast('Copied: ' + text);
    return;
  } catch (_) { /* not allowed here (plain HTTP, no permission): select instead */ }
  const range = document.createRange();
  range.selectNodeContents(el);
  const sel = window.getSelection();
  sel.removeAllRanges();
  sel.addRange(range);
  let copied = false;
  try { copied = document.execCommand('copy'); } catch (_) { copied = false; }
  toast(copied ? 'Copied: ' + text : 'Selected: press Ctrl+C to copy');
}

function pullCommand(repo, tag) {
  const cmd = 'docker pull ' + location.host + '/' + repo + ':' + tag;
  const code = h('code', { class: 'pull-cmd' }, cmd);
  return h('div', { class: 'pull' }, code,
    h('button', { type: 'button', class: 'copy', 'aria-label': 'Copy the pull command of ' + tag, onclick: () => copyText(cmd, code) }, 'Copy'));
}

function visibilityBadge(pub) {
  return pub ? h('span', { class: 'badge s-success', 'data-visibility': 'public' }, 'public')
    : h('span', { class: 'badge s-canceled', 'data-visibility': 'private' }, 'private');
}

function eventTable(events, withRepo) {
  if (!events.length) return h('div', { class: 'empty' }, 'No push yet.');
  return h('div', { class: 'scroll' }, h('table', { class: 'events' },
    h('thead', {}, h('tr', {}, withRepo ? h('th', {}, 'Repository') : null, h('th', {}, 'Tag'), h('th', { class: withRepo ? 'hide-sm' : null }, 'Digest'), h('th', {}, 'Who'), h('th', {}, 'When'))),
    h('tbody', {}, events.map((e) => h('tr', { 'data-event': e.id },
      withRepo ? h('td', {}, h('a', { href: '/registry/' + e.repository }, e.repository)) : null,
      h('td', { class: 'tag' }, e.action === 'vulnerability'
        ? h('span', { 'data-action': 'vulnerability', title: 'newly imported advisories match this image' }, severityBadge('advisory'), ' ', (e.tags || []).join(', ') || 'untagged', h('span', { class: 'muted' }, ': ' + (e.advisories || []).join(', ')))
        : (e.tag || h('span', { class: 'muted' }, 'by digest'))),
      h('td', { class: withRepo ? 'hide-sm' : null }, shortDigest(e.digest)),
      h('td', { class: 'actor' }, e.actor),
      h('td', { class: 'nowrap' }, h('span', { title: fmtTime(e.created_at) }, fmtAgo(e.created_at))))))));
}

const SEVERITIES = ['critical', 'high', 'medium', 'low', 'unknown'];

function severityBadge(sev) {
  const cls = { critical: 's-failure', high: 's-failure', medium: 's-waiting', low: 's-canceled', unknown: 's-canceled' }[sev] || 's-canceled';
  return h('span', { class: 'badge sev ' + cls, 'data-severity': sev }, sev);
}

/** An image's findings counted by severity (`2 critical · 1 high`), or its scan's state. */
function vulnSummary(s) {
  if (s.state !== 'scanned') return h('span', { class: 'muted', title: s.error || '', 'data-scan': s.state }, s.state === 'failed' ? 'scan failed' : s.state);
  if (!s.findings.length) return h('span', { class: 'muted', 'data-scan': 'clean' }, 'none found');
  const counts = SEVERITIES.map((sev) => [sev, s.findings.filter((f) => f.severity === sev).length]).filter(([, n]) => n);
  return h('span', { 'data-scan': 'findings', 'data-count': s.findings.length }, counts.map(([sev, n], i) => [i ? ' · ' : '', h('b', { class: 'sev-' + sev }, n + ' ' + sev)]));
}

function vulnTable(s) {
  const when = s.scanned_at ? h('span', { title: fmtTime(s.scanned_at) }, 'scanned ' + fmtAgo(s.scanned_at)) : 'not scanned yet';
  const meta = h('div', { class: 'body muted' }, shortDigest(s.digest), ' · ', s.packages + ' packages · ', when,
    s.error ? [' · ', h('span', { class: 'scan-error' }, s.error)] : null);
  if (!s.findings.length) return [meta, h('div', { class: 'body empty' }, s.state === 'scanned' ? 'No known vulnerability in its packages.' : 'No findings.')];
  return [meta, h('div', { class: 'scroll' }, h('table', { class: 'findings' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Severity'), h('th', {}, 'Advisory'), h('th', {}, 'Package'), h('th', {}, 'Installed'), h('th', {}, 'Fixed in'), h('th', { class: 'hide-sm' }, 'Found in'))),
    h('tbody', {}, s.findings.map((f) => h('tr', { 'data-advisory': f.advisory, 'data-package': f.package },
      h('td', {}, severityBadge(f.severity)),
      h('td', { title: f.summary }, h('b', {}, f.advisory), f.aliases.length ? h('span', { class: 'muted' }, ' ' + f.aliases.join(', ')) : null),
      h('td', {}, f.package, h('span', { class: 'muted' }, ' (' + f.ecosystem + ')')),
      h('td', { class: 'mono' }, f.installed),
      h('td', { class: 'mono fixed' }, f.fixed || h('span', { class: 'muted' }, 'no fix yet')),
      h('td', { class: 'mono hide-sm' }, f.source))))))];
}

/** Whether the server has a registry: `GET /v2/` answers 404 on one without. */
async function registryHere(p, body) {
  let resp;
  try {
    resp = await fetch('/v2/', { headers: { Authorization: registryAuth() }, signal: p.ctl.signal });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    put(body, h('div', { class: 'body' }, errorBox('Could not reach the registry', e)));
    return false;
  }
  if (resp.status === 404) {
    put(body, h('div', { class: 'body' }, h('div', { class: 'notice', 'data-unavailable': 'registry' },
      h('b', {}, 'Not available on this server yet. '), 'Repositories, tags, digests, sizes and the pull command appear here once the server has a registry.')));
    return false;
  }
  return true;
}

export async function viewRegistry(p, el) {
  setTitle('Registry');
  el.append(h('div', { class: 'head' }, h('h1', {}, 'Registry')));
  const body = h('section', { class: 'panel', 'aria-label': 'Repositories' }, h('div', { class: 'body muted' }, 'Loading…'));
  el.append(body);
  if (!(await registryHere(p, body))) return;
  const opts = { signal: p.ctl.signal };
  let repos;
  try {
    repos = await api('GET', '/registry/repositories', undefined, opts);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    put(body, h('div', { class: 'body' }, errorBox('Could not load the repositories', e)));
    return;
  }
  put(body, h('h2', {}, 'Repositories'), repos.length ? h('div', { class: 'scroll' }, h('table', { class: 'repos' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Repository'), h('th', { class: 'hide-sm' }, 'Project'), h('th', {}, 'Visibility'), h('th', { class: 'hide-sm' }, 'Created'))),
    h('tbody', {}, repos.map((r) => h('tr', { 'data-repo': r.name },
      h('td', {}, h('a', { class: 'pl-name', href: '/registry/' + r.name }, r.name)),
      h('td', { class: 'hide-sm' }, r.project),
      h('td', {}, visibilityBadge(r.public)),
      h('td', { class: 'hide-sm' }, h('span', { title: fmtTime(r.created_at) }, fmtAgo(r.created_at))))))))
    : h('div', { class: 'empty' }, 'No repository yet. Push one: ', h('code', {}, 'docker push ' + location.host + '/PROJECT/NAME:TAG'), '.'));
  const events = h('section', { class: 'panel', 'aria-label': 'Recent pushes' }, h('h2', {}, 'Recent pushes'), h('div', { class: 'body muted' }, 'Loading…'));
  el.append(events);
  try {
    events.lastChild.replaceWith(h('div', { class: 'body flush' }, eventTable(await api('GET', '/registry/events?limit=20', undefined, opts), true)));
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    events.lastChild.replaceWith(h('div', { class: 'body' }, errorBox('Could not load the pushes', e)));
  }
}

export async function viewRepository(p, el, repo) {
  setTitle(repo);
  const project = repo.split('/')[0];
  const opts = { signal: p.ctl.signal };
  const problem = h('div');
  const head = h('div', { class: 'head' }, h('h1', {}, repo));
  el.append(h('div', { class: 'crumbs' }, h('a', { href: '/registry' }, 'Registry'), ' / ', project), head, problem);
  const tagsPanel = h('section', { class: 'panel', 'aria-label': 'Tags' }, h('h2', {}, 'Tags'), h('div', { class: 'body muted' }, 'Loading…'));
  const eventsPanel = h('section', { class: 'panel', 'aria-label': 'Recent pushes' }, h('h2', {}, 'Recent pushes'), h('div', { class: 'body muted' }, 'Loading…'));
  el.append(tagsPanel, eventsPanel);
  if (!(await registryHere(p, tagsPanel))) return;
  const [repos, tags, events] = await Promise.all([
    api('GET', '/registry/repositories', undefined, opts),
    api('GET', '/registry/tags?repository=' + enc(repo), undefined, opts),
    api('GET', '/registry/events?project=' + enc(project) + '&limit=200', undefined, opts).catch((e) => e)]);
  const info = repos.find((r) => r.name === repo);
  const mine = Array.isArray(events) ? events.filter((e) => e.repository === repo) : [];
  const { admin } = await me(p);
  const meta = h('div', { class: 'meta' });
  const drawMeta = (r) => put(meta, h('span', {}, 'project ', h('b', {}, r.project)), h('span', { class: 'vis' }, visibilityBadge(r.public)),
    h('span', {}, 'created ', h('b', { title: fmtTime(r.created_at) }, fmtAgo(r.created_at))),
    admin ? h('button', { type: 'button', id: 'visibility', 'data-public': r.public ? 'true' : 'false', onclick: async (ev) => {
      ev.target.disabled = true;
      clear(problem);
      try {
        const next = await api('PUT', '/registry/visibility', { repository: repo, public: !r.public });
        toast(repo + ' is now ' + (next.public ? 'public' : 'private'));
        drawMeta(next);
      } catch (e) {
        problem.append(errorBox('Changing the visibility failed', e));
        ev.target.disabled = false;
      }
    } }, r.public ? 'Make private' : 'Make public') : null);
  if (info) { drawMeta(info); head.after(meta); }
  const pushed = (t) => mine.find((e) => e.tag === t.tag && e.digest === t.digest);
  const sizes = new Map();
  const sizeCell = (t) => {
    const td = h('td', { class: 'num size hide-sm' }, h('span', { class: 'muted' }, '…'));
    if (!sizes.has(t.digest)) sizes.set(t.digest, imageSize(p, repo, t.digest));
    sizes.get(t.digest).then((s) => put(td, s.index !== undefined ? h('span', { title: 'an index of ' + s.index + ' manifests' }, s.index + ' images')
      : h('span', { title: s.layers + ' layers and the config, compressed', 'data-bytes': s.bytes }, fmtBytes(s.bytes))),
    (e) => { if (e.name !== 'AbortError') put(td, h('span', { class: 'muted', title: e.message }, '?')); });
    return td;
  };
  const vulnsPanel = h('section', { class: 'panel', 'aria-label': 'Vulnerabilities', id: 'vulns' }, h('h2', {}, 'Vulnerabilities'),
    h('div', { class: 'body muted' }, tags.length ? 'Loading…' : 'No tagged image to show.'));
  tagsPanel.after(vulnsPanel);
  const scans = new Map();
  const scanOf = (digest) => {
    if (!scans.has(digest)) scans.set(digest, api('GET', '/registry/vulns?image=' + enc(repo + '@' + digest), undefined, opts));
    return scans.get(digest);
  };
  const showVulns = (t) => scanOf(t.digest).then((s) => put(vulnsPanel, h('h2', {}, 'Vulnerabilities of ', h('span', { class: 'tag' }, t.tag)),
    vulnTable(s)), (e) => { if (e.name !== 'AbortError') put(vulnsPanel, h('h2', {}, 'Vulnerabilities'), h('div', { class: 'body' }, errorBox('Could not load the findings', e))); });
  const vulnCell = (t) => {
    const td = h('td', { class: 'vulns hide-sm' }, h('span', { class: 'muted' }, '…'));
    scanOf(t.digest).then((s) => put(td, h('button', { type: 'button', class: 'link', 'data-vulns': t.tag, onclick: () => showVulns(t) }, vulnSummary(s))),
      (e) => { if (e.name !== 'AbortError') put(td, h('span', { class: 'muted', title: e.message }, '?')); });
    return td;
  };
  if (tags.length) showVulns(tags.find((t) => t.tag === 'latest') || tags[0]);
  put(tagsPanel, h('h2', {}, 'Tags'), tags.length ? h('div', { class: 'scroll' }, h('table', { class: 'tags' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Tag'), h('th', {}, 'Digest'), h('th', { class: 'num hide-sm' }, 'Size'), h('th', { class: 'hide-sm' }, 'Pushed'), h('th', { class: 'hide-sm' }, 'Vulnerabilities'), h('th', {}, 'Pull'))),
    h('tbody', {}, tags.map((t) => {
      const e = pushed(t);
      return h('tr', { 'data-tag': t.tag },
        h('td', { class: 'tag' }, h('b', {}, t.tag)),
        h('td', {}, shortDigest(t.digest)),
        sizeCell(t),
        h('td', { class: 'hide-sm' }, e ? h('span', { title: fmtTime(e.created_at) }, fmtAgo(e.created_at), h('span', { class: 'muted' }, ' by ' + e.actor)) : h('span', { class: 'muted' }, '–')),
        vulnCell(t),
        h('td', {}, pullCommand(repo, t.tag)));
    }))))
    : h('div', { class: 'body empty' }, 'No tag: every manifest is untagged.'));
  put(eventsPanel, h('h2', {}, 'Recent pushes'), Array.isArray(events) ? h('div', { class: 'body flush' }, eventTable(mine.slice(0, 20), false))
    : h('div', { class: 'body' }, errorBox('Could not load the pushes', events)));
}

/** @type {import('../lib/router.js').Route[]} */
export const routes = [
  { path: /^\/registry$/, view: viewRegistry, nav: 'registry' },
  { path: /^\/registry\/([a-z0-9][a-z0-9._\/-]*)$/, view: viewRepository, nav: 'registry' },
];
