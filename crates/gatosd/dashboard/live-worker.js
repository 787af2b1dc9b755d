// The one job-event stream of this browser (ADR 0045): a SharedWorker holds a single
// EventSource on /api/v1/events/jobs and posts each event to every tab connected to it.
// The follows tabs ask for (a job's stream, a topic's tail) ride on the same stream.
importScripts('/assets/live-hub.js');

const ports = new Map(); // client id → port
let nextClient = 1;
let source = null;
let status = 'connecting';
let lastChanged = null; // the daemon's last fingerprints: a joining tab's baseline
const hub = new self.GatosHub((client, msg) => {
  const p = ports.get(client);
  if (p) try { p.postMessage(msg); } catch (_) { ports.delete(client); }
});

function broadcast(msg) {
  for (const [c, p] of ports) {
    try { p.postMessage(msg); } catch (_) { ports.delete(c); }
  }
}

function parsed(ev) {
  try { return JSON.parse(ev.data); } catch (_) { return null; }
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
  source.addEventListener('stream', (ev) => { const d = parsed(ev); if (d && d.stream) hub.setStream(d.stream); });
  source.addEventListener('follow', (ev) => hub.event(parsed(ev)));
  source.addEventListener('job', (ev) => {
    const data = parsed(ev);
    if (data) broadcast({ type: 'job', id: ev.lastEventId, data });
  });
  source.addEventListener('changed', (ev) => {
    const data = parsed(ev);
    if (!data) return;
    lastChanged = data;
    broadcast({ type: 'changed', data });
  });
  for (const name of ['gap', 'lagged', 'shutdown']) {
    source.addEventListener(name, () => broadcast({ type: name }));
  }
}

self.addEventListener('connect', (e) => {
  const port = e.ports[0];
  const client = nextClient++;
  ports.set(client, port);
  port.addEventListener('message', (m) => {
    const d = m.data;
    if (d === 'bye') { ports.delete(client); hub.drop(client); }
    if (d === 'reopen' && source === null) open();
    if (d && d.type === 'follow') { open(); hub.follow(client, d.local, d.what); }
    if (d && d.type === 'unfollow') hub.unfollow(client, d.local);
    if (ports.size === 0 && source) { source.close(); source = null; hub.setStream(null); }
  });
  port.start();
  open();
  port.postMessage({ type: 'status', status });
  if (lastChanged) port.postMessage({ type: 'changed', data: lastChanged });
});
