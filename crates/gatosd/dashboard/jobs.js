// The jobs table (filters in the URL, cursor pages from the job index, bulk actions) and
// a job's page (spec, claim-chain timeline, live logs, outputs, proof).
import { h, fill, api, qs, time, ulidTime, stateBadge, notice, pre } from './util.js';
import { onJobEvent, onChange, follow as followLive } from './live.js';
import { go } from './app.js';

const FILTERS = ['queue', 'state', 'capability', 'enqueuer', 'since', 'until', 'search', 'all'];
const STATES = ['pending', 'running', 'succeeded', 'failed', 'cancelled'];
const FINAL = new Set(['succeeded', 'failed', 'cancelled']);
/** The most jobs one bulk action touches. */
export const BULK_CAP = 500;

/** The jobs.list query of the page's URL. */
function listQuery(params, cursor, limit) {
  const search = (params.get('search') || '').trim();
  const q = {
    queue: params.get('queue'), state: params.get('state'), capability: params.get('capability'),
    enqueuer: params.get('enqueuer'), since: toRfc3339(params.get('since')), until: toRfc3339(params.get('until')),
    all: params.get('all') === '1' ? 'true' : '', cursor, limit,
  };
  if (search) {
    if (search.includes('=') || search.startsWith('label:')) q.label = search.replace(/^label:/, '');
    else q.id_prefix = search.toUpperCase();
  }
  return q;
}

function toRfc3339(local) {
  if (!local) return '';
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString();
}

function field(label, name, value, attrs = {}) {
  const id = `f-${name}`;
  return h('div', { class: 'field' }, h('label', { for: id }, label), h('input', { id, name, value: value || '', ...attrs }));
}

function row(job, selected, onToggle) {
  const cmd = (job.manifest.command || []).concat(job.manifest.args || []).join(' ');
  const box = h('input', { type: 'checkbox', 'aria-label': `Select job ${job.id}`, checked: selected.has(job.id) });
  box.addEventListener('change', () => onToggle(job.id, box.checked));
  return h('tr', { 'data-id': job.id },
    h('td', { class: 'act' }, box),
    h('td', {}, h('a', { href: `/jobs/${job.id}`, class: 'mono' }, job.id)),
    h('td', {}, stateBadge(job.state)),
    h('td', {}, job.queue),
    h('td', { class: 'num' }, job.attempt),
    h('td', {}, time(ulidTime(job.id))),
    h('td', { class: 'enqueuer' }, enqueuerCell(job.enqueuer)),
    h('td', { class: 'trunc mono', title: cmd }, cmd));
}

/** Who enqueued a job (from the job catalog): its actor, else its key, linked to the jobs
 * it enqueued; the key and whether this node trusts it on hover. */
function enqueuerCell(e) {
  if (!e) return h('span', { class: 'muted' }, '—');
  const who = e.actor || e.key;
  if (!who) return h('span', { class: 'muted', title: 'no valid enqueue signature' }, 'unsigned');
  const hover = `${e.key || 'no key'}${e.key ? (e.trusted ? ' (trusted here)' : ' (not trusted here)') : ''}`;
  return h('a', { href: `/jobs${qs({ enqueuer: who })}`, title: hover, class: e.trusted ? '' : 'untrusted' }, who, e.trusted ? '' : ' ⚠');
}

