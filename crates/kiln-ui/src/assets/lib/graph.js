// @ts-check
// Kiln web UI: the run graph. Stages in order along the main axis (columns on a wide screen,
// rows on a phone), each stage cut into as many layers as its own needs chain asks (a job
// that needs a job of its stage sits a layer after it, so every edge goes forward); jobs as
// nodes coloured by state with the node they ran on and their timings; the instances of a
// matrix job as one box (`build ×6`) that opens in place; approval stages as gate nodes.
// Edges between neighbouring layers are curves inside the gap between them; an edge that
// skips layers runs in a lane between two rows of nodes (a lane no node of any layer it
// crosses sits in), so no edge passes through a node.

import { badge, enc, h, svgEl, truncate } from './dom.js';
import { fmtDuration } from './format.js';

/** @typedef {import('./api-types.js').RunDetail} RunDetail */
/** @typedef {import('./api-types.js').JobInfo} JobInfo */
/** @typedef {import('./api-types.js').StageInfo} StageInfo */

/**
 * What the graph keeps between redraws and how it is drawn.
 * @typedef {object} GraphOptions
 * @property {Set<string>} open the matrix groups shown opened (by job name)
 * @property {(name: string) => void} toggle opens or closes a group (and draws again)
 * @property {boolean} vertical stages as rows (a phone) instead of columns
 */

/**
 * One box of the graph.
 * @typedef {object} Item
 * @property {string} key
 * @property {'job' | 'group' | 'head' | 'gate'} kind a job, a closed group, an open group's header, a gate
 * @property {number} stage index in r.stages
 * @property {JobInfo[]} jobs the job, or a group's instances
 * @property {string} name what the box says
 * @property {Set<string>} needs keys of the items it waits for
 * @property {number} layer within its stage
 * @property {number} col the layer over the whole graph
 * @property {number} slot its place within its layer
 */

/** The colours, as badges. */
export function legend() {
  return h('div', { class: 'legend', 'aria-label': 'Colours' },
    ['success', 'failure', 'running', 'queued', 'pending', 'waiting', 'skipped', 'canceled', 'timeout'].map((x) => badge(x)));
}

/** A matrix instance's job name: `build` of `build[linux, 1.80]`; null for a plain job. */
function matrixName(id) {
  const i = id.indexOf('[');
  return i > 0 && id.endsWith(']') ? id.slice(0, i) : null;
}

/** One state for many jobs: the most pressing of theirs. */
function groupState(jobs) {
  const has = (st) => jobs.some((j) => j.state === st);
  for (const st of ['running', 'failure', 'timeout', 'queued', 'pending', 'canceled']) if (has(st)) return st;
  return jobs.every((j) => j.state === 'skipped') ? 'skipped' : 'success';
}

/** `4 success · 2 running`: a group's jobs counted by state. */
function stateCounts(jobs) {
  /** @type {Map<string, number>} */
  const n = new Map();
  for (const j of jobs) n.set(j.state, (n.get(j.state) || 0) + 1);
  return [...n].map(([st, c]) => c + ' ' + st).join(' · ');
}

/**
 * When a job could start (its needs ended, the run left the queue, a gate before it was
 * decided), in ms since the epoch; null when unknown.
 * @param {RunDetail} r
 * @param {JobInfo} j
 */
function readyAt(r, j) {
  const times = [r.started_at || r.created_at];
  for (const n of j.needs) {
    const d = r.jobs.find((x) => x.id === n);
    if (d && d.finished_at) times.push(d.finished_at);
  }
  const si = r.stages.findIndex((s) => s.name === j.stage);
  for (const st of r.stages.slice(0, si)) if (st.decision) times.push(st.decision.at);
  const ms = times.filter(Boolean).map((t) => new Date(/** @type {string} */ (t)).getTime());
  return ms.length ? Math.max(...ms) : null;
}

/**
 * A job's node and timings: `on node-1 · queued 1.2 s` (the wait from when it could start to
 * when it started), for its box and its tooltip.
 * @param {RunDetail} r
 * @param {JobInfo} j
 */
export function jobFacts(r, j) {
  const node = (j.placement && j.placement.node) || j.node || null;
  const ready = readyAt(r, j);
  const started = j.started_at ? new Date(j.started_at).getTime() : null;
  const queued = ready !== null && started !== null ? Math.max(0, started - ready) : null;
  return { node, queued, ran: j.duration_ms === undefined ? null : j.duration_ms };
}

/**
 * The run as a graph (see the top of this file).
 * @param {RunDetail} r
 * @param {GraphOptions} o
 */
