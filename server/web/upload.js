// The upload panel: pick or drop files; what the server would refuse (type,
// size) is refused here before a byte is sent; the rest go create → PUT (with
// XMLHttpRequest for progress: bytes, speed, time left) → complete, then show
// the job's state and progress from the live store until ready or failed.
import { api, putFile } from './api.js';
import { live, putUpload, removeUpload, store, uploads } from './live.js';
import { $, announce, formatBytes, formatDuration, formatEta, h, jobError, serverConfig } from './util.js';

// What the server accepts when its config does not say (server.content_types).
const DEFAULT_TYPES = [
  'audio/mpeg', 'audio/mp3', 'audio/wav', 'audio/x-wav', 'audio/wave', 'audio/vnd.wave',
  'audio/flac', 'audio/x-flac', 'audio/ogg', 'audio/opus', 'audio/mp4', 'audio/x-m4a',
  'audio/m4a', 'audio/aac', 'audio/aiff', 'audio/x-aiff', 'audio/webm',
];
// Browsers leave File.type empty (or generic) for some audio files.
const EXTENSION_TYPES = {
  mp3: 'audio/mpeg', wav: 'audio/wav', wave: 'audio/wav', flac: 'audio/flac', ogg: 'audio/ogg',
  oga: 'audio/ogg', opus: 'audio/opus', m4a: 'audio/mp4', aac: 'audio/aac', aif: 'audio/aiff',
  aiff: 'audio/aiff', aifc: 'audio/aiff', weba: 'audio/webm',
};
const GENERIC_TYPES = new Set(['', 'application/octet-stream']);
const MAX_PARALLEL = 2;

const config = serverConfig();
const acceptedTypes = new Set(config.content_types ?? DEFAULT_TYPES);
const maxBytes = Number(config.max_upload_bytes) || 2 ** 31;

function extensionOf(name) {
  const dot = name.lastIndexOf('.');
  return dot > 0 ? name.slice(dot + 1).toLowerCase() : '';
}

/** The content type to declare for a file, or {refused: reason}. */
export function classify(file) {
  const declared = (file.type || '').split(';')[0].trim().toLowerCase();
  const byExtension = EXTENSION_TYPES[extensionOf(file.name)];
  let type = null;
  if (acceptedTypes.has(declared)) type = declared;
  else if (byExtension && acceptedTypes.has(byExtension)
    && (GENERIC_TYPES.has(declared) || declared.startsWith('audio/') || declared.startsWith('video/'))) {
    type = byExtension;
  }
  if (!type) {
    const what = declared && !GENERIC_TYPES.has(declared) ? ` (${declared})` : '';
    const reason = declared.startsWith('audio/')
      ? `this audio format${what} is not supported`
      : `not an audio file${what}`;
    return { refused: `${reason}. Vessel takes MP3, WAV, FLAC, Ogg, Opus, AAC/M4A, AIFF and WebM audio.` };
  }
  if (file.size === 0) return { refused: 'the file is empty.' };
  if (file.size > maxBytes) {
    // Rounded sizes can look equal just past the limit: then say it in bytes.
    const [size, limit] = formatBytes(file.size) === formatBytes(maxBytes)
      ? [`${file.size.toLocaleString()} bytes`, `${maxBytes.toLocaleString()} bytes`]
      : [formatBytes(file.size), formatBytes(maxBytes)];
    return { refused: `too large (${size}); the limit is ${limit}.` };
  }
  return { type };
}

let nextKey = 1;

class Task {
  constructor(file) {
    this.key = nextKey++;
    this.file = file;
    this.type = null;
    this.state = 'waiting'; // waiting | sending | queued | processing | ready | failed | refused
    this.sent = 0;
    this.speed = 0;
    this.samples = [];
    this.id = null;
    this.upload = null;
    this.error = '';
    this.jobFailed = false; // failed after the bytes were in: retry = POST /retry
    this.retryable = true;
    this.put = null;
    this.el = null;
  }
}

