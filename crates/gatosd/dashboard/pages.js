// Overview, topics (live tail), manifests (versions, diff, run), keys and the audit trail.
import { h, fill, api, qs, time, ulidTime, notice, pre } from './util.js';
import { onJobEvent, onChange, follow } from './live.js';
import { go } from './app.js';

function table(caption, columns, rows) {
  return h('div', { class: 'table-wrap' }, h('table', { class: 'grid' },
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows)));
}

/** Bars of counts per bucket, as SVG (no library). */
function bars(label, buckets, fails) {
  const w = 600; const ht = 80; const n = buckets.length;
  const max = Math.max(1, ...buckets);
  const bw = w / n;
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', `0 0 ${w} ${ht}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', `${label}: ${buckets.reduce((a, b) => a + b, 0)} finished, ${fails.reduce((a, b) => a + b, 0)} failed`);
  svg.setAttribute('class', 'chart');
  buckets.forEach((v, i) => {
    for (const [val, cls] of [[v, 'bar'], [fails[i], 'bar fail']]) {
      if (!val) continue;
      const r = document.createElementNS('http://www.w3.org/2000/svg', 'rect');
      const bh = (val / max) * (ht - 4);
      r.setAttribute('x', String(i * bw + 1)); r.setAttribute('width', String(Math.max(1, bw - 2)));
      r.setAttribute('y', String(ht - bh)); r.setAttribute('height', String(bh)); r.setAttribute('class', cls);
      svg.append(r);
    }
  });
  return h('figure', {}, svg, h('figcaption', {}, label));
}

const FINAL = ['succeeded', 'failed', 'cancelled', 'finished', 'completed'];
/** The most pages of 1,000 events the charts read at load (then they count live). */
const CHART_PAGES = 50;

/** Counts a job event at `at` (ms) into per-minute buckets: [ended, failed]. */
function countEvent(minutes, at, kind) {
  if (!FINAL.includes(kind)) return false;
  const k = Math.floor(at / 60000);
  const c = minutes.get(k) || [0, 0];
  c[0] += 1;
  if (kind === 'failed') c[1] += 1;
  minutes.set(k, c);
  return true;
}

/** Ended and failed jobs per minute over the last day, from gatos.jobs events. */
async function perMinute() {
  const minutes = new Map();
  let since = null; let pages = 0; let capped = false; let last = null;
  const first = new Date(Date.now() - 86400e3).toISOString();
  for (;;) {
    const page = await api(`/api/v1/topics/gatos.jobs/messages${qs(since ? { since, limit: 1000 } : { since_time: first, limit: 1000 })}`);
    for (const m of page.messages || []) { countEvent(minutes, ulidTime(m.ulid), (m.payload || {}).event); last = m.ulid; }
    pages += 1;
    if (page.end || !page.next_since) break;
    if (pages >= CHART_PAGES) { capped = true; break; }
    since = page.next_since;
  }
  return { minutes, capped, last };
}

/** `n` buckets over the last `spanMs` from per-minute counts. */
function series(minutes, spanMs, n) {
  const start = Date.now() - spanMs;
  const done = new Array(n).fill(0); const failed = new Array(n).fill(0);
  for (const [k, [d, f]] of minutes) {
    const i = Math.floor(((k * 60000 - start) / spanMs) * n);
    if (i < 0 || i >= n) continue;
    done[i] += d; failed[i] += f;
  }
  return { done, failed };
}

