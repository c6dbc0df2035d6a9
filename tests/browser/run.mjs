#!/usr/bin/env node
// The web app in a real browser: Debian's /usr/bin/chromium driven by
// playwright-core against a real `vessel serve` (embedded PostgreSQL, local
// storage, one in-process worker) in a fresh 0755 temp data dir on
// 127.0.0.1:0. Every browser profile is a fresh --user-data-dir.
//
//   node tests/browser/run.mjs        (meson test --suite browser runs it)
//
// Scenarios: register / sign in / sign out with field errors; upload a
// generated 40 s WAV under a throttled upload link and watch the progress bar
// move; the job reaches ready; play: currentTime passes 10 s, hls.js reports
// four levels, a pinned rung keeps playing, keyboard shortcuts, seek to 30 s
// and playback continues; search and delete with confirmation; refusals of a
// non-audio and an oversize file before upload, a non-audio file with an audio
// name refused by the server; a failed job shows its error and retries; a
// second user sees none of the first user's files. Measured: page load → first
// sound for a ready track, and the gzip size of the UI's JS + CSS.
// Screenshots and the server log go to <build>/meson-logs/browser-artifacts/.
//
// Exit: 0 all passed, 1 a check failed, 77 skipped (no chromium or node_modules).
// Only ever talks to 127.0.0.1.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';

const EXIT_SKIP = 77;
const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--no-proxy-server',
];
const HERE = path.dirname(fileURLToPath(import.meta.url));
const SOURCE = process.env.VESSEL_TEST_SOURCE_DIR ?? path.resolve(HERE, '../..');
const BUILD = process.env.VESSEL_TEST_BUILD_DIR ?? path.join(SOURCE, 'build');
const VESSEL = process.env.VESSEL_BIN ?? path.join(BUILD, 'server', 'vessel');
const WEB_DIR = path.join(BUILD, 'server', 'web');
const ARTIFACTS = path.join(BUILD, 'meson-logs', 'browser-artifacts');
const PASSWORD = 'correct horse battery staple';
const MAX_UPLOAD_BYTES = 20_000_000; // small, so that the oversize refusal is cheap to test
const UI_BUDGET_GZIP = 200 * 1024;
const FIRST_SOUND_TARGET_MS = 1000;

// --------------------------------------------------------------------------- checks

const t0 = Date.now();
const stamp = () => `[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s]`;
const failures = [];
let passed = 0;

function section(title) {
  console.log(`\n${stamp()} == ${title}`);
}
function info(text) {
  console.log(`${stamp()}    ${text}`);
}
function check(cond, what, detail = '') {
  if (cond) {
    passed += 1;
    console.log(`${stamp()} PASS ${what}`);
    return true;
  }
  const line = detail === '' ? what : `${what}\n         got: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`;
  failures.push(line);
  console.log(`${stamp()} FAIL ${line}`);
  return false;
}
class Abort extends Error {}
function require_(cond, what, detail = '') {
  if (!check(cond, what, detail)) throw new Abort(what);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(fn, { timeout = 30000, interval = 100 } = {}) {
  const end = Date.now() + timeout;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    await sleep(interval);
  }
  return null;
}

// --------------------------------------------------------------------------- inputs

/** A 16-bit stereo PCM WAV: a little melody, so that a listener hears something. */
function makeWav(seconds, rate = 44100) {
  const frames = Math.round(seconds * rate);
  const buf = Buffer.alloc(44 + frames * 4);
  buf.write('RIFF', 0);
  buf.writeUInt32LE(36 + frames * 4, 4);
  buf.write('WAVE', 8);
  buf.write('fmt ', 12);
  buf.writeUInt32LE(16, 16);
  buf.writeUInt16LE(1, 20);
  buf.writeUInt16LE(2, 22);
  buf.writeUInt32LE(rate, 24);
  buf.writeUInt32LE(rate * 4, 28);
  buf.writeUInt16LE(4, 32);
  buf.writeUInt16LE(16, 34);
  buf.write('data', 36);
  buf.writeUInt32LE(frames * 4, 40);
  const notes = [261.63, 329.63, 392.0, 523.25, 392.0, 329.63];
  for (let i = 0; i < frames; i++) {
    const t = i / rate;
    const f = notes[Math.floor(t * 2) % notes.length];
    const env = 0.5 - 0.4 * ((t * 2) % 1);
    const v = Math.round(Math.sin(2 * Math.PI * f * t) * env * 12000);
    buf.writeInt16LE(v, 44 + i * 4);
    buf.writeInt16LE(v, 46 + i * 4);
  }
  return buf;
}

// --------------------------------------------------------------------------- server

function spawnServer(dataDir, { env = {}, workers = 1 } = {}) {
  const full = {
    ...process.env,
    VESSEL_LOG_LEVEL: 'info',
    VESSEL_SERVER_MAX_UPLOAD_BYTES: String(MAX_UPLOAD_BYTES),
    ...env,
  };
  for (const k of ['http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY']) delete full[k];
  return spawn(VESSEL, ['serve', '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--workers', String(workers)],
    { env: full, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Starts `vessel serve` on `dataDir` (created 0755 when missing) and waits for its URL. */
async function startServer(dataDir, { env = {}, workers = 1, logName = 'server.log' } = {}) {
  if (!fs.existsSync(dataDir)) {
    fs.mkdirSync(dataDir, { mode: 0o755 });
    fs.chmodSync(path.dirname(dataDir), 0o755);
    fs.chmodSync(dataDir, 0o755); // the embedded PostgreSQL runs as `vessel` when we are root
  }
  const logPath = path.join(ARTIFACTS, logName);
  const log = fs.createWriteStream(logPath);
  const child = spawnServer(dataDir, { env, workers });
  let url = null;
  let buffered = '';
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  child.stderr.on('data', (chunk) => {
    log.write(chunk);
    buffered += chunk.toString();
    let nl;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      try {
        const j = JSON.parse(line);
        if (j.msg === 'listening' && j.url) url = j.url;
      } catch {
        // not JSON: ignore
      }
    }
  });
  const started = await Promise.race([
    waitFor(() => url, { timeout: 180000 }),
    exited.then(() => null),
  ]);
  if (!started) {
    child.kill('SIGKILL');
    log.end();
    require_(false, 'vessel serve started', `no "listening" line; see ${logPath}`);
  }
  return {
    url,
    async stop() {
      child.kill('SIGTERM');
      const r = await Promise.race([exited, sleep(30000).then(() => null)]);
      if (!r) child.kill('SIGKILL');
      log.end();
      return r;
    },
  };
}

// --------------------------------------------------------------------------- browser

let chromium;
const browsers = [];

async function newProfile(tmp, name, viewport = { width: 1280, height: 800 }) {
  const dir = fs.mkdtempSync(path.join(tmp, `profile-${name}-`));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_FLAGS,
    viewport,
    locale: 'en-GB',
    timezoneId: 'UTC',
  });
  browsers.push(context);
  context.setDefaultTimeout(20000);
  return context;
}

