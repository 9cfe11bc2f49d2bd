// Kiln web UI: plots drawn as SVG: line plots with a legend, the runs' duration bars.

import { h, put, svgEl } from './dom.js';
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
 * Colours a series keeps whatever else is plotted: picked by a hash of its name (FNV-1a), so a
 * pipeline has the same colour on every page and after a reload. Each is at least 4.5:1 on
 * white.
 */
export const SERIES_COLOURS = ['#0b5cad', '#c4231c', '#1a7f37', '#8250df', '#b04500', '#1b7c83', '#bf3989', '#57606a',
  '#6e5a00', '#0a6b4f', '#a1287a', '#3d4db7'];

/**
 * The colour of the series named `name` (see SERIES_COLOURS).
 * @param {string} name
 */
export function colourOf(name) {
  let hash = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    hash ^= name.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return SERIES_COLOURS[hash % SERIES_COLOURS.length];
}

/**
 * @typedef {object} Series
 * @property {string} name
 * @property {string} [colour]
 * @property {Array<[number, number, string?, string?]>} points [x (ms since the epoch), y, state (a dot's colour), note]
 */

/**
 * A line plot: series [{name, points: [[x(ms since epoch), y]]}], y formatted by fmtY.
 * opts: minTop (the y axis reaches at least this), from and to (a fixed time span, in ms
 * since the epoch; else the data's), hidden (names of series left out, still in the legend),
 * toggle(name) (the legend's entries become buttons that call it). Returns a figure with the
 * SVG and a legend.
 * @param {Series[]} series
 * @param {(y: number) => string} fmtY
 * @param {string} label
 * @param {{minTop?: number, from?: number, to?: number, hidden?: Set<string>, toggle?: (name: string) => void}} [opts]
 */
export function linePlot(series, fmtY, label, opts) {
  const o = opts || {};
  const hidden = o.hidden || new Set();
  const W = 560, H = 200, L = 52, R = 12, T = 10, B = 26;
  const colour = (se, i) => se.colour || PALETTE[i % PALETTE.length];
  const legend = h('figcaption', { class: 'plot-legend' }, series.map((se, i) => o.toggle
    ? h('button', { type: 'button', 'data-series': se.name, 'data-colour': colour(se, i), 'aria-pressed': hidden.has(se.name) ? 'false' : 'true',
      title: (hidden.has(se.name) ? 'Show ' : 'Hide ') + se.name, onclick: () => /** @type {(n: string) => void} */ (o.toggle)(se.name) },
    h('i', { 'data-colour': colour(se, i) }), se.name)
    : h('span', {}, h('i', { 'data-colour': colour(se, i) }), se.name)));
  const shown = series.filter((se) => !hidden.has(se.name));
  const pts = shown.flatMap((s_) => s_.points);
  if (!pts.length) {
    return h('figure', { class: 'fig' }, h('div', { class: 'empty' }, series.length ? 'No series shown: pick one below.' : 'No data yet.'), series.length ? legend : null);
  }
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
    if (hidden.has(se.name)) return;
    const c = colour(se, i);
    const g = svgEl('g', { class: 'series-g', 'data-series': se.name, 'data-colour': c });
    const sorted = se.points.slice().sort((a, b) => a[0] - b[0]);
    if (sorted.length > 1) {
      g.append(svgEl('polyline', { class: 'series', stroke: c, points: sorted.map((q) => X(q[0]).toFixed(1) + ',' + Y(q[1]).toFixed(1)).join(' ') }));
    }
    // Dots for few points (each with a tooltip); a dense series is a line only.
    if (sorted.length <= 60) for (const q of sorted) {
      g.append(svgEl('circle', { cx: X(q[0]), cy: Y(q[1]), r: 3, fill: q[2] ? stateColour(q[2]) : c, stroke: c, 'stroke-width': 1 },
        svgEl('title', {}, se.name + ': ' + fmtY(q[1]) + (q[3] ? ' (' + q[3] + ')' : ''))));
    }
    svg.append(g);
  });
  return h('figure', { class: 'fig' }, svg, legend);
}

/** A round top for an axis and how many steps to cut it into (round steps too). */
function niceMax(v) {
  if (v <= 0) return [1, 1];
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const [m, t] of [[1, 5], [2, 4], [2.5, 5], [5, 5], [10, 5]]) if (m * p >= v) return [m * p, t];
  return [10 * p, 5];
}

/** Where the pipelines shown or hidden in the duration plots are kept (this browser). */
const SHOWN_KEY = 'kiln.plot.durations';
/** Pipelines shown at first when there are more: those with the latest runs. */
const FIRST_SHOWN = 6;

/**
 * Run durations over time, one series per pipeline in its own colour (colourOf), each shown
 * or hidden from the legend; the choice is kept in the browser (localStorage), and a
 * pipeline nobody picked is shown when it is among the FIRST_SHOWN with the latest runs.
 * @param {import('./api-types.js').RunSummary[]} runs
 */
export function durationPlot(runs) {
  /** @type {Map<string, Series['points']>} */
  const by = new Map();
  for (const r of runs) {
    if (r.duration_ms === null || r.duration_ms === undefined || !FINAL.includes(r.state)) continue;
    const k = r.project + '/' + r.pipeline;
    if (!by.has(k)) by.set(k, []);
    /** @type {Series['points']} */ (by.get(k)).push([new Date(r.created_at).getTime(), r.duration_ms, r.state, '#' + r.number + ' ' + r.state]);
  }
  const latest = (points) => Math.max(...points.map((q) => q[0]));
  const series = [...by.entries()].map(([name, points]) => ({ name, points, colour: colourOf(name) }))
    .sort((a, b) => latest(b.points) - latest(a.points));
  const box = h('div', { class: 'duration-plot' });
  const draw = () => {
    /** @type {Record<string, boolean>} */
    let picked = {};
    try { picked = JSON.parse(localStorage.getItem(SHOWN_KEY) || '{}') || {}; } catch (_) { picked = {}; }
    const hidden = new Set(series.filter((se, i) => picked[se.name] === undefined ? i >= FIRST_SHOWN : !picked[se.name]).map((se) => se.name));
    const toggle = (name) => {
      picked[name] = hidden.has(name);
      localStorage.setItem(SHOWN_KEY, JSON.stringify(picked));
      const focus = document.activeElement && box.contains(document.activeElement);
      draw();
      const again = /** @type {HTMLElement | null} */ (box.querySelector('button[data-series="' + CSS.escape(name) + '"]'));
      if (focus && again) again.focus();
    };
    put(box, linePlot(series, (ms) => fmtDuration(ms), 'run durations per pipeline over time', { hidden, toggle }));
  };
  draw();
  return box;
}
