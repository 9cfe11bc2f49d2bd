// @ts-check
// Kiln web UI: the REST API (/api/v1) as the pages call it: the bearer token, errors that say
// which call failed and what the server answered, the connection banner told when the server
// is away (conn.js), and the server's event streams.

import { followEvents as follow } from '../conn.js';
import { h } from './dom.js';

/** Where the token is kept (the tab's session storage only: closing the tab signs out). */
export const TOKEN_KEY = 'kiln.token';

/** The token signed in with, or null. */
export function token() { return sessionStorage.getItem(TOKEN_KEY); }

/**
 * @typedef {object} Page A page on screen: aborted (its requests, streams and timers) when it goes.
 * @property {AbortController} ctl
 * @property {ReturnType<typeof setTimeout>[]} timers
 * @property {() => boolean} [unsaved] Whether it holds changes that leaving would lose.
 */

/**
 * @typedef {object} Connection The connection to the server (conn.js `createConnection`).
 * @property {(why: string) => void} down
 * @property {() => void} up
 */

/** @type {{ conn: Connection | null, unauthorized: (why: string) => void }} */
const hooks = { conn: null, unauthorized: () => {} };

/**
 * Wires the API to the connection banner and to what a refused token does (sign out).
 * @param {{ conn: Connection, unauthorized: (why: string) => void }} o
 */
export function connect(o) {
  hooks.conn = o.conn;
  hooks.unauthorized = o.unauthorized;
}

/** A failed API call: which call (`what`), the HTTP status, the API's error code and message. */
export class ApiError extends Error {
  /**
   * @param {string} what
   * @param {number} status
   * @param {string} code
   * @param {string} message
   * @param {import('./api-types.js').Diagnostic[]} [diagnostics]
   */
  constructor(what, status, code, message, diagnostics) {
    super(message);
    this.what = what; this.status = status; this.code = code; this.diagnostics = diagnostics || [];
  }
}

/**
 * @typedef {object} CallOptions
 * @property {AbortSignal} [signal] Aborts the call (the page going).
 * @property {boolean} [raw] Answer the Response itself (a download).
 * @property {boolean} [noSignOut] A 401 does not sign out (the sign-in form's own check).
 */

/**
 * Calls the API; throws ApiError saying which call failed and what the server said. A path
 * not under `/api/` or `/v2/` is the API's (`/runs` is `/api/v1/runs`).
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body] sent as JSON
 * @param {CallOptions} [opts]
 * @returns {Promise<any>} the answer's JSON (null for 204), or the Response with `raw`
 */
export async function api(method, path, body, opts) {
  const what = method + ' ' + path;
  /** @type {Record<string, string>} */
  const headers = { Authorization: 'Bearer ' + token() };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const conn = hooks.conn;
  let resp;
  try {
    resp = await fetch(path.startsWith('/') && !path.startsWith('/api/') && !path.startsWith('/v2/') ? '/api/v1' + path : path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      signal: opts && opts.signal,
    });
  } catch (e) {
    if (e instanceof Error && e.name === 'AbortError') throw e;
    if (conn) conn.down('the server did not answer ' + what);
    throw new ApiError(what, 0, 'network', 'the server did not answer (' + (e instanceof Error ? e.message : String(e)) + ')');
  }
  // A gateway's 502/503/504: the server is away too. Any other answer: it is there.
  if (conn) { if ([502, 503, 504].includes(resp.status)) conn.down(what + ' answered ' + resp.status); else conn.up(); }
  if (resp.status === 401 && !(opts && opts.noSignOut)) {
    hooks.unauthorized('Your token was not accepted (it may have been revoked). Sign in again.');
    throw new ApiError(what, 401, 'unauthorized', 'not signed in');
  }
  if (!resp.ok) {
    let code = 'http_' + resp.status, message = resp.statusText || 'error', diags = [];
    try {
      /** @type {import('./api-types.js').ErrorBody} */
      const j = await resp.json();
      if (j && j.error) { code = j.error.code; message = j.error.message; diags = j.error.diagnostics || []; }
    } catch (_) { /* not JSON */ }
    throw new ApiError(what, resp.status, code, message, diags);
  }
  if (opts && opts.raw) return resp;
  if (resp.status === 204) return null;
  return resp.json();
}

/**
 * A box that says which call failed, with the server's message.
 * @param {string} title
 * @param {unknown} e
 */
export function errorBox(title, e) {
  const box = h('div', { class: 'error', role: 'alert' }, h('b', {}, title));
  if (e instanceof ApiError) {
    box.append(e.what + (e.status ? ' answered ' + e.status + ' ' + e.code : ' failed') + ': ' + e.message);
    if (e.diagnostics && e.diagnostics.length) {
      box.append(h('ul', {}, e.diagnostics.map((d) => h('li', {}, d.file + ':' + d.line + ':' + d.column + ': ' + d.message))));
    }
  } else {
    box.append(String(e instanceof Error ? e.message : e));
  }
  return box;
}

/**
 * Follows a server event stream (SSE, read with fetch so the token is sent) while the page
 * `p` is on screen (see conn.js `followEvents`): `onOpen` each time it is (re)opened,
 * `onEvent` for each event, `onError` when it cannot be followed.
 * @param {Page} p
 * @param {string} url
 * @param {() => void} onOpen
 * @param {(type: string, data: string) => void} onEvent
 * @param {(msg: string) => void} [onError]
 */
export function followEvents(p, url, onOpen, onEvent, onError) {
  follow(hooks.conn, url, { signal: p.ctl.signal, token, onOpen, onEvent, onError });
}