/** Collects uncaught page errors and CSP violations (there must be none). */
function watchPage(page, label, problems) {
  page.on('pageerror', (err) => problems.push(`${label}: uncaught ${err.message}`));
  page.on('console', (msg) => {
    const text = msg.text();
    if (/Content Security Policy|Refused to (load|execute|apply)/i.test(text)) problems.push(`${label}: ${text}`);
  });
}

/** Text whose colour contrast with its background is below WCAG AA (4.5:1; 3:1 for large text). */
function lowContrast(page) {
  return page.evaluate(() => {
    const parse = (c) => {
      const m = c.match(/rgba?\(([^)]+)\)/);
      if (!m) return null;
      const [r, g, b, a = 1] = m[1].split(/[ ,/]+/).filter(Boolean).map(Number);
      return { r, g, b, a };
    };
    const lum = ({ r, g, b }) => {
      const f = (v) => ((v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const background = (el) => {
      for (let e = el; e; e = e.parentElement) {
        const c = parse(getComputedStyle(e).backgroundColor);
        if (c && c.a > 0.5) return c;
      }
      return { r: 255, g: 255, b: 255, a: 1 };
    };
    const bad = [];
    for (const el of document.querySelectorAll('body *')) {
      const text = [...el.childNodes].filter((n) => n.nodeType === 3).map((n) => n.textContent.trim()).join('');
      if (!text || el.closest('[hidden], .sr-only, [disabled], option, dialog:not([open])')) continue;
      const box = el.getBoundingClientRect();
      if (box.width === 0 || box.height === 0) continue;
      const style = getComputedStyle(el);
      if (style.visibility === 'hidden' || Number(style.opacity) === 0) continue;
      const fg = parse(style.color);
      const bg = background(el);
      const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
      const ratio = (hi + 0.05) / (lo + 0.05);
      const size = parseFloat(style.fontSize);
      const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
      if (ratio < (large ? 3 : 4.5)) bad.push(`${text.slice(0, 30)} ${ratio.toFixed(2)}`);
    }
    return bad;
  });
}

async function shot(page, name, fullPage = false) {
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage });
  info(`screenshot ${path.relative(process.cwd(), file)}`);
}

const audioState = (page) => page.evaluate(() => {
  const a = document.querySelector('audio');
  return { t: a.currentTime, paused: a.paused, ended: a.ended, ready: a.readyState };
});

/** Waits until the audio element's time passes `seconds` while playing. */
async function waitPlayedPast(page, seconds, timeout) {
  return waitFor(async () => {
    const s = await audioState(page);
    return s.t > seconds && !s.paused ? s : null;
  }, { timeout, interval: 200 });
}

async function setRange(page, selector, value) {
  await page.evaluate(([sel, v]) => {
    const input = document.querySelector(sel);
    input.value = String(v);
    input.dispatchEvent(new Event('input', { bubbles: true }));
    input.dispatchEvent(new Event('change', { bubbles: true }));
  }, [selector, value]);
}

// --------------------------------------------------------------------------- scenarios

async function register(page, email, password) {
  await page.getByRole('tab', { name: 'Create account' }).click();
  const form = page.locator('#register-form');
  await form.getByLabel('Email').fill(email);
  await form.getByLabel('Password').fill(password);
  await form.getByRole('button', { name: 'Create account' }).click();
}

async function signIn(page, email, password) {
  await page.getByRole('tab', { name: 'Sign in' }).click();
  const form = page.locator('#signin-form');
  await form.getByLabel('Email').fill(email);
  await form.getByLabel('Password').fill(password);
  await form.getByRole('button', { name: 'Sign in' }).click();
}

