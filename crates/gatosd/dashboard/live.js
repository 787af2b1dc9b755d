// Live job events for this tab, from the browser's one shared stream (ADR 0045): a
// SharedWorker where there is one; else tabs elect a leader (a Web Lock) that holds the
// EventSource and rebroadcasts over a BroadcastChannel. A job's stream or a topic's tail
// (`follow`) rides on that same stream. No polling, and one connection per browser.
import './live-hub.js';

const listeners = new Set();
const changeListeners = new Set();
const statusListeners = new Set();
let status = 'offline';

function setStatus(s) {
  status = s;
  for (const f of statusListeners) f(s);
}

// The daemon's fingerprints as this tab last heard them. The first ones (sent when the
// stream opens, or kept by the shared worker for a tab that joins) count as moving every
// part: they may already hold a change the page's first read came too early for (the
// daemon looks every 5 s), so each page reads its parts once more then.
let latest = null;

function changed(data) {
  if (!data || typeof data !== 'object') return;
  const before = latest || {};
  latest = data;
  const moved = new Set(Object.keys(data).filter((k) => data[k] !== before[k]));
  if (moved.size === 0) return;
  for (const f of changeListeners) f(moved, data);
}

// This tab's follows: local id → {what, last, fn}.
const mine = new Map();
let nextLocal = 1;
let sendFollow = () => {}; // hands {type: 'follow' | 'unfollow', local, what} to the stream's holder

function followed(msg) {
  const f = mine.get(msg.local);
  if (!f) return;
  if (msg.id) f.last = msg.id;
  if (msg.event === 'end' || msg.event === 'error') mine.delete(msg.local);
  try { f.fn(msg.event, msg.data, msg.id); } catch (_) { /* a page's handler */ }
}

/** What to ask for to follow `f` again: after the last id it delivered. */
function resumed(f) {
  const what = { ...f.what };
  if (f.last) { what.since = f.last; delete what.since_seq; delete what.since_time; }
  return what;
}

function deliver(msg) {
  if (msg.type === 'status') setStatus(msg.status);
  else if (msg.type === 'changed') changed(msg.data);
  else if (msg.type === 'follow') followed(msg);
  else for (const f of listeners) f(msg);
}

/**
 * Follows a job (`{job, since?, logs?}`: `state`, `job`, `log`, `end` as on
 * /api/v1/jobs/ID/stream) or a topic (`{topic, since? | since_seq? | since_time?}`:
 * `message`, `gap`) over the browser's one stream, calling `fn(event, data, id)`; `error`
 * (with the daemon's problem) ends it. It goes on after the stream reconnects, from the
 * last id delivered. Returns the unfollow.
 */
export function follow(what, fn) {
  start();
  const local = nextLocal++;
  mine.set(local, { what, last: null, fn });
  sendFollow({ type: 'follow', local, what });
  return () => { if (mine.delete(local)) sendFollow({ type: 'unfollow', local }); };
}

/** Calls `fn({type, id, data})` for each job event; returns the unsubscribe. */
export function onJobEvent(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/**
 * Calls `fn(moved, fingerprints)` when the daemon sees a change no job event says: `moved`
 * is the set of parts that moved, of `claims` (a heartbeat, a takeover, a lapsed lease),
 * `sync`, `topics`, `groups` (consumer groups and their lag), `manifests`, `keys`,
 * `audit` and `maintenance`. Returns the unsubscribe.
 */
export function onChange(fn) {
  changeListeners.add(fn);
  return () => changeListeners.delete(fn);
}

/** Calls `fn(status)` now and whenever the stream's status changes. */
export function onStatus(fn) {
  statusListeners.add(fn);
  fn(status);
  return () => statusListeners.delete(fn);
}

let started = false;

/** Connects this tab (once). */
export function start() {
  if (started) return;
  started = true;
  if (typeof SharedWorker === 'function') {
    const w = new SharedWorker('/assets/live-worker.js', { name: 'gatos-live', type: 'classic' });
    w.port.addEventListener('message', (e) => deliver(e.data));
    w.port.start();
    sendFollow = (m) => w.port.postMessage(m);
    addEventListener('pagehide', () => w.port.postMessage('bye'));
    return;
  }
  const channel = new BroadcastChannel('gatos-live');
  const tab = Math.random().toString(36).slice(2) + Date.now().toString(36);
  let leading = false;
  let hub = null; // the leader's follows, for every tab
  // Follows go to the leader: directly in the leading tab, over the channel from the others.
  const toLeader = (m) => {
    if (!hub) return;
    if (m.type === 'follow') hub.follow(m.tab, m.local, m.what);
    else if (m.type === 'unfollow') hub.unfollow(m.tab, m.local);
    else if (m.type === 'bye') hub.drop(m.tab);
  };
  sendFollow = (m) => { const mm = { ...m, tab }; if (leading) toLeader(mm); else channel.postMessage(mm); };
  addEventListener('pagehide', () => { if (!leading) channel.postMessage({ type: 'bye', tab }); });
  channel.addEventListener('message', (e) => {
    const d = e.data;
    if (!d) return;
    // A tab that just joined asks the leader for the stream's status and its baseline.
    if (d.type === 'hello') {
      if (leading) {
        channel.postMessage({ type: 'status', status });
        if (latest) channel.postMessage({ type: 'changed', data: latest });
      }
      return;
    }
    if (d.type === 'follow' || d.type === 'unfollow' || d.type === 'bye') { if (leading) toLeader(d); return; }
    if (d.type === 'to') { if (d.tab === tab) followed(d.msg); return; }
    // A new leader holds no follows yet: every tab asks again for its own.
    if (d.type === 'refollow') {
      if (!leading) for (const [local, f] of mine) channel.postMessage({ type: 'follow', tab, local, what: resumed(f) });
      return;
    }
    deliver(d);
  });
  const lead = () => {
    leading = true;
    hub = new self.GatosHub((client, msg) => { if (client === tab) followed(msg); else channel.postMessage({ type: 'to', tab: client, msg }); });
    const source = new EventSource('/api/v1/events/jobs');
    const send = (msg) => { channel.postMessage(msg); deliver(msg); };
    source.addEventListener('stream', (ev) => { try { hub.setStream(JSON.parse(ev.data).stream); } catch (_) { /* ignored */ } });
    source.addEventListener('follow', (ev) => { try { hub.event(JSON.parse(ev.data)); } catch (_) { /* ignored */ } });
    for (const [local, f] of mine) hub.follow(tab, local, resumed(f));
    channel.postMessage({ type: 'refollow' });
    setStatus('connecting');
    source.addEventListener('open', () => send({ type: 'status', status: 'live' }));
    source.addEventListener('error', () => send({ type: 'status', status: 'reconnecting' }));
    source.addEventListener('job', (ev) => {
      try { send({ type: 'job', id: ev.lastEventId, data: JSON.parse(ev.data) }); } catch (_) { /* ignored */ }
    });
    source.addEventListener('changed', (ev) => {
      try { send({ type: 'changed', data: JSON.parse(ev.data) }); } catch (_) { /* ignored */ }
    });
    return new Promise(() => {}); // held until the tab closes: then another tab leads
  };
  if (navigator.locks && navigator.locks.request) {
    setStatus('connecting');
    navigator.locks.request('gatos-live-leader', lead);
    channel.postMessage({ type: 'hello' });
  } else {
    lead();
  }
}
