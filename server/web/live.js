// Upload state shared by the upload panel and the library, kept current while
// uploads are queued or processing: Server-Sent Events from /api/v1/events
// (`event: upload` with the upload JSON, `event: deleted` with {id}) when the
// server answers with a stream, else polling GET /api/v1/uploads/{id} about
// once a second. The stream is re-tried every 30 s while we poll, so a server
// upgrade is picked up. <body data-live="events|polling"> shows the mode.
import { api } from './api.js';
import { Emitter } from './util.js';

const TERMINAL = new Set(['ready', 'failed']);
const RANK = { uploading: 0, queued: 1, processing: 2, ready: 3, failed: 3 };
const POLL_MS = 1000;
const SSE_RETRY_MS = 30000;

/** Every upload we know of, by id. Listen with store.on('update' | 'remove', fn). */
export const uploads = new Map();
export const store = new Emitter();

function stamp(u) {
  const t = Date.parse(u?.updated_at ?? '');
  return Number.isNaN(t) ? 0 : t;
}

/** Merges a fresh upload JSON; older news (a slow poll after an event) is ignored. */
export function putUpload(upload) {
  if (!upload?.id) return;
  const old = uploads.get(upload.id);
  if (old) {
    const a = stamp(old);
    const b = stamp(upload);
    if (b < a) return;
    if (b === a && (RANK[upload.status] ?? 0) < (RANK[old.status] ?? 0)) return;
    if (b === a && upload.status === old.status && upload.progress < old.progress) return;
  }
  const merged = { ...old, ...upload };
  uploads.set(upload.id, merged);
  if (TERMINAL.has(merged.status)) live.unwatch(upload.id);
  else if (merged.status === 'queued' || merged.status === 'processing') live.watch(upload.id);
  store.emit('update', merged);
}

export function removeUpload(id) {
  live.unwatch(id);
  if (uploads.delete(id)) store.emit('remove', id);
}

class Live {
  #watched = new Set();
  #source = null;
  #streaming = false;
  #running = false;
  #pollTimer = 0;
  #retryTimer = 0;
  #inFlight = new Set();

  /** 'events' while the stream is open, else 'polling'. */
  get mode() {
    return this.#streaming ? 'events' : 'polling';
  }

  #setStreaming(on) {
    this.#streaming = on;
    document.body.dataset.live = this.mode;
  }

  start() {
    if (this.#running) return;
    this.#running = true;
    this.#setStreaming(false);
    this.#connect();
    this.#schedulePoll();
  }

  stop() {
    this.#running = false;
    this.#setStreaming(false);
    delete document.body.dataset.live;
    this.#source?.close();
    this.#source = null;
    clearTimeout(this.#pollTimer);
    clearTimeout(this.#retryTimer);
    this.#watched.clear();
  }

  watch(id) {
    this.#watched.add(id);
  }

  unwatch(id) {
    this.#watched.delete(id);
  }

  #connect() {
    if (!this.#running || typeof EventSource === 'undefined') return;
    const source = new EventSource('/api/v1/events');
    this.#source = source;
    source.addEventListener('open', () => {
      this.#setStreaming(true);
      // Whatever changed while we were not listening.
      this.#pollOnce();
    });
    source.addEventListener('upload', (e) => {
      try {
        putUpload(JSON.parse(e.data));
      } catch (err) {
        console.warn('vessel: bad upload event', err);
      }
    });
    source.addEventListener('deleted', (e) => {
      try {
        removeUpload(JSON.parse(e.data).id);
      } catch (err) {
        console.warn('vessel: bad deleted event', err);
      }
    });
    source.addEventListener('error', () => {
      this.#setStreaming(false);
      if (source.readyState === EventSource.CLOSED) {
        // Not a stream (e.g. 404 on a server without it): poll, try again later.
        source.close();
        if (this.#source === source) this.#source = null;
        clearTimeout(this.#retryTimer);
        this.#retryTimer = setTimeout(() => this.#connect(), SSE_RETRY_MS);
      }
      // CONNECTING: the browser reconnects by itself; we poll meanwhile.
    });
  }

  #schedulePoll() {
    clearTimeout(this.#pollTimer);
    if (!this.#running) return;
    this.#pollTimer = setTimeout(async () => {
      if (!this.#streaming) await this.#pollOnce();
      this.#schedulePoll();
    }, POLL_MS);
  }

  async #pollOnce() {
    const ids = [...this.#watched].filter((id) => !this.#inFlight.has(id));
    await Promise.all(ids.map(async (id) => {
      this.#inFlight.add(id);
      try {
        putUpload(await api.getUpload(id));
      } catch (err) {
        if (err.status === 404) removeUpload(id);
      } finally {
        this.#inFlight.delete(id);
      }
    }));
  }
}

export const live = new Live();