async function accountsAndFieldErrors(page, url, email) {
  section('sign-in page: native fields with labels');
  await page.goto(url);
  await page.getByRole('tab', { name: 'Sign in' }).waitFor();
  const fields = await page.evaluate(() => [...document.querySelectorAll('#auth-view input')].map((i) => ({
    type: i.type, labelled: i.labels.length > 0 && i.labels[0].textContent.trim() !== '',
  })));
  check(fields.filter((f) => f.type === 'email').length === 2 && fields.filter((f) => f.type === 'password').length === 2,
    'two <input type=email> and two <input type=password> (sign in, register)', fields);
  check(fields.every((f) => f.labelled), 'every field has a <label>', fields);
  check(await page.title() === 'Vessel', 'page title "Vessel"', await page.title());

  section('register: errors next to the field');
  await page.getByRole('tab', { name: 'Create account' }).click();
  const reg = page.locator('#register-form');
  await reg.getByLabel('Email').fill('not-an-email');
  await reg.getByLabel('Password').fill(PASSWORD);
  await reg.getByRole('button', { name: 'Create account' }).click();
  check(/email address/i.test(await page.locator('#register-email-error').innerText()),
    'malformed email: message under the email field', await page.locator('#register-email-error').innerText());
  check(await reg.getByLabel('Email').getAttribute('aria-invalid') === 'true', 'email field aria-invalid');
  await reg.getByLabel('Email').fill(email);
  await reg.getByLabel('Password').fill('short');
  await reg.getByRole('button', { name: 'Create account' }).click();
  const pwError = await waitFor(async () => (await page.locator('#register-password-error').innerText()) || null);
  check(/at least/i.test(pwError ?? ''), 'short password: the server\'s reason under the password field', pwError);

  await register(page, email, PASSWORD);
  await page.locator('#app-view').waitFor({ state: 'visible' });
  check(await page.locator('#account-email').innerText() === email, 'registered and signed in: the email shows');
  check(await page.locator('#auth-view').isHidden(), 'the sign-in view is gone');

  section('sign out, email taken, wrong password, sign in');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.locator('#auth-view').waitFor({ state: 'visible' });
  check(await page.locator('#app-view').isHidden(), 'signed out: back to the sign-in view');
  const me = await page.evaluate(async () => (await fetch('/api/v1/me')).status);
  check(me === 401, 'the session cookie is gone (GET /api/v1/me → 401)', me);
  await register(page, email, PASSWORD);
  const taken = await waitFor(async () => (await page.locator('#register-email-error').innerText()) || null);
  check(/already exists/i.test(taken ?? ''), 'email taken: message under the email field', taken);
  await signIn(page, email, 'wrong password, surely');
  const wrong = await waitFor(async () => (await page.locator('#signin-password-error').innerText()) || null);
  check(/wrong email or password/i.test(wrong ?? ''), 'wrong password: message under the password field', wrong);
  await signIn(page, email, PASSWORD);
  await page.locator('#app-view').waitFor({ state: 'visible' });
  check(true, 'signed in again');
  const live = await waitFor(async () => (await page.locator('body').getAttribute('data-live')) === 'events', { timeout: 5000 });
  check(live, 'live status comes over the events stream (body[data-live=events])');
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === 'vessel_session');
  check(session && session.httpOnly && session.sameSite === 'Lax', 'session cookie is HttpOnly, SameSite=Lax', cookies);
  const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
  check(!stored.includes(session?.value ?? '\u0000'), 'the token is not in localStorage/sessionStorage');
}

async function uploadWithProgress(page, cdp, wavPath, wavSize) {
  section('upload a 40 s WAV over a throttled link: the progress bar moves');
  // ~1.5 MB/s: the 7 MB upload takes a few seconds, long enough to watch.
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 1.5e6,
  });
  await page.locator('#file-input').setInputFiles(wavPath);
  const item = page.locator('.upload-item', { hasText: 'tone-40s.wav' });
  await item.waitFor();
  const samples = [];
  const texts = new Set();
  const states = new Set();
  const end = Date.now() + 120000;
  while (Date.now() < end) {
    const s = await item.evaluate((li) => {
      const p = li.querySelector('progress');
      return {
        state: li.dataset.state,
        value: p && p.hasAttribute('value') ? p.value : null,
        max: p ? p.max : null,
        text: li.querySelector('.upload-status').textContent,
      };
    });
    states.add(s.state);
    if (s.state === 'sending') {
      samples.push(s.value);
      texts.add(s.text);
    }
    if (s.state === 'ready' || s.state === 'failed') break;
    await sleep(s.state === 'sending' ? 100 : 250);
  }
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1,
  });
  const partial = [...new Set(samples.filter((v) => v > 0 && v < wavSize))];
  const increasing = partial.every((v, i) => i === 0 || v > partial[i - 1]);
  check(partial.length >= 3 && increasing, 'the upload progress bar moved (≥ 3 increasing values between 0 and the size)',
    partial.slice(0, 12));
  const detailed = [...texts].find((t) => /MB of .*MB · .*\/s · .*left/.test(t));
  check(Boolean(detailed), 'bytes sent / total, speed and time left are shown', [...texts].slice(0, 4));
  info(`e.g. "${detailed ?? [...texts][0]}"`);
  info(`states seen: ${[...states].join(' → ')}`);
  const final = await item.getAttribute('data-state');
  require_(final === 'ready', 'the job reached ready', { final, text: await item.innerText() });
  check(/Ready · 0:40/.test(await item.innerText()), 'the upload item says "Ready · 0:40"', await item.innerText());
  check(states.has('queued') || states.has('processing'), 'a processing state was shown between upload and ready', [...states]);
}

async function playback(page) {
  section('player: play, levels, rung pin, keyboard, seek');
  const row = page.locator('#library-list li', { hasText: 'tone-40s' });
  check(await row.getAttribute('data-status') === 'ready', 'library row is ready');
  check((await row.locator('.track-duration').innerText()).includes('0:40'), 'library row shows the duration 0:40');
  await row.getByRole('button', { name: /^Play / }).click();
  await page.locator('#player').waitFor({ state: 'visible' });
  const levels = await waitFor(async () => {
    const n = await page.locator('#player').getAttribute('data-levels');
    return n ? Number(n) : null;
  });
  check(levels === 4, 'hls.js reports four levels', levels);
  const options = await page.locator('#player-rung option').allInnerTexts();
  check(JSON.stringify(options) === JSON.stringify(['Auto', '64k', '128k', '192k', '256k']),
    'the quality menu offers Auto and the four rungs', options);
  const usesHlsJs = await page.evaluate(() => Boolean(window.Hls?.isSupported()));
  check(usesHlsJs, 'Hls.isSupported() in Chromium (hls.js plays, not native)');

  const past3 = await waitPlayedPast(page, 3, 20000);
  require_(past3, 'playback started', await audioState(page));
  check((await page.title()).startsWith('▶ tone-40s'), 'the page title shows what is playing', await page.title());
  const rungNow = await page.locator('#player-rung-now').innerText();
  check(/^(64k|128k|192k|256k)$/.test(rungNow), 'the rung now playing is shown', rungNow);

  // Pin the lowest rung mid-track: the next segments come from another
  // playlist and playback must carry on across the switch.
  await page.getByLabel('Quality').selectOption({ label: '64k' });
  const pinned = await waitFor(async () => (await page.locator('#player-rung-now').innerText()) === '64k', { timeout: 15000 });
  check(pinned, 'pinned to 64k: the player says it is playing 64k', await page.locator('#player-rung-now').innerText());
  const past10 = await waitPlayedPast(page, 10.5, 20000);
  check(past10, 'audio.currentTime advanced past 10 s (across the rung switch)', await audioState(page));
  await page.getByLabel('Quality').selectOption({ label: 'Auto' });

  // Keyboard: Space pauses and resumes, → seeks forward 5 s.
  await page.evaluate(() => document.activeElement?.blur());
  await page.keyboard.press('Space');
  const paused = await waitFor(async () => (await audioState(page)).paused, { timeout: 3000 });
  check(paused, 'Space pauses');
  const plainTitle = await waitFor(async () => !(await page.title()).startsWith('▶'), { timeout: 3000 });
  check(plainTitle, 'paused: the title drops the ▶', await page.title());
  const before = (await audioState(page)).t;
  await page.keyboard.press('ArrowRight');
  const after = (await audioState(page)).t;
  check(after > before + 4 && after < before + 6, '→ seeks forward 5 s', { before, after });
  await page.keyboard.press('Space');
  check(await waitFor(async () => !(await audioState(page)).paused, { timeout: 3000 }), 'Space resumes');

  await setRange(page, '#player-seek', 30);
  const seeked = await waitFor(async () => {
    const s = await audioState(page);
    return s.t >= 30 && s.t < 33 ? s : null;
  }, { timeout: 10000 });
  check(seeked, 'seek bar to 30 s', await audioState(page));
  const at = (await audioState(page)).t;
  const continued = await waitPlayedPast(page, at + 2, 10000);
  check(continued, 'playback continues after the seek', { at, now: await audioState(page) });
  check((await page.locator('#player-time').innerText()).startsWith('0:3'), 'the time display follows',
    await page.locator('#player-time').innerText());
}

