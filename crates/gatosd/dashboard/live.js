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

function deliver(msg) {
  if (msg.type === 'status') setStatus(msg.status);
  else if (msg.type === 'changed') for (const f of changeListeners) f(msg.data || {});
  else for (const f of listeners) f(msg);
}

/** Calls `fn({type, id, data})` for each job event; returns the unsubscribe. */
export function onJobEvent(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/**
 * Calls `fn({claims, sync})` when the daemon sees live claims (a heartbeat, a takeover) or
 * its sync change: what no job event says. Returns the unsubscribe.
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
    // A tab that just joined asks the leader for the stream's status.
    if (e.data && e.data.type === 'hello') { if (leading) channel.postMessage({ type: 'status', status }); return; }
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
