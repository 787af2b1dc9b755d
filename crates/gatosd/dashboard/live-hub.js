// The follows of a browser's one job-event stream (ADR 0045): a job's stream or a topic's
// tail asked for by any tab rides on the stream the shared worker (or the leading tab)
// holds, so no tab opens another connection. Loaded by live-worker.js (importScripts) and
// by live.js (for the leading tab when there is no SharedWorker).
//
// `post(client, msg)` hands a tab its follow's events: {type: 'follow', local, event, id,
// data}. The daemon names the stream in its first event (`stream`); follows are started
// with POST /api/v1/events/jobs/STREAM/follows and ended with DELETE …/follows/F. When
// the stream reconnects it has a new name, and every follow starts again after the last
// id it delivered; so does a follow the daemon ended as `lagged`.
self.GatosHub = class {
  constructor(post) {
    this.post = post;
    this.stream = null;
    this.follows = new Map(); // `${client}:${local}` → {client, local, what, last, fid}
    this.byFid = new Map(); // the daemon's follow id → key
    this.early = new Map(); // events of a follow whose POST has not answered yet
  }

  /** The stream's (new) name: every follow starts (again) on it. */
  setStream(id) {
    this.stream = id;
    this.byFid.clear();
    this.early.clear();
    for (const [key, f] of this.follows) { f.fid = null; this.start(key); }
  }

  follow(client, local, what) {
    const key = `${client}:${local}`;
    this.follows.set(key, { client, local, what, last: null, fid: null });
    this.start(key);
  }

  unfollow(client, local) {
    const key = `${client}:${local}`;
    const f = this.follows.get(key);
    this.follows.delete(key);
    if (f && f.fid) { this.byFid.delete(f.fid); this.end(this.stream, f.fid); }
  }

  /** A tab went away: its follows end. */
  drop(client) {
    for (const f of [...this.follows.values()]) if (f.client === client) this.unfollow(client, f.local);
  }

  /** An `event: follow` of the stream. */
  event(d) {
    if (!d || typeof d.follow !== 'string') return;
    const key = this.byFid.get(d.follow);
    if (key === undefined) {
      // The POST that started it has not answered yet: keep its first events (bounded).
      const q = this.early.get(d.follow) || [];
      if (q.length < 1000) q.push(d);
      this.early.set(d.follow, q);
      return;
    }
    this.deliver(key, d);
  }

  deliver(key, d) {
    const f = this.follows.get(key);
    if (!f) return;
    if (d.event === 'lagged') {
      // The tab read too slowly: start again where the daemon says.
      if (d.data && d.data.next_since) f.last = d.data.next_since;
      this.byFid.delete(f.fid);
      f.fid = null;
      this.start(key);
      return;
    }
    if (d.id) f.last = d.id;
    this.post(f.client, { type: 'follow', local: f.local, event: d.event, id: d.id, data: d.data });
    if (d.event === 'end' || d.event === 'error') { this.follows.delete(key); this.byFid.delete(f.fid); }
  }

  start(key) {
    const f = this.follows.get(key);
    if (!f || !this.stream) return;
    const stream = this.stream;
    const body = { ...f.what };
    if (f.last) { body.since = f.last; delete body.since_seq; delete body.since_time; }
    fetch(`/api/v1/events/jobs/${stream}/follows`, {
      method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
    }).then(async (r) => {
      const j = await r.json().catch(() => null);
      if (stream !== this.stream) return; // the stream reconnected meanwhile: started again there
      if (this.follows.get(key) !== f) { if (r.ok && j) this.end(stream, j.follow); return; }
      if (!r.ok) {
        this.follows.delete(key);
        this.post(f.client, { type: 'follow', local: f.local, event: 'error', data: j });
        return;
      }
      f.fid = j.follow;
      this.byFid.set(j.follow, key);
      const early = this.early.get(j.follow) || [];
      this.early.delete(j.follow);
      for (const d of early) this.deliver(key, d);
    }).catch(() => { /* the stream is down: its reconnect starts every follow again */ });
  }

  end(stream, fid) {
    if (!stream || !fid) return;
    fetch(`/api/v1/events/jobs/${stream}/follows/${encodeURIComponent(fid)}`, { method: 'DELETE', credentials: 'same-origin' }).catch(() => {});
  }
};