async function refusalsAndFailures(page, requests) {
  section('refused before upload: not audio, too large');
  const before = requests.creates;
  await page.locator('#file-input').setInputFiles({ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('hello\n') });
  const txt = page.locator('.upload-item', { hasText: 'notes.txt' });
  await txt.waitFor();
  check(await txt.getAttribute('data-state') === 'refused' && /not an audio file/i.test(await txt.innerText()),
    'a .txt file is refused with a clear message', await txt.innerText());
  await page.locator('#file-input').setInputFiles({
    name: 'huge.wav', mimeType: 'audio/wav', buffer: Buffer.alloc(MAX_UPLOAD_BYTES + 1000, 1),
  });
  const huge = page.locator('.upload-item', { hasText: 'huge.wav' });
  await huge.waitFor();
  check(await huge.getAttribute('data-state') === 'refused' && /too large \(20,001,000 bytes\); the limit is 20,000,000 bytes/i.test(await huge.innerText()),
    'an oversize file is refused with the limit', await huge.innerText());
  await sleep(300);
  check(requests.creates === before, 'no upload was created for either', requests.creates - before);

  section('refused by the server: text with an audio name');
  await page.locator('#file-input').setInputFiles({
    name: 'fake.mp3', mimeType: 'audio/mpeg', buffer: Buffer.from('this is not audio at all\n'.repeat(40)),
  });
  const fake = page.locator('.upload-item', { hasText: 'fake.mp3' });
  const fakeDone = await waitFor(async () => (await fake.getAttribute('data-state')) === 'failed', { timeout: 20000 });
  check(fakeDone && /not an audio file/i.test(await fake.innerText()), 'complete → 415 not_audio shown on the item',
    await fake.innerText());
  const listed = await waitFor(async () => (await page.locator('#library-list li', { hasText: 'fake.mp3' }).count()) === 0,
    { timeout: 5000 });
  check(listed, 'the refused upload is not left in the library');

  section('a failed job shows why, with a retry');
  const garbage = Buffer.concat([Buffer.from('ID3'), Buffer.from(Array.from({ length: 8192 }, (_, i) => (i * 7919 + 13) % 251))]);
  await page.locator('#file-input').setInputFiles({ name: 'garbage.mp3', mimeType: 'audio/mpeg', buffer: garbage });
  const bad = page.locator('.upload-item', { hasText: 'garbage.mp3' });
  const failed = await waitFor(async () => (await bad.getAttribute('data-state')) === 'failed', { timeout: 90000 });
  const badText = await bad.innerText();
  check(failed && /Failed: \S/.test(badText), 'the upload item shows "Failed: <reason>"', badText);
  info(`reason shown: ${badText.split('\n').find((l) => l.startsWith('Failed')) ?? badText}`);
  const row = page.locator('#library-list li', { hasText: 'garbage' });
  await row.waitFor();
  const rowFailed = await waitFor(async () => (await row.getAttribute('data-status')) === 'failed', { timeout: 10000 });
  check(rowFailed && (await row.locator('.track-error').innerText()).length > 0, 'the library row shows the error',
    await row.innerText());
  await shot(page, 'failed-desktop', true);
  await bad.getByRole('button', { name: 'Retry garbage.mp3' }).click();
  const retried = await waitFor(async () => requests.retries > 0, { timeout: 5000 });
  check(retried, 'Retry sends POST /api/v1/uploads/{id}/retry');
  const failedAgain = await waitFor(async () => (await bad.getAttribute('data-state')) === 'failed', { timeout: 90000 });
  check(failedAgain, 'the retried job fails again and says so');
}

