// The dashboard's shell: hash routes, the token prompt, the connection indicator.

import {authKind, onUnauthorized, setToken} from './api.js';
import {fill, h} from './dom.js';
import {onMode} from './live.js';
import {errorPanel} from './ui.js';
import * as flowPage from './pages/flow.js';
import * as flowsPage from './pages/flows.js';
import * as overviewPage from './pages/overview.js';
import * as runPage from './pages/run.js';
import * as runsPage from './pages/runs.js';

const ROUTES = [
  [/^\/?$/, overviewPage, 'overview'],
  [/^\/flows\/?$/, flowsPage, 'flows'],
  [/^\/flows\/([^/]+)$/, flowPage, 'flows'],
  [/^\/runs\/?$/, runsPage, 'runs'],
  [/^\/runs\/([^/]+)$/, runPage, 'runs'],
];

let current = null; // {cleanup, path}

/** The route and its query: '#/runs?flow=x' -> {path: '/runs', query: URLSearchParams}. */
export function parseHash() {
  const raw = location.hash.startsWith('#/') ? location.hash.slice(1) : '/';
  const [path, query = ''] = raw.split('?');
  return {path, query: new URLSearchParams(query)};
}

async function route() {
  if (location.hash && !location.hash.startsWith('#/')) return; // in-page anchors
  const {path, query} = parseHash();
  const main = document.getElementById('main');
  const found = ROUTES.find(([re]) => re.test(path));
  // The same page with another query (a selected step, a filter): let the page react.
  if (current && current.path === path && current.page.onQuery) {
    current.page.onQuery(query);
    return;
  }
  if (current && current.cleanup) current.cleanup();
  current = null;
  for (const a of document.querySelectorAll('nav.main a')) {
    if (found && a.dataset.section === found[2]) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (!found) {
    fill(main, h('h1', {}, 'Not found'), h('p', {}, 'No page here. ', h('a', {href: '#/'}, 'Go to the overview')));
    return;
  }
  const [re, page] = found;
  const params = path.match(re).slice(1).map(decodeURIComponent);
  fill(main, h('p', {class: 'muted', 'aria-busy': 'true'}, 'Loading…'));
  const state = {path, page, cleanup: null};
  current = state;
  try {
    const cleanup = await page.render(main, params, query);
    if (current === state) state.cleanup = cleanup || null;
    else if (cleanup) cleanup();
  } catch (err) {
    if (current === state) fill(main, errorPanel(err));
  }
}

function tokenPrompt(detail) {
  const dlg = document.getElementById('token-dialog');
  const input = dlg.querySelector('input');
  dlg.querySelector('.why').textContent = detail || 'This API needs a bearer token.';
  input.value = '';
  return new Promise((resolve) => {
    const done = () => {
      dlg.removeEventListener('close', done);
      const ok = dlg.returnValue === 'ok' && input.value.trim() !== '';
      if (ok) setToken(input.value.trim());
      resolve(ok);
    };
    dlg.addEventListener('close', done);
    dlg.returnValue = '';
    dlg.showModal();
    input.focus();
  });
}

// On a Function App the prompt asks for a function key (sent as x-functions-key).
function labelForFunctionKey() {
  const dlg = document.getElementById('token-dialog');
  dlg.querySelector('h2').textContent = 'Enter the function key';
  dlg.querySelector('label').textContent = 'Function key (of the http function, or a host key)';
  document.getElementById('sign-out').textContent = 'Forget key';
}

function start() {
  onUnauthorized(tokenPrompt);
  if (authKind === 'function-key') labelForFunctionKey();
  const dlg = document.getElementById('token-dialog');
  dlg.querySelector('.cancel').addEventListener('click', () => dlg.close('cancel'));
  document.getElementById('sign-out').addEventListener('click', () => {
    setToken(null);
    location.reload();
  });
  const indicator = document.getElementById('live');
  onMode((mode) => {
    const text = {live: 'Live', polling: 'Polling', offline: 'Offline', idle: ''}[mode];
    indicator.textContent = text;
    indicator.dataset.mode = mode;
  });
  window.addEventListener('hashchange', route);
  route();
}

start();
