// The one job-event stream of this browser (ADR 0045): a SharedWorker holds a single
// EventSource on /api/v1/events/jobs and posts each event to every tab connected to it.
const ports = new Set();
let source = null;
let status = 'connecting';
let lastChanged = null; // the daemon's last fingerprints: a joining tab's baseline

function broadcast(msg) {
  for (const p of ports) {
    try { p.postMessage(msg); } catch (_) { ports.delete(p); }
  }
}

function open() {
  if (source) return;
  source = new EventSource('/api/v1/events/jobs');
  source.addEventListener('open', () => { status = 'live'; broadcast({ type: 'status', status }); });
  source.addEventListener('error', () => {
    status = source && source.readyState === EventSource.CLOSED ? 'offline' : 'reconnecting';
    broadcast({ type: 'status', status });
    if (source && source.readyState === EventSource.CLOSED) source = null;
  });
  source.addEventListener('job', (ev) => {
    let data = null;
    try { data = JSON.parse(ev.data); } catch (_) { return; }
    broadcast({ type: 'job', id: ev.lastEventId, data });
  });
  source.addEventListener('changed', (ev) => {
    let data = null;
    try { data = JSON.parse(ev.data); } catch (_) { return; }
    lastChanged = data;
    broadcast({ type: 'changed', data });
  });
  for (const name of ['gap', 'lagged', 'shutdown']) {
    source.addEventListener(name, () => broadcast({ type: name }));
  }
}

self.addEventListener('connect', (e) => {
  const port = e.ports[0];
  ports.add(port);
  port.addEventListener('message', (m) => {
    if (m.data === 'bye') ports.delete(port);
    if (m.data === 'reopen' && source === null) open();
    if (ports.size === 0 && source) { source.close(); source = null; }
  });
  port.start();
  open();
  port.postMessage({ type: 'status', status });
  if (lastChanged) port.postMessage({ type: 'changed', data: lastChanged });
});
