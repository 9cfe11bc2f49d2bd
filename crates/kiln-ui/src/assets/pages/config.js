// Kiln web UI: the config center: a project's applications and an application's editor, preview, diff, releases and audit log.

import { ApiError, api, errorBox } from '../lib/api.js';
import { clear, enc, h, put, shortDigest, stateBadge, toast } from '../lib/dom.js';
import { fmtAgo, fmtBytes, fmtTime } from '../lib/format.js';
import { projectCrumbs, projectPath, projectTabs, protectedBadge } from '../lib/project.js';
import { go, setTitle } from '../lib/router.js';
import { me } from '../lib/session.js';

const CONFIG_TABS = [['templates', 'Templates'], ['values', 'Values'], ['preview', 'Preview'], ['diff', 'Diff'], ['releases', 'Releases'], ['audit', 'Audit log']];

const RELEASE_STATE = { released: 'success', pending: 'waiting', rejected: 'canceled' };

export function appTable(project, apps) {
  if (!apps.length) return h('div', { class: 'empty' }, 'No application has config yet.');
  return h('div', { class: 'scroll' }, h('table', { class: 'apps' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Application'), h('th', {}, 'Files'), h('th', { class: 'hide-sm' }, 'Values for'), h('th', { class: 'hide-sm' }, 'Updated'))),
    h('tbody', {}, apps.map((a) => h('tr', { 'data-app': a.name },
      h('td', {}, h('a', { class: 'pl-name', href: projectPath(a.project, 'config/' + enc(a.name)) }, a.name)),
      h('td', { class: 'mono files' }, a.files.length ? a.files.join(', ') : h('span', { class: 'muted' }, '–')),
      h('td', { class: 'hide-sm' }, a.environments.length ? a.environments.join(', ') : h('span', { class: 'muted' }, 'shared only')),
      h('td', { class: 'hide-sm' }, h('span', { title: fmtTime(a.updated_at) }, fmtAgo(a.updated_at))))))));
}

export async function viewConfigApps(p, el, project) {
  setTitle(project + ' config');
  const who = await me(p);
  el.append(projectCrumbs(project), h('div', { class: 'head' }, h('h1', {}, 'Config')), projectTabs(project, 'config'));
  const apps = await api('GET', projectPath(project, 'apps'), undefined, { signal: p.ctl.signal });
  el.append(h('section', { class: 'panel', 'aria-label': 'Applications' }, h('h2', {}, 'Applications'), appTable(project, apps)));
  if (!who.developer) return;
  const name = h('input', { id: 'app-name', required: true, placeholder: 'api', spellcheck: 'false', autocomplete: 'off' });
  const file = h('input', { id: 'app-file', required: true, value: 'app.yaml', spellcheck: 'false', autocomplete: 'off' });
  el.append(h('section', { class: 'panel', 'aria-label': 'New application' }, h('h2', {}, 'New application'), h('div', { class: 'body' },
    h('form', {
      class: 'inline-form', id: 'app-create',
      onsubmit: (ev) => {
        ev.preventDefault();
        go(projectPath(project, 'config/' + enc(name.value.trim())) + '?file=' + enc(file.value.trim()));
      },
    },
    h('div', { class: 'field' }, h('label', { for: 'app-name' }, 'Name'), name),
    h('div', { class: 'field' }, h('label', { for: 'app-file' }, 'First file'), file),
    h('button', { class: 'primary', type: 'submit' }, 'Open the editor')),
    h('p', { class: 'muted small' }, 'Nothing is stored until you save the file: the application is made with its first file or values.'))));
}

/** The server's diagnostics as a list: `file:line:column: message`, the place a button when `pick` can show it. */
function diagList(diags, pick) {
  return h('ul', { class: 'diags' }, diags.map((d) => {
    const where = d.file + (d.line ? ':' + d.line + (d.column ? ':' + d.column : '') : '');
    return h('li', { 'data-file': d.file, 'data-line': d.line, 'data-column': d.column },
      pick ? h('button', { type: 'button', class: 'link mono', title: 'Show it in the editor', onclick: () => pick(d) }, where) : h('span', { class: 'mono' }, where),
      ': ' + d.message);
  }));
}

/** What failed, with the diagnostics (see diagList) when the server gave some. */
function problemBox(title, e, pick) {
  if (!(e instanceof ApiError) || !e.diagnostics || !e.diagnostics.length) return errorBox(title, e);
  // The message ends with the first diagnostic ("…; the first: app.yaml:3:9: …"), listed below anyway.
  const cut = e.message.indexOf('; the first: ');
  return h('div', { class: 'error problems', role: 'alert' }, h('b', {}, title), cut > 0 ? e.message.slice(0, cut) : e.message, diagList(e.diagnostics, pick));
}

/**
 * A text editor for a template or a values file: a textarea with line numbers, Save (also
 * Ctrl+S) and Revert, an "unsaved changes" mark, Enter keeping the line's indentation, and
 * the server's diagnostics under it (each one puts the cursor on its line and column; its
 * line number turns red).
 * o: { key, title, value, readOnly, fresh (never stored), help, save(value) -> Promise,
 *      saved(result), changed(), extra (more buttons) }
 */
function codeEditor(o) {
  let saved = o.value;
  let fresh = !!o.fresh;
  let busy = false;
  let bad = new Set();
  const id = 'ed-' + o.key.replace(/[^A-Za-z0-9_-]/g, '_');
  const gutter = h('div', { class: 'ed-gutter', 'aria-hidden': 'true' });
  const ta = h('textarea', { class: 'ed-text', id, spellcheck: 'false', autocapitalize: 'off', autocomplete: 'off', wrap: 'off', rows: 16, readonly: !!o.readOnly, 'aria-describedby': id + '-help' });
  ta.value = o.value;
  const mark = h('span', { class: 'ed-dirty', hidden: true }, 'unsaved changes');
  const pos = h('span', { class: 'ed-pos muted small', 'aria-hidden': 'true' });
  const diags = h('div', { class: 'ed-diags', 'aria-live': 'polite' });
  const saveBtn = o.readOnly ? null : h('button', { type: 'button', class: 'primary ed-save', onclick: () => save() }, 'Save');
  const revertBtn = o.readOnly ? null : h('button', { type: 'button', class: 'ed-revert', title: 'Back to what is stored', onclick: () => { ta.value = saved; problems(null); changed(); } }, 'Revert');
  const el = h('div', { class: 'editor', 'data-editor': o.key },
    h('div', { class: 'ed-bar' }, h('label', { for: id, class: 'mono ed-title' }, o.title), mark, h('span', { class: 'spacer' }), pos, revertBtn, o.extra, saveBtn),
    h('div', { class: 'ed-box' }, gutter, ta),
    h('div', { class: 'ed-help muted small', id: id + '-help' }, o.help, o.readOnly ? ' Read only: your role cannot change it.' : ' Ctrl+S saves; Tab moves on to the next control.'),
    diags);
  let drawn = -1;
  const drawGutter = (force) => {
    const n = ta.value.split('\n').length;
    if (n === drawn && !force) return;
    drawn = n;
    const rows = [];
    for (let i = 1; i <= n; i++) rows.push(h('div', { class: bad.has(i) ? 'bad' : null, 'data-line': i }, i));
    put(gutter, rows, h('div', { class: 'ed-pad' }));
    gutter.scrollTop = ta.scrollTop;
  };
  const dirty = () => fresh || ta.value !== saved;
  const changed = () => {
    mark.hidden = !dirty();
    el.dataset.dirty = dirty() ? 'true' : 'false';
    drawGutter(false);
    if (o.changed) o.changed();
  };
  const showPos = () => {
    const before = ta.value.slice(0, ta.selectionStart).split('\n');
    pos.textContent = 'Ln ' + before.length + ', Col ' + (before[before.length - 1].length + 1);
  };
  /** The server's answer under the editor, its lines marked (null: none). */
  const problems = (box, lines) => {
    put(diags, box);
    bad = new Set(lines || []);
    drawGutter(true);
  };
  const goTo = (line, column) => {
    const ls = ta.value.split('\n');
    const l = Math.max(1, Math.min(line || 1, ls.length));
    let at = 0;
    for (let i = 0; i < l - 1; i++) at += ls[i].length + 1;
    at += Math.max(0, Math.min((column || 1) - 1, ls[l - 1].length));
    ta.focus();
    ta.setSelectionRange(at, at);
    const lh = parseFloat(getComputedStyle(ta).lineHeight) || 18;
    ta.scrollTop = Math.max(0, (l - 1) * lh - ta.clientHeight / 2);
    gutter.scrollTop = ta.scrollTop;
    showPos();
  };
  const save = async () => {
    if (busy || o.readOnly) return;
    busy = true;
    saveBtn.disabled = true;
    const value = ta.value;
    try {
      const r = await o.save(value);
      saved = value;
      fresh = false;
      problems(null);
      changed();
      if (o.saved) o.saved(r);
    } catch (e) {
      const mine = (e.diagnostics || []).filter((d) => d.file === o.title);
      problems(problemBox(fresh ? 'Not saved' : 'Not saved: the stored ' + o.title + ' is unchanged', e, (d) => goTo(d.line, d.column)), mine.map((d) => d.line));
      if (mine.length) goTo(mine[0].line, mine[0].column);
    } finally {
      busy = false;
      saveBtn.disabled = false;
    }
  };
  ta.addEventListener('input', changed);
  ta.addEventListener('scroll', () => { gutter.scrollTop = ta.scrollTop; });
  for (const ev of ['keyup', 'click', 'focus']) ta.addEventListener(ev, showPos);
  ta.addEventListener('keydown', (ev) => {
    if ((ev.ctrlKey || ev.metaKey) && !ev.altKey && ev.key.toLowerCase() === 's') {
      ev.preventDefault();
      save();
      return;
    }
    if (ev.key === 'Enter' && !ev.ctrlKey && !ev.metaKey && !ev.altKey && !ev.shiftKey && !o.readOnly) {
      const start = ta.selectionStart;
      const lineStart = ta.value.lastIndexOf('\n', start - 1) + 1;
      const indent = /^[ \t]*/.exec(ta.value.slice(lineStart, start))[0];
      if (!indent) return;
      ev.preventDefault();
      // insertText keeps the browser's undo history; setRangeText where it is missing.
      if (!document.execCommand('insertText', false, '\n' + indent)) {
        ta.setRangeText('\n' + indent, start, ta.selectionEnd, 'end');
        changed();
      }
    }
  });
  drawGutter(true);
  changed();
  return {
    el, dirty, goTo, problems, save,
    value: () => ta.value,
    /** Takes a stored value (after a reload) unless the text was edited. */
    stored: (v) => { if (!dirty()) { saved = v; ta.value = v; changed(); } else { saved = v; changed(); } },
    focus: () => ta.focus(),
  };
}

/** A rendered file with line numbers. */
function fileView(name, text) {
  const lines = text.split('\n');
  if (lines.length > 1 && lines[lines.length - 1] === '') lines.pop();
  return h('div', { class: 'code-file', 'data-file': name },
    h('div', { class: 'code-head' }, h('span', { class: 'mono' }, name),
      h('span', { class: 'muted small' }, lines.length + (lines.length === 1 ? ' line · ' : ' lines · ') + fmtBytes(new TextEncoder().encode(text).length))),
    h('div', { class: 'scroll' }, h('table', { class: 'code' }, h('tbody', {},
      lines.map((l, i) => h('tr', {}, h('td', { class: 'ln' }, i + 1), h('td', { class: 'tx' }, l)))))));
}

/** A config diff, file by file: added lines green, removed lines red, hunks blue, with the old and new line numbers. */
function diffView(d) {
  if (!d.files.length) {
    return h('div', { class: 'empty', 'data-diff': 'none' }, 'No difference: ', h('b', {}, d.from), ' and ', h('b', {}, d.to), ' are the same files.');
  }
  return h('div', { class: 'diff', 'data-from': d.from, 'data-to': d.to }, d.files.map((f) => {
    const rows = [];
    let a = 0, b = 0, plus = 0, minus = 0;
    for (const line of f.unified.split('\n')) {
      if (line === '') continue;
      const hunk = /^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@/.exec(line);
      let kind, na = /** @type {string | number} */ (''), nb = /** @type {string | number} */ ('');
      if (line.startsWith('--- ') || line.startsWith('+++ ')) kind = 'fh';
      else if (hunk) { kind = 'hunk'; a = Number(hunk[1]); b = Number(hunk[2]); }
      else if (line[0] === '+') { kind = 'add'; nb = b++; plus++; }
      else if (line[0] === '-') { kind = 'del'; na = a++; minus++; }
      else if (line[0] === '\\') kind = 'meta';
      else { kind = 'ctx'; na = a++; nb = b++; }
      rows.push(h('tr', { class: 'dl ' + kind, 'data-kind': kind }, h('td', { class: 'ln' }, na), h('td', { class: 'ln' }, nb), h('td', { class: 'tx' }, line)));
    }
    return h('div', { class: 'diff-file', 'data-file': f.file, 'data-change': f.change },
      h('div', { class: 'code-head' }, h('span', { class: 'mono' }, f.file), h('span', { class: 'chg c-' + f.change }, f.change),
        h('span', { class: 'muted small' }, h('span', { class: 'plus' }, '+' + plus), ' ', h('span', { class: 'minus' }, '−' + minus))),
      h('div', { class: 'scroll' }, h('table', { class: 'code diff-lines' }, h('tbody', {}, rows))));
  }));
}

export async function viewConfigApp(p, el, project, name) {
  setTitle(name + ' config');
  const who = await me(p);
  const opts = { signal: p.ctl.signal };
  const base = projectPath(project, 'apps/' + enc(name));
  const q = new URLSearchParams(location.search);
  const [envs, stored] = await Promise.all([
    api('GET', projectPath(project, 'environments'), undefined, opts),
    // A developer may open an application that has no config yet: it is made with its first save.
    api('GET', base, undefined, opts).catch((e) => { if (e.status === 404 && who.developer) return null; throw e; })]);
  let cfg = stored || { project, name, items: [], shared_values: '', values: [], updated_at: null };
  let env = envs.some((e) => e.name === q.get('env')) ? q.get('env') : envs.length ? envs[0].name : null;
  let tab = CONFIG_TABS.some(([k]) => k === q.get('tab')) ? q.get('tab') : 'templates';
  const envOf = (n) => envs.find((e) => e.name === n);
  const tplEditors = new Map(); // by file
  const valEditors = new Map(); // '' is the shared values, else an environment's
  let currentFile = null;
  let outcome = null; // the answer to the last release asked here, shown until the environment changes
  let acting = false;
  const envPath = (e) => base + '/environments/' + enc(e);

  const meta = h('div', { class: 'meta' });
  const problem = h('div');
  const envBar = h('div', { class: 'env-pick', role: 'group', 'aria-label': 'Environment' });
  const tabBar = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Config of ' + name });
  const panels = {};
  for (const [k, label] of CONFIG_TABS) {
    panels[k] = h('section', { class: 'tab-panel', role: 'tabpanel', id: 'tab-' + k, 'aria-label': label, hidden: true });
  }
  el.append(projectCrumbs(project, h('a', { href: projectPath(project, 'config') }, 'Config')),
    h('div', { class: 'head' }, h('h1', {}, name)), meta, problem,
    h('div', { class: 'cfg-bar' }, tabBar, envBar), ...Object.values(panels));

  const drawMeta = () => put(meta,
    h('span', {}, h('b', {}, cfg.items.length), cfg.items.length === 1 ? ' file' : ' files'),
    h('span', {}, 'values for ', h('b', {}, cfg.values.length ? cfg.values.map((v) => v.environment).join(', ') : 'no environment yet')),
    cfg.updated_at ? h('span', {}, 'updated ', h('b', { title: fmtTime(cfg.updated_at) }, fmtAgo(cfg.updated_at))) : h('span', { class: 'new-app' }, h('b', {}, 'new: '), 'nothing stored yet'));
  // After a save: the application as stored (for the summary and the other editors' baselines).
  const reload = async () => {
    try {
      cfg = await api('GET', base, undefined, opts);
      drawMeta();
    } catch (e) { if (e.name !== 'AbortError') put(problem, errorBox('Could not reload ' + name, e)); }
  };

  // ------------------------------------------------ releases of each environment (the bar)
  const heads = new Map();
  const loadHeads = async () => {
    const lists = await Promise.all(envs.map((e) => api('GET', envPath(e.name) + '/releases', undefined, opts)
      .catch((x) => { if (x.name === 'AbortError') throw x; return x.status === 404 ? [] : x; })));
    envs.forEach((e, i) => heads.set(e.name, Array.isArray(lists[i]) ? lists[i] : []));
    const failed = lists.find((x) => !Array.isArray(x));
    if (failed) put(problem, errorBox('Could not load the releases', failed));
    drawEnvBar();
  };
  const drawEnvBar = () => {
    if (!envs.length) {
      put(envBar, h('span', { class: 'muted small' }, 'No environment: values per environment, previews and releases need one (',
        h('a', { href: projectPath(project, 'environments') }, 'Environments'), ').'));
      return;
    }
    put(envBar, h('span', { class: 'label muted small' }, 'Environment'), envs.map((e) => {
      const list = heads.get(e.name) || [];
      const cur = list.find((r) => r.current);
      const waiting = list.filter((r) => r.state === 'pending').length;
      return h('button', {
        type: 'button', class: 'env-btn' + (waiting ? ' waits' : ''), 'data-env': e.name, 'aria-pressed': e.name === env ? 'true' : 'false',
        title: e.name + (e.protected ? ' (protected)' : '') + ': ' + (cur ? 'release ' + cur.number + ' is current' : 'no release yet') + (waiting ? '; ' + waiting + ' waiting for approval' : ''),
        onclick: () => setEnv(e.name),
      }, h('span', { class: 'env-name' }, e.name), e.protected ? h('span', { class: 'lock' }, 'protected') : null,
      h('span', { class: 'rel mono', 'data-release': cur ? cur.number : '' }, cur ? 'r' + cur.number : 'no release'),
      waiting ? h('span', { class: 'pend' }, waiting + ' waiting') : null);
    }));
  };

  // ------------------------------------------------ tabs
  const drawTabs = () => put(tabBar, CONFIG_TABS.map(([k, label]) => h('button', {
    type: 'button', role: 'tab', class: 'tab', id: 'tabbtn-' + k, 'data-tab': k, 'aria-controls': 'tab-' + k, 'aria-selected': k === tab ? 'true' : 'false', onclick: () => showTab(k),
  }, label, k === 'templates' && dirtyTemplates() ? h('span', { class: 'dirty-dot', title: 'unsaved changes' }, '●') : null,
  k === 'values' && dirtyValues() ? h('span', { class: 'dirty-dot', title: 'unsaved changes' }, '●') : null)));
  const setQuery = () => {
    const u = new URLSearchParams();
    if (env) u.set('env', env);
    if (tab !== 'templates') u.set('tab', tab);
    if (tab === 'templates' && currentFile) u.set('file', currentFile);
    history.replaceState(null, '', location.pathname + (u.toString() ? '?' + u : ''));
  };
  const fills = {};
  const showTab = (k) => {
    tab = k;
    for (const [t, panel] of Object.entries(panels)) panel.hidden = t !== k;
    drawTabs();
    setQuery();
    if (fills[k]) fills[k]();
  };
  const setEnv = (e) => {
    if (e === env) return;
    env = e;
    outcome = null;
    drawEnvBar();
    setQuery();
    showEnvValues();
    if (fills[tab]) fills[tab]();
  };
  // Answers for an environment that is no longer the one shown are dropped.
  const seqs = {};
  const ticket = (k) => { seqs[k] = (seqs[k] || 0) + 1; const n = seqs[k]; return () => n === seqs[k] && !p.ctl.signal.aborted; };

  // ------------------------------------------------ templates
  const fileList = h('ul', { class: 'files', 'aria-label': 'Files' });
  const editorSlot = h('div', { class: 'editor-slot' });
  const dirtyTemplates = () => [...tplEditors.values()].some((ed) => ed.dirty());
  const dirtyValues = () => [...valEditors.values()].some((ed) => ed.dirty());
  p.unsaved = () => dirtyTemplates() || dirtyValues();
  const drawFiles = () => {
    put(fileList, [...tplEditors.keys()].sort().map((f) => h('li', {},
      h('button', { type: 'button', class: 'file', 'data-file': f, 'aria-current': f === currentFile ? 'true' : null, onclick: () => selectFile(f) },
        h('span', { class: 'mono' }, f), tplEditors.get(f).dirty() ? h('span', { class: 'dirty-dot', title: 'unsaved changes' }, '●') : null))));
    if (!tplEditors.size) fileList.append(h('li', { class: 'muted small none' }, 'No file yet.'));
  };
  const selectFile = (f) => {
    currentFile = f;
    for (const [k, ed] of tplEditors) ed.el.hidden = k !== f;
    noFile.hidden = !!f;
    drawFiles();
    if (tab === 'templates') setQuery();
  };
  const noFile = h('div', { class: 'empty' }, who.developer ? 'Add a file to start.' : 'This application has no file.');
  editorSlot.append(noFile);
  const onEdit = () => { drawFiles(); drawTabs(); };
  const templateEditor = (file, text, fresh) => {
    const ed = codeEditor({
      key: 'template:' + file, title: file, value: text, readOnly: !who.developer, fresh,
      help: 'A minijinja template: {{ db.host }}, {% if x is defined %}, {% for f in features %}, | default(…); kiln.environment names where it renders; a value no environment defines is an error.',
      save: (value) => api('PUT', base + '/templates/' + enc(file), { template: value }),
      saved: (r) => { toast(r.change === 'unchanged' ? file + ' is unchanged' : 'Saved ' + file); reload(); },
      changed: onEdit,
      extra: who.developer ? h('button', { type: 'button', class: 'danger ed-remove', onclick: () => removeFile(file) }, 'Remove') : null,
    });
    tplEditors.set(file, ed);
    editorSlot.append(ed.el);
    return ed;
  };
  const removeFile = async (file) => {
    const ed = tplEditors.get(file);
    const storedItem = cfg.items.some((i) => i.file === file);
    if (!confirm(storedItem ? 'Remove ' + file + ' from ' + name + '? Releases made after this have no ' + file + '.' : 'Drop the new file ' + file + '? It was never saved.')) return;
    if (storedItem) {
      try {
        await api('DELETE', base + '/templates/' + enc(file));
      } catch (e) {
        ed.problems(errorBox('Removing ' + file + ' failed', e));
        return;
      }
      toast('Removed ' + file);
      await reload();
    }
    ed.el.remove();
    tplEditors.delete(file);
    selectFile([...tplEditors.keys()].sort()[0] || null);
    drawTabs();
  };
  const addFile = (file) => {
    if (!tplEditors.has(file)) templateEditor(file, '', true);
    selectFile(file);
    tplEditors.get(file).focus();
  };
  for (const item of cfg.items) templateEditor(item.file, item.template, false);
  const asked = q.get('file');
  if (asked && !tplEditors.has(asked) && who.developer) templateEditor(asked, '', true);
  let newFile = null;
  if (who.developer) {
    const input = h('input', { id: 'new-file', class: 'mono', placeholder: 'conf.d/db.conf', spellcheck: 'false', autocomplete: 'off', required: true, 'aria-label': 'New file name' });
    newFile = h('form', { class: 'new-file', 'aria-label': 'Add a file', onsubmit: (ev) => { ev.preventDefault(); const f = input.value.trim(); if (f) { input.value = ''; addFile(f); } } },
      input, h('button', { type: 'submit' }, 'Add'));
  }
  put(panels.templates, h('div', { class: 'tpl-grid' },
    h('div', { class: 'panel files-panel' }, h('h2', {}, 'Files'), fileList, newFile),
    h('div', { class: 'panel editor-panel' }, editorSlot)));
  selectFile(tplEditors.has(asked) ? asked : [...tplEditors.keys()].sort()[0] || null);

  // ------------------------------------------------ values
  const valuesEditor = (e) => {
    const ed = codeEditor({
      key: 'values:' + (e || 'shared'), title: e ? 'values/' + e + '.yml' : 'values/shared.yml', readOnly: !who.developer,
      value: e ? ((cfg.values.find((v) => v.environment === e) || {}).yaml || '') : cfg.shared_values,
      help: e ? 'A YAML map laid over the shared values in ' + e + ': maps merge key by key, anything else replaces the shared value.' : 'A YAML map every environment gets.',
      save: (yaml) => api('PUT', base + '/values' + (e ? '/' + enc(e) : ''), { yaml }),
      saved: (r) => { toast(r.change === 'unchanged' ? 'The values are unchanged' : 'Saved ' + (e ? e + '’s values' : 'the shared values')); reload(); },
      changed: onEdit,
    });
    valEditors.set(e, ed);
    return ed;
  };
  const envValuesSlot = h('div', { class: 'env-values' });
  const showEnvValues = () => {
    for (const [k, ed] of valEditors) if (k) ed.el.hidden = k !== env;
    if (env && !valEditors.has(env)) envValuesSlot.append(valuesEditor(env).el);
  };
  put(panels.values, h('div', { class: 'grid2 values-grid' },
    h('div', { class: 'panel' }, h('h2', {}, 'Shared ', h('span', { class: 'muted small' }, 'every environment')), h('div', { class: 'body' }, valuesEditor('').el)),
    h('div', { class: 'panel' }, h('h2', {}, 'Per environment ', h('span', { class: 'muted small' }, 'laid over the shared values')),
      h('div', { class: 'body' }, env ? envValuesSlot : h('p', { class: 'muted' }, 'No environment yet.')))));
  showEnvValues();

  /** Shows the place a diagnostic names: a template's or a values file's line. */
  const pick = (d) => {
    const m = /^values\/(.+)\.yml$/.exec(d.file);
    let ed = null;
    if (m && (m[1] === 'shared' || envOf(m[1]))) {
      if (m[1] !== 'shared') setEnv(m[1]);
      ed = valEditors.get(m[1] === 'shared' ? '' : m[1]);
      showTab('values');
    } else if (tplEditors.has(d.file)) {
      selectFile(d.file);
      showTab('templates');
      ed = tplEditors.get(d.file);
    }
    if (ed) {
      ed.problems(h('div', { class: 'error problems', role: 'alert' }, h('b', {}, 'Does not render in ' + env), diagList([d], (x) => ed.goTo(x.line, x.column))), [d.line]);
      ed.goTo(d.line, d.column);
    }
  };
  const unsavedNote = () => (dirtyTemplates() || dirtyValues())
    ? h('div', { class: 'notice small unsaved' }, h('b', {}, 'Unsaved changes are not in this: '), 'the server renders what is stored. Save them first.') : null;
  const noEnv = () => h('div', { class: 'notice' }, 'Make an environment first (', h('a', { href: projectPath(project, 'environments') }, 'Environments'), ').');

  // ------------------------------------------------ preview
  fills.preview = async () => {
    const mine = ticket('preview');
    if (!env) { put(panels.preview, noEnv()); return; }
    put(panels.preview, h('p', { class: 'muted' }, 'Rendering for ' + env + '…'));
    let r;
    try {
      r = await api('GET', envPath(env) + '/render', undefined, opts);
    } catch (e) {
      if (e.name === 'AbortError' || !mine()) return;
      put(panels.preview, unsavedNote(), problemBox('The draft does not render in ' + env, e, pick));
      return;
    }
    if (!mine()) return;
    const files = Object.entries(r.files);
    put(panels.preview, unsavedNote(),
      h('div', { class: 'meta' }, h('span', {}, 'the draft rendered for ', h('b', { id: 'preview-env' }, env)), h('span', {}, 'digest ', shortDigest(r.digest)),
        h('span', {}, h('b', {}, files.length), files.length === 1 ? ' file' : ' files'), h('span', { class: 'muted' }, 'nothing is stored')),
      h('div', { class: 'rendered' }, files.length ? files.map(([f, text]) => fileView(f, text)) : h('div', { class: 'empty' }, 'No file: add a template.')));
  };

  // ------------------------------------------------ diff
  const diffState = { mode: 'current', against: null, from: null, to: null };
  fills.diff = async () => {
    const mine = ticket('diff');
    if (!env) { put(panels.diff, noEnv()); return; }
    const others = envs.filter((e) => e.name !== env);
    // By default the environment before this one (what a promotion brings here), else the first other.
    if (!others.some((e) => e.name === diffState.against)) {
      const before = envOf(env).after;
      diffState.against = others.some((e) => e.name === before) ? before : others.length ? others[0].name : null;
    }
    const rels = (heads.get(env) || []).slice().reverse();
    const numbers = rels.map((r) => r.number);
    if (!numbers.includes(diffState.to)) diffState.to = (rels.find((r) => r.current) || rels[0] || {}).number || null;
    if (!numbers.includes(diffState.from)) diffState.from = (rels.find((r) => r.number !== diffState.to) || {}).number || null;
    if (diffState.mode === 'env' && !diffState.against) diffState.mode = 'current';
    if (diffState.mode === 'releases' && numbers.length < 2) diffState.mode = 'current';
    const radio = (mode, label, ...more) => h('label', { class: 'mode' },
      h('input', { type: 'radio', name: 'diff-mode', value: mode, checked: diffState.mode === mode, onchange: () => { diffState.mode = mode; fills.diff(); } }), label, ...more);
    const sel = (id, list, value, set) => h('select', { id, onchange: (ev) => { set(ev.target.value); fills.diff(); } },
      list.map(([v, label]) => h('option', { value: v, selected: String(v) === String(value) }, label)));
    const out = h('div', { class: 'diff-out' }, h('p', { class: 'muted' }, 'Comparing…'));
    put(panels.diff, h('fieldset', { class: 'diff-modes' }, h('legend', { class: 'sr' }, 'What to compare'),
      radio('current', 'The draft against the current release of ', h('b', {}, env)),
      others.length ? radio('env', '', sel('diff-against', others.map((e) => [e.name, e.name]), diffState.against, (v) => { diffState.against = v; diffState.mode = 'env'; }), ' against ', h('b', {}, env), ' (both drafts)') : null,
      numbers.length > 1 ? radio('releases', 'Release ', sel('diff-from', numbers.map((n) => [n, String(n)]), diffState.from, (v) => { diffState.from = Number(v); diffState.mode = 'releases'; }),
        ' to release ', sel('diff-to', numbers.map((n) => [n, String(n)]), diffState.to, (v) => { diffState.to = Number(v); diffState.mode = 'releases'; }), ' of ', h('b', {}, env)) : null),
    unsavedNote(), out);
    const query = diffState.mode === 'env' ? '?against=' + enc(diffState.against)
      : diffState.mode === 'releases' ? '?from=' + diffState.from + '&to=' + diffState.to : '';
    let d;
    try {
      d = await api('GET', envPath(env) + '/diff' + query, undefined, opts);
    } catch (e) {
      if (e.name === 'AbortError' || !mine()) return;
      put(out, problemBox('Could not compare', e, pick));
      return;
    }
    if (!mine()) return;
    put(out, h('div', { class: 'meta' }, h('span', {}, h('b', { class: 'diff-from' }, d.from), ' → ', h('b', { class: 'diff-to' }, d.to)),
      d.files.length ? h('span', {}, h('b', {}, d.files.length), d.files.length === 1 ? ' file differs' : ' files differ') : null), diffView(d));
  };

  // ------------------------------------------------ releases
  const decide = async (label, method, path, body, question) => {
    if (acting || (question && !confirm(question))) return;
    acting = true;
    clear(problem);
    try {
      const r = await api(method, path, body);
      outcome = r;
      toast(r.message);
    } catch (e) {
      outcome = null;
      put(problem, problemBox(label + ' failed', e, pick));
    } finally {
      acting = false;
      await loadHeads();
      if (tab === 'releases') await fills.releases();
    }
  };
  fills.releases = async () => {
    const mine = ticket('releases');
    if (!env) { put(panels.releases, noEnv()); return; }
    const e = envOf(env);
    let list, d;
    try {
      [list, d] = await Promise.all([
        api('GET', envPath(env) + '/releases', undefined, opts).catch((x) => { if (x.status === 404) return []; throw x; }),
        api('GET', envPath(env) + '/diff', undefined, opts).catch((x) => { if (x.name === 'AbortError') throw x; return x; })]);
    } catch (x) {
      if (x.name === 'AbortError' || !mine()) return;
      put(panels.releases, errorBox('Could not load the releases in ' + env, x));
      return;
    }
    if (!mine()) return;
    heads.set(env, list);
    drawEnvBar();
    const cur = list.find((r) => r.current);
    const out = outcome ? h('div', { class: 'notice outcome', 'data-outcome': outcome.outcome, role: 'status' }, h('b', {}, outcome.outcome + ': '), outcome.message) : null;
    const banners = list.filter((r) => r.state === 'pending').map((r) => h('div', { class: 'approval', role: 'region', 'aria-label': 'Release ' + r.number + ' waits', 'data-pending': r.number },
      h('div', { class: 'q' }, h('b', {}, 'Release ' + r.number + ' to ' + env + ' waits for approval'),
        h('span', {}, 'asked by ', h('strong', { class: 'asker' }, r.requested_by), ' ', h('span', { title: fmtTime(r.requested_at) }, fmtAgo(r.requested_at)),
          r.note ? ['; “', r.note, '”'] : null, r.rollback_of ? ' (a rollback to release ' + r.rollback_of + ')' : null),
        who.developer && r.requested_by === who.name ? h('div', { class: 'muted small' }, 'Someone other than you must approve it.') : null),
      who.developer && r.requested_by !== who.name ? h('button', { class: 'primary', type: 'button', id: 'approve-release', onclick: () => decide('Approve', 'POST', envPath(env) + '/releases/' + r.number + '/approve') }, 'Approve') : null,
      who.developer ? h('button', { class: 'danger', type: 'button', id: 'reject-release', onclick: () => decide('Reject', 'POST', envPath(env) + '/releases/' + r.number + '/reject', undefined, 'Reject release ' + r.number + ' to ' + env + '? It is kept in the history, rejected.') }, 'Reject') : null));
    const gray = list.find((r) => r.gray);
    const grayBanner = gray ? h('div', { class: 'notice gray', 'data-gray': gray.number }, h('b', {}, 'Release ' + gray.number + ' is out to ' + gray.instances.join(', ') + ' only. '),
      'Every other consumer keeps ' + (cur ? 'release ' + cur.number : 'the release before') + '. ',
      who.developer ? h('button', { type: 'button', id: 'release-all', onclick: () => decide('Release to everyone', 'POST', envPath(env) + '/releases', { all: true }, 'Release ' + gray.number + ' to every consumer in ' + env + '?') }, 'Release to everyone') : null) : null;
    let form = null;
    const waiting = list.find((r) => r.state === 'pending');
    if (who.developer && waiting) {
      form = h('div', { class: 'notice small', 'data-blocked': waiting.number }, 'One release waits at a time: approve or reject release ' + waiting.number + ' before releasing again.');
    } else if (who.developer) {
      const note = h('input', { id: 'release-note', placeholder: 'why (kept with the release)', autocomplete: 'off' });
      const only = h('input', { id: 'release-instances', class: 'mono', placeholder: 'every consumer', autocomplete: 'off', spellcheck: 'false' });
      const changes = !(d instanceof Error) ? (d.files.length ? diffView(d) : h('div', { class: 'empty', 'data-diff': 'none' }, 'Nothing to release: ', h('b', {}, env), ' already gets these files', cur ? ' from release ' + cur.number : '', '.'))
        : problemBox('The draft does not render in ' + env, d, pick);
      form = h('section', { class: 'panel', 'aria-label': 'Release' }, h('h2', {}, 'Release the draft to ' + env, e.protected ? protectedBadge() : null),
        h('div', { class: 'body' },
          h('p', { class: 'muted small' }, 'What changes for ', env, ' (the draft against ', cur ? 'release ' + cur.number : 'no release', '):'),
          unsavedNote(), changes,
          h('form', {
            class: 'inline-form release-form',
            onsubmit: (ev) => {
              ev.preventDefault();
              decide('Release', 'POST', envPath(env) + '/releases', { note: note.value.trim() || null, instances: only.value.split(/[\s,]+/).filter(Boolean) });
            },
          },
          h('div', { class: 'field grow' }, h('label', { for: 'release-note' }, 'Note'), note),
          h('div', { class: 'field' }, h('label', { for: 'release-instances' }, 'Only to instances ', h('span', { class: 'help' }, 'a gray release')), only),
          h('button', { class: 'primary', type: 'submit', id: 'release' }, 'Release to ' + env)),
          e.protected ? h('p', { class: 'muted small' }, env + ' is protected: the release waits until someone other than you approves it.') : null));
    }
    put(panels.releases, out, banners, grayBanner, form,
      h('section', { class: 'panel', 'aria-label': 'History' }, h('h2', {}, 'History in ' + env), releaseTable(list, cur)));
  };
  const releaseTable = (list, cur) => {
    if (!list.length) return h('div', { class: 'empty' }, 'No release in ' + env + ' yet.');
    return h('div', { class: 'scroll' }, h('table', { class: 'releases' },
      h('thead', {}, h('tr', {}, h('th', { class: 'num' }, 'Release'), h('th', {}, 'State'), h('th', {}, 'Kind'), h('th', { class: 'hide-sm' }, 'Digest'),
        h('th', { class: 'hide-sm' }, 'Note'), h('th', {}, 'Asked'), h('th', { class: 'hide-sm' }, 'Decided'), h('th', {}, h('span', { class: 'sr' }, 'Actions')))),
      // A release with the current files: nothing to compare or roll back to (the server would say so).
      h('tbody', {}, list.slice().reverse().map((r) => [r, !!cur && r.digest === cur.digest]).map(([r, same]) => h('tr', { 'data-release': r.number, 'data-state': r.state, 'data-kind': r.kind },
        h('td', { class: 'num' }, h('b', {}, r.number)),
        h('td', {}, stateBadge(RELEASE_STATE, r.state), r.current ? h('span', { class: 'tag cur' }, 'current') : null, r.gray ? h('span', { class: 'tag', title: r.instances.join(', ') }, 'gray') : null),
        h('td', { class: 'kind' }, r.kind === 'rollback' ? 'rollback to ' + r.rollback_of : r.instances.length ? 'gray: ' + r.instances.join(', ') : 'release'),
        h('td', { class: 'hide-sm' }, shortDigest(r.digest)),
        h('td', { class: 'hide-sm note' }, r.note || ''),
        h('td', { class: 'nowrap' }, r.requested_by, ' ', h('span', { class: 'muted', title: fmtTime(r.requested_at) }, fmtAgo(r.requested_at))),
        h('td', { class: 'hide-sm' }, r.decided_by ? [r.state === 'rejected' ? 'rejected by ' : 'approved by ', r.decided_by] : '', r.promoted_by ? [' to everyone by ', r.promoted_by] : ''),
        h('td', { class: 'num nowrap' },
          cur && !same ? h('button', { type: 'button', class: 'small-btn', 'data-compare': r.number, title: 'Diff release ' + r.number + ' against release ' + cur.number,
            onclick: () => { Object.assign(diffState, { mode: 'releases', from: r.number, to: cur.number }); showTab('diff'); } }, 'Diff') : null,
          who.developer && r.state === 'released' && !same && !r.gray ? h('button', {
            type: 'button', class: 'small-btn rollback', 'data-rollback': r.number,
            onclick: () => decide('Roll back', 'POST', envPath(env) + '/rollback', { to: r.number },
              'Roll back ' + name + ' in ' + env + ' to release ' + r.number + '? A new release with release ' + r.number + '’s files' + (envOf(env).protected ? ', waiting for approval (' + env + ' is protected).' : '.')),
          }, 'Roll back to ' + r.number) : null))))));
  };

  // ------------------------------------------------ audit log
  let auditEnv = '';
  fills.audit = async () => {
    const mine = ticket('audit');
    let list;
    try {
      list = await api('GET', base + '/audit', undefined, opts).catch((x) => { if (x.status === 404 && !stored && !cfg.updated_at) return []; throw x; });
    } catch (e) {
      if (e.name === 'AbortError' || !mine()) return;
      put(panels.audit, errorBox('Could not load the audit log', e));
      return;
    }
    if (!mine()) return;
    const names = [...new Set(list.map((x) => x.environment).filter(Boolean))];
    const filter = h('select', { id: 'audit-env', 'aria-label': 'Environment', onchange: (ev) => { auditEnv = ev.target.value; fills.audit(); } },
      h('option', { value: '' }, 'every change'), h('option', { value: '-', selected: auditEnv === '-' }, 'no environment (templates, shared values)'),
      names.map((n) => h('option', { value: n, selected: n === auditEnv }, n)));
    const shown = list.filter((x) => !auditEnv || (auditEnv === '-' ? !x.environment : x.environment === auditEnv)).reverse();
    put(panels.audit, h('section', { class: 'panel', 'aria-label': 'Audit log' }, h('h2', {}, 'Every change of ' + name, h('span', { class: 'spacer' }), filter),
      shown.length ? h('div', { class: 'scroll' }, h('table', { class: 'audit' },
        h('thead', {}, h('tr', {}, h('th', {}, 'When'), h('th', {}, 'Who'), h('th', {}, 'Environment'), h('th', {}, 'What'), h('th', {}, 'Detail'))),
        h('tbody', {}, shown.map((x) => h('tr', { 'data-audit': x.id, 'data-action': x.action },
          h('td', { class: 'nowrap' }, h('span', { title: fmtTime(x.at) }, fmtAgo(x.at))),
          h('td', {}, x.by),
          h('td', {}, x.environment || h('span', { class: 'muted' }, '–')),
          h('td', { class: 'action nowrap' }, x.action),
          h('td', { class: 'detail' }, x.detail))))))
        : h('div', { class: 'empty' }, 'No change yet.')));
  };

  drawMeta();
  drawEnvBar();
  drawTabs();
  await loadHeads();
  showTab(tab);
}

/** @type {import('../lib/router.js').Route[]} */
export const routes = [
  { path: /^\/projects\/([^/]+)\/config$/, view: viewConfigApps, nav: 'projects' },
  { path: /^\/projects\/([^/]+)\/config\/([^/]+)$/, view: viewConfigApp, nav: 'projects' },
];
