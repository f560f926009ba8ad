// The dashboard's entry point: signing in, the header, and which view the address shows
// (/dashboard: the list; /dashboard/jobs/<id> or /dashboard#job=<id>: one job;
// /dashboard/webhooks: the webhook endpoints and their deliveries).

import {
  GraphQLErrors,
  Unauthenticated,
  forgetToken,
  loadSession,
  readToken,
  saveToken,
  takeTokenFromUrl,
} from './api.js';
import { h, replace } from './dom.js';
import { showJob } from './job-view.js';
import { showList } from './list-view.js';
import { createLive } from './live.js';
import { showWebhooks } from './webhooks-view.js';

const main = document.getElementById('main');
const who = document.getElementById('who');
const connection = document.getElementById('connection');
const notices = document.getElementById('notices');
const signOutButton = document.getElementById('sign-out');

let session = null;
let live = null;
let view = null;

const CONNECTION_TEXT = {
  connecting: 'Connecting…',
  live: 'Live',
  offline: 'Offline',
  'rate-limited': 'Rate limited',
};

function setConnection(state, seconds) {
  connection.dataset.state = state;
  connection.textContent =
    state === 'rate-limited'
      ? 'Too many requests, again in ' + seconds + ' s'
      : CONNECTION_TEXT[state] || state;
}

/** A message at the top of the page; errors stay until closed, others fade. */
function notify(message, kind = 'info') {
  const notice = h(
    'div',
    { class: 'notice notice-' + kind, role: kind === 'error' ? 'alert' : 'status' },
    h('span', {}, message),
    h('button', { type: 'button', class: 'notice-close', 'aria-label': 'Dismiss', onclick: () => notice.remove() }, '×')
  );
  notices.append(notice);
  if (kind !== 'error') setTimeout(() => notice.remove(), 5000);
}

function report(error) {
  if (error instanceof Unauthenticated) {
    signOut('The token was refused; sign in again.');
    return;
  }
  if (error instanceof GraphQLErrors && error.code === 'FORBIDDEN') {
    notify('Your token may not do that: ' + error.message, 'error');
    return;
  }
  notify(error && error.message ? error.message : String(error), 'error');
}

function jobIdFromUrl() {
  const match = window.location.pathname.match(/^\/dashboard\/jobs\/([^/]+)\/?$/);
  if (match) return decodeURIComponent(match[1]);
  return new URLSearchParams(window.location.hash.replace(/^#/, '')).get('job');
}

function navigate(event, path) {
  if (event) {
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.button === 1) return;
    event.preventDefault();
  }
  window.history.pushState(null, '', path);
  route();
}

function route() {
  if (!session) return;
  if (view) view.stop();
  const context = { session, live, navigate, report, notify };
  const id = jobIdFromUrl();
  if (/^\/dashboard\/webhooks\/?$/.test(window.location.pathname)) {
    view = showWebhooks(main, context);
  } else if (id) {
    view = showJob(main, id, context);
  } else {
    document.title = 'Jobs · bulkops';
    view = showList(main, context);
  }
  main.focus({ preventScroll: true });
}

function signOut(message) {
  forgetToken();
  session = null;
  if (view) view.stop();
  view = null;
  if (live) live.dispose();
  live = null;
  replace(who);
  signOutButton.hidden = true;
  connection.hidden = true;
  showSignIn(message);
}

function showSignIn(message) {
  document.title = 'Sign in · bulkops';
  const field = h('input', {
    id: 'token',
    name: 'token',
    type: 'password',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
    placeholder: 'bko_…',
  });
  const form = h(
    'form',
    { class: 'sign-in', id: 'sign-in' },
    h('h1', {}, 'Sign in'),
    h('p', { class: 'muted' }, 'Paste an API token or a bearer JWT. It is kept in this tab only.'),
    message ? h('p', { class: 'notice notice-error', role: 'alert' }, message) : null,
    h('label', { for: 'token' }, 'Token'),
    field,
    h('button', { type: 'submit', class: 'button button-primary' }, 'Sign in'),
    h('p', { class: 'hint' }, 'No token? ', h('code', {}, 'bulkops token create --tenant NAME'))
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const token = field.value.trim();
    if (token) start(token);
  });
  replace(main, form);
  field.focus();
}

async function start(token) {
  replace(main, h('p', { class: 'muted loading' }, 'Signing in…'));
  try {
    session = await loadSession(token);
  } catch (error) {
    session = null;
    forgetToken();
    showSignIn(error instanceof Unauthenticated ? 'That token was refused.' : error.message);
    return;
  }
  saveToken(token);
  const viewer = session.viewer;
  replace(
    who,
    viewer
      ? [
          h('span', { class: 'who-subject' }, viewer.subject),
          h('span', { class: 'who-tenant' }, viewer.tenant),
          session.canWrite ? null : h('span', { class: 'badge badge-read' }, 'read only'),
        ]
      : null
  );
  signOutButton.hidden = false;
  connection.hidden = false;
  live = createLive(token, {
    onState: setConnection,
    onRefused: () => signOut('The token was refused; sign in again.'),
    onReconnect: () => view && view.refresh && view.refresh(),
  });
  setConnection('connecting');
  route();
}

signOutButton.addEventListener('click', () => signOut());
window.addEventListener('popstate', route);
window.addEventListener('hashchange', route);

const token = takeTokenFromUrl() || readToken();
if (token) start(token);
else showSignIn();