async function searchAndDelete(page) {
  section('search as you type; delete with confirmation');
  const search = page.getByRole('searchbox', { name: 'Search the library' });
  await search.fill('garb');
  const only = await waitFor(async () => {
    const titles = await page.locator('#library-list .track-title').allInnerTexts();
    return titles.length === 1 && titles[0] === 'garbage' ? titles : null;
  }, { timeout: 5000 });
  check(only, 'q=garb lists only garbage.mp3', await page.locator('#library-list .track-title').allInnerTexts());
  await search.fill('no such thing');
  const none = await waitFor(async () => page.locator('#library-empty').isVisible(), { timeout: 5000 });
  check(none && /Nothing matches/.test(await page.locator('#library-empty').innerText()), 'no match: an empty-state message');
  await search.fill('');
  await waitFor(async () => (await page.locator('#library-list li').count()) === 2, { timeout: 5000 });

  const row = page.locator('#library-list li', { hasText: 'garbage' });
  await row.getByRole('button', { name: 'Delete garbage' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.waitFor();
  check(/Delete “garbage”\?/.test(await dialog.innerText()), 'a confirmation dialog names the file');
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  check(await row.count() === 1, 'Cancel keeps it');
  await row.getByRole('button', { name: 'Delete garbage' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
  const gone = await waitFor(async () => (await row.count()) === 0, { timeout: 10000 });
  check(gone, 'Delete removes the row');
  const list = await page.evaluate(async () => (await (await fetch('/api/v1/uploads')).json()).items.map((u) => u.filename));
  check(JSON.stringify(list) === JSON.stringify(['tone-40s.wav']), 'the server agrees: only tone-40s.wav is left', list);
}

async function pollingFallback(context, url, problems) {
  section('live status without the events stream: polling fallback');
  const page = await context.newPage();
  watchPage(page, 'polling', problems);
  // A server without /api/v1/events: EventSource gets a 404 and gives up.
  await page.route('**/api/v1/events', (route) => route.fulfill({
    status: 404, contentType: 'application/json', body: '{"error":{"code":"not_found","message":"no such resource"}}',
  }));
  const polls = [];
  page.on('request', (r) => {
    if (/\/api\/v1\/uploads\/[0-9a-f-]+$/.test(new URL(r.url()).pathname)) polls.push(Date.now());
  });
  await page.goto(url);
  await page.locator('#app-view').waitFor({ state: 'visible' });
  const mode = await waitFor(async () => (await page.locator('body').getAttribute('data-live')) === 'polling', { timeout: 5000 });
  check(mode, 'the client falls back to polling (body[data-live=polling])');
  await page.locator('#file-input').setInputFiles({ name: 'short-6s.wav', mimeType: 'audio/wav', buffer: makeWav(6) });
  const item = page.locator('.upload-item', { hasText: 'short-6s.wav' });
  const ready = await waitFor(async () => (await item.getAttribute('data-state')) === 'ready', { timeout: 90000, interval: 200 });
  check(ready, 'the upload still reaches "ready" by polling GET /api/v1/uploads/{id}', await item.innerText());
  const gaps = polls.slice(1).map((t, i) => t - polls[i]);
  check(polls.length >= 2 && gaps.every((g) => g < 2500), 'polled about once a second until ready', gaps);
  check(await page.locator('#library-list li', { hasText: 'short-6s' }).getAttribute('data-status') === 'ready',
    'the library row is ready too');
  await page.close();
}

async function dropSeveral(context, url, problems) {
  section('drag and drop several files at once');
  const page = await context.newPage();
  watchPage(page, 'drop', problems);
  await page.goto(url);
  await page.locator('#app-view').waitFor({ state: 'visible' });
  const wav = makeWav(3).toString('base64');
  await page.evaluate((b64) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const dt = new DataTransfer();
    for (const name of ['drop-a.wav', 'drop-b.wav', 'drop-c.wav']) dt.items.add(new File([bytes], name, { type: 'audio/wav' }));
    const zone = document.querySelector('#dropzone');
    zone.dispatchEvent(new DragEvent('dragenter', { bubbles: true, cancelable: true, dataTransfer: dt }));
    zone.dispatchEvent(new DragEvent('dragover', { bubbles: true, cancelable: true, dataTransfer: dt }));
    zone.dispatchEvent(new DragEvent('drop', { bubbles: true, cancelable: true, dataTransfer: dt }));
  }, wav);
  const items = page.locator('.upload-item');
  check(await items.count() === 3, 'three upload items appear', await items.count());
  const ready = await waitFor(async () => {
    const states = await items.evaluateAll((els) => els.map((e) => e.dataset.state));
    return states.length === 3 && states.every((s) => s === 'ready') ? states : null;
  }, { timeout: 120000, interval: 250 });
  check(ready, 'all three reach ready (two uploads at a time, the third when one is done)',
    await items.evaluateAll((els) => els.map((e) => `${e.dataset.state}: ${e.innerText.replace(/\n/g, ' ')}`)));
  const rows = await page.locator('#library-list .track-title').allInnerTexts();
  check(['drop-a', 'drop-b', 'drop-c'].every((t) => rows.includes(t)), 'and are in the library', rows);
  // Uploads created at the same moment commit, and so are announced, in either
  // order (the run before this check was added lost drop-a that way). Announce
  // one older than the newest row: it must appear in its place, not be dropped.
  const placed = await page.evaluate(async () => {
    const src = performance.getEntriesByType('resource').map((e) => e.name).find((n) => /\/live\.js(\?|$)/.test(n));
    if (!src) return { error: 'live.js not among the loaded resources' };
    const { putUpload } = await import(src);
    const times = [...document.querySelectorAll('#library-list li time')].map((t) => Date.parse(t.getAttribute('datetime')));
    const mid = Math.floor((times[0] + times[times.length - 1]) / 2);
    const created = new Date(mid).toISOString();
    putUpload({
      id: '00000000-0000-4000-8000-000000000000', filename: 'out-of-order.wav', content_type: 'audio/wav', size: 1,
      status: 'ready', progress: 100, error: null, duration_s: 1, title: null, artist: null, album: null,
      created_at: created, updated_at: created, stream_url: null,
    });
    const titles = [...document.querySelectorAll('#library-list .track-title')].map((e) => e.textContent);
    return { at: titles.indexOf('out-of-order'), expected: times.filter((t) => t > mid).length, titles };
  });
  check(placed.at >= 0 && placed.at === placed.expected,
    'an upload announced out of creation order is listed in its place', placed);
  await page.close();
}

async function paging(context, url, problems) {
  section('library paging: the next page loads as the list scrolls');
  const page = await context.newPage();
  watchPage(page, 'paging', problems);
  await page.goto(url);
  await page.locator('#app-view').waitFor({ state: 'visible' });
  // 35 uploads that were never sent (status "uploading"): one more page than fits.
  const ids = await page.evaluate(async () => {
    const out = [];
    for (let i = 0; i < 35; i++) {
      const r = await fetch('/api/v1/uploads', {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ filename: `page-${String(i).padStart(2, '0')}.mp3`, content_type: 'audio/mpeg', size: 1000 }),
      });
      out.push((await r.json()).id);
    }
    return out;
  });
  await page.reload();
  await page.locator('#library-list li').first().waitFor();
  const first = await page.locator('#library-list li').count();
  check(first === 30, 'the first page shows 30 rows', first);
  check((await page.locator('#library-list .track-title').first().innerText()) === 'page-34', 'newest first');
  await page.locator('#library-list li').last().scrollIntoViewIfNeeded();
  await page.mouse.wheel(0, 5000);
  const all = await waitFor(async () => ((await page.locator('#library-list li').count()) >= 37 ? true : null), { timeout: 10000 });
  check(all, 'scrolling loads the rest (35 + the real uploads)', await page.locator('#library-list li').count());
  check(await page.locator('#library-more').isHidden(), '"Load more" is hidden once everything is listed');
  await page.evaluate(async (ids) => {
    for (const id of ids) await fetch(`/api/v1/uploads/${id}`, { method: 'DELETE' });
  }, ids);
  await page.close();
}

async function firstSound(context, url, runs = 5) {
  section('page load → first sound for a ready track');
  const times = [];
  for (let i = 0; i < runs; i++) {
    const page = await context.newPage();
    // First sound = the playhead has moved (polled every 5 ms; 'timeupdate'
    // only fires every ~250 ms). Times are from the navigation start.
    await page.addInitScript(() => {
      window.__firstSound = null;
      const poll = setInterval(() => {
        const a = document.querySelector('audio');
        if (a && a.currentTime > 0 && !a.paused) {
          window.__firstSound = performance.now();
          clearInterval(poll);
        }
      }, 5);
    });
    await page.goto(url, { waitUntil: 'commit' });
    // Press play the moment the track's button is there, like a quick user: a
    // MutationObserver in the page finds it, a real (CDP) mouse click presses
    // it. (A locator's retry back-off would add up to a few hundred ms.)
    const box = await page.evaluate(() => new Promise((resolve) => {
      const find = () => {
        const li = [...document.querySelectorAll('#library-list li')].find((e) => e.textContent.includes('tone-40s'));
        const button = li?.querySelector('button.play:not([disabled])');
        if (!button) return false;
        const r = button.getBoundingClientRect();
        resolve({ x: r.x + r.width / 2, y: r.y + r.height / 2 });
        return true;
      };
      if (!find()) {
        new MutationObserver((_m, obs) => {
          if (find()) obs.disconnect();
        }).observe(document, { subtree: true, childList: true, attributes: true });
      }
    }));
    await page.mouse.click(box.x, box.y);
    const ms = await waitFor(() => page.evaluate(() => window.__firstSound), { timeout: 10000, interval: 20 });
    const at = await page.evaluate(() => {
      const n = performance.getEntriesByType('navigation')[0];
      const mark = (name) => performance.getEntriesByName(name)[0]?.startTime ?? NaN;
      return { dcl: n.domContentLoadedEventEnd, library: mark('vessel:library'), click: mark('vessel:play') };
    });
    info(`run ${i + 1}: first sound ${ms?.toFixed(0)} ms after navigation start `
      + `(DOMContentLoaded ${at.dcl.toFixed(0)}, library shown ${at.library.toFixed(0)}, play pressed ${at.click.toFixed(0)}, `
      + `press → sound ${(ms - at.click).toFixed(0)} ms)`);
    if (ms) times.push(ms);
    await page.close();
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)];
  check(times.length === runs, 'every run played');
  // A latency target means nothing on a machine whose CPUs are oversubscribed
  // (parallel builds): there it is reported, not asserted.
  const loadPerCpu = os.loadavg()[0] / os.availableParallelism();
  const what = `median page load → first sound under ${FIRST_SOUND_TARGET_MS} ms`;
  if (loadPerCpu <= 4) check(median < FIRST_SOUND_TARGET_MS, what, median);
  else info(`NOT ASSERTED (load average ${os.loadavg()[0].toFixed(1)} on ${os.availableParallelism()} CPUs): ${what}: ${median.toFixed(0)} ms`);
  return {
    runs: times.map((t) => Math.round(t)), median_ms: Math.round(median), best_ms: Math.round(times[0]),
    load_average: os.loadavg()[0], cpus: os.availableParallelism(),
  };
}

