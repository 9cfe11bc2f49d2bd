// Kiln web UI: the run graph: stages as columns, jobs as nodes coloured by state, edges for needs.

import { badge, enc, h, svgEl, truncate } from './dom.js';
import { fmtDuration } from './format.js';

export function legend() {
  return h('div', { class: 'legend', 'aria-label': 'Colours' },
    ['success', 'failure', 'running', 'queued', 'pending', 'waiting', 'skipped', 'canceled', 'timeout'].map((x) => badge(x)));
}

/** The run as a graph: stages as columns, jobs as nodes coloured by state, edges for needs. */
export function runGraph(r) {
  const NW = 196, NH = 50, CG = 64, RG = 14, TOP = 30, PAD = 8;
  const cols = r.stages.map((st) => ({ st, jobs: r.jobs.filter((j) => j.stage === st.name) }));
  const pos = new Map();
  const colOf = new Map();
  cols.forEach((c, ci) => c.jobs.forEach((j) => colOf.set(j.id, ci)));
  let maxRows = 1;
  cols.forEach((c, ci) => {
    const x = PAD + ci * (NW + CG);
    if (c.st.kind === 'approval') {
      pos.set('stage:' + c.st.name, { x, y: TOP });
    } else {
      c.jobs.forEach((j, ri) => pos.set(j.id, { x, y: TOP + ri * (NH + RG) }));
      maxRows = Math.max(maxRows, c.jobs.length);
    }
  });
  const W = PAD * 2 + cols.length * NW + (cols.length - 1) * CG;
  const H = TOP + maxRows * (NH + RG) - RG + PAD;
  const svg = svgEl('svg', { class: 'graph', width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'group', 'aria-label': 'Run graph' });
  const edges = svgEl('g', { 'aria-hidden': 'true' });
  svg.append(edges);
  const edge = (a, b, gate) => {
    const x1 = a.x + NW, y1 = a.y + NH / 2, x2 = b.x, y2 = b.y + NH / 2, mx = (x1 + x2) / 2;
    edges.append(svgEl('path', { class: 'edge' + (gate ? ' gate' : ''), d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` }));
  };
  cols.forEach((c, ci) => {
    const x = PAD + ci * (NW + CG);
    svg.append(svgEl('text', { class: 'stage-title', x, y: 16 }, truncate(c.st.name, 26)));
    if (c.st.kind === 'approval') {
      const gate = c.st.gate || 'pending';
      const state = { waiting: 'waiting', approved: 'approved', rejected: 'rejected', skipped: 'skipped', canceled: 'canceled' }[gate] || 'pending';
      const sub = c.st.decision ? c.st.decision.decision + ' by ' + c.st.decision.by : gate === 'waiting' ? 'waiting for approval' : 'approval gate';
      svg.append(node(pos.get('stage:' + c.st.name), state, c.st.name, sub, null, 'approval ' + c.st.name + ': ' + gate, true));
      // Every job of the stage before feeds the gate; the gate feeds every job of the stage after.
      const prev = cols[ci - 1], next = cols[ci + 1];
      if (prev) for (const j of prev.jobs) if (pos.has(j.id)) edge(pos.get(j.id), pos.get('stage:' + c.st.name), true);
      if (next) for (const j of next.jobs) if (pos.has(j.id)) edge(pos.get('stage:' + c.st.name), pos.get(j.id), true);
      return;
    }
    for (const j of c.jobs) {
      for (const n of j.needs) {
        // A need across an approval gate is drawn through the gate (its dashed edges).
        const from = colOf.get(n);
        const gated = cols.some((g, gi) => g.st.kind === 'approval' && gi > from && gi < ci);
        if (pos.has(n) && !gated) edge(pos.get(n), pos.get(j.id), false);
      }
      const waits = j.state === 'queued' && j.waiting;
      const sub = j.state === 'running' ? 'running · ' + fmtDuration(j.duration_ms)
        : j.duration_ms !== null ? j.state + ' · ' + fmtDuration(j.duration_ms)
          : waits ? truncate('waits: ' + j.waiting, 25) // the whole reason is in the tooltip
            : j.state + (j.attempts > 1 ? ' · attempt ' + j.attempts : '');
      const label = 'job ' + j.id + ': ' + j.state + (waits ? '; waits for a node: ' + j.waiting : '');
      svg.append(node(pos.get(j.id), j.state, j.id, sub, '/runs/' + r.id + '/jobs/' + enc(j.id), label));
    }
  });
  return svg;

  function node(at, state, title, sub, href, label, gate) {
    const g = href
      ? svgEl('a', { class: 'node n-' + state, href, 'data-job': title, 'data-state': state, 'aria-label': label })
      : svgEl('g', { class: 'node n-' + state, 'data-state': state, role: 'img', 'aria-label': label, 'data-gate': title });
    g.append(svgEl('title', {}, label),
      svgEl('rect', { class: 'box', x: at.x, y: at.y, width: NW, height: NH, rx: 8 }),
      svgEl('rect', { class: 'stripe', x: at.x, y: at.y + 1, width: 5, height: NH - 2, rx: 2 }),
      // A job is a dot; an approval gate is a pause sign.
      gate
        ? svgEl('g', {}, svgEl('rect', { class: 'dot', x: at.x + 13, y: at.y + 12, width: 3.5, height: 12, rx: 1 }),
          svgEl('rect', { class: 'dot', x: at.x + 19.5, y: at.y + 12, width: 3.5, height: 12, rx: 1 }))
        : svgEl('circle', { class: 'dot', cx: at.x + 18, cy: at.y + 18, r: 5 }),
      svgEl('text', { class: 'name', x: at.x + 30, y: at.y + 22 }, truncate(title, 22)),
      svgEl('text', { class: 'sub', x: at.x + 30, y: at.y + 39 }, truncate(sub, 28)));
    return g;
  }
}
