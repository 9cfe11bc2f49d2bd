// @ts-check
// Kiln web UI: the page registry and the page on screen. Each page module exports `routes`
// (a path pattern, the view that draws it, the nav entry it lights up); app.js registers them
// all at start. Going to a page aborts the one on screen (its requests, event streams and
// timers, through its AbortController) and draws the new one into <main>. Links inside the
// app are followed without reloading; deep links work because the server answers every UI
// path with the app's page.

import { ApiError, TOKEN_KEY, api, errorBox, token } from './api.js';
import { clear, h } from './dom.js';
import { renderWho, setWho, who } from './session.js';

/**
 * A view draws a page into `el`; the route's captured groups come after (URL-decoded).
 * @typedef {(p: import('./api.js').Page, el: HTMLElement, ...args: string[]) => Promise<void> | void} View
 */
/**
 * One route of a page module.
 * @typedef {object} Route
 * @property {RegExp} path matched against `location.pathname`
 * @property {View} view
 * @property {string | null} nav the `data-nav` of the top bar's link it lights up
 */

/** @type {Route[]} */
const routes = [];

/**
 * Adds pages' routes (in order: the first that matches a path draws it).
 * @param {...Route[]} lists
 */
export function register(...lists) {
  for (const list of lists) routes.push(...list);
}

/** @type {import('./api.js').Page | null} the page on screen */
let page = null;
const main = () => /** @type {HTMLElement} */ (document.getElementById('main'));

function leave() {
  if (!page) return;
  page.ctl.abort();
  page.timers.forEach(clearTimeout);
  page = null;
}

/** @returns {import('./api.js').Page} */
function newPage() {
  leave();
  page = { ctl: new AbortController(), timers: [] };
  return page;
}

/** The page on screen, if any. */
export function current() { return page; }

/**
 * Runs f after ms while the page is still on screen.
 * @param {import('./api.js').Page} p
 * @param {number} ms
 * @param {() => unknown} f
 */
export function later(p, ms, f) {
  if (p.ctl.signal.aborted) return;
  p.timers.push(setTimeout(() => { if (!p.ctl.signal.aborted) f(); }, ms));
}

/**
 * Goes to a path of the app (a new history entry, or in place of this one).
 * @param {string} path
 * @param {boolean} [replace]
 */
export function go(path, replace) {
  if (replace) history.replaceState(null, '', path); else history.pushState(null, '', path);
  render();
}

/** @param {string} [t] */
export function setTitle(t) { document.title = t ? t + ' · Kiln' : 'Kiln'; }

/**
 * Signs out: forgets the token and who it was, says why on the sign-in page, and comes back
 * here after the next sign-in.
 * @param {string} [why]
 */
export function signOut(why) {
  sessionStorage.removeItem(TOKEN_KEY);
  setWho(null);
  if (why) sessionStorage.setItem('kiln.why', why);
  if (location.pathname !== '/signin') sessionStorage.setItem('kiln.next', location.pathname);
  go('/signin', true);
}

/** Draws the page of the current path. */
export async function render() {
  const path = location.pathname;
  if (!token() && path !== '/signin') {
    sessionStorage.setItem('kiln.next', path + location.search + location.hash);
    history.replaceState(null, '', '/signin');
    return render();
  }
  const p = newPage();
  const nav = /** @type {HTMLElement} */ (document.getElementById('nav'));
  for (const r of routes) {
    const m = path.match(r.path);
    if (!m) continue;
    for (const a of /** @type {NodeListOf<HTMLAnchorElement>} */ (nav.querySelectorAll('a'))) {
      if (a.dataset.nav === r.nav) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    nav.hidden = !token();
    renderWho();
    if (token() && !who() && r.nav) {
      api('GET', '/info', undefined, { signal: p.ctl.signal }).then((w) => { setWho(w); renderWho(); }).catch(() => {});
    }
    const el = clear(main());
    try {
      await r.view(p, el, ...m.slice(1).map(decodeURIComponent));
    } catch (e) {
      if ((e instanceof Error && e.name === 'AbortError') || p.ctl.signal.aborted) return;
      if (e instanceof ApiError && e.status === 401) return;
      el.append(errorBox('This page could not be shown', e));
    }
    return;
  }
  clear(main()).append(h('div', { class: 'notice' }, h('b', {}, 'No such page: '), path, ' — ', h('a', { href: '/' }, 'go to the pipelines')));
}

/** Whether the page on screen may go: nothing unsaved in it, or the user says so. */
export function leaveUnsaved() {
  return !(page && page.unsaved && page.unsaved()) || confirm('Leave this page? Your unsaved changes are lost.');
}

/** Follows the app's links without reloading, and the browser's back, forward and cache. */
export function start() {
  document.addEventListener('click', (ev) => {
    const t = /** @type {Element | null} */ (ev.target);
    const a = t && t.closest && t.closest('a');
    if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
    const href = a.getAttribute('href');
    if (!href || !href.startsWith('/') || href.startsWith('/api/') || a.hasAttribute('download') || a.getAttribute('target')) return;
    ev.preventDefault();
    if (!leaveUnsaved()) return;
    go(href);
  });
  window.addEventListener('popstate', render);
  // A page the browser keeps in its back/forward cache would keep its event streams open
  // (and the browser allows 6 connections to a server): close them when it goes, and load
  // the page again if it comes back from that cache.
  window.addEventListener('pagehide', () => leave());
  window.addEventListener('pageshow', (ev) => { if (ev.persisted) render(); });
  window.addEventListener('beforeunload', (ev) => {
    if (page && page.unsaved && page.unsaved()) { ev.preventDefault(); ev.returnValue = ''; }
  });
}
