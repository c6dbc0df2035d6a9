// The player: one <audio> element fed by hls.js (Media Source Extensions), or
// the browser's own HLS where hls.js cannot run (Safari on iOS). Play/pause,
// seek bar, time, volume/mute, the rung now playing and a rung pin (or auto),
// keyboard shortcuts, the page title and the Media Session (lock screen,
// hardware keys).
//
// hls.js's forward buffer is capped: uncapped it fills to the end of the track
// and runs into Chromium's ~12 MB audio SourceBuffer limit (bufferFullError).
import { $, Emitter, announce, displaySubtitle, displayTitle, formatDuration } from './util.js';

const HLS_CONFIG = {
  maxBufferLength: 30, // seconds ahead we try to keep
  maxMaxBufferLength: 60, // hard cap on the forward buffer
  backBufferLength: 30, // seconds kept behind the playhead
  enableWorker: false,
  startFragPrefetch: true,
};
const SEEK_STEP_S = 5;
const VOLUME_STEP = 0.05;
const APP_NAME = 'Vessel';

function rungName(level) {
  if (level.name) return level.name;
  const url = level.url ?? level.uri ?? '';
  const m = /\/([^/?#]+)\/[^/]*$/.exec(Array.isArray(url) ? url[0] : url);
  return m ? decodeURIComponent(m[1]) : `${Math.round(level.bitrate / 1000)}k`;
}

export function setupPlayer() {
  const audio = $('#audio');
  const bar = $('#player');
  const toggleButton = $('#player-toggle');
  const seek = $('#player-seek');
  const timeNow = $('#player-time');
  const timeTotal = $('#player-duration');
  const volume = $('#player-volume');
  const muteButton = $('#player-mute');
  const rungSelect = $('#player-rung');
  const rungNow = $('#player-rung-now');
  const errorBox = $('#player-error');
  const events = new Emitter();

  let hls = null;
  let current = null;
  let dragging = false;
  let recoveries = 0;

  // hls.js loads async (it must not hold up the first paint); play() waits for it.
  let Hls = null;
  let useHlsJs = false;
  let nativeHls = false;
  let hlsSettled = false;
  const hlsReady = new Promise((resolve) => {
    const settle = () => {
      hlsSettled = true;
      Hls = window.Hls ?? null;
      useHlsJs = Boolean(Hls?.isSupported?.());
      // Hls.isSupported() first: Chromium answers "maybe" to canPlayType(HLS) yet cannot play it.
      nativeHls = !useHlsJs && audio.canPlayType('application/vnd.apple.mpegurl') !== '';
      resolve();
    };
    const script = document.getElementById('hls-script');
    if (window.Hls || !script) settle();
    else {
      script.addEventListener('load', settle, { once: true });
      script.addEventListener('error', settle, { once: true });
    }
  });

  const saved = Number.parseFloat(localStorage.getItem('vessel.volume') ?? '');
  audio.volume = Number.isFinite(saved) ? Math.min(1, Math.max(0, saved)) : 1;
  audio.muted = localStorage.getItem('vessel.muted') === '1';

  function duration() {
    if (Number.isFinite(audio.duration) && audio.duration > 0) return audio.duration;
    return current?.duration_s ?? 0;
  }

  function setFill(input, fraction) {
    input.style.setProperty('--fill', `${Math.max(0, Math.min(1, fraction)) * 100}%`);
  }

  function renderTime() {
    const d = duration();
    const t = dragging ? Number(seek.value) : audio.currentTime;
    seek.max = String(Math.max(d, 0));
    if (!dragging) seek.value = String(t);
    setFill(seek, d > 0 ? t / d : 0);
    timeNow.textContent = formatDuration(t);
    timeTotal.textContent = formatDuration(d);
    seek.setAttribute('aria-valuetext', `${formatDuration(t)} of ${formatDuration(d)}`);
  }

  function renderVolume() {
    volume.value = String(audio.volume);
    setFill(volume, audio.muted ? 0 : audio.volume);
    const muted = audio.muted || audio.volume === 0;
    muteButton.setAttribute('aria-pressed', String(audio.muted));
    muteButton.setAttribute('aria-label', audio.muted ? 'Unmute' : 'Mute');
    muteButton.dataset.state = muted ? 'muted' : audio.volume < 0.5 ? 'low' : 'high';
    volume.setAttribute('aria-valuetext', `${Math.round(audio.volume * 100)}%${audio.muted ? ', muted' : ''}`);
  }

  function playing() {
    return Boolean(current) && !audio.paused && !audio.ended;
  }

  function renderState() {
    const on = playing();
    toggleButton.setAttribute('aria-label', on ? 'Pause' : 'Play');
    toggleButton.dataset.state = on ? 'playing' : 'paused';
    if (current) {
      const title = displayTitle(current);
      const artist = current.artist ? ` – ${current.artist}` : '';
      document.title = `${on ? '▶ ' : ''}${title}${artist} · ${APP_NAME}`;
    } else {
      document.title = APP_NAME;
    }
    if ('mediaSession' in navigator) navigator.mediaSession.playbackState = on ? 'playing' : 'paused';
    events.emit('change', current?.id ?? null);
  }

  function renderRungs() {
    rungSelect.replaceChildren(new Option(useHlsJs ? 'Auto' : 'Auto (browser)', '-1'));
    if (!hls) {
      rungSelect.disabled = true;
      rungNow.textContent = '';
      return;
    }
    hls.levels.forEach((level, i) => rungSelect.append(new Option(rungName(level), String(i))));
    rungSelect.disabled = hls.levels.length < 2;
    rungSelect.value = String(hls.autoLevelEnabled ? -1 : hls.manualLevel ?? -1);
    bar.dataset.levels = String(hls.levels.length);
  }

  function renderRungNow(index) {
    const level = hls?.levels?.[index];
    rungNow.textContent = level ? rungName(level) : '';
    rungNow.title = level ? `${Math.round(level.bitrate / 1000)} kbit/s peak` : '';
    bar.dataset.rung = level ? rungName(level) : '';
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  function teardown() {
    if (hls) {
      hls.destroy();
      hls = null;
    }
    audio.removeAttribute('src');
    audio.load();
    recoveries = 0;
    delete bar.dataset.levels;
    delete bar.dataset.rung;
  }

  function onHlsError(_event, data) {
    if (!data.fatal) return;
    if (recoveries < 3 && data.type === Hls.ErrorTypes.NETWORK_ERROR) {
      recoveries += 1;
      hls.startLoad();
      return;
    }
    if (recoveries < 3 && data.type === Hls.ErrorTypes.MEDIA_ERROR) {
      recoveries += 1;
      hls.recoverMediaError();
      return;
    }
    const status = data.response?.code;
    showError(status === 401 || status === 404
      ? 'This track is no longer available to you (signed out or deleted).'
      : `Playback failed (${data.details}).`);
    hls.destroy();
    hls = null;
    renderRungs();
    renderState();
  }

  async function play(upload) {
    if (!upload?.stream_url) return;
    performance.mark('vessel:play');
    // Awaited only while hls.js is still loading: Safari wants play() within the gesture's task.
    if (!hlsSettled) await hlsReady;
    teardown();
    showError('');
    current = upload;
    bar.hidden = false;
    document.body.classList.add('has-player');
    $('#player-title').textContent = displayTitle(upload);
    $('#player-subtitle').textContent = displaySubtitle(upload) || upload.filename || '';
    if (useHlsJs) {
      hls = new Hls(HLS_CONFIG);
      hls.on(Hls.Events.MANIFEST_PARSED, () => {
        performance.mark('vessel:manifest');
        renderRungs();
      });
      hls.on(Hls.Events.FRAG_LOADED, () => performance.mark('vessel:fragment'));
      hls.on(Hls.Events.FRAG_BUFFERED, () => performance.mark('vessel:buffered'));
      // The rung of the fragment under the playhead: what is heard, not what is
      // being loaded (LEVEL_SWITCHED runs ahead by the buffer).
      hls.on(Hls.Events.FRAG_CHANGED, (_e, data) => renderRungNow(data.frag.level));
      hls.on(Hls.Events.ERROR, onHlsError);
      hls.attachMedia(audio);
      hls.loadSource(upload.stream_url);
    } else if (nativeHls) {
      audio.src = upload.stream_url;
    } else {
      showError('This browser cannot play HLS streams.');
    }
    renderRungs();
    renderTime();
    audio.play().catch((err) => {
      if (err.name === 'NotAllowedError') showError('Press play to start.');
      else if (err.name !== 'AbortError') console.warn('vessel: play()', err);
    });
    if ('mediaSession' in navigator && 'MediaMetadata' in window) {
      navigator.mediaSession.metadata = new MediaMetadata({
        title: displayTitle(upload),
        artist: upload.artist ?? '',
        album: upload.album ?? '',
      });
    }
    announce(`Playing ${displayTitle(upload)}`);
    renderState();
  }

  function toggle() {
    if (!current) return;
    if (audio.paused || audio.ended) {
      if (!hls && useHlsJs) {
        play(current);
        return;
      }
      audio.play().catch(() => {});
    } else {
      audio.pause();
    }
  }

  function stop() {
    teardown();
    current = null;
    bar.hidden = true;
    document.body.classList.remove('has-player');
    if ('mediaSession' in navigator) navigator.mediaSession.metadata = null;
    renderState();
  }

  function seekTo(t) {
    const d = duration();
    audio.currentTime = Math.max(0, d > 0 ? Math.min(t, d - 0.25) : t);
    renderTime();
  }

  function setVolume(v) {
    audio.volume = Math.max(0, Math.min(1, v));
    if (audio.volume > 0) audio.muted = false;
    localStorage.setItem('vessel.volume', String(audio.volume));
    localStorage.setItem('vessel.muted', audio.muted ? '1' : '0');
  }

  // --- wiring ---------------------------------------------------------------
  toggleButton.addEventListener('click', toggle);
  seek.addEventListener('input', () => {
    dragging = true;
    renderTime();
  });
  seek.addEventListener('change', () => {
    dragging = false;
    seekTo(Number(seek.value));
  });
  volume.addEventListener('input', () => setVolume(Number(volume.value)));
  muteButton.addEventListener('click', () => {
    audio.muted = !audio.muted;
    localStorage.setItem('vessel.muted', audio.muted ? '1' : '0');
  });
  rungSelect.addEventListener('change', () => {
    if (!hls) return;
    const index = Number(rungSelect.value);
    // nextLevel switches at the next fragment without stopping playback;
    // -1 gives the choice back to the bandwidth estimator.
    hls.nextLevel = index;
    announce(index < 0 ? 'Quality: automatic' : `Quality pinned to ${rungName(hls.levels[index])}`);
  });
  $('#player-close').addEventListener('click', stop);

  for (const type of ['timeupdate', 'durationchange', 'loadedmetadata', 'seeked']) {
    audio.addEventListener(type, renderTime);
  }
  for (const type of ['play', 'pause', 'ended', 'playing']) audio.addEventListener(type, renderState);
  audio.addEventListener('volumechange', renderVolume);
  audio.addEventListener('waiting', () => bar.classList.add('buffering'));
  audio.addEventListener('playing', () => {
    bar.classList.remove('buffering');
    showError('');
  });
  audio.addEventListener('error', () => {
    if (!hls && current && audio.error) showError(`Playback failed (${audio.error.message || 'media error'}).`);
  });

  if ('mediaSession' in navigator) {
    const handlers = {
      play: () => audio.play().catch(() => {}),
      pause: () => audio.pause(),
      seekbackward: () => seekTo(audio.currentTime - SEEK_STEP_S),
      seekforward: () => seekTo(audio.currentTime + SEEK_STEP_S),
      seekto: (d) => seekTo(d.seekTime),
      stop,
    };
    for (const [action, fn] of Object.entries(handlers)) {
      try {
        navigator.mediaSession.setActionHandler(action, fn);
      } catch {
        // Not supported by this browser.
      }
    }
  }

  // Keyboard: Space/K play-pause, ←/→ seek, ↑/↓ volume, M mute. Keys keep
  // their usual meaning inside form fields, on buttons and links (Space), and
  // while a dialog is open.
  document.addEventListener('keydown', (e) => {
    if (!current || e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return;
    if (document.querySelector('dialog[open]')) return;
    const t = e.target instanceof Element ? e.target : document.body;
    const typing = t.closest('input, textarea, select, [contenteditable="true"]');
    const activates = t.closest('button, a[href], summary');
    const tab = t.closest('[role="tab"]');
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    switch (key) {
      case ' ':
        if (typing || activates) return;
        toggle();
        break;
      case 'k':
        if (typing) return;
        toggle();
        break;
      case 'ArrowLeft':
      case 'ArrowRight':
        if (typing || tab) return;
        seekTo(audio.currentTime + (key === 'ArrowLeft' ? -1 : 1) * SEEK_STEP_S * (e.shiftKey ? 6 : 1));
        break;
      case 'ArrowUp':
      case 'ArrowDown':
        if (typing || tab) return;
        setVolume(audio.volume + (key === 'ArrowUp' ? 1 : -1) * VOLUME_STEP);
        break;
      case 'm':
        if (typing) return;
        audio.muted = !audio.muted;
        break;
      default:
        return;
    }
    e.preventDefault();
  });

  renderVolume();
  renderState();

  return {
    play,
    toggle,
    stop,
    currentId: () => current?.id ?? null,
    isPlaying: playing,
    onChange: (fn) => events.on('change', fn),
    /** The hls.js instance (null with native HLS); for diagnostics. */
    get hls() {
      return hls;
    },
  };
}
