// Kiln web UI: A project's paths, tabs, crumbs and badges, shared by the project pages.

import { enc, h } from './dom.js';

/** `/projects/P` or `/projects/P/rest` (rest already encoded). */
export function projectPath(project, rest) { return '/projects/' + enc(project) + (rest ? '/' + rest : ''); }

/** A project's pages as tabs. */
export function projectTabs(project, current) {
  return h('nav', { class: 'tabs project-tabs', 'aria-label': 'Project ' + project },
    [['overview', 'Overview', projectPath(project)], ['environments', 'Environments', projectPath(project, 'environments')], ['config', 'Config', projectPath(project, 'config')]]
      .map(([k, label, href]) => h('a', { href, class: 'tab', 'data-tab': k, 'aria-current': k === current ? 'page' : null }, label)));
}

export function projectCrumbs(project, ...rest) {
  return h('div', { class: 'crumbs' }, h('a', { href: '/projects' }, 'Projects'), ' / ', h('a', { href: projectPath(project) }, project), rest.map((r) => [' / ', r]));
}

export function protectedBadge() {
  return h('span', { class: 'badge s-waiting prot', 'data-protected': 'true', title: 'protected: a change here needs the approval of a second person' }, 'protected');
}

/** Environments in their order: `dev → staging → prod`, an arrow where one comes right after the one before. */
export function envOrder(envs) {
  return h('div', { class: 'env-order', 'aria-label': 'Order' }, envs.map((e, i) => [
    i ? h('span', { class: 'arrow', 'aria-hidden': 'true' }, envs[i - 1].name === e.after ? '→' : '·') : null,
    h('span', { class: 'env-chip', 'data-env': e.name }, e.name, e.protected ? protectedBadge() : null)]));
}

/** The page of a service's deployments to an environment. */
export function deploysPath(project, service, env) { return projectPath(project, 'deploys/' + enc(service) + '/' + enc(env)); }

/** The API path of the same: `/projects/P/deployments/S/E`. */
export function deploymentsApi(project, service, env) { return projectPath(project, 'deployments/' + enc(service) + '/' + enc(env)); }