/** `/jobs`: the table. */
export async function jobsPage(el, url, session) {
  const p = url.searchParams;
  const selected = new Set();
  const status = h('div', { class: 'status-line' });
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter jobs' },
    field('Queue', 'queue', p.get('queue')),
    h('div', { class: 'field' }, h('label', { for: 'f-state' }, 'State'),
      h('select', { id: 'f-state', name: 'state' }, h('option', { value: '' }, 'any'),
        STATES.map((s) => h('option', { value: s, selected: p.get('state') === s }, s)))),
    field('Capability', 'capability', p.get('capability')),
    field('Enqueuer', 'enqueuer', p.get('enqueuer'), { placeholder: 'cli:alice or ed25519:…' }),
    field('From', 'since', p.get('since'), { type: 'datetime-local' }),
    field('Until', 'until', p.get('until'), { type: 'datetime-local' }),
    field('Id or label', 'search', p.get('search'), { placeholder: 'id prefix, or key=value', 'data-search': true }),
    h('div', { class: 'field check' }, h('input', { id: 'f-all', name: 'all', type: 'checkbox', value: '1', checked: p.get('all') === '1' }),
      h('label', { for: 'f-all' }, 'include archived')),
    h('div', { class: 'field' }, h('button', { type: 'submit' }, 'Apply'), ' ', h('a', { href: '/jobs' }, 'Clear')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = {};
    for (const k of FILTERS) {
      const v = form.elements[k];
      if (!v) continue;
      if (v.type === 'checkbox') { if (v.checked) q[k] = '1'; } else if (v.value) q[k] = v.value;
    }
    go(`/jobs${qs(q)}`);
  });
  const cursor = p.get('cursor');
  const page = await api(`/api/v1/jobs${qs(listQuery(p, cursor, 50))}`);
  const tbody = h('tbody', {}, page.jobs.map((j) => row(j, selected, toggle)));
  const fresh = h('div', { role: 'status', 'aria-live': 'polite' });
  let newCount = 0;
  function toggle(id, on) { if (on) selected.add(id); else selected.delete(id); }
  const next = page.next_cursor
    ? h('a', { href: `/jobs${qs({ ...Object.fromEntries(p), cursor: page.next_cursor })}`, rel: 'next' }, 'Next page →') : null;
  const first = cursor ? h('a', { href: `/jobs${qs({ ...Object.fromEntries([...p].filter(([k]) => k !== 'cursor')) })}` }, '← First page') : null;
  const bulk = session.read_only ? null : h('div', { class: 'bulk', role: 'group', 'aria-label': 'Bulk actions' },
    h('button', { type: 'button', onclick: () => act('cancel', [...selected]) }, 'Cancel selected'),
    h('button', { type: 'button', onclick: () => act('retry', [...selected]) }, 'Retry selected'),
    h('button', { type: 'button', class: 'danger', onclick: () => actAll('cancel') }, 'Cancel all matching…'),
    h('button', { type: 'button', onclick: () => actAll('retry') }, 'Retry all matching…'));

  async function act(verb, ids) {
    if (ids.length === 0) { notice(status, 'Select jobs first.'); return; }
    if (ids.length > BULK_CAP) { notice(status, `At most ${BULK_CAP} jobs at once.`, 'error'); return; }
    if (!confirm(`${verb === 'cancel' ? 'Cancel' : 'Retry'} ${ids.length} job${ids.length === 1 ? '' : 's'}?`)) return;
    let ok = 0; const failed = [];
    for (const id of ids) {
      try { await api(`/api/v1/jobs/${id}/${verb}`, { method: 'POST', body: {} }); ok += 1; } catch (e) { failed.push(`${id}: ${e.message}`); }
      notice(status, `${verb}: ${ok} done, ${failed.length} refused, of ${ids.length}`);
    }
    notice(status, `${verb}: ${ok} done${failed.length ? `; refused: ${failed.slice(0, 5).join('; ')}` : ''}`, failed.length ? 'error' : 'info');
    render();
  }

  async function actAll(verb) {
    const ids = [];
    let c = null;
    do {
      const pg = await api(`/api/v1/jobs${qs(listQuery(p, c, 500))}`);
      for (const j of pg.jobs) {
        if (verb === 'cancel' && !FINAL.has(j.state)) ids.push(j.id);
        if (verb === 'retry' && (j.state === 'failed' || j.state === 'cancelled')) ids.push(j.id);
      }
      c = pg.next_cursor;
    } while (c && ids.length <= BULK_CAP);
    if (ids.length > BULK_CAP) { notice(status, `More than ${BULK_CAP} jobs match; narrow the filter.`, 'error'); return; }
    await act(verb, ids);
  }

  function render() { go(location.pathname + location.search, { replace: true }); }

  fill(el,
    h('h1', {}, 'Jobs'),
    form,
    bulk,
    status,
    fresh,
    h('div', { class: 'table-wrap' }, h('table', { class: 'grid' },
      h('caption', { class: 'sr' }, 'Jobs, oldest first'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, h('span', { class: 'sr' }, 'Select')), ['Id', 'State', 'Queue', 'Attempt', 'Enqueued', 'Enqueuer', 'Command'].map((c) => h('th', { scope: 'col' }, c)))),
      tbody)),
    page.jobs.length === 0 ? h('p', { class: 'muted' }, 'No job matches.') : null,
    h('nav', { class: 'pager', 'aria-label': 'Pages' }, first, ' ', next));

  // Live: a job in the table is read again when an event names it; new jobs are counted.
  return onJobEvent(async (m) => {
    const ev = m.data;
    const tr = tbody.querySelector(`tr[data-id="${ev.job}"]`);
    if (tr) {
      try { tr.replaceWith(row(await api(`/api/v1/jobs/${ev.job}`), selected, toggle)); } catch (_) { /* gone */ }
    } else if (ev.event === 'enqueued') {
      newCount += 1;
      fill(fresh, h('p', { class: 'notice' }, `${newCount} new job${newCount === 1 ? '' : 's'} since this page was loaded. `,
        h('a', { href: location.pathname + location.search }, 'Show')));
    }
  });
}

