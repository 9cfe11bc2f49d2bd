// Kiln web UI: an array job's progress (`array: N`) on the run page, as an ES module that
// app.js imports at start: a bar (done of size, failures in red) and the counts, the failed
// indexes as ranges (their reasons on hover, the CLI command for one's log), and the
// durations as a small histogram.
// Built with app.js's `h` helper, handed in; it reads only the run's `JobInfo.array`.

/** `1.2k`-style counts for the bar's caption. */
function count(n) {
  return n >= 10000 ? (n / 1000).toFixed(n >= 100000 ? 0 : 1) + 'k' : String(n);
}

/** A duration bucket's label: `≤ 250 ms`, `≤ 2.5 s`, `> 1 h`. */
function bucketLabel(b, prev) {
  const ms = (v) => (v < 1000 ? v + ' ms' : v < 60000 ? v / 1000 + ' s' : v < 3600000 ? v / 60000 + ' min' : v / 3600000 + ' h');
  return b.le_ms === null ? '> ' + ms(prev) : '≤ ' + ms(b.le_ms);
}

/**
 * The progress of array job `job` of run `runId` (`a` = its `array`): an element for the
 * job table's note cell. `h` is app.js's element builder.
 */
export function arrayProgress(h, runId, job, a) {
  const done = a.succeeded + a.failed + a.canceled;
  const pct = a.size ? (100 * done) / a.size : 100;
  const failedPct = a.size ? (100 * a.failed) / a.size : 0;
  const bar = h('div', { class: 'bar array-bar', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': String(a.size), 'aria-valuenow': String(done), title: done + ' of ' + a.size + ' indexes done' },
    h('span', { style: 'width:' + (pct - failedPct).toFixed(2) + '%' }),
    h('span', { class: 'failed', style: 'width:' + failedPct.toFixed(2) + '%' }));
  const counts = h('span', { class: 'array-counts' },
    count(done) + ' / ' + count(a.size) + ' done · ' + a.succeeded + ' ok · ' + a.running + ' running · ' + a.failed + ' failed'
      + (a.canceled ? ' · ' + a.canceled + ' canceled' : '') + (a.retries ? ' · ' + a.retries + ' retried' : ''));
  const out = h('div', { class: 'array' }, bar, counts);
  if (a.failed_indexes) {
    const first = a.failures[0];
    out.append(h('div', { class: 'array-failed', title: a.failures.slice(0, 10).map((f) => f.index + ': ' + (f.reason || '')).join('\n') },
      'failed: ' + a.failed_indexes,
      first ? h('div', { class: 'muted' }, h('code', {}, 'kiln logs ' + runId + ' ' + job + ' --index ' + first.index)) : ''));
  }
  const total = a.durations.reduce((s, b) => s + b.count, 0);
  if (total) {
    const most = Math.max(...a.durations.map((b) => b.count));
    let prev = 0;
    const rows = [];
    for (const b of a.durations) {
      if (b.count) rows.push(h('span', { class: 'array-bucket', title: bucketLabel(b, prev) + ': ' + b.count },
        h('i', { style: 'height:' + Math.max(2, Math.round((16 * b.count) / most)) + 'px' })));
      if (b.le_ms !== null) prev = b.le_ms;
    }
    out.append(h('div', { class: 'array-hist', title: 'durations of ' + total + ' index attempts' }, ...rows));
  }
  return out;
}
