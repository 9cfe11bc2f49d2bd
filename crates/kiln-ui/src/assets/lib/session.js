// @ts-check
// Kiln web UI: who is signed in (`GET /info`, asked once per sign-in) and what their role lets
// them change; the top bar's name and Sign out button.

import { api } from './api.js';
import { clear, h } from './dom.js';

/** @type {import('./api-types.js').ServerInfo | null} */
let whoami = null;

/** The signed-in token's info, when known. */
export function who() { return whoami; }

/**
 * Keeps the info of the token signed in with (null: forget it, on sign out).
 * @param {import('./api-types.js').ServerInfo | null} w
 */
export function setWho(w) { whoami = w; }

/**
 * Who the caller is (`GET /info`, once per sign-in) and what their role lets them change.
 * @param {import('./api.js').Page} p
 * @returns {Promise<{ developer: boolean, admin: boolean, name: string | null }>}
 */
export async function me(p) {
  if (!whoami) {
    try {
      whoami = await api('GET', '/info', undefined, { signal: p.ctl.signal });
      renderWho();
    } catch (e) { if (e instanceof Error && e.name === 'AbortError') throw e; }
  }
  return { developer: !!whoami && whoami.role !== 'viewer', admin: !!whoami && whoami.role === 'admin', name: whoami ? whoami.token : null };
}

/** @type {() => void} */
let onSignOut = () => {};

/**
 * What the Sign out button does (the router's sign out).
 * @param {() => void} f
 */
export function setSignOut(f) { onSignOut = f; }

/** The top bar's name and role, and Sign out. */
export function renderWho() {
  const w = clear(/** @type {HTMLElement} */ (document.getElementById('who')));
  if (!sessionStorage.getItem('kiln.token')) return;
  if (whoami) w.append(h('span', { class: 'name', title: 'role: ' + whoami.role }, whoami.token + ' · ' + whoami.role));
  w.append(h('button', { type: 'button', onclick: () => onSignOut() }, 'Sign out'));
}