function proofView(proof, job) {
  if (!proof || (!proof.poe && !proof.key && !proof.code)) return h('p', { class: 'muted' }, 'No proof yet (the job has no successful result).');
  if (proof.verified) {
    return h('div', { class: 'proof ok', 'data-proof': 'verified' }, h('strong', {}, '✔ Verified'), ' — signed by ', h('code', {}, proof.key));
  }
  if (proof.code === 'UntrustedKey') {
    return h('div', { class: 'proof warn', 'data-proof': 'untrusted' },
      h('strong', {}, '⚠ Valid, but the key is not trusted here'),
      h('p', {}, 'Signed by ', h('code', {}, proof.key || '?'), '. To trust it on this node:'),
      h('pre', { class: 'cmd' }, `git gatos keys trust ${proof.key || 'KEY'}`));
  }
  return h('div', { class: 'proof bad', 'data-proof': 'invalid' }, h('strong', {}, '✘ Invalid'), ' — ',
    proof.code || '', ': ', proof.error || '', proof.key ? [' (key ', h('code', {}, proof.key), ')'] : null,
    h('p', {}, `Job ${job.id}`));
}

/** Heartbeats of one attempt shown at most; the rest are counted in one line. */
const HEARTBEATS_SHOWN = 25;

const ENDS = {
  succeeded: 'succeeded', failed: 'failed', timeout: 'timed out', lost: 'given back by its worker (lost)', cancelled: 'cancelled',
};

/**
 * The claim chain as a timeline, oldest first: the enqueue; per attempt its claim (or its
 * takeover: from whom, and why — the lease the previous holder let expire), its
 * heartbeats, its end (released for a retry, failed, cancelled, closed with the result);
 * a lease that ran out with nobody taking over; the result.
 */