async function secondUser(tmp, url, aliceUploads) {
  section('a second user sees none of the first user\'s files');
  const context = await newProfile(tmp, 'bob');
  const page = await context.newPage();
  await page.goto(url);
  await register(page, `bob-${Date.now()}@example.com`, PASSWORD);
  await page.locator('#app-view').waitFor({ state: 'visible' });
  const empty = await waitFor(async () => page.locator('#library-empty').isVisible(), { timeout: 10000 });
  check(empty && /No files yet/.test(await page.locator('#library-empty').innerText()), 'Bob\'s library is empty');
  check(await page.locator('#library-list li').count() === 0, 'no rows');
  for (const u of aliceUploads) {
    const r = await page.evaluate(async (u) => ({
      get: (await fetch(`/api/v1/uploads/${u.id}`)).status,
      media: (await fetch(u.stream_url)).status,
      del: (await fetch(`/api/v1/uploads/${u.id}`, { method: 'DELETE' })).status,
    }), u);
    check(r.get === 404 && r.media === 404 && r.del === 404, `Alice's ${u.filename}: 404 for Bob (status, stream, delete)`, r);
  }
  await context.close();
}

async function headersAndBudget(url) {
  section('static files: headers, caching, size budget');
  const index = await fetch(url + '/');
  const csp = index.headers.get('content-security-policy') ?? '';
  check(/default-src 'self'/.test(csp) && !/unsafe-inline/.test(csp) && /frame-ancestors 'none'/.test(csp),
    'index.html has a strict CSP', csp);
  check(index.headers.get('cache-control') === 'no-cache', 'index.html: Cache-Control no-cache', index.headers.get('cache-control'));
  check(index.headers.get('x-content-type-options') === 'nosniff', 'nosniff');
  const html = await index.text();
  const assets = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1]);
  check(assets.length >= 5 && assets.every((a) => /\?v=[0-9a-f]{16}$/.test(a)), 'every asset URL carries a content hash', assets);
  const js = await fetch(url + assets.find((a) => a.includes('app.js')));
  check(js.headers.get('cache-control')?.includes('immutable') && js.headers.get('content-type')?.startsWith('text/javascript'),
    'hashed app.js: immutable, text/javascript', Object.fromEntries(js.headers));
  const again = await fetch(url + '/', { headers: { 'If-None-Match': index.headers.get('etag') } });
  check(again.status === 304, 'If-None-Match → 304', again.status);
  check(html.includes('"max_upload_bytes":20000000') || html.includes('&quot;max_upload_bytes&quot;:20000000'),
    'the upload limit from the config is in the page');
  const esc = await fetch(url + '/assets/..%2f..%2fsecret.key');
  check(esc.status === 404 || esc.status === 400, 'no path escape (..%2f)', esc.status);

  let total = 0;
  const sizes = {};
  for (const name of fs.readdirSync(WEB_DIR)) {
    if (!/\.(js|css)$/.test(name) || name.startsWith('hls')) continue;
    const gz = zlib.gzipSync(fs.readFileSync(path.join(WEB_DIR, name)), { level: 9 }).length;
    sizes[name] = gz;
    total += gz;
  }
  info(`gzip sizes: ${Object.entries(sizes).map(([k, v]) => `${k} ${(v / 1024).toFixed(1)} KB`).join(', ')}`);
  check(total < UI_BUDGET_GZIP, `UI JavaScript + CSS under 200 KB gzip (excluding hls.js): ${(total / 1024).toFixed(1)} KB`, total);
  const hlsName = fs.readdirSync(WEB_DIR).find((n) => n.startsWith('hls') && n.endsWith('.js'));
  const hlsGz = zlib.gzipSync(fs.readFileSync(path.join(WEB_DIR, hlsName)), { level: 9 }).length;
  info(`${hlsName}: ${(hlsGz / 1024).toFixed(1)} KB gzip (not counted)`);
  return { ui_gzip_bytes: total, files: sizes, hls_gzip_bytes: hlsGz };
}

