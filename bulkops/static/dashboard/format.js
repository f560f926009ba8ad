// How numbers, durations, times and statuses read on the page.

export const STATUSES = [
  'QUEUED',
  'RUNNING',
  'PAUSED',
  'CANCELLING',
  'CANCELLED',
  'SUCCEEDED',
  'PARTIAL',
  'FAILED',
];
export const TERMINAL = new Set(['CANCELLED', 'SUCCEEDED', 'PARTIAL', 'FAILED']);

const LABELS = {
  QUEUED: 'Queued',
  RUNNING: 'Running',
  PAUSED: 'Paused',
  CANCELLING: 'Cancelling',
  CANCELLED: 'Cancelled',
  SUCCEEDED: 'Succeeded',
  PARTIAL: 'Partial',
  FAILED: 'Failed',
};

export function statusLabel(status) {
  return LABELS[status] || status;
}

/** The CSS class carrying a status's colour: `status-running`, … */
export function statusClass(status) {
  return 'status-' + String(status).toLowerCase();
}

const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const compact = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

export function count(n) {
  return n === null || n === undefined ? '—' : integer.format(n);
}

export function percent(job) {
  if (!job.total) return TERMINAL.has(job.status) ? 100 : 0;
  return Math.min(100, Math.floor((job.processed / job.total) * 100));
}

export function rate(itemsPerSecond) {
  if (!itemsPerSecond) return '—';
  return (itemsPerSecond >= 100 ? integer : compact).format(itemsPerSecond) + '/s';
}

/** 42 s, 3 min 5 s, 2 h 10 min. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return '—';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return s + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min' + (s % 60 ? ' ' + (s % 60) + ' s' : '');
  const minutes = Math.floor((s % 3600) / 60);
  return Math.floor(s / 3600) + ' h' + (minutes ? ' ' + minutes + ' min' : '');
}

/** How long ago `iso` was: "just now", "4 min ago", "3 h ago", then the date. */
export function age(iso, now = Date.now()) {
  const seconds = (now - Date.parse(iso)) / 1000;
  if (!isFinite(seconds)) return '—';
  if (seconds < 10) return 'just now';
  if (seconds < 60) return Math.floor(seconds) + ' s ago';
  if (seconds < 3600) return Math.floor(seconds / 60) + ' min ago';
  if (seconds < 86400) return Math.floor(seconds / 3600) + ' h ago';
  return new Date(iso).toLocaleDateString();
}

export function dateTime(iso) {
  return iso ? new Date(iso).toLocaleString() : '—';
}

export function bytes(n) {
  if (n < 1024) return n + ' B';
  if (n < 1024 * 1024) return compact.format(n / 1024) + ' kB';
  return compact.format(n / (1024 * 1024)) + ' MB';
}
