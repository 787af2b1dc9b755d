// The dashboard's shell: sign-in from the URL's fragment, the session, the router, the
// theme and keyboard shortcuts. Every page is a function of (main element, URL, session).
import { h, fill, api, ApiError, notice } from './util.js';
import * as live from './live.js';
import { jobsPage, jobPage } from './jobs.js';
import { overviewPage, topicsPage, topicPage, manifestsPage, manifestPage, keysPage, auditPage } from './pages.js';

const main = () => document.getElementById('main');
let session = null;
let leave = null; // the current page's cleanup (closes its streams)

const routes = [
  [/^\/(overview)?$/, overviewPage],
  [/^\/jobs$/, jobsPage],
  [/^\/jobs\/([^/]+)$/, jobPage],
  [/^\/topics$/, topicsPage],
  [/^\/topics\/([^/]+)$/, topicPage],
  [/^\/manifests$/, manifestsPage],
  [/^\/manifests\/([^/]+)$/, manifestPage],
  [/^\/keys$/, keysPage],
  [/^\/audit$/, auditPage],
];

/** Shows the page of the current URL. */
export async function render() {
  if (leave) { try { leave(); } catch (_) { /* ignored */ } leave = null; }
  const url = new URL(location.href);
  for (const a of document.querySelectorAll('#nav a')) {
    const here = url.pathname === a.getAttribute('href') || url.pathname.startsWith(`${a.getAttribute('href')}/`)
      || (url.pathname === '/' && a.getAttribute('href') === '/overview');
    if (here) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const el = main();
  for (const [re, page] of routes) {
    const m = url.pathname.match(re);
    if (!m) continue;
    fill(el, h('p', { class: 'muted' }, 'Loading…'));
    try {
      leave = (await page(el, url, session, m.slice(1).map(decodeURIComponent))) || null;
    } catch (e) {
      fill(el, h('h1', {}, 'Something went wrong'), h('p', { class: 'notice error', role: 'alert' }, e.message));
    }
    return;
  }
  fill(el, h('h1', {}, 'Not found'), h('p', {}, 'No such page. '), h('a', { href: '/overview' }, 'Overview'));
}

/** Navigates inside the app without a reload. */
export function go(href, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', href); else history.pushState(null, '', href);
  render();
}

function signedOut(message) {
  session = null;
  fill(document.getElementById('who'));
  document.getElementById('logout').hidden = true;
  fill(main(),
    h('h1', {}, 'Sign in'),
    h('p', {}, message || 'This browser is not signed in to gatosd.'),
    h('p', {}, 'Run this on the machine of the daemon, and open the URL it prints (the code in it works once, for 60 seconds):'),
    h('pre', { class: 'cmd' }, 'git gatos dashboard'),
  );
}

async function signIn() {
  const hash = location.hash;
  if (!hash.startsWith('#code=')) return null;
  const code = decodeURIComponent(hash.slice('#code='.length));
  // The code leaves the address bar (and so history) before anything else happens.
  history.replaceState(null, '', location.pathname + location.search);
  try {
    await api('/dashboard/signin', { method: 'POST', body: { code } });
    return null;
  } catch (e) {
    return e instanceof ApiError ? e.message : String(e);
  }
}

function theme() {
  const saved = localStorage.getItem('gatos-theme');
  if (saved) document.documentElement.dataset.theme = saved;
  document.getElementById('theme').addEventListener('click', () => {
    const dark = (document.documentElement.dataset.theme || (matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light')) === 'dark';
    const next = dark ? 'light' : 'dark';
    document.documentElement.dataset.theme = next;
    localStorage.setItem('gatos-theme', next);
  });
}

function keyboard() {
  let pendingG = false;
  addEventListener('keydown', (e) => {
    const t = e.target;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement) return;
    if (e.key === '/') {
      const f = document.querySelector('[data-search]');
      if (f) { e.preventDefault(); f.focus(); }
      return;
    }
    if (e.key === 'j' || e.key === 'k') {
      // Move through the rows of the page's first table; Enter opens the focused row.
      const rows = [...document.querySelectorAll('main table.grid tbody tr')];
      if (rows.length === 0) return;
      const at = rows.indexOf(document.activeElement);
      const next = rows[Math.max(0, Math.min(rows.length - 1, at + (e.key === 'j' ? 1 : -1)))] || rows[0];
      if (!next.hasAttribute('tabindex')) next.setAttribute('tabindex', '-1');
      next.focus();
      e.preventDefault();
      return;
    }
    if (e.key === 'Enter' && t instanceof HTMLTableRowElement) {
      const a = t.querySelector('a[href]');
      if (a) { e.preventDefault(); go(a.getAttribute('href')); }
      return;
    }
    if (e.key === 'g') { pendingG = true; return; }
    if (pendingG) {
      pendingG = false;
      const a = document.querySelector(`#nav a[data-key="${e.key}"]`);
      if (a) { e.preventDefault(); go(a.getAttribute('href')); }
    }
  });
}

async function boot() {
  theme();
  keyboard();
  document.addEventListener('click', (e) => {
    const a = e.target instanceof Element ? e.target.closest('a') : null;
    if (!a || e.defaultPrevented || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey) return;
    const href = a.getAttribute('href');
    if (!href || !href.startsWith('/') || href.startsWith('/api/') || a.target) return;
    e.preventDefault();
    go(href);
  });
  addEventListener('popstate', render);
  document.addEventListener('gatos:signed-out', () => signedOut('Your session ended (signed out, expired or revoked).'));
  document.getElementById('logout').addEventListener('click', async () => {
    try { await api('/dashboard/logout', { method: 'POST' }); } catch (_) { /* ended anyway */ }
    signedOut('Signed out.');
  });
  const failed = await signIn();
  try {
    session = await api('/dashboard/session');
  } catch (e) {
    signedOut(failed || undefined);
    return;
  }
  document.body.classList.toggle('read-only', !!session.read_only);
  fill(document.getElementById('who'), h('span', { title: 'Who your actions are recorded as' }, session.actor),
    session.read_only ? h('span', { class: 'badge ro' }, 'read-only') : null);
  document.getElementById('logout').hidden = false;
  live.start();
  live.onStatus((s) => { const el = document.getElementById('live'); el.textContent = s; el.dataset.status = s; });
  render();
}

export { notice };
boot();
