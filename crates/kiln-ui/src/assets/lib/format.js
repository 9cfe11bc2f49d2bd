// Kiln web UI: formatting for people: durations, times ago, sizes, numbers on axes; the final run states.

export const FINAL = ['success', 'failure', 'canceled', 'timeout'];

export function fmtDuration(ms) {
  if (ms === null || ms === undefined) return '–';
  const sec = Math.round(ms / 1000);
  if (ms < 1000) return ms + ' ms';
  if (sec < 60) return (ms / 1000).toFixed(sec < 10 ? 1 : 0) + ' s';
  const m = Math.floor(sec / 60), r = sec % 60;
  if (m < 60) return m + 'm ' + String(r).padStart(2, '0') + 's';
  return Math.floor(m / 60) + 'h ' + String(m % 60).padStart(2, '0') + 'm';
}

export function fmtAgo(iso) {
  if (!iso) return '–';
  const d = (Date.now() - new Date(iso).getTime()) / 1000;
  if (d < 5) return 'just now';
  if (d < 60) return Math.floor(d) + ' s ago';
  if (d < 3600) return Math.floor(d / 60) + ' min ago';
  if (d < 86400) return Math.floor(d / 3600) + ' h ago';
  return Math.floor(d / 86400) + ' d ago';
}

export function fmtTime(iso) { return iso ? new Date(iso).toLocaleString() : '–'; }

export function fmtBytes(n) {
  if (n < 1024) return n + ' B';
  const u = ['KiB', 'MiB', 'GiB', 'TiB'];
  let i = -1;
  do { n /= 1024; i++; } while (n >= 1024 && i < u.length - 1);
  return n.toFixed(n < 10 ? 1 : 0) + ' ' + u[i];
}

/** A duration as a file writes it: 5m, 1h, 30s, 250ms. */
export function fmtSpan(ms) {
  for (const [n, unit] of /** @type {[number, string][]} */ ([[3600000, 'h'], [60000, 'm'], [1000, 's']])) if (ms >= n && ms % n === 0) return ms / n + unit;
  return ms + 'ms';
}

/** A value for an axis: 1234567 as 1.2M, 0.25 as 0.25. */
export function fmtNum(v) {
  const a = Math.abs(v);
  for (const [n, unit] of /** @type {[number, string][]} */ ([[1e9, 'G'], [1e6, 'M'], [1e3, 'k']])) {
    if (a >= n) return (v / n).toFixed(a >= 10 * n ? 0 : 1) + unit;
  }
  return String(Math.round(v * 100) / 100);
}