/** `/overview`. */
export async function overviewPage(el) {
  const [health, ready] = await Promise.all([api('/api/v1/health'), fetch('/readyz', { credentials: 'same-origin' }).then((r) => r.json()).catch(() => null)]);
  const running = await api('/api/v1/jobs?state=running&limit=100');
  const queues = h('div');
  const claims = h('div');
  const charts = h('div', { class: 'charts' });
  const doctor = h('div', {}, h('button', { type: 'button', onclick: runDoctor }, 'Run doctor checks'));
  const groups = h('div');
  function drawQueues(hh) {
    fill(queues, table('Queues', ['Queue', 'Pending', 'Running', 'Limit', 'Use'], hh.queues.map((q) => h('tr', {},
      h('td', {}, h('a', { href: `/jobs?queue=${encodeURIComponent(q.queue)}&state=pending` }, q.queue)),
      h('td', { class: 'num' }, q.pending),
      h('td', { class: 'num' }, h('a', { href: `/jobs?queue=${encodeURIComponent(q.queue)}&state=running` }, q.running ?? 0)),
      h('td', { class: 'num' }, q.max_pending ?? '∞'),
      h('td', {}, q.max_pending ? h('meter', { min: 0, max: q.max_pending, value: q.pending, 'aria-label': `${q.queue} use` }) : '—')))));
  }
  function drawClaims(list) {
    fill(claims, list.jobs.length === 0 ? h('p', { class: 'muted', id: 'no-claims' }, 'No job is running.')
      : table('Live claims', ['Job', 'Holder', 'Attempt', 'Last heartbeat', 'Lease until'], list.jobs.map((j) => h('tr', { 'data-job': j.id },
        h('td', {}, h('a', { href: `/jobs/${j.id}`, class: 'mono' }, j.id)), h('td', { class: 'holder' }, j.claim ? j.claim.worker : '—'),
        h('td', { class: 'num' }, j.claim ? j.claim.attempt : j.attempt),
        h('td', { class: 'hb', 'data-at': j.claim && j.claim.last_heartbeat_at }, j.claim ? time(j.claim.last_heartbeat_at) : '—'),
        h('td', { class: 'lease', 'data-at': j.claim && j.claim.lease_until }, j.claim ? time(j.claim.lease_until) : '—')))),
      list.next_cursor ? h('p', { class: 'muted' }, 'Showing the first 100 running jobs: ', h('a', { href: '/jobs?state=running' }, 'all running jobs')) : null);
  }
  async function rereadClaims() {
    try { drawClaims(await api('/api/v1/jobs?state=running&limit=100')); } catch (_) { /* shown next time */ }
  }
  const rejected = h('div', { id: 'rejected' });
  async function drawRejected() {
    try {
      const r = await api('/api/v1/sync/rejections?limit=50');
      fill(rejected, r.rejections.length === 0 ? h('p', { class: 'muted' }, 'No ref rejected.')
        : table('Rejected refs, newest first', ['Time', 'Remote', 'Ref', 'Code', 'Reason'], r.rejections.map((x) => h('tr', {},
          h('td', {}, time(x.at)), h('td', {}, x.remote), h('td', { class: 'mono ref' }, x.ref), h('td', { class: 'mono' }, x.code),
          h('td', {}, x.reason)))),
      r.more ? h('p', { class: 'muted' }, `${r.more} older rejections not shown (git gatos sync --rejected --limit 1000).`) : null,
      r.skipped ? h('p', { class: 'notice' }, `${r.skipped} unreadable lines of the rejection log skipped.`) : null);
    } catch (e) { notice(rejected, e.message, 'error'); }
  }
  async function runDoctor() {
    fill(doctor, h('p', { class: 'muted' }, 'Checking…'));
    try {
      const d = await api('/api/v1/doctor');
      const f = d.findings || [];
      fill(doctor, f.length === 0 ? h('p', { class: 'proof ok' }, h('strong', {}, '✔ No finding')) : table('Doctor findings', ['Severity', 'Code', 'Target', 'Finding', 'Fix'], f.map((x) => h('tr', {},
        h('td', {}, x.severity), h('td', { class: 'mono' }, x.code), h('td', { class: 'mono trunc', title: x.target }, x.target), h('td', {}, x.message), h('td', { class: 'mono' }, x.fix)))));
    } catch (e) { notice(doctor, e.message, 'error'); }
  }
  const yes = (v) => (v === null || v === undefined ? '—' : v ? 'yes' : 'no');
  function facts(pairs) {
    return h('dl', { class: 'facts' }, pairs.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
  }
  const maintenance = h('div');
  function drawMaintenance(r) {
    const m = r ? r.maintenance : null;
    const debt = m && m.debt;
    fill(maintenance, m ? facts([
      ['Automatic', yes(m.enabled)], ['Running', yes(m.running)], ['Last', time(m.last_at)], ['Last ok', yes(m.last_ok)],
      ['Archivable jobs', debt ? debt.archivable_jobs : '—'],
      ['Loose objects', debt ? `${debt.loose_objects} of ${debt.loose_objects_threshold}` : '—'],
      ['Packs', debt ? `${debt.packs} of ${debt.packs_threshold}` : '—'],
      ['Compaction due', debt ? yes(debt.compaction_due) : '—']]) : h('p', {}, '—'));
  }
  const readyz = () => fetch('/readyz', { credentials: 'same-origin' }).then((x) => x.json());
  const syncEl = h('div');
  function drawSync(r) {
    const sync = r ? r.sync : null;
    fill(syncEl, sync ? facts([
      ['Remote', sync.remote], ['Every', `${sync.interval_seconds} s`], ['Last', time(sync.last_at)], ['Last ok', yes(sync.last_ok)],
      ['Last error', sync.last_error || '—'], ['Failures in a row', sync.consecutive_failures], ['Runs', `${sync.runs_total} (${sync.failures_total} failed)`],
      ['Rejected refs', sync.rejected_total]]) : h('p', { class: 'muted' }, 'This daemon does not sync (gatosd --sync REMOTE).'));
  }
  async function rereadSync() {
    drawRejected();
    try { drawSync(await readyz()); } catch (_) { /* shown next time */ }
  }
  async function rereadMaintenance() {
    try { drawMaintenance(await readyz()); } catch (_) { /* shown next time */ }
  }
  async function drawGroups() {
    try {
      const topics = await api('/api/v1/topics');
      const rows = [];
      for (const t of topics.topics || []) {
        const cs = await api(`/api/v1/topics/${encodeURIComponent(t.topic)}/consumers`).catch(() => null);
        for (const c of (cs && (cs.checkpoints || cs.consumers)) || []) {
          rows.push(h('tr', { 'data-group': c.group, 'data-topic': t.topic }, h('td', {}, c.group),
            h('td', {}, h('a', { href: `/topics/${encodeURIComponent(t.topic)}` }, t.topic)), h('td', { class: 'num lag' }, c.lag ?? '—')));
        }
      }
      fill(groups, rows.length ? table('Consumer groups', ['Group', 'Topic', 'Lag'], rows) : h('p', { class: 'muted' }, 'No consumer group.'));
    } catch (e) { notice(groups, e.message, 'error'); }
  }
  drawSync(ready);
  drawMaintenance(ready);
  drawQueues(health);
  drawClaims(running);
  drawRejected();
  fill(el,
    h('h1', {}, 'Overview'),
    facts([
      ['Repository', h('span', { class: 'mono' }, health.repository)],
      ['Version', health.version],
      ['Up', `${Math.round(health.uptime_seconds / 60)} min`],
      ['Connections', `${health.connections} open, ${health.subscriptions} streams`],
      ['Ready', ready ? yes(ready.ready) : '?']]),
    h('div', { class: 'cols' },
      h('section', {}, h('h2', {}, 'Queues'), queues),
      h('section', {}, h('h2', {}, 'Claims'), claims)),
    h('section', {}, h('h2', {}, 'Throughput'), charts),
    h('div', { class: 'cols' },
      h('section', {}, h('h2', {}, 'Sync'), syncEl, h('h3', {}, 'Rejected refs'), rejected),
      h('section', { id: 'maintenance' }, h('h2', {}, 'Maintenance'), maintenance)),
    h('section', { id: 'groups' }, h('h2', {}, 'Consumer groups'), groups),
    h('section', {}, h('h2', {}, 'Doctor'), doctor));
  // The charts: a day of events read once, then counted live from the job events; drawn
  // again as they come, and each minute from memory so the bars move on with the clock.
  let counts = null;
  function drawCharts() {
    if (!counts) return;
    const oldest = Math.floor((Date.now() - 86400e3) / 60000);
    for (const k of counts.minutes.keys()) if (k < oldest) counts.minutes.delete(k);
    const hour = series(counts.minutes, 3600e3, 60);
    const day = series(counts.minutes, 86400e3, 48);
    fill(charts, bars('Last hour, per minute (failed in red)', hour.done, hour.failed), bars('Last day, per 30 minutes', day.done, day.failed),
      counts.capped ? h('p', { class: 'muted' }, `The day before this page opened is counted from its first ${CHART_PAGES * 1000} job events.`) : null);
    charts.dataset.ended = String(hour.done.reduce((a, b) => a + b, 0));
  }
  const minute = setInterval(drawCharts, 60000);
  // Events that come while the day is read wait; any the read already counted are skipped.
  let early = [];
  const countLive = (d) => !(d.ulid && counts.last && d.ulid <= counts.last)
    && countEvent(counts.minutes, d.ulid ? ulidTime(d.ulid) : Date.now(), d.event);
  (async () => {
    try {
      counts = await perMinute();
      for (const d of early) countLive(d);
      early = [];
      drawCharts();
    } catch (e) { notice(charts, e.message, 'error'); }
    await drawGroups();
  })();
  let timer = null;
  let chartTimer = null;
  const off = onJobEvent((m) => {
    const d = m.data || {};
    if (!counts) early.push(d);
    else if (countLive(d) && !chartTimer) chartTimer = setTimeout(() => { chartTimer = null; drawCharts(); }, 500);
    // Coalesce bursts of events into one re-read.
    if (timer) return;
    timer = setTimeout(async () => {
      timer = null;
      try { drawQueues(await api('/api/v1/health')); drawClaims(await api('/api/v1/jobs?state=running&limit=100')); } catch (_) { /* shown next time */ }
      // A sync that brings jobs brings their events: the rejections are read again too.
      drawRejected();
    }, 500);
  });
  // Heartbeats, takeovers, the daemon's sync, checkpoints and maintenance are not job
  // events: the daemon says on the same stream what moved (`event: changed`, ADR 0045),
  // and only that part is read again.
  const offChange = onChange((moved) => {
    if (moved.has('claims')) rereadClaims();
    if (moved.has('sync')) rereadSync();
    if (moved.has('groups') || moved.has('topics')) drawGroups();
    if (moved.has('maintenance')) rereadMaintenance();
  });
  return () => { off(); offChange(); clearInterval(minute); if (timer) clearTimeout(timer); if (chartTimer) clearTimeout(chartTimer); };
}

/**
 * Calls `draw()` again whenever the daemon says one of `parts` moved (`event: changed`);
 * a draw still running when the next change comes is followed by one more, not two.
 * Returns the unsubscribe.
 */
function redrawOn(parts, draw) {
  let running = null; let again = false;
  const run = async () => {
    if (running) { again = true; return; }
    running = (async () => { try { await draw(); } catch (_) { /* shown next time */ } })();
    await running; running = null;
    if (again) { again = false; run(); }
  };
  return onChange((moved) => { if (parts.some((p) => moved.has(p))) run(); });
}

/** `/topics`: every topic, drawn again when any moves. */
export async function topicsPage(el) {
  const body = h('div');
  async function draw() {
    const t = await api('/api/v1/topics');
    fill(body, table('Topics', ['Topic', 'Messages', 'Last seq', 'Last message'], (t.topics || []).map((r) => h('tr', { 'data-topic': r.topic },
      h('td', {}, h('a', { href: `/topics/${encodeURIComponent(r.topic)}` }, r.topic)), h('td', { class: 'num count' }, r.count),
      h('td', { class: 'num last-seq' }, r.last_seq), h('td', {}, time(r.last_at))))));
  }
  await draw();
  fill(el, h('h1', {}, 'Topics'), body);
  return redrawOn(['topics'], draw);
}

/** `/topics/NAME`: a live tail with pause and jump-to-seq, and each message's detail. */
export async function topicPage(el, url, session, [topic]) {
  const list = h('tbody');
  const detail = h('div', { class: 'detail', 'aria-live': 'polite' });
  const rate = h('span', { class: 'muted' });
  const pause = h('button', { type: 'button', 'aria-pressed': 'false' }, 'Pause');
  const seq = h('input', { id: 'seq', type: 'number', min: '0', inputmode: 'numeric', 'data-search': true });
  const jump = h('form', { class: 'inline' }, h('label', { for: 'seq' }, 'Jump to seq '), seq, h('button', { type: 'submit' }, 'Go'));
  let paused = false; const held = []; let unfollow = null; const seen = [];
  function add(m) {
    seen.push(Date.now());
    while (seen.length && seen[0] < Date.now() - 60000) seen.shift();
    fill(rate, `${seen.length} messages in the last minute`);
    const tr = h('tr', { tabindex: '0', 'data-seq': m.seq },
      h('td', { class: 'num' }, m.seq), h('td', {}, time(ulidTime(m.ulid))), h('td', { class: 'mono trunc' }, m.ulid),
      h('td', { class: 'mono trunc' }, JSON.stringify(m.payload)));
    const show = () => fill(detail, h('h2', {}, `Message ${m.seq}`), h('dl', { class: 'facts' },
      h('dt', {}, 'ULID'), h('dd', { class: 'mono' }, m.ulid), h('dt', {}, 'Commit'), h('dd', { class: 'mono' }, m.commit),
      h('dt', {}, 'Content-Id'), h('dd', { class: 'mono' }, m.content_id)), h('h3', {}, 'Envelope'), pre(m));
    tr.addEventListener('click', show);
    tr.addEventListener('keydown', (e) => { if (e.key === 'Enter') show(); });
    list.prepend(tr);
    while (list.children.length > 500) list.lastChild.remove();
  }
  // The tail rides on the browser's one stream (ADR 0045): no connection of its own.
  function open(sinceSeq) {
    if (unfollow) unfollow();
    fill(list);
    const what = { topic };
    if (sinceSeq !== null && sinceSeq !== undefined) what.since_seq = sinceSeq;
    unfollow = follow(what, (event, m) => {
      if (event === 'message') { if (paused) held.push(m); else add(m); }
      if (event === 'error') notice(detail, `The tail stopped: ${(m && (m.detail || m.title)) || 'the stream failed'}.`, 'error');
    });
  }
  pause.addEventListener('click', () => {
    paused = !paused;
    pause.textContent = paused ? `Resume` : 'Pause';
    pause.setAttribute('aria-pressed', String(paused));
    if (!paused) while (held.length) add(held.shift());
  });
  jump.addEventListener('submit', (e) => { e.preventDefault(); open(seq.value === '' ? null : Math.max(0, Number(seq.value) - 1)); });
  const about = () => api('/api/v1/topics').then((t) => (t.topics || []).find((r) => r.topic === topic)).catch(() => null);
  const info = await about();
  const sizeEl = h('span', { id: 'topic-size' });
  const drawSize = (i) => fill(sizeEl, i ? `${i.count} messages, seq ${i.first_seq}–${i.last_seq}. ` : '');
  drawSize(info);
  fill(el, h('h1', {}, 'Topic ', h('span', { class: 'mono' }, topic)),
    h('p', {}, sizeEl, rate),
    h('div', { class: 'bulk' }, pause, jump),
    h('div', { class: 'split' },
      h('div', { class: 'table-wrap' }, h('table', { class: 'grid', id: 'tail' }, h('caption', {}, 'Live tail, newest first'),
        h('thead', {}, h('tr', {}, ['Seq', 'Time', 'ULID', 'Payload'].map((c) => h('th', { scope: 'col' }, c)))), list)),
      detail));
  open(info ? Math.max(0, info.last_seq - 20) : null);
  // The size and range: drawn again when the topic list moves (a prune, other writers).
  const off = redrawOn(['topics'], async () => drawSize(await about()));
  return () => { off(); if (unfollow) unfollow(); };
}

/** `/manifests`: drawn again when a manifest gets a version. */
export async function manifestsPage(el) {
  const body = h('div');
  async function draw() {
    const r = await api('/api/v1/manifests');
    fill(body, (r.manifests || []).length === 0 ? h('p', { class: 'muted' }, 'No manifest (git gatos manifest put).')
      : table('Manifests, latest versions', ['Name', 'Version', 'Queue', 'Command'], r.manifests.map((m) => h('tr', { 'data-manifest': m.name },
        h('td', {}, h('a', { href: `/manifests/${encodeURIComponent(m.name)}` }, m.name)), h('td', { class: 'num version' }, m.version),
        h('td', {}, m.manifest.queue), h('td', { class: 'mono trunc' }, (m.manifest.command || []).join(' '))))));
  }
  await draw();
  fill(el, h('h1', {}, 'Manifests'), body);
  return redrawOn(['manifests'], draw);
}

/** A line diff of two texts (longest common subsequence; manifests are small). */
function diff(a, b) {
  const x = a.split('\n'); const y = b.split('\n');
  const dp = Array.from({ length: x.length + 1 }, () => new Array(y.length + 1).fill(0));
  for (let i = x.length - 1; i >= 0; i -= 1) for (let j = y.length - 1; j >= 0; j -= 1) dp[i][j] = x[i] === y[j] ? dp[i + 1][j + 1] + 1 : Math.max(dp[i + 1][j], dp[i][j + 1]);
  const out = []; let i = 0; let j = 0;
  while (i < x.length || j < y.length) {
    if (i < x.length && j < y.length && x[i] === y[j]) { out.push(h('span', {}, `  ${x[i]}\n`)); i += 1; j += 1; }
    else if (j < y.length && (i >= x.length || dp[i][j + 1] >= dp[i + 1][j])) { out.push(h('ins', {}, `+ ${y[j]}\n`)); j += 1; }
    else { out.push(h('del', {}, `- ${x[i]}\n`)); i += 1; }
  }
  return h('pre', { class: 'diff', tabindex: '0' }, out);
}

/** `/manifests/NAME`: versions, a diff between two, and a run. */
export async function manifestPage(el, url, session, [name]) {
  const latest = await api(`/api/v1/manifests/${encodeURIComponent(name)}`);
  const versions = [];
  for (let v = 1; v <= latest.version; v += 1) versions.push(v);
  const a = url.searchParams.get('a') || String(Math.max(1, latest.version - 1));
  const b = url.searchParams.get('b') || String(latest.version);
  const [ma, mb] = await Promise.all([a, b].map((v) => api(`/api/v1/manifests/${encodeURIComponent(name)}${qs({ version: v })}`)));
  const pick = (id, label, value) => h('div', { class: 'field' }, h('label', { for: id }, label),
    h('select', { id, name: id }, versions.map((v) => h('option', { value: v, selected: String(v) === value }, `v${v}`))));
  const form = h('form', { class: 'filters' }, pick('a', 'From', a), pick('b', 'To', b), h('div', { class: 'field' }, h('button', { type: 'submit' }, 'Compare')));
  form.addEventListener('submit', (e) => { e.preventDefault(); go(`/manifests/${encodeURIComponent(name)}${qs({ a: form.elements.a.value, b: form.elements.b.value })}`); });
  const status = h('div');
  // A run of version b, as stored, or with fields changed: then it is an enqueue of that
  // version's spec with the changes, labelled manifest=NAME@vN.
  const pairs = (text) => Object.fromEntries(text.split('\n').map((l) => l.trim()).filter(Boolean).map((l) => {
    const i = l.indexOf('='); return i < 0 ? [l, ''] : [l.slice(0, i).trim(), l.slice(i + 1)];
  }));
  const ov = h('form', { class: 'filters', 'aria-label': 'Run with overrides' },
    h('div', { class: 'field' }, h('label', { for: 'o-queue' }, 'Queue'), h('input', { id: 'o-queue', name: 'queue', placeholder: mb.manifest.queue })),
    h('div', { class: 'field' }, h('label', { for: 'o-priority' }, 'Priority'), h('input', { id: 'o-priority', name: 'priority', type: 'number', placeholder: String(mb.manifest.priority) })),
    h('div', { class: 'field' }, h('label', { for: 'o-after' }, 'Run after'), h('input', { id: 'o-after', name: 'after', type: 'datetime-local' })),
    h('div', { class: 'field' }, h('label', { for: 'o-env' }, 'Environment (KEY=VALUE lines)'), h('textarea', { id: 'o-env', name: 'env', rows: '2' })),
    h('div', { class: 'field' }, h('label', { for: 'o-labels' }, 'Labels (key=value lines)'), h('textarea', { id: 'o-labels', name: 'labels', rows: '2' })),
    h('div', { class: 'field' }, h('button', { type: 'submit' }, `Run v${b}`)));
  ov.addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = ov.elements;
    const changed = f.queue.value || f.priority.value || f.after.value || f.env.value.trim() || f.labels.value.trim();
    if (!confirm(`Run ${name} v${b}${changed ? ' with the changes' : ''}?`)) return;
    try {
      let r;
      if (!changed) {
        r = await api(`/api/v1/manifests/${encodeURIComponent(name)}/runs`, { method: 'POST', body: { version: Number(b) } });
      } else {
        const spec = mb.manifest;
        const body = {
          manifest: spec,
          env: { ...spec.env, ...pairs(f.env.value) },
          labels: { ...spec.labels, ...pairs(f.labels.value), manifest: `${name}@v${b}` },
        };
        if (f.queue.value) body.queue = f.queue.value;
        if (f.priority.value) body.priority = Number(f.priority.value);
        if (f.after.value) body.run_after = new Date(f.after.value).toISOString();
        r = await api('/api/v1/jobs', { method: 'POST', body });
      }
      go(`/jobs/${r.id}`);
    } catch (err) { notice(status, err.message, 'error'); }
  });
  const run = session.read_only ? null : h('section', { 'aria-labelledby': 'h-run' }, h('h2', { id: 'h-run' }, `Run v${b}`),
    h('p', { class: 'muted' }, 'Leave the fields empty to run the version as stored.'), ov);
  // A version stored while the page is shown joins the pickers and the header; what the
  // page compares, and what is typed in the run form, stay as they are.
  const head = h('p', { id: 'latest' });
  const drawHead = (l) => fill(head, `Latest version ${l.version}, content id `, h('code', {}, l.content_id));
  drawHead(latest);
  let shown = latest.version;
  const off = redrawOn(['manifests'], async () => {
    const l = await api(`/api/v1/manifests/${encodeURIComponent(name)}`);
    drawHead(l);
    for (; shown < l.version; shown += 1) {
      for (const sel of [form.elements.a, form.elements.b]) sel.append(h('option', { value: shown + 1 }, `v${shown + 1}`));
    }
  });
  fill(el, h('h1', {}, 'Manifest ', h('span', { class: 'mono' }, name)),
    head,
    form,
    h('h2', {}, `v${a} → v${b}`), diff(JSON.stringify(ma.manifest, null, 2), JSON.stringify(mb.manifest, null, 2)),
    run, status);
  return off;
}

