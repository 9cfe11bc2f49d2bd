// Kiln web UI: plots drawn as SVG: line plots with a legend, the runs' duration bars.

import { h, svgEl } from './dom.js';
import { FINAL, fmtDuration } from './format.js';

/** Bars of the last runs' durations, coloured by state. */
export function sparkline(runs) {
  const W = 140, H = 28, n = 20, bw = W / n;
  const max = Math.max(1, ...runs.map((r) => r.duration_ms || 0));
  const svg = svgEl('svg', { class: 'spark', width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img',
    'aria-label': runs.length ? 'durations of the last ' + runs.length + ' runs' : 'no runs' });
  runs.forEach((r, i) => {
    const hgt = Math.max(2, ((r.duration_ms || 0) / max) * (H - 2));
    svg.append(svgEl('rect', { x: i * bw + 1, y: H - hgt, width: bw - 2, height: hgt, rx: 1, fill: stateColour(r.state) },
      svgEl('title', {}, '#' + r.number + ' ' + r.state + ' ' + fmtDuration(r.duration_ms))));
  });
  return svg;
}

function stateColour(state) {
  const v = getComputedStyle(document.documentElement).getPropertyValue('--st-' + (state === 'waiting' ? 'paused' : state === 'scheduling' ? 'queued' : state)).trim();
  return v || '#8c959f';
}

export const PALETTE = ['#0b5cad', '#c4231c', '#1a7f37', '#8250df', '#b04500', '#1b7c83', '#bf3989', '#57606a'];

/**
 * A line plot: series [{name, points: [[x(ms since epoch), y]]}], y formatted by fmtY.
 * opts: minTop (the y axis reaches at least this), from and to (a fixed time span, in ms
 * since the epoch; else the data's). Returns a figure with the SVG and a legend.
 */
export function linePlot(series, fmtY, label, opts) {
  const o = opts || {};
  const W = 560, H = 200, L = 52, R = 12, T = 10, B = 26;
  const pts = series.flatMap((s_) => s_.points);
  if (!pts.length) return h('div', { class: 'empty' }, 'No data yet.');
  let x0 = o.from !== undefined ? o.from : Math.min(...pts.map((q) => q[0]));
  let x1 = o.to !== undefined ? o.to : Math.max(...pts.map((q) => q[0]));
  if (x1 === x0) { x0 -= 60000; x1 += 60000; }
  const [y1, ticks] = niceMax(Math.max(o.minTop || 0, ...pts.map((q) => q[1])));
  const X = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const Y = (y) => T + (1 - y / y1) * (H - T - B);
  const svg = svgEl('svg', { class: 'plot', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label });
  for (let i = 0; i <= ticks; i++) {
    const y = (y1 * i) / ticks;
    svg.append(svgEl('line', { class: 'grid', x1: L, x2: W - R, y1: Y(y), y2: Y(y) }),
      svgEl('text', { x: L - 6, y: Y(y) + 4, 'text-anchor': 'end' }, fmtY(y)));
  }
  for (let i = 0; i <= 3; i++) {
    const x = x0 + ((x1 - x0) * i) / 3;
    const d = new Date(x);
    const span = x1 - x0;
    const label = span < 600000 ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' })
      : span < 86400000 ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
        : d.toLocaleDateString([], { month: 'short', day: 'numeric' });
    svg.append(svgEl('text', { x: X(x), y: H - 8, 'text-anchor': i === 0 ? 'start' : i === 3 ? 'end' : 'middle' }, label));
  }
  svg.append(svgEl('line', { class: 'axis', x1: L, x2: W - R, y1: Y(0), y2: Y(0) }));
  series.forEach((se, i) => {
    const c = se.colour || PALETTE[i % PALETTE.length];
    const sorted = se.points.slice().sort((a, b) => a[0] - b[0]);
    if (sorted.length > 1) {
      svg.append(svgEl('polyline', { class: 'series', stroke: c, points: sorted.map((q) => X(q[0]).toFixed(1) + ',' + Y(q[1]).toFixed(1)).join(' ') }));
    }
    // Dots for few points (each with a tooltip); a dense series is a line only.
    if (sorted.length <= 60) for (const q of sorted) {
      svg.append(svgEl('circle', { cx: X(q[0]), cy: Y(q[1]), r: 3, fill: q[2] ? stateColour(q[2]) : c, stroke: c, 'stroke-width': 1 },
        svgEl('title', {}, se.name + ': ' + fmtY(q[1]) + (q[3] ? ' (' + q[3] + ')' : ''))));
    }
  });
  return h('figure', { class: 'fig', style: null },
    svg,
    h('figcaption', { class: 'plot-legend' }, series.map((se, i) => h('span', {}, h('i', { 'data-colour': se.colour || PALETTE[i % PALETTE.length] }), se.name))));
}

/** A round top for an axis and how many steps to cut it into (round steps too). */
function niceMax(v) {
  if (v <= 0) return [1, 1];
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const [m, t] of [[1, 5], [2, 4], [2.5, 5], [5, 5], [10, 5]]) if (m * p >= v) return [m * p, t];
  return [10 * p, 5];
}

export function durationPlot(runs) {
  const by = new Map();
  for (const r of runs) {
    if (r.duration_ms === null || !FINAL.includes(r.state)) continue;
    const k = r.project + '/' + r.pipeline;
    if (!by.has(k)) by.set(k, []);
    by.get(k).push([new Date(r.created_at).getTime(), r.duration_ms, r.state, '#' + r.number + ' ' + r.state]);
  }
  const series = [...by.entries()].slice(0, PALETTE.length).map(([name, points]) => ({ name, points }));
  return linePlot(series, (ms) => fmtDuration(ms), 'run durations per pipeline over time');
}