async function webRootChecks(tmp, dataDir) {
  section('server.web_root: only files inside the root are served');
  const root = path.join(tmp, 'webroot');
  fs.mkdirSync(root);
  for (const name of fs.readdirSync(WEB_DIR)) {
    if (fs.statSync(path.join(WEB_DIR, name)).isFile()) fs.copyFileSync(path.join(WEB_DIR, name), path.join(root, name));
  }
  fs.writeFileSync(path.join(tmp, 'secret.txt'), 'not for the web\n');
  fs.symlinkSync(path.join(tmp, 'secret.txt'), path.join(root, 'leak.txt'));
  fs.symlinkSync('..', path.join(root, 'up'));
  fs.symlinkSync('app.css', path.join(root, 'alias.css'));
  fs.writeFileSync(path.join(root, '.hidden.txt'), 'dotfile\n');
  // A second server on the same data dir attaches to the running embedded cluster.
  const s = await startServer(dataDir, { env: { VESSEL_SERVER_WEB_ROOT: root }, workers: 0, logName: 'server-webroot.log' });
  const status = async (p) => (await fetch(s.url + p)).status;
  check(await status('/') === 200, 'the configured root serves index.html');
  const alias = await fetch(`${s.url}/assets/alias.css`);
  check(alias.status === 200 && alias.headers.get('content-type') === 'text/css; charset=utf-8',
    'a symlink inside the root is followed (text/css)', alias.status);
  check(await status('/assets/leak.txt') === 404, 'a symlink to a file outside the root: 404');
  check(await status('/assets/up/secret.txt') === 404, 'a directory symlink out of the root: 404');
  check(await status('/assets/.hidden.txt') === 404, 'dot files: 404');
  check(await status('/assets/index.html') === 404, 'index.html only at /');
  check(await status('/assets/nope.js') === 404, 'a missing asset: 404');
  check(await status('/assets/%2e%2e/secret.txt') === 404, '%2e%2e: 404');
  const post = await fetch(`${s.url}/api/v1/nope`, { method: 'POST' });
  check(post.status === 404, 'the web routes leave the API\'s 404s alone', post.status);
  await s.stop();

  section('server.web_root without index.html: refused at start-up');
  const empty = path.join(tmp, 'empty-webroot');
  fs.mkdirSync(empty);
  const child = spawnServer(dataDir, { env: { VESSEL_SERVER_WEB_ROOT: empty }, workers: 0 });
  let stderr = '';
  child.stderr.on('data', (c) => { stderr += c; });
  const code = await Promise.race([new Promise((r) => child.on('exit', r)), sleep(60000).then(() => 'timeout')]);
  if (code === 'timeout') child.kill('SIGKILL');
  check(code === 78 && stderr.includes('server.web_root'), 'exit 78 (config) naming server.web_root', { code, stderr: stderr.slice(-300) });
}

// --------------------------------------------------------------------------- main