export function runGraph(r, o) {
  const V = o.vertical;
  // Sizes along the main axis (u: stage after stage) and the cross axis (v: box after box).
  const NW = 214, NH = 62;
  const NU = V ? NH : NW, NV = V ? NW : NH;
  const GAP = V ? 52 : 64; // between layers (V: a stage's title sits in it)
  const RG = 14; // between boxes of a layer
  const PAD = 8;
  const TITLE = V ? 0 : 22; // the stage titles above the columns

  // ------------------------------------------------ the boxes
  /** @type {Item[]} */
  const items = [];
  /** @type {Map<string, string>} job id to the key of the box it is drawn in */
  const boxOf = new Map();
  r.stages.forEach((st, si) => {
    if (st.kind === 'approval') {
      items.push({ key: 'gate:' + st.name, kind: 'gate', stage: si, jobs: [], name: st.name, needs: new Set(), layer: 0, col: 0, slot: 0 });
      return;
    }
    const jobs = r.jobs.filter((j) => j.stage === st.name);
    /** @type {Map<string, JobInfo[]>} */
    const groups = new Map();
    for (const j of jobs) {
      const m = matrixName(j.id);
      if (m !== null) { if (!groups.has(m)) groups.set(m, []); /** @type {JobInfo[]} */ (groups.get(m)).push(j); }
    }
    const done = new Set();
    for (const j of jobs) {
      const m = matrixName(j.id);
      const g = m !== null ? /** @type {JobInfo[]} */ (groups.get(m)) : null;
      if (m === null || !g || g.length < 2) {
        items.push({ key: 'job:' + j.id, kind: 'job', stage: si, jobs: [j], name: j.id, needs: new Set(), layer: 0, col: 0, slot: 0 });
        boxOf.set(j.id, 'job:' + j.id);
        continue;
      }
      if (done.has(m)) continue;
      done.add(m);
      if (o.open.has(m)) {
        items.push({ key: 'head:' + m, kind: 'head', stage: si, jobs: g, name: m, needs: new Set(), layer: 0, col: 0, slot: 0 });
        for (const x of g) {
          items.push({ key: 'job:' + x.id, kind: 'job', stage: si, jobs: [x], name: x.id, needs: new Set(), layer: 0, col: 0, slot: 0 });
          boxOf.set(x.id, 'job:' + x.id);
        }
      } else {
        items.push({ key: 'group:' + m, kind: 'group', stage: si, jobs: g, name: m, needs: new Set(), layer: 0, col: 0, slot: 0 });
        for (const x of g) boxOf.set(x.id, 'group:' + m);
      }
    }
  });
  const byKey = new Map(items.map((it) => [it.key, it]));
  const gateBetween = (a, b) => r.stages.some((st, si) => st.kind === 'approval' && si > a && si < b);
  for (const it of items) {
    if (it.kind === 'gate' || it.kind === 'head') continue;
    for (const j of it.jobs) {
      for (const n of j.needs) {
        const from = boxOf.get(n);
        const f = from && byKey.get(from);
        // A need across an approval gate is drawn through the gate (its dashed edges).
        if (f && f !== it && !gateBetween(f.stage, it.stage)) it.needs.add(f.key);
      }
    }
  }

  // ------------------------------------------------ layers and places
  /** @type {(it: Item) => number} */
  const depth = (it) => {
    let d = 0;
    for (const k of it.needs) {
      const f = /** @type {Item} */ (byKey.get(k));
      if (f.stage === it.stage) d = Math.max(d, depth(f) + 1);
    }
    return d;
  };
  for (const it of items) if (it.kind !== 'head') it.layer = depth(it);
  // An open group's header sits in the layer of its instances, just above them.
  for (const it of items) {
    if (it.kind !== 'head') continue;
    const mine = items.filter((x) => x.kind === 'job' && it.jobs.includes(x.jobs[0]));
    const layer = Math.max(0, ...mine.map((x) => x.layer));
    it.layer = layer;
    for (const x of mine) x.layer = layer;
  }
  /** @type {number[]} first global layer of each stage */
  const first = [];
  let cols = 0;
  r.stages.forEach((_, si) => {
    first[si] = cols;
    const mine = items.filter((it) => it.stage === si);
    cols += mine.length ? Math.max(...mine.map((it) => it.layer)) + 1 : 1;
  });
  /** @type {number[]} boxes per global layer */
  const filled = new Array(cols).fill(0);
  for (const it of items) {
    it.col = first[it.stage] + it.layer;
    it.slot = filled[it.col]++;
  }
  const maxSlots = Math.max(1, ...filled);
  const uOf = (col) => PAD + col * (NU + GAP) + (V ? GAP - 18 : 0);
  const vOf = (slot) => PAD + TITLE + slot * (NV + RG);
  const U = uOf(cols - 1) + NU + PAD;
  const Vsize = vOf(maxSlots - 1) + NV + PAD;
  const W = V ? Vsize : U, H = V ? U : Vsize;
  // (u, v) to (x, y).
  const xy = (u, v) => (V ? [v, u] : [u, v]);
  const pt = (u, v) => xy(u, v).map((n) => Math.round(n * 10) / 10).join(',');

  const svg = svgEl('svg', { class: 'graph' + (V ? ' vertical' : ''), width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'group', 'aria-label': 'Run graph', 'data-layout': V ? 'vertical' : 'horizontal' });
  const frames = svgEl('g', { 'aria-hidden': 'true' });
  const edges = svgEl('g', { 'aria-hidden': 'true' });
  svg.append(frames, edges);

  // ------------------------------------------------ stage titles
  r.stages.forEach((st, si) => {
    const [x, y] = V ? [PAD, uOf(first[si]) - 8] : [uOf(first[si]), 16];
    svg.append(svgEl('text', { class: 'stage-title', x, y }, truncate(st.name, 26)));
  });

  // ------------------------------------------------ edges
  /** @param {Item} a @param {Item} b @param {boolean} gate */
  const edge = (a, b, gate) => {
    const u1 = uOf(a.col) + NU, v1 = vOf(a.slot) + NV / 2;
    const u2 = uOf(b.col), v2 = vOf(b.slot) + NV / 2;
    let d;
    if (b.col === a.col + 1) {
      const mu = (u1 + u2) / 2;
      d = `M${pt(u1, v1)} C${pt(mu, v1)} ${pt(mu, v2)} ${pt(u2, v2)}`;
    } else {
      // Through a lane between two rows of boxes that none of the layers crossed fills.
      const crossed = filled.slice(a.col + 1, b.col);
      const most = Math.max(1, ...crossed);
      const mid = (v1 + v2) / 2;
      let lane = vOf(most) - RG / 2;
      for (let k = 1; k <= most; k++) {
        const at = vOf(k) - RG / 2;
        if (Math.abs(at - mid) < Math.abs(lane - mid)) lane = at;
      }
      const g1 = u1 + GAP / 2, g2 = u2 - GAP / 2;
      d = `M${pt(u1, v1)} L${pt(g1, v1)} L${pt(g1, lane)} L${pt(g2, lane)} L${pt(g2, v2)} L${pt(u2, v2)}`;
    }
    edges.append(svgEl('path', { class: 'edge' + (gate ? ' gate' : ''), d, 'data-from': a.key, 'data-to': b.key }));
  };
  for (const it of items) for (const k of it.needs) edge(/** @type {Item} */ (byKey.get(k)), it, false);
  // A gate: the last boxes of the stage before feed it, it feeds the first boxes of the stage after.
  r.stages.forEach((st, si) => {
    if (st.kind !== 'approval') return;
    const gate = /** @type {Item} */ (byKey.get('gate:' + st.name));
    const before = items.filter((it) => it.stage === si - 1 && it.kind !== 'head');
    const after = items.filter((it) => it.stage === si + 1 && it.kind !== 'head');
    for (const it of before) if (!before.some((x) => x.needs.has(it.key))) edge(it, gate, true);
    for (const it of after) if (![...it.needs].some((k) => after.some((x) => x.key === k))) edge(gate, it, true);
  });

  // ------------------------------------------------ boxes
  for (const it of items) {
    const [x, y] = xy(uOf(it.col), vOf(it.slot));
    if (it.kind === 'gate') {
      const st = r.stages[it.stage];
      const g = st.gate || 'pending';
      const state = { waiting: 'waiting', approved: 'approved', rejected: 'rejected', skipped: 'skipped', canceled: 'canceled' }[g] || 'pending';
      const sub = st.decision ? st.decision.decision + ' by ' + st.decision.by : g === 'waiting' ? 'waiting for approval' : 'approval gate';
      svg.append(box(x, y, { state, title: st.name, sub, label: 'approval ' + st.name + ': ' + g, gate: true }));
    } else if (it.kind === 'job') {
      const j = it.jobs[0];
      const waits = j.state === 'queued' && j.waiting;
      const sub = j.state === 'running' ? 'running · ' + fmtDuration(j.duration_ms)
        : j.duration_ms !== null && j.duration_ms !== undefined ? j.state + ' · ' + fmtDuration(j.duration_ms)
          : waits ? truncate('waits: ' + j.waiting, 25) // the whole reason is in the tooltip
            : j.state + (j.attempts > 1 ? ' · attempt ' + j.attempts : '');
      const f = jobFacts(r, j);
      const facts = [f.node ? 'on ' + f.node : null, f.queued !== null ? 'queued ' + fmtDuration(f.queued) : null].filter(Boolean).join(' · ');
      const label = 'job ' + j.id + ': ' + j.state + (waits ? '; waits for a node: ' + j.waiting : '')
        + (f.node ? '; on ' + f.node : '') + (f.queued !== null ? '; queued ' + fmtDuration(f.queued) : '')
        + (f.ran !== null && j.started_at ? '; ran ' + fmtDuration(f.ran) : '');
      const name = it.jobs.length === 1 && o.open.has(matrixName(j.id) || '') ? j.id.slice((matrixName(j.id) || '').length) : j.id;
      svg.append(box(x, y, { state: j.state, title: name, sub, facts, label, href: '/runs/' + r.id + '/jobs/' + enc(j.id), job: j.id, node: f.node }));
    } else {
      // A matrix job: closed, one box for all its instances; open, a header above them.
      const state = groupState(it.jobs);
      const open = it.kind === 'head';
      const label = 'matrix job ' + it.name + ': ' + it.jobs.length + ' instances, ' + stateCounts(it.jobs) + (open ? '; shown opened' : '');
      const g = box(x, y, { state, title: it.name + ' ×' + it.jobs.length, sub: stateCounts(it.jobs), facts: open ? 'close ▴' : 'open ▾', label, group: it.name, open });
      svg.append(g);
      if (open) {
        const mine = items.filter((x) => x.kind === 'job' && it.jobs.includes(x.jobs[0]));
        const last = Math.max(...mine.map((x) => x.slot));
        const [fx, fy] = xy(uOf(it.col) - 5, vOf(it.slot) - 5);
        const [fw, fh] = xy(NU + 10, vOf(last) + NV - vOf(it.slot) + 10);
        frames.append(svgEl('rect', { class: 'group-frame', x: fx, y: fy, width: fw, height: fh, rx: 10, 'data-group': it.name }));
      }
    }
  }
  return svg;

  /**
   * One box: a link to a job's log, a button for a matrix group, a picture for a gate.
   * @param {number} x @param {number} y
   * @param {{state: string, title: string, sub: string, facts?: string, label: string, href?: string, job?: string, node?: string | null, gate?: boolean, group?: string, open?: boolean}} b
   */
  function box(x, y, b) {
    /** @type {SVGElement} */
    let g;
    if (b.href) {
      g = svgEl('a', { class: 'node n-' + b.state, href: b.href, 'data-job': b.job, 'data-state': b.state, 'data-node': b.node || null, 'aria-label': b.label });
    } else if (b.group) {
      const name = b.group;
      g = svgEl('g', { class: 'node group n-' + b.state, role: 'button', tabindex: '0', 'aria-expanded': b.open ? 'true' : 'false', 'data-group': name, 'data-state': b.state, 'aria-label': b.label,
        onclick: () => o.toggle(name),
        onkeydown: (/** @type {KeyboardEvent} */ ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); o.toggle(name); } } });
    } else {
      g = svgEl('g', { class: 'node n-' + b.state, 'data-state': b.state, role: 'img', 'aria-label': b.label, 'data-gate': b.title });
    }
    const [w, hh] = [NW, NH];
    // (Element.append would write a null as the text `null`: left out here.)
    g.append(...[svgEl('title', {}, b.label),
      b.group ? svgEl('rect', { class: 'stack', x: x + 4, y: y + 4, width: w, height: hh, rx: 8 }) : null,
      svgEl('rect', { class: 'box', x, y, width: w, height: hh, rx: 8 }),
      svgEl('rect', { class: 'stripe', x, y: y + 1, width: 5, height: hh - 2, rx: 2 }),
      // A job is a dot; an approval gate is a pause sign.
      b.gate
        ? svgEl('g', {}, svgEl('rect', { class: 'dot', x: x + 13, y: y + 12, width: 3.5, height: 12, rx: 1 }),
          svgEl('rect', { class: 'dot', x: x + 19.5, y: y + 12, width: 3.5, height: 12, rx: 1 }))
        : svgEl('circle', { class: 'dot', cx: x + 18, cy: y + 18, r: 5 }),
      svgEl('text', { class: 'name', x: x + 30, y: y + 22 }, truncate(b.title, 22)),
      svgEl('text', { class: 'sub', x: x + 30, y: y + 39 }, truncate(b.sub, 28)),
      b.facts ? svgEl('text', { class: 'facts', x: x + 30, y: y + 55 }, truncate(b.facts, 28)) : null].filter((c) => c !== null));
    return g;
  }
}
