// The library: the user's uploads newest first, searched as you type (the
// server's `q`), filtered by status, paged with the keyset cursor as the list
// scrolls (and a "Load more" button for keyboards), updated live from the
// store, with play, retry and delete-with-confirmation on each row.
import { api } from './api.js';
import { putUpload, removeUpload, store, uploads } from './live.js';
import {
  $, announce, displaySubtitle, displayTitle, formatDate, formatDateLong, formatDuration, h, jobError,
} from './util.js';

const PAGE = 30;
const STATUS_LABEL = {
  uploading: 'Uploading',
  queued: 'Queued',
  processing: 'Processing',
  ready: 'Ready',
  failed: 'Failed',
};

const ICON_PLAY = 'M8 5v14l11-7z';
const ICON_PAUSE = 'M6 5h4v14H6zM14 5h4v14h-4z';
const ICON_DELETE = 'M9 3h6l1 2h4v2H4V5h4zm-3 6h12l-1 12H7zm4 2v8h2v-8zm4 0v8h2v-8z';

function icon(path) {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  const p = document.createElementNS('http://www.w3.org/2000/svg', 'path');
  p.setAttribute('d', path);
  svg.append(p);
  return svg;
}

// Whether upload `a` is listed above `b` (newest first; created_at, then id).
function comesBefore(a, b) {
  const ta = Date.parse(a?.created_at ?? '') || 0;
  const tb = Date.parse(b?.created_at ?? '') || 0;
  return ta !== tb ? ta > tb : String(a?.id) > String(b?.id);
}

