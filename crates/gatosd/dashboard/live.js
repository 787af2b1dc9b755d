// Live job events for this tab, from the browser's one shared stream (ADR 0045): a
// SharedWorker where there is one; else tabs elect a leader (a Web Lock) that holds the
// EventSource and rebroadcasts over a BroadcastChannel. No polling.
const listeners = new Set();
const changeListeners = new Set();
const statusListeners = new Set();
let status = 'offline';

function setStatus(s) {
  status = s;
  for (const f of statusListeners) f(s);
}

// The daemon's fingerprints as this tab last heard them: the first ones (sent when the
// stream opens, or kept by the shared worker for a tab that joins) are the baseline.
let latest = null;

function changed(data) {
  if (!data || typeof data !== 'object') return;
  const before = latest;
  latest = data;
  if (!before) return;
  const moved = new Set(Object.keys(data).filter((k) => data[k] !== before[k]));
  if (moved.size === 0) return;
  for (const f of changeListeners) f(moved, data);
}

function deliver(msg) {
  if (msg.type === 'status') setStatus(msg.status);
  else if (msg.type === 'changed') changed(msg.data);
  else for (const f of listeners) f(msg);
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
    addEventListener('pagehide', () => w.port.postMessage('bye'));
    return;
  }
  const channel = new BroadcastChannel('gatos-live');
  let leading = false;
  channel.addEventListener('message', (e) => {
    // A tab that just joined asks the leader for the stream's status and its baseline.
    if (e.data && e.data.type === 'hello') {
      if (leading) {
        channel.postMessage({ type: 'status', status });
        if (latest) channel.postMessage({ type: 'changed', data: latest });
      }
      return;
    }
    deliver(e.data);
  });
  const lead = () => {
    leading = true;
    const source = new EventSource('/api/v1/events/jobs');
    const send = (msg) => { channel.postMessage(msg); deliver(msg); };
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