async function main() {
  if (!fs.existsSync(CHROMIUM)) {
    console.log(`SKIP: ${CHROMIUM} is not installed (apt-get install chromium; scripts/test.sh does)`);
    return EXIT_SKIP;
  }
  try {
    ({ chromium } = await import('playwright-core'));
  } catch {
    console.log('SKIP: node_modules/playwright-core is missing (scripts/bootstrap.sh runs npm ci)');
    return EXIT_SKIP;
  }
  if (!fs.existsSync(VESSEL) || !fs.existsSync(path.join(WEB_DIR, 'index.html'))) {
    console.log(`FAIL: ${VESSEL} or ${WEB_DIR}/index.html is missing: build first`);
    return 1;
  }
  fs.rmSync(ARTIFACTS, { recursive: true, force: true });
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vessel-browser-'));
  const wavPath = path.join(tmp, 'tone-40s.wav');
  const wav = makeWav(40);
  fs.writeFileSync(wavPath, wav);
  const metrics = {};
  const problems = [];
  const dataDir = path.join(tmp, 'data');
  let server = null;
  try {
    section('start vessel serve (embedded defaults, temp data dir, 127.0.0.1:0)');
    server = await startServer(dataDir);
    info(`server at ${server.url}`);
    require_(server.url.startsWith('http://127.0.0.1:'), 'listening on 127.0.0.1');
    Object.assign(metrics, await headersAndBudget(server.url));

    const alice = await newProfile(tmp, 'alice');
    const page = await alice.newPage();
    watchPage(page, 'alice', problems);
    const requests = { creates: 0, retries: 0 };
    page.on('request', (r) => {
      if (r.method() === 'POST' && new URL(r.url()).pathname === '/api/v1/uploads') requests.creates += 1;
      if (r.method() === 'POST' && /\/retry$/.test(r.url())) requests.retries += 1;
    });
    const foreign = [];
    alice.on('request', (r) => {
      const u = new URL(r.url());
      if (u.hostname !== '127.0.0.1' && u.protocol !== 'data:' && u.protocol !== 'blob:') foreign.push(r.url());
    });
    const email = `alice-${Date.now()}@example.com`;
    await accountsAndFieldErrors(page, server.url, email);
    await shot(page, 'empty-library-desktop');

    const cdp = await alice.newCDPSession(page);
    await uploadWithProgress(page, cdp, wavPath, wav.length);
    await shot(page, 'library-desktop');
    await playback(page);
    await shot(page, 'player-desktop');

    await page.setViewportSize({ width: 390, height: 844 });
    await sleep(300);
    await shot(page, 'player-phone');
    await page.setViewportSize({ width: 1280, height: 800 });

    await refusalsAndFailures(page, requests);
    await searchAndDelete(page);

    await page.close();
    metrics.first_sound = await firstSound(alice, server.url);
    await pollingFallback(alice, server.url, problems);
    await dropSeveral(alice, server.url, problems);
    await paging(alice, server.url, problems);
    const probe = await alice.newPage();
    await probe.goto(server.url);
    const aliceUploads = await probe.evaluate(async () => (await (await fetch('/api/v1/uploads')).json()).items);
    await probe.close();

    section('phone-sized screen');
    const phone = await alice.newPage();
    watchPage(phone, 'phone', problems);
    await phone.setViewportSize({ width: 390, height: 844 });
    await phone.goto(server.url);
    await phone.locator('#library-list li').first().waitFor();
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    check(overflow <= 0, 'no horizontal scrolling at 390 px', overflow);
    await shot(phone, 'library-phone');
    await phone.locator('#library-list li', { hasText: 'tone-40s' }).getByRole('button', { name: /^Play / }).click();
    await waitPlayedPast(phone, 1, 10000);
    const overflowPlaying = await phone.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    check(overflowPlaying <= 0, 'no horizontal scrolling with the player open', overflowPlaying);
    await shot(phone, 'library-player-phone');
    const lightBad = await lowContrast(phone);
    check(lightBad.length === 0, 'light theme: every text passes WCAG AA contrast', lightBad);
    await phone.emulateMedia({ colorScheme: 'dark' });
    await phone.setViewportSize({ width: 1280, height: 800 });
    await sleep(300);
    await shot(phone, 'player-desktop-dark');
    const darkBad = await lowContrast(phone);
    check(darkBad.length === 0, 'dark theme: every text passes WCAG AA contrast', darkBad);
    await phone.close();

    const signedOut = await alice.newPage();
    await signedOut.context().clearCookies(); // Alice is signed out from here on
    await signedOut.setViewportSize({ width: 390, height: 844 });
    await signedOut.goto(server.url);
    await signedOut.getByRole('tab', { name: 'Sign in' }).waitFor();
    await shot(signedOut, 'signin-phone');
    const signInBad = await lowContrast(signedOut);
    check(signInBad.length === 0, 'sign-in page: every text passes WCAG AA contrast', signInBad);
    await signedOut.close();

    await secondUser(tmp, server.url, aliceUploads);

    await webRootChecks(tmp, dataDir);

    section('hygiene');
    check(problems.length === 0, 'no uncaught errors or CSP violations in the pages', problems);
    check(foreign.length === 0, 'the browser talked to 127.0.0.1 only', foreign);
  } catch (err) {
    if (!(err instanceof Abort)) {
      failures.push(`unexpected: ${err.stack ?? err}`);
      console.log(`${stamp()} FAIL unexpected: ${err.stack ?? err}`);
    }
  } finally {
    for (const b of browsers) await b.close().catch(() => {});
    if (server) {
      const r = await server.stop();
      check(r && r.code === 0, 'vessel serve stopped cleanly on SIGTERM', r);
    }
    fs.writeFileSync(path.join(ARTIFACTS, 'metrics.json'), JSON.stringify(metrics, null, 2));
    fs.rmSync(tmp, { recursive: true, force: true });
  }

  section('numbers');
  if (metrics.first_sound) {
    const f = metrics.first_sound;
    console.log(`page load → first sound (ready track, loopback): median ${f.median_ms} ms, best ${f.best_ms} ms, `
      + `runs ${f.runs.join(' ')} (target < ${FIRST_SOUND_TARGET_MS} ms; load average ${f.load_average.toFixed(1)} on ${f.cpus} CPUs)`);
  }
  if (metrics.ui_gzip_bytes) {
    console.log(`UI JS + CSS gzip: ${(metrics.ui_gzip_bytes / 1024).toFixed(1)} KB (budget 200 KB; hls.js ${(metrics.hls_gzip_bytes / 1024).toFixed(1)} KB not counted)`);
  }
  console.log(`artifacts: ${ARTIFACTS}`);
  console.log(`\n${passed} passed, ${failures.length} failed`);
  for (const f of failures) console.log(`  - ${f.split('\n')[0]}`);
  return failures.length || passed === 0 ? 1 : 0;
}

process.exitCode = await main();