function timelineItems(job, attempts) {
  const li = (kind, at, ...rest) => h('li', { class: `ev ev-${kind}`, 'data-kind': kind }, at !== undefined ? [time(at), ' '] : null, ...rest);
  const out = [li('enqueued', ulidTime(job.id), h('strong', {}, 'enqueued'),
    job.enqueuer ? ` by ${job.enqueuer.actor || job.enqueuer.key}` : '')];
  const now = Date.now();
  attempts.forEach((a, i) => {
    const steps = [...(a.chain || [])].reverse();
    const prev = i > 0 ? attempts[i - 1] : null;
    const prevLast = prev && prev.chain && prev.chain[0];
    const heartbeats = steps.filter((x) => x.state === 'heartbeat');
    let hbShown = 0;
    for (const st of steps) {
      if (st.state === 'running') {
        if (prevLast && (prevLast.state === 'running' || prevLast.state === 'heartbeat')) {
          out.push(li('takeover', st.at, h('strong', {}, `attempt ${a.attempt} taken over`), ` by ${a.worker} from ${prev.worker} (attempt ${prev.attempt}): `,
            'its lease expired at ', time(prevLast.lease_until), ' with no heartbeat', ' · lease until ', time(st.lease_until)));
        } else {
          out.push(li('claimed', st.at, h('strong', {}, `attempt ${a.attempt} claimed`), ` by ${a.worker}`, ' · lease until ', time(st.lease_until)));
        }
      } else if (st.state === 'heartbeat') {
        hbShown += 1;
        const skipped = heartbeats.length - HEARTBEATS_SHOWN;
        if (skipped > 0 && hbShown > 5 && hbShown <= 5 + skipped) {
          if (hbShown === 6) out.push(li('heartbeats', undefined, `… ${skipped} more heartbeats of attempt ${a.attempt}`));
          continue;
        }
        out.push(li('heartbeat', st.at, h('strong', {}, 'heartbeat'), ` from ${a.worker} (attempt ${a.attempt})`, ' · lease until ', time(st.lease_until)));
      } else {
        const how = ENDS[a.outcome] || a.outcome || 'ended';
        const code = a.exit_code !== null && a.exit_code !== undefined ? ` (exit ${a.exit_code})` : '';
        const what = st.state === 'released'
          ? [h('strong', {}, `attempt ${a.attempt} ${how}`), code, a.outcome === 'cancelled' ? '' : ' · released: the job may run again']
          : [h('strong', {}, `attempt ${a.attempt} ${how}`), code, ' · closed with the result'];
        out.push(li(st.state === 'released' ? `released-${a.outcome || 'other'}` : 'closed', st.at, ...what));
      }
    }
    const last = a.chain && a.chain[0];
    const isLatest = i === attempts.length - 1;
    if (isLatest && last && (last.state === 'running' || last.state === 'heartbeat') && job.state !== 'running'
      && Date.parse(last.lease_until) < now) {
      out.push(li('lease-expired', last.lease_until, h('strong', {}, `lease of attempt ${a.attempt} expired`), ` (${a.worker} sent no heartbeat in time)`));
    }
  });
  if (job.result) {
    out.push(li('result', undefined, h('strong', {}, `result: ${job.result.status}`),
      job.result.exit_code !== null && job.result.exit_code !== undefined ? ` (exit ${job.result.exit_code})` : '', ' · ', h('code', {}, job.result.commit)));
  }
  if (job.state === 'cancelled' && !(attempts.length && attempts[attempts.length - 1].outcome === 'cancelled')) {
    out.push(li('cancelled', undefined, h('strong', {}, 'cancelled'), job.ended && job.ended.by ? ` by ${job.ended.by}` : ''));
  }
  return out;
}