export function setupUploads({ onPlay }) {
  const list = $('#upload-list');
  const input = $('#file-input');
  const zone = $('#dropzone');
  const tasks = [];

  $('#upload-limits').textContent =
    `MP3, WAV, FLAC, Ogg, Opus, AAC/M4A, AIFF or WebM · up to ${formatBytes(maxBytes)} each`;

  function add(files) {
    const added = [];
    for (const file of files) {
      const task = new Task(file);
      const verdict = classify(file);
      if (verdict.refused) {
        task.state = 'refused';
        task.error = verdict.refused;
        announce(`${file.name} refused: ${verdict.refused}`);
      } else {
        task.type = verdict.type;
      }
      tasks.unshift(task);
      added.push(task);
    }
    for (const task of added.reverse()) render(task);
    pump();
  }

  function pump() {
    const sending = tasks.filter((t) => t.state === 'sending').length;
    const waiting = tasks.filter((t) => t.state === 'waiting').reverse(); // oldest first
    for (const task of waiting.slice(0, Math.max(0, MAX_PARALLEL - sending))) start(task);
  }

  async function start(task) {
    task.state = 'sending';
    task.sent = 0;
    task.speed = 0;
    task.samples = [{ t: performance.now(), sent: 0 }];
    task.error = '';
    task.jobFailed = false;
    task.retryable = true;
    render(task);
    try {
      const created = await api.createUpload(task.file, task.type);
      if (task.state !== 'sending') { // cancelled meanwhile
        discard(created.id);
        return;
      }
      task.id = created.id;
      const now = new Date().toISOString();
      putUpload({
        id: created.id, filename: task.file.name, content_type: task.type, size: task.file.size,
        status: 'uploading', progress: 0, error: null, duration_s: null, title: null,
        artist: null, album: null, created_at: now, updated_at: '', stream_url: null,
      });
      task.put = putFile(created.upload, task.file, (sent, total) => progress(task, sent, total));
      await task.put.promise;
      task.put = null;
      await api.completeUpload(task.id);
      task.state = 'queued';
    } catch (err) {
      task.put = null;
      if (err.code === 'aborted' || task.state === 'cancelled') return;
      task.state = 'failed';
      task.error = describe(err);
      task.retryable = !['not_audio', 'unsupported_media_type', 'payload_too_large'].includes(err.code);
      announce(`${task.file.name}: ${task.error}`);
      // An upload that was never completed is not kept in the library; a retry
      // starts over with a new one.
      const orphan = task.id;
      task.id = null;
      if (orphan) discard(orphan);
      render(task);
      return;
    } finally {
      pump(); // this one is no longer sending: start the next waiting file
    }
    render(task);
    announce(`${task.file.name} uploaded; processing`);
    live.watch(task.id);
    api.getUpload(task.id).then(putUpload, () => {}); // the live store keeps trying
  }

  function describe(err) {
    switch (err.code) {
      case 'not_audio':
        return 'not an audio file: its content is not a format Vessel can decode.';
      case 'unsupported_media_type':
        return 'this file type is not accepted by the server.';
      case 'payload_too_large':
        return `too large: ${err.message}`;
      case 'network':
        return err.message;
      default:
        return err.message || 'the upload failed.';
    }
  }

  function discard(id) {
    api.deleteUpload(id).catch(() => {});
    removeUpload(id);
  }

  function progress(task, sent, total) {
    const now = performance.now();
    task.sent = sent;
    task.samples.push({ t: now, sent });
    // Speed over the last ~3 s: steady, yet quick to follow a change.
    while (task.samples.length > 2 && now - task.samples[0].t > 3000) task.samples.shift();
    const first = task.samples[0];
    const dt = (now - first.t) / 1000;
    if (dt > 0.2) task.speed = (sent - first.sent) / dt;
    task.total = total;
    renderProgress(task);
  }

  async function retry(task) {
    if (task.jobFailed && task.id) {
      task.state = 'queued';
      task.error = '';
      render(task);
      try {
        await api.retryUpload(task.id);
        putUpload(await api.getUpload(task.id));
      } catch (err) {
        task.state = 'failed';
        task.error = describe(err);
        render(task);
      }
      return;
    }
    task.state = 'waiting';
    render(task);
    pump();
  }

  function cancel(task) {
    const wasSending = task.state === 'sending';
    task.state = 'cancelled';
    task.put?.abort();
    if (wasSending && task.id) discard(task.id);
    dismiss(task);
    announce(`${task.file.name}: upload cancelled`);
    pump();
  }

  function dismiss(task) {
    const i = tasks.indexOf(task);
    if (i >= 0) tasks.splice(i, 1);
    // Keep keyboard focus in the panel rather than dropping it on <body>.
    const neighbour = task.el?.nextElementSibling ?? task.el?.previousElementSibling;
    const hadFocus = task.el?.contains(document.activeElement);
    task.el?.remove();
    if (hadFocus) (neighbour?.querySelector('button') ?? input).focus();
  }

  // Job state comes from the live store (events or polling).
  store.on('update', (u) => {
    for (const task of tasks) {
      if (task.id !== u.id || task.state === 'sending' || task.state === 'cancelled') continue;
      task.upload = u;
      const before = task.state;
      if (u.status === 'queued' || u.status === 'processing' || u.status === 'ready') {
        task.state = u.status;
      } else if (u.status === 'failed') {
        task.state = 'failed';
        task.jobFailed = true;
        task.error = jobError(u);
      }
      if (before !== task.state && (task.state === 'ready' || task.state === 'failed')) {
        announce(`${task.file.name}: ${task.state === 'ready' ? 'ready to play' : `failed, ${task.error}`}`);
      }
      render(task);
    }
  });
  store.on('remove', (id) => {
    for (const task of [...tasks]) if (task.id === id && task.state !== 'sending') dismiss(task);
  });

  function statusText(task) {
    switch (task.state) {
      case 'waiting':
        return 'Waiting…';
      case 'sending': {
        const total = task.total ?? task.file.size;
        const parts = [`${formatBytes(task.sent)} of ${formatBytes(total)}`];
        if (task.speed > 0) {
          parts.push(`${formatBytes(task.speed)}/s`);
          parts.push(formatEta((total - task.sent) / task.speed));
        }
        return `Uploading · ${parts.join(' · ')}`;
      }
      case 'queued':
        return 'Uploaded · queued for processing';
      case 'processing':
        return `Processing · ${Math.round((task.upload?.progress ?? 0) * 100)}%`;
      case 'ready': {
        const d = task.upload?.duration_s;
        return `Ready${Number.isFinite(d) ? ` · ${formatDuration(d)}` : ''}`;
      }
      case 'failed':
        return `Failed: ${task.error}`;
      case 'refused':
        return `Not uploaded: ${task.error}`;
      default:
        return '';
    }
  }

  function renderProgress(task) {
    if (!task.el) return;
    const bar = task.el.querySelector('progress');
    const text = task.el.querySelector('.upload-status');
    if (task.state === 'sending') {
      bar.max = task.total ?? task.file.size;
      bar.value = task.sent;
    } else if (task.state === 'processing') {
      bar.max = 1;
      bar.value = task.upload?.progress ?? 0;
    } else if (task.state === 'ready') {
      bar.max = 1;
      bar.value = 1;
    } else if (task.state === 'queued' || task.state === 'waiting') {
      bar.removeAttribute('value'); // indeterminate
    }
    text.textContent = statusText(task);
  }

  function render(task) {
    const name = task.file.name;
    const actions = [];
    if (task.state === 'sending' || task.state === 'waiting') {
      actions.push(h('button', { type: 'button', class: 'small', onclick: () => cancel(task),
        'aria-label': `Cancel upload of ${name}` }, 'Cancel'));
    }
    if (task.state === 'ready' && task.upload) {
      actions.push(h('button', { type: 'button', class: 'small primary', onclick: () => onPlay(uploads.get(task.id) ?? task.upload),
        'aria-label': `Play ${name}` }, 'Play'));
    }
    if (task.state === 'failed' && task.retryable) {
      actions.push(h('button', { type: 'button', class: 'small', onclick: () => retry(task),
        'aria-label': `Retry ${name}` }, 'Retry'));
    }
    if (['ready', 'failed', 'refused'].includes(task.state)) {
      actions.push(h('button', { type: 'button', class: 'small ghost', onclick: () => dismiss(task),
        'aria-label': `Dismiss ${name}` }, 'Dismiss'));
    }
    const showBar = !['failed', 'refused'].includes(task.state);
    const el = h('li', { class: 'upload-item', dataset: { state: task.state, key: String(task.key) } },
      h('div', { class: 'upload-head' },
        h('span', { class: 'upload-name', title: name }, name),
        h('span', { class: 'upload-size' }, formatBytes(task.file.size)),
        h('span', { class: 'upload-actions' }, actions)),
      showBar ? h('progress', { 'aria-label': `Progress of ${name}`, max: 1 }) : null,
      h('p', {
        class: 'upload-status',
        role: task.state === 'refused' || task.state === 'failed' ? 'alert' : null,
      }));
    const focusedAction = task.el?.contains(document.activeElement)
      ? document.activeElement.textContent : null;
    if (task.el?.isConnected) task.el.replaceWith(el);
    else list.prepend(el);
    task.el = el;
    renderProgress(task);
    if (focusedAction) {
      const same = [...el.querySelectorAll('button')].find((b) => b.textContent === focusedAction);
      (same ?? el.querySelector('button'))?.focus();
    }
  }

  input.addEventListener('change', () => {
    add([...input.files]);
    input.value = '';
  });

  // Drag and drop onto the zone; a file dropped elsewhere must not navigate away.
  let depth = 0;
  zone.addEventListener('dragenter', (e) => {
    e.preventDefault();
    depth += 1;
    zone.classList.add('dragging');
  });
  zone.addEventListener('dragleave', () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) zone.classList.remove('dragging');
  });
  zone.addEventListener('dragover', (e) => {
    e.preventDefault();
    e.dataTransfer.dropEffect = 'copy';
  });
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    depth = 0;
    zone.classList.remove('dragging');
    const files = [...(e.dataTransfer?.files ?? [])];
    if (files.length) add(files);
  });
  for (const type of ['dragover', 'drop']) {
    window.addEventListener(type, (e) => {
      if (!zone.contains(e.target)) e.preventDefault();
    });
  }

  return {
    /** Forget this session's uploads (sign-out). */
    reset() {
      for (const task of [...tasks]) {
        task.state = 'cancelled';
        task.put?.abort();
        dismiss(task);
      }
    },
    busy: () => tasks.some((t) => t.state === 'sending' || t.state === 'waiting'),
  };
}