export function setupLibrary({ player }) {
  const list = $('#library-list');
  const search = $('#library-search');
  const filter = $('#library-status');
  const more = $('#library-more');
  const empty = $('#library-empty');
  const errorBox = $('#library-error');
  const sentinel = $('#library-sentinel');
  const dialog = $('#confirm-dialog');

  let shown = []; // ids in display order
  let cursor = null;
  let loading = null; // AbortController of the page being fetched
  let generation = 0;
  let loadedOnce = false;

  const filtering = () => search.value.trim() !== '' || filter.value !== '';

  // `prefetched`: the first page already requested (at start-up, alongside /me).
  async function load(reset, prefetched = null) {
    if (reset) {
      loading?.abort();
      loading = null;
      generation += 1;
      cursor = null;
    } else if (loading || cursor === null) {
      return;
    }
    const gen = generation;
    const controller = new AbortController();
    loading = controller;
    list.setAttribute('aria-busy', 'true');
    more.disabled = true;
    errorBox.hidden = true;
    try {
      const page = await (prefetched && !filtering() ? prefetched : api.listUploads(
        { q: search.value.trim(), status: filter.value, limit: PAGE, cursor: reset ? '' : cursor },
        controller.signal,
      ));
      if (gen !== generation) return;
      if (reset) {
        shown = [];
        list.replaceChildren();
      }
      for (const u of page.items) {
        putUpload(u);
        if (!shown.includes(u.id)) {
          shown.push(u.id);
          list.append(row(uploads.get(u.id) ?? u));
        }
      }
      cursor = page.next_cursor ?? null;
      loadedOnce = true;
      performance.mark('vessel:library');
    } catch (err) {
      if (err.name === 'AbortError' || gen !== generation) return;
      errorBox.hidden = false;
      errorBox.querySelector('.message').textContent = `Could not load the library: ${err.message}`;
    } finally {
      if (loading === controller) loading = null;
      if (gen === generation) {
        list.removeAttribute('aria-busy');
        more.disabled = false;
        updateFooter();
      }
    }
    // A tall screen may still show the end of the list: keep filling it.
    if (gen === generation && cursor && nearEnd()) load(false);
  }

  function updateFooter() {
    more.hidden = cursor === null;
    const nothing = shown.length === 0 && loadedOnce;
    empty.hidden = !nothing;
    if (nothing) {
      empty.textContent = filtering()
        ? 'Nothing matches. Try another search or status.'
        : 'No files yet. Upload audio above and it will appear here.';
    }
  }

  function statusCell(u) {
    const label = STATUS_LABEL[u.status] ?? u.status;
    const cell = h('span', { class: 'track-status' },
      h('span', { class: 'badge', dataset: { status: u.status } },
        u.status === 'processing' ? `${label} ${Math.round((u.progress ?? 0) * 100)}%` : label));
    if (u.status === 'processing') {
      cell.append(h('progress', { max: 1, value: u.progress ?? 0, 'aria-label': `Processing ${displayTitle(u)}` }));
    }
    if (u.status === 'failed') {
      cell.append(
        h('span', { class: 'track-error' }, jobError(u)),
        h('button', { type: 'button', class: 'small', onclick: () => retry(u.id),
          'aria-label': `Retry ${displayTitle(u)}` }, 'Retry'),
      );
    }
    return cell;
  }

  function row(u) {
    const title = displayTitle(u);
    const sub = displaySubtitle(u);
    const playing = player.currentId() === u.id;
    const ready = u.status === 'ready';
    const playButton = h('button', {
      type: 'button',
      class: 'play icon-button',
      disabled: !ready,
      'aria-label': `${playing && player.isPlaying() ? 'Pause' : 'Play'} ${title}`,
      onclick: () => (player.currentId() === u.id ? player.toggle() : player.play(uploads.get(u.id) ?? u)),
    }, icon(playing && player.isPlaying() ? ICON_PAUSE : ICON_PLAY));
    const showFile = u.filename && u.filename !== title && !u.filename.startsWith(`${title}.`);
    return h('li', {
      class: 'track',
      dataset: { id: u.id, status: u.status },
      'aria-current': playing ? 'true' : null,
    },
    playButton,
    h('div', { class: 'track-main' },
      h('span', { class: 'track-title' }, title),
      h('span', { class: 'track-sub' },
        sub || null,
        sub && (showFile || !u.title) ? ' — ' : null,
        showFile || !u.title ? h('span', { class: 'track-file' }, u.filename) : null)),
    h('span', { class: 'track-duration' },
      h('span', { class: 'sr-only' }, 'Duration '),
      Number.isFinite(u.duration_s) ? formatDuration(u.duration_s) : '–:––'),
    statusCell(u),
    h('time', { class: 'track-date', datetime: u.created_at ?? '', title: formatDateLong(u.created_at) },
      formatDate(u.created_at)),
    h('button', {
      type: 'button',
      class: 'delete icon-button',
      'aria-label': `Delete ${title}`,
      onclick: () => confirmDelete(u.id),
    }, icon(ICON_DELETE)));
  }

  function rowEl(id) {
    return list.querySelector(`li[data-id="${CSS.escape(id)}"]`);
  }

  function refresh(id) {
    const old = rowEl(id);
    const u = uploads.get(id);
    if (!old || !u) return;
    const focusedClass = old.contains(document.activeElement)
      ? [...document.activeElement.classList].join('.') : null;
    const fresh = row(u);
    old.replaceWith(fresh);
    if (focusedClass) {
      const again = fresh.querySelector(`button.${focusedClass}`) ?? fresh.querySelector('button:not([disabled])');
      again?.focus();
    }
  }

  async function retry(id) {
    try {
      await api.retryUpload(id);
      putUpload(await api.getUpload(id));
      announce('Retrying');
    } catch (err) {
      announce(`Retry failed: ${err.message}`);
      errorBox.hidden = false;
      errorBox.querySelector('.message').textContent = `Retry failed: ${err.message}`;
    }
  }

  function confirmDelete(id) {
    const u = uploads.get(id);
    if (!u) return;
    $('#confirm-title').textContent = `Delete “${displayTitle(u)}”?`;
    const opener = document.activeElement;
    dialog.returnValue = '';
    dialog.showModal();
    dialog.querySelector('button[value="cancel"]').focus();
    dialog.addEventListener('close', async () => {
      if (dialog.returnValue !== 'delete') {
        opener?.focus();
        return;
      }
      const next = rowEl(id)?.nextElementSibling ?? rowEl(id)?.previousElementSibling;
      try {
        await api.deleteUpload(id);
        if (player.currentId() === id) player.stop();
        removeUpload(id);
        announce(`Deleted ${displayTitle(u)}`);
        (next?.querySelector('button.delete') ?? search).focus();
      } catch (err) {
        errorBox.hidden = false;
        errorBox.querySelector('.message').textContent = `Could not delete: ${err.message}`;
        opener?.focus();
      }
    }, { once: true });
  }

  // Live changes: rows update in place; new uploads appear at the top.
  store.on('update', (u) => {
    if (shown.includes(u.id)) {
      refresh(u.id);
      return;
    }
    if (!loadedOnce || filtering()) return;
    // Rows run newest first, as the server orders them (created_at, then id).
    // News can come out of creation order (uploads created at the same time
    // commit in either order), so a row goes where it belongs among those
    // loaded; one older than all of them comes with a later page, if any.
    const at = shown.findIndex((id) => comesBefore(u, uploads.get(id)));
    if (at < 0 && cursor !== null) return;
    const el = row(u);
    if (at < 0) {
      shown.push(u.id);
      list.append(el);
    } else {
      (rowEl(shown[at]) ?? list.lastChild).before(el);
      shown.splice(at, 0, u.id);
    }
    updateFooter();
  });
  store.on('remove', (id) => {
    const i = shown.indexOf(id);
    if (i < 0) return;
    shown.splice(i, 1);
    rowEl(id)?.remove();
    updateFooter();
  });
  player.onChange((id) => {
    for (const other of list.querySelectorAll('li[aria-current="true"]')) refresh(other.dataset.id);
    if (id) refresh(id);
  });

  let timer = 0;
  search.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => load(true), 200);
  });
  search.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      clearTimeout(timer);
      load(true);
    }
  });
  filter.addEventListener('change', () => load(true));
  more.addEventListener('click', () => load(false));
  errorBox.querySelector('button').addEventListener('click', () => load(shown.length === 0));

  const MARGIN_PX = 600; // start loading this far before the end comes into view
  const nearEnd = () => !appHidden() && sentinel.getBoundingClientRect().top < window.innerHeight + MARGIN_PX;
  const appHidden = () => sentinel.offsetParent === null;
  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && cursor) load(false);
  }, { rootMargin: `${MARGIN_PX}px 0px` }).observe(sentinel);

  return {
    reload: (prefetched = null) => load(true, prefetched),
    /** The first page's request, to start before we know who is signed in. */
    prefetch: () => api.listUploads({ limit: PAGE }, undefined, { quiet401: true }),
    clear() {
      loading?.abort();
      generation += 1;
      shown = [];
      cursor = null;
      loadedOnce = false;
      list.replaceChildren();
      search.value = '';
      filter.value = '';
      updateFooter();
    },
  };
}
