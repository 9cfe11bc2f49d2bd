// Kiln web UI: the projects list and a project's overview.

import { api, errorBox } from '../lib/api.js';
import { enc, h } from '../lib/dom.js';
import { fmtAgo, fmtTime } from '../lib/format.js';
import { envOrder, projectPath, projectTabs } from '../lib/project.js';
import { setTitle } from '../lib/router.js';
import { appTable } from './config.js';

export async function viewProjects(p, el) {
  setTitle('Projects');
  el.append(h('div', { class: 'head' }, h('h1', {}, 'Projects')));
  const list = await api('GET', '/projects', undefined, { signal: p.ctl.signal });
  if (!list.length) {
    el.append(h('div', { class: 'notice' }, h('b', {}, 'No project yet. '), 'An admin makes one with ', h('code', {}, 'kiln project create NAME'), '.'));
    return;
  }
  el.append(h('section', { class: 'panel', 'aria-label': 'Projects' }, h('div', { class: 'scroll' }, h('table', { class: 'projects' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Project'), h('th', {}, 'Pages'), h('th', { class: 'hide-sm' }, 'Created'))),
    h('tbody', {}, list.map((pr) => h('tr', { 'data-project': pr.name },
      h('td', {}, h('a', { class: 'pl-name', href: projectPath(pr.name) }, pr.name)),
      h('td', { class: 'links' }, h('a', { href: projectPath(pr.name, 'environments') }, 'Environments'), h('a', { href: projectPath(pr.name, 'config') }, 'Config')),
      h('td', { class: 'hide-sm' }, h('span', { title: fmtTime(pr.created_at) }, fmtAgo(pr.created_at))))))))));
}

export async function viewProject(p, el, project) {
  setTitle(project);
  el.append(h('div', { class: 'crumbs' }, h('a', { href: '/projects' }, 'Projects')), h('div', { class: 'head' }, h('h1', {}, project)), projectTabs(project, 'overview'));
  const opts = { signal: p.ctl.signal };
  const soft = (e) => { if (e.name === 'AbortError') throw e; return e; };
  const [pipelines, envs, apps] = await Promise.all([
    api('GET', projectPath(project, 'pipelines'), undefined, opts),
    api('GET', projectPath(project, 'environments'), undefined, opts).catch(soft),
    api('GET', projectPath(project, 'apps'), undefined, opts).catch(soft)]);
  el.append(h('section', { class: 'panel', 'aria-label': 'Pipelines' }, h('h2', {}, 'Pipelines'),
    pipelines.length ? h('div', { class: 'scroll' }, h('table', {}, h('tbody', {}, pipelines.map((pl) => h('tr', { 'data-pipeline': pl.name },
      h('td', {}, h('a', { class: 'pl-name', href: '/p/' + enc(project) + '/' + enc(pl.name) }, pl.name)),
      h('td', { class: 'muted' }, pl.jobs + (pl.jobs === 1 ? ' job' : ' jobs')),
      h('td', { class: 'muted hide-sm' }, 'updated ', h('span', { title: fmtTime(pl.updated_at) }, fmtAgo(pl.updated_at))))))))
      : h('div', { class: 'empty' }, 'No pipeline yet.')),
  h('div', { class: 'grid2' },
    h('section', { class: 'panel', 'aria-label': 'Environments' }, h('h2', {}, h('a', { href: projectPath(project, 'environments') }, 'Environments')),
      h('div', { class: 'body' }, !Array.isArray(envs) ? errorBox('Could not load the environments', envs)
        : envs.length ? envOrder(envs) : h('p', { class: 'muted' }, 'None yet.'))),
    h('section', { class: 'panel', 'aria-label': 'Config' }, h('h2', {}, h('a', { href: projectPath(project, 'config') }, 'Config')),
      Array.isArray(apps) ? appTable(project, apps) : h('div', { class: 'body' }, errorBox('Could not load the config', apps)))));
}

/** @type {import('../lib/router.js').Route[]} */
export const routes = [
  { path: /^\/projects$/, view: viewProjects, nav: 'projects' },
  { path: /^\/projects\/([^/]+)$/, view: viewProject, nav: 'projects' },
];
