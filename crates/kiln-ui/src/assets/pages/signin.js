// Kiln web UI: the sign-in page: paste an API token.

import { TOKEN_KEY, api, errorBox } from '../lib/api.js';
import { clear, h } from '../lib/dom.js';
import { go, setTitle } from '../lib/router.js';
import { setWho } from '../lib/session.js';

export async function viewSignIn(p, el) {
  setTitle('Sign in');
  document.getElementById('nav').hidden = true;
  const why = sessionStorage.getItem('kiln.why');
  sessionStorage.removeItem('kiln.why');
  const input = h('input', { id: 'token', type: 'password', autocomplete: 'current-password', required: true, placeholder: 'kiln_…', 'aria-describedby': 'token-help' });
  const err = h('div');
  const form = h('form', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      clear(err);
      const secret = input.value.trim();
      if (!secret) return;
      sessionStorage.setItem(TOKEN_KEY, secret);
      try {
        setWho(await api('GET', '/info', undefined, { noSignOut: true }));
      } catch (e) {
        sessionStorage.removeItem(TOKEN_KEY);
        err.append(e.status === 401
          ? h('div', { class: 'error', role: 'alert' }, h('b', {}, 'That token was not accepted.'), 'Check it was copied whole and has not been revoked.')
          : errorBox('Could not sign in', e));
        input.focus();
        return;
      }
      const next = sessionStorage.getItem('kiln.next') || '/';
      sessionStorage.removeItem('kiln.next');
      go(next === '/signin' ? '/' : next, true);
    },
  },
  h('div', { class: 'field' }, h('label', { for: 'token' }, 'API token'), input,
    h('span', { class: 'help', id: 'token-help' },
      'On its first start the server writes the admin token to ', h('code', {}, '<data>/admin.token'),
      '. Make more with ', h('code', {}, 'kiln token create NAME --role developer'), '. It is kept in this tab only.')),
  err,
  h('button', { class: 'primary', type: 'submit' }, 'Sign in'));
  el.append(h('div', { class: 'signin' },
    why ? h('div', { class: 'error', role: 'alert' }, why) : null,
    h('div', { class: 'panel' }, h('div', { class: 'body' }, h('h1', {}, 'Sign in to Kiln'),
      h('p', { class: 'muted' }, 'Paste an API token.'), form))));
  input.focus();
}

/** @type {import('../lib/router.js').Route[]} */
export const routes = [
  { path: /^\/signin$/, view: viewSignIn, nav: null },
];
