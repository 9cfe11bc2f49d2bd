// Kiln web UI: A project's environments: the deployments board, variables, new environments.

import { api, errorBox } from '../lib/api.js';
import { clear, enc, h, put, toast } from '../lib/dom.js';
import { envOrder, projectCrumbs, projectPath, projectTabs, protectedBadge } from '../lib/project.js';
import { setTitle } from '../lib/router.js';
import { me } from '../lib/session.js';
import { deployBoard } from './deploys.js';

export async function viewEnvironments(p, el, project) {
  setTitle(project + ' environments');
  const who = await me(p);
  const base = projectPath(project, 'environments');
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const board = deployBoard(p, project, who);
  el.append(projectCrumbs(project), h('div', { class: 'head' }, h('h1', {}, 'Environments')), projectTabs(project, 'environments'), body);

  // Draws the page again; `focus` (a selector) gets the focus back after a change.
  const load = async (focus) => {
    let envs;
    try {
      envs = await api('GET', base, undefined, { signal: p.ctl.signal });
    } catch (e) {
      if (e.name === 'AbortError') return;
      put(body, errorBox('Could not load the environments of ' + project, e));
      return;
    }
    put(body,
      envs.length ? h('div', { class: 'meta' }, h('span', {}, 'in their order'), envOrder(envs))
        : h('div', { class: 'notice', 'data-empty': 'environments' }, h('b', {}, 'No environment yet. '),
          who.admin ? 'Create the first one below.' : ['An admin makes them with ', h('code', {}, 'kiln env create dev --project ' + project), '.']),
      envs.length ? board.show(envs) : null,
      envs.length ? h('div', { class: 'envs' }, envs.map(envCard)) : null,
      who.admin ? createForm(envs) : null);
    const f = focus && body.querySelector(focus);
    if (f) f.focus();
  };

  /** One environment: protected or not, what it comes after, its variables, the form to set one. */
  const envCard = (e) => {
    const err = h('div');
    const here = 'section[data-env="' + CSS.escape(e.name) + '"]';
    const unset = async (v) => {
      if (!confirm('Unset ' + v.name + ' in ' + e.name + '?')) return;
      clear(err);
      try {
        await api('DELETE', base + '/' + enc(e.name) + '/variables/' + enc(v.name));
        toast('Unset ' + v.name + ' in ' + e.name);
        await load(here + ' .var-name');
      } catch (x) {
        err.append(errorBox('Unsetting ' + v.name + ' failed', x));
      }
    };
    return h('section', { class: 'panel env', 'data-env': e.name, 'aria-label': 'Environment ' + e.name },
      h('h2', {}, h('span', { class: 'env-name' }, e.name), e.protected ? protectedBadge() : null,
        h('span', { class: 'muted small after' }, e.after ? 'after ' + e.after : 'first')),
      e.variables.length
        ? h('div', { class: 'scroll' }, h('table', { class: 'vars' },
          h('thead', {}, h('tr', {}, h('th', {}, 'Variable'), h('th', {}, 'Value'), who.developer ? h('th', {}, h('span', { class: 'sr' }, 'Actions')) : null)),
          h('tbody', {}, e.variables.map((v) => h('tr', { 'data-var': v.name, 'data-secret': v.secret ? 'true' : 'false' },
            h('td', { class: 'mono name' }, v.name),
            h('td', { class: 'mono value' }, h('span', { class: 'v' }, v.value), v.secret ? h('span', { class: 'tag', title: 'a secret: stored sealed, never shown, masked in logs' }, 'secret') : null),
            who.developer ? h('td', { class: 'num' }, (v.secret ? who.admin : true)
              ? h('button', { type: 'button', class: 'small-btn', 'data-unset': v.name, 'aria-label': 'Unset ' + v.name + ' in ' + e.name, onclick: () => unset(v) }, 'Unset') : null) : null)))))
        : h('div', { class: 'empty small', 'data-vars': 'none' }, 'No variables.'),
      who.developer ? varForm(e, err, here) : null,
      h('div', { class: 'env-err' }, err));
  };

  /** NAME = value [secret] Set: a developer sets plain values, an admin secrets too. */
  const varForm = (e, err, here) => {
    const name = h('input', { class: 'var-name mono', 'aria-label': 'Variable name in ' + e.name, placeholder: 'NAME', autocapitalize: 'characters', spellcheck: 'false', autocomplete: 'off', required: true });
    const value = h('input', { class: 'var-value mono', 'aria-label': 'Value of the variable in ' + e.name, placeholder: 'value', spellcheck: 'false', autocomplete: 'off' });
    const secret = who.admin ? h('input', { type: 'checkbox', class: 'var-secret' }) : null;
    if (secret) secret.addEventListener('change', () => { value.type = secret.checked ? 'password' : 'text'; });
    return h('form', {
      class: 'var-form', 'aria-label': 'Set a variable in ' + e.name,
      onsubmit: async (ev) => {
        ev.preventDefault();
        clear(err);
        const n = name.value.trim();
        const isSecret = !!(secret && secret.checked);
        try {
          await api('PUT', base + '/' + enc(e.name) + '/variables/' + enc(n), { value: value.value, secret: isSecret });
          toast('Set ' + n + ' in ' + e.name + (isSecret ? ' (a secret)' : ''));
          await load(here + ' .var-name');
        } catch (x) {
          err.append(errorBox('Setting ' + n + ' failed', x));
        }
      },
    }, name, h('span', { class: 'eq', 'aria-hidden': 'true' }, '='), value,
    secret ? h('label', { class: 'check small' }, secret, 'secret') : null,
    h('button', { type: 'submit', class: 'set-var' }, 'Set'));
  };

  /** Name, after, protected: an admin's small form. */
  const createForm = (envs) => {
    const err = h('div');
    const name = h('input', { id: 'env-name', required: true, placeholder: envs.length ? 'qa' : 'dev', spellcheck: 'false', autocomplete: 'off' });
    const after = h('select', { id: 'env-after' }, h('option', { value: '' }, '(first)'),
      envs.map((e, i) => h('option', { value: e.name, selected: i === envs.length - 1 }, e.name)));
    const prot = h('input', { type: 'checkbox', id: 'env-protected' });
    return h('section', { class: 'panel', 'aria-label': 'New environment' }, h('h2', {}, 'New environment'),
      h('div', { class: 'body' }, h('form', {
        class: 'inline-form', id: 'env-create',
        onsubmit: async (ev) => {
          ev.preventDefault();
          clear(err);
          try {
            const made = await api('POST', base, { name: name.value.trim(), after: after.value || null, protected: prot.checked });
            toast('Created ' + made.name);
            await load('section[data-env="' + CSS.escape(made.name) + '"] .var-name');
          } catch (x) {
            err.append(errorBox('Creating the environment failed', x));
          }
        },
      },
      h('div', { class: 'field' }, h('label', { for: 'env-name' }, 'Name'), name),
      h('div', { class: 'field' }, h('label', { for: 'env-after' }, 'After'), after),
      h('div', { class: 'field check' }, prot, h('label', { for: 'env-protected' }, 'Protected'), h('span', { class: 'help' }, 'releases need a second person')),
      h('button', { class: 'primary', type: 'submit' }, 'Create')), err));
  };
  await load();
}

/** @type {import('../lib/router.js').Route[]} */
export const routes = [
  { path: /^\/projects\/([^/]+)\/environments$/, view: viewEnvironments, nav: 'projects' },
];
