// @ts-check
// Kiln web UI: building elements (never innerHTML from data, so nothing a pipeline prints can
// inject markup) and the small widgets every page uses: badges, digests, the toast.

const SVGNS = 'http://www.w3.org/2000/svg';

/** Builds an element: h('a', {href: '/', class: 'x', onclick: f}, 'text', child). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** Builds an SVG element. */
export function svgEl(tag, attrs, ...children) {
  const el = document.createElementNS(SVGNS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }

/** Replaces el's children (null and false children are left out, unlike Element.append). */
export function put(el, ...children) { append(clear(el), children); return el; }

export const enc = encodeURIComponent;

export function badge(state, label) {
  return h('span', { class: 'badge s-' + state, 'data-state': state }, label || state);
}

/** A badge for a state of another kind (a node's, a service's), in the colour `colours` maps it to. */
export function stateBadge(colours, state) {
  return h('span', { class: 'badge s-' + (colours[state] || 'pending'), 'data-state': state }, state);
}

/** @type {ReturnType<typeof setTimeout> | undefined} */
let toastTimer;

/**
 * Says `msg` for a moment at the bottom of the page (a live region).
 * @param {string} msg
 */
export function toast(msg) {
  const t = /** @type {HTMLElement} */ (document.getElementById('toast'));
  t.textContent = msg;
  t.classList.add('show');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => t.classList.remove('show'), 2500);
}

/**
 * Sizes and colours given as data (`data-w` on a bar, `data-colour` on a legend swatch) are
 * applied through the CSSOM: the page's CSP allows no inline styles. Started once by app.js.
 */
export function styleFromData() {
  new MutationObserver(() => {
    for (const i of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll('.plot-legend i[data-colour]:not([data-done])'))) {
      i.style.background = i.dataset.colour || '';
      i.dataset.done = '1';
    }
    for (const b of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll('.bar > span[data-w]:not([data-done])'))) {
      b.style.width = b.dataset.w + '%';
      b.dataset.done = '1';
    }
  }).observe(document.documentElement, { childList: true, subtree: true });
}

export function truncate(t, n) { return t.length > n ? t.slice(0, n - 1) + '…' : t; }

export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

export function shortDigest(d) {
  const [alg, hex] = String(d).split(':');
  return h('span', { class: 'mono digest', title: d, 'data-digest': d }, hex ? [h('span', { class: 'hide-sm' }, alg + ':'), hex.slice(0, 12)] : d);
}
