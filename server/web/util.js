// Small shared helpers: DOM construction, formatting of sizes, times and dates,
// a live-region announcer and a tiny event emitter.

/** Creates an element: h('button', {class: 'x', onclick: fn}, 'text', child…). */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key in el && typeof value !== 'string') el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export const $ = (selector, root = document) => root.querySelector(selector);

const UNITS = ['B', 'KB', 'MB', 'GB', 'TB'];

/** 1234567 → "1.2 MB" (decimal units, as file managers show them). */
export function formatBytes(bytes) {
  if (!Number.isFinite(bytes) || bytes < 0) return '–';
  let i = 0;
  let v = bytes;
  while (v >= 1000 && i < UNITS.length - 1) {
    v /= 1000;
    i += 1;
  }
  const digits = i === 0 || v >= 100 ? 0 : 1;
  return `${v.toFixed(digits)} ${UNITS[i]}`;
}

/** 83.4 → "1:23"; 3723 → "1:02:03". */
export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return '–:––';
  const s = Math.floor(seconds);
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hh > 0 ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

/** Seconds left as words: "12 s left", "3 min left". */
export function formatEta(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return '';
  if (seconds < 1) return 'less than a second left';
  if (seconds < 90) return `${Math.ceil(seconds)} s left`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min left`;
  return `${(seconds / 3600).toFixed(1)} h left`;
}

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });
const timeFormat = new Intl.DateTimeFormat(undefined, { timeStyle: 'short' });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'short' });

/** Accepts an ISO string or unix seconds; "Today 14:02", "Yesterday 09:10", "3 Mar 2025". */
export function parseDate(value) {
  if (value === null || value === undefined || value === '') return null;
  const d = typeof value === 'number' ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(d.getTime()) ? null : d;
}

export function formatDate(value) {
  const d = parseDate(value);
  if (!d) return '';
  const today = new Date();
  const startOfToday = new Date(today.getFullYear(), today.getMonth(), today.getDate());
  const day = 24 * 3600 * 1000;
  if (d >= startOfToday) return `Today ${timeFormat.format(d)}`;
  if (d >= new Date(startOfToday.getTime() - day)) return `Yesterday ${timeFormat.format(d)}`;
  return dateFormat.format(d);
}

export function formatDateLong(value) {
  const d = parseDate(value);
  return d ? fullFormat.format(d) : '';
}

/** Politely tells screen-reader users what just happened (one shared live region). */
export function announce(text) {
  const region = document.getElementById('announcer');
  if (!region) return;
  region.textContent = '';
  // A separate task so that repeating the same text is announced again.
  setTimeout(() => {
    region.textContent = text;
  }, 50);
}

/** A minimal typed event emitter. */
export class Emitter {
  #handlers = new Map();

  on(event, fn) {
    if (!this.#handlers.has(event)) this.#handlers.set(event, new Set());
    this.#handlers.get(event).add(fn);
    return () => this.#handlers.get(event)?.delete(fn);
  }

  emit(event, ...args) {
    for (const fn of this.#handlers.get(event) ?? []) {
      try {
        fn(...args);
      } catch (err) {
        console.error(err);
      }
    }
  }
}

/** The display title of an upload: its tag title, else the file name without extension. */
export function displayTitle(upload) {
  if (upload.title) return upload.title;
  const name = upload.filename ?? '';
  const dot = name.lastIndexOf('.');
  return dot > 0 ? name.slice(0, dot) : name;
}

/** "Artist · Album" from the tags, or ''. */
export function displaySubtitle(upload) {
  return [upload.artist, upload.album].filter(Boolean).join(' · ');
}

/**
 * A failed job's reason for people: the worker's message names the stored
 * original by its server path, which means nothing to the user.
 */
export function jobError(upload) {
  const text = (upload.error || 'Processing failed.').replace(/\binput '[^']*'/, 'the file');
  return text[0].toUpperCase() + text.slice(1);
}

/** Reads the JSON the server puts into <meta name="vessel-config">. */
export function serverConfig() {
  const meta = document.querySelector('meta[name="vessel-config"]');
  try {
    const parsed = JSON.parse(meta?.content ?? '');
    if (parsed && typeof parsed === 'object') return parsed;
  } catch {
    // The page was not served by Vessel (or an old server): use the defaults.
  }
  return {};
}
