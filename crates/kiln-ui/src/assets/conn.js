// Kiln web UI: the connection to the server. One banner when it cannot be reached (with a
// countdown to the next try and a "Retry now" button), a probe of `/healthz` until it answers,
// and a call back when it does, so the page on screen loads itself again. Also a small reader
// of the server's SSE streams through fetch() (so the Authorization header is sent) that
// tells the connection when a stream drops because the server went away.
//
// An ES module, imported by app.js at start (and preloaded by index.html): it must be in the
// browser before the server goes away.

/** Seconds to wait before each try while the server is away: 2, 4, 8, then every 10. */
export function backoff(tries) {
  return Math.min(10, 2 * Math.pow(2, Math.max(0, tries)));
}

/**
 * The connection. `onBack()` is called once each time the server answers again after it
 * was marked away. `probe()` (default: GET /healthz) resolves true when the server answers.
 */
export function createConnection(opts) {
  const onBack = opts.onBack;
  const probe = opts.probe || (async () => {
    try {
      const r = await fetch('/healthz', { cache: 'no-store' });
      return r.ok;
    } catch (_) {
      return false;
    }
  });
  let away = false, tries = 0, due = 0, timer = null, tick = null, reason = '', probing = false;
  let banner = null, count = null, why = null;

  function draw() {
    if (!banner) {
      count = document.createElement('span');
      count.className = 'countdown';
      why = document.createElement('span');
      why.className = 'why';
      const btn = document.createElement('button');
      btn.type = 'button';
      btn.id = 'conn-retry';
      btn.textContent = 'Retry now';
      btn.addEventListener('click', () => { retry(); });
      const b = document.createElement('b');
      b.textContent = 'The server cannot be reached.';
      banner = document.createElement('div');
      banner.id = 'conn-banner';
      banner.className = 'conn-banner';
      banner.setAttribute('role', 'alert');
      banner.append(b, ' ', why, ' ', count, ' ', btn);
      const header = document.querySelector('header.top');
      if (header) header.after(banner); else document.body.prepend(banner);
    }
    why.textContent = reason ? '(' + reason + ')' : '';
    const left = Math.max(0, Math.ceil((due - Date.now()) / 1000));
    count.textContent = probing ? 'Trying again…' : 'Trying again in ' + left + ' s.';
    banner.dataset.state = probing ? 'trying' : 'waiting';
  }

  function schedule() {
    clearTimeout(timer);
    const s = backoff(tries);
    due = Date.now() + s * 1000;
    timer = setTimeout(retry, s * 1000);
    draw();
  }

  /** Tries the server now; back if it answers, else waits longer. */
  async function retry() {
    if (!away || probing) return;
    clearTimeout(timer);
    probing = true;
    draw();
    const ok = await probe();
    probing = false;
    if (!away) return;
    if (ok) { back(); return; }
    tries++;
    schedule();
  }

  function back() {
    if (!away) return;
    away = false;
    tries = 0;
    clearTimeout(timer);
    clearInterval(tick);
    if (banner) { banner.remove(); banner = null; }
    onBack();
  }

  return {
    /** Marks the server away (a request failed for want of an answer): shows the banner. */
    down(what) {
      reason = what || '';
      if (away) { draw(); return; }
      away = true;
      tries = 0;
      schedule();
      tick = setInterval(draw, 1000);
    },
    /** The server answered a request: hides the banner and calls onBack if it was away. */
    up() { back(); },
    /** Whether the server is marked away. */
    isDown() { return away; },
    /** Tries the server at once (as the "Retry now" button does). */
    retry,
  };
}

/**
 * Reads the SSE stream of the fetch() answer `resp` to its end, calling `onEvent(type, data,
 * id)` for each event: `type` `message` unless named, `data` its data lines (an array), `id`
 * null when it has none.
 */
export async function readSse(resp, onEvent) {
  const reader = resp.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let cut;
    while ((cut = buf.search(/\r?\n\r?\n/)) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + (buf[cut] === '\r' ? 4 : 2));
      let type = 'message', id = null;
      const data = [];
      for (const line of block.split(/\r?\n/)) {
        if (!line || line.startsWith(':')) continue;
        const i = line.indexOf(':');
        const f = i < 0 ? line : line.slice(0, i);
        let v = i < 0 ? '' : line.slice(i + 1);
        if (v.startsWith(' ')) v = v.slice(1);
        if (f === 'event') type = v; else if (f === 'data') data.push(v); else if (f === 'id') id = v;
      }
      onEvent(type, data, id);
    }
  }
}

/**
 * Follows an SSE stream at `url`, calling `onEvent(type, data)` for each event and `onOpen()`
 * each time the stream is (re)opened, so the caller loads what it shows afresh. A stream that
 * drops is opened again at once when the server still answers; when it does not, the
 * connection is marked away (the page is loaded again when it comes back) and this returns.
 * It stops when `signal` aborts or the server refuses the stream (`onError(message)`).
 */
export async function followEvents(conn, url, o) {
  let quick = 0;
  for (;;) {
    if (o.signal.aborted) return;
    let dropped = 'the event stream closed';
    try {
      const resp = await fetch(url, { headers: { Authorization: 'Bearer ' + o.token(), Accept: 'text/event-stream' }, signal: o.signal });
      if (resp.status === 502 || resp.status === 503 || resp.status === 504) {
        conn.down('GET ' + url + ' answered ' + resp.status);
        return;
      }
      if (!resp.ok) {
        let msg = resp.statusText;
        try { msg = (await resp.json()).error.message; } catch (_) { /* not JSON */ }
        if (o.onError) o.onError('GET ' + url + ' answered ' + resp.status + ': ' + msg);
        return;
      }
      conn.up();
      o.onOpen();
      await readSse(resp, (type, data) => {
        if (data.length) o.onEvent(type, data.join('\n'));
      });
    } catch (e) {
      if (e.name === 'AbortError' || o.signal.aborted) return;
      dropped = 'the event stream failed: ' + e.message;
    }
    if (o.signal.aborted) return;
    // Dropped: the server gone, or only this connection? Ask once.
    let alive = false;
    try { alive = (await fetch('/healthz', { cache: 'no-store', signal: o.signal })).ok; } catch (e) {
      if (e.name === 'AbortError') return;
    }
    if (!alive) { conn.down(dropped); return; }
    // A stream that keeps dropping while the server answers: wait a little between tries.
    quick++;
    await new Promise((res) => setTimeout(res, Math.min(5000, 200 * quick)));
  }
}