/** `/keys`: drawn again when a key is published, trusted or revoked. */
export async function keysPage(el) {
  const body = h('div');
  async function draw() {
    const r = await api('/api/v1/keys');
    fill(body, table('Keys this node knows', ['Key', 'This node', 'Trusted', 'Published', 'Revoked'], (r.keys || []).map((k) => h('tr', { 'data-key': k.key },
      h('td', { class: 'mono trunc', title: k.key }, k.key), h('td', {}, k.current ? 'yes' : ''), h('td', { class: 'trusted' }, k.trusted ? 'yes' : h('span', { title: `git gatos keys trust ${k.key}` }, 'no')),
      h('td', {}, k.published ? 'yes' : ''), h('td', { class: 'revoked' }, k.revoked || '')))));
  }
  await draw();
  fill(el, h('h1', {}, 'Keys and revocations'), body);
  return redrawOn(['keys'], draw);
}

/** `/audit`: the trail, filtered by action and start time. */
export async function auditPage(el, url) {
  const p = url.searchParams;
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter the audit trail' },
    h('div', { class: 'field' }, h('label', { for: 'f-action' }, 'Action'), h('input', { id: 'f-action', name: 'action', value: p.get('action') || '', placeholder: 'jobs.cancel', 'data-search': true })),
    h('div', { class: 'field' }, h('label', { for: 'f-from' }, 'From'), h('input', { id: 'f-from', name: 'from', type: 'datetime-local', value: p.get('from') || '' })),
    h('div', { class: 'field' }, h('button', { type: 'submit' }, 'Apply'), ' ', h('a', { href: '/audit' }, 'Clear')));
  form.addEventListener('submit', (e) => { e.preventDefault(); go(`/audit${qs({ action: form.elements.action.value, from: form.elements.from.value })}`); });
  const from = p.get('from') ? new Date(p.get('from')).toISOString() : '';
  const q = { action: p.get('action'), limit: 100 };
  if (p.get('since')) q.since = p.get('since'); else if (from) q.since_time = from;
  const show = (v) => (v === null || v === undefined ? '—' : typeof v === 'string' ? v : JSON.stringify(v));
  const body = h('div');
  // A new record lands on the last page: this page is drawn again when the trail grows
  // (a full page only gains its "next" link).
  async function draw() {
    const page = await api(`/api/v1/audit${qs(q)}`);
    const next = page.next_since ? h('a', { href: `/audit${qs({ ...Object.fromEntries(p), since: page.next_since })}`, rel: 'next' }, 'Next page →') : null;
    fill(body,
      table('Privileged actions, oldest first', ['When', 'Actor', 'Action', 'Target', 'Before → after'], (page.records || []).map((r) => h('tr', { 'data-ulid': r.ulid },
        h('td', {}, time(ulidTime(r.ulid))), h('td', {}, show(r.actor)), h('td', { class: 'action' }, show(r.action)), h('td', { class: 'mono trunc' }, show(r.target)),
        h('td', { class: 'mono trunc' }, `${show(r.before)} → ${show(r.after)}`)))),
      (page.records || []).length ? null : h('p', { class: 'muted' }, 'No record matches.'),
      h('nav', { class: 'pager', 'aria-label': 'Pages' }, next));
  }
  await draw();
  fill(el, h('h1', {}, 'Audit trail'), form, body);
  return redrawOn(['audit'], draw);
}
