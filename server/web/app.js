// Entry point of the web app: decides between the sign-in view and the app
// (upload panel, library, player) from GET /api/v1/me and wires the modules.
import { api, session } from './api.js';
import { setupAuth } from './auth.js';
import { setupLibrary } from './library.js';
import { live, uploads } from './live.js';
import { setupPlayer } from './player.js';
import { setupUploads } from './upload.js';
import { $, announce } from './util.js';

const authView = $('#auth-view');
const appView = $('#app-view');
const account = $('#account');

const player = setupPlayer();
const library = setupLibrary({ player });
const uploadPanel = setupUploads({ onPlay: (u) => player.play(u) });
const auth = setupAuth((user) => showApp(user));

function showApp(user, firstPage = null) {
  $('#account-email').textContent = user.email;
  account.hidden = false;
  authView.hidden = true;
  appView.hidden = false;
  document.body.dataset.view = 'app';
  live.start();
  library.reload(firstPage);
  $('#main').focus({ preventScroll: true });
}

function showSignIn(message = '') {
  live.stop();
  player.stop();
  uploadPanel.reset();
  library.clear();
  uploads.clear();
  account.hidden = true;
  appView.hidden = true;
  authView.hidden = false;
  document.body.dataset.view = 'auth';
  auth.show(message);
}

$('#sign-out').addEventListener('click', async () => {
  if (uploadPanel.busy() && !window.confirm('Uploads are still running. Sign out and cancel them?')) return;
  try {
    await api.logout();
  } catch (err) {
    if (err.status !== 401) {
      announce(`Sign-out failed: ${err.message}`);
      return;
    }
  }
  showSignIn();
  announce('Signed out');
});

session.on('unauthenticated', () => {
  if (appView.hidden) return;
  showSignIn('Your session has ended. Sign in again.');
});

window.addEventListener('beforeunload', (e) => {
  if (uploadPanel.busy()) e.preventDefault();
});

async function boot() {
  // Who is signed in and their newest files, in parallel: one round trip less
  // before a returning user can press play.
  const firstPage = library.prefetch();
  firstPage.catch(() => {}); // a 401 here is answered by /me below
  try {
    showApp(await api.me(), firstPage);
  } catch (err) {
    showSignIn(err.status === 401 ? '' : err.message);
  }
  document.body.removeAttribute('aria-busy');
}

boot();