/** `/jobs/ID`: one job, live while it runs. */
export async function jobPage(el, url, session, [id]) {
  let job = await api(`/api/v1/jobs/${encodeURIComponent(id)}`);
  const head = h('div');
  const proofEl = h('div', { 'aria-live': 'polite' });
  const timeline = h('ol', { class: 'timeline', 'aria-label': 'Claim chain' });
  const logs = { stdout: h('pre', { class: 'log', tabindex: '0', 'aria-label': 'stdout' }), stderr: h('pre', { class: 'log err', tabindex: '0', 'aria-label': 'stderr' }) };
  const follow = h('input', { type: 'checkbox', id: 'follow', checked: true });
  const status = h('div');

  async function loadProof() {
    if (job.state !== 'succeeded' && job.state !== 'failed') { fill(proofEl, proofView(null, job)); return; }
    try { fill(proofEl, proofView(await api(`/api/v1/jobs/${job.id}/proof`), job)); } catch (e) { fill(proofEl, h('p', { class: 'notice error' }, e.message)); }
  }
  function actions() {
    if (session.read_only) return null;
    const out = [];
    if (!FINAL.has(job.state)) out.push(h('button', { type: 'button', class: 'danger', onclick: () => doAct('cancel') }, 'Cancel job'));
    if (job.state === 'failed' || job.state === 'cancelled') out.push(h('button', { type: 'button', onclick: () => doAct('retry') }, 'Retry job'));
    return out.length ? h('div', { class: 'bulk' }, out) : null;
  }
  async function doAct(verb) {
    if (!confirm(`${verb === 'cancel' ? 'Cancel' : 'Retry'} job ${job.id}?`)) return;
    try {
      const r = await api(`/api/v1/jobs/${job.id}/${verb}`, { method: 'POST', body: {} });
      if (verb === 'retry' && r && r.id) { go(`/jobs/${r.id}`); return; }
      job = await api(`/api/v1/jobs/${job.id}`);
      drawHead();
    } catch (e) { notice(status, e.message, 'error'); }
  }
  function drawHead() {
    const spec = { ...job.manifest };
    fill(head,
      h('h1', {}, 'Job ', h('span', { class: 'mono' }, job.id), ' ', h('span', { id: 'job-state' }, stateBadge(job.state))),
      h('dl', { class: 'facts' },
        h('dt', {}, 'Queue'), h('dd', {}, job.queue),
        h('dt', {}, 'Attempt'), h('dd', {}, job.attempt),
        h('dt', {}, 'Enqueued'), h('dd', {}, time(ulidTime(job.id))),
        h('dt', {}, 'Enqueuer'), h('dd', {}, job.enqueuer ? (job.enqueuer.actor || job.enqueuer.key) : '—'),
        h('dt', {}, 'Claim'), h('dd', {}, job.claim ? [job.claim.worker, ' · attempt ', job.claim.attempt, ' · lease until ', time(job.claim.lease_until), ' · ', job.claim.state] : '—'),
        h('dt', {}, 'Result'), h('dd', {}, job.result ? [job.result.status, job.result.exit_code !== null && job.result.exit_code !== undefined ? ` (exit ${job.result.exit_code})` : '', ' · ', h('code', {}, job.result.commit)] : '—'),
        h('dt', {}, 'Ended'), h('dd', {}, job.ended ? JSON.stringify(job.ended) : '—'),
        h('dt', {}, 'Outputs'), h('dd', {}, (spec.outputs || []).length ? spec.outputs.join(', ') : '—'),
        h('dt', {}, 'Secrets'), h('dd', {}, (spec.secret_refs || []).length ? spec.secret_refs.map((s) => h('code', {}, s)) : '—')),
      actions(),
      job.waiting && job.waiting.length ? h('div', { class: 'notice' }, h('strong', {}, 'Waiting: '), job.waiting.map((w) => w.detail).join('; ')) : null);
    loadProof();
  }
  drawHead();
  const specDetails = h('details', {}, h('summary', {}, 'Spec'), pre(job.manifest));
  fill(el, head, status,
    h('section', { 'aria-labelledby': 'h-proof' }, h('h2', { id: 'h-proof' }, 'Proof'), proofEl),
    h('section', { 'aria-labelledby': 'h-tl' }, h('h2', { id: 'h-tl' }, 'Timeline'), timeline),
    h('section', { 'aria-labelledby': 'h-logs' }, h('h2', { id: 'h-logs' }, 'Logs'),
      h('div', { class: 'field check' }, follow, h('label', { for: 'follow' }, 'follow')),
      h('h3', {}, 'stdout'), logs.stdout, h('h3', {}, 'stderr'), logs.stderr),
    h('section', {}, specDetails));

  // The timeline, from the job's claim chain (`jobs.attempts`): read again when an event
  // names the job, and when the daemon says live claims changed (a heartbeat or a
  // takeover, which are not events on gatos.jobs: `event: changed`, ADR 0045).
  let attempts = [];
  async function loadTimeline() {
    try { attempts = (await api(`/api/v1/jobs/${job.id}/attempts`)).attempts || []; } catch (e) { notice(status, e.message, 'error'); return; }
    fill(timeline, timelineItems(job, attempts));
  }
  const offChange = onChange((moved) => { if (moved.has('claims') && job.state === 'running') refresh(); });
  loadTimeline();
  // The job's own stream (its state, its events, its log, its end), followed on the
  // browser's one stream: no connection of its own (ADR 0045).
  const decoder = (chunk) => (chunk.encoding === 'base64' ? atob(chunk.data) : chunk.data);
  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
  const on = {
    state(j) { if (!same(j, job)) { job = j; drawHead(); } el.dataset.live = 'true'; },
    job() { refresh(); },
    log(c) {
      const target = logs[c.stream] || logs.stdout;
      target.append(decoder(c));
      if (follow.checked) target.scrollTop = target.scrollHeight;
    },
    end(j) { if (j) { job = j; drawHead(); } loadTimeline(); },
    error(p) { notice(status, `The live view stopped: ${(p && (p.detail || p.title)) || 'the stream failed'}. Reload the page to follow again.`, 'error'); },
  };
  const unfollow = followLive({ job: job.id }, (event, data) => { if (on[event]) on[event](data); });
  // An event of the job (claimed, retry scheduled, …) changes its row and its chain: read
  // both again, once per burst.
  let refreshing = null;
  function refresh() {
    if (refreshing) return;
    refreshing = api(`/api/v1/jobs/${job.id}`).then((j) => { if (!same(j, job)) { job = j; drawHead(); } return loadTimeline(); })
      .catch(() => {}).finally(() => { refreshing = null; });
  }
  return () => { offChange(); unfollow(); delete el.dataset.live; };
}
