// Jobs: a page of the jobs listing, newest first, with filters and
// cursor paging; rows change in place as jobUpdated events arrive, and a
// new job matching the filters appears at the top of the first page.
// Bulk cancel and retry act on everything the filters select.

import { Component } from 'preact';
import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';

import { gql } from './gql.js';
import {
  BASE,
  ErrorText,
  FINAL,
  JOB_FIELDS,
  ProgressBar,
  STATUSES,
  StatusBadge,
  formatTime,
  html,
  navigate,
  shortId,
  useFirehose,
  useFrameBatch,
  useReconnected,
} from './ui.js';

export const PAGE_SIZE = 20;

const LIST = `query Jobs($status: JobStatus, $type: String, $tag: String, $first: Int, $after: String) {
  jobs(status: $status, type: $type, tag: $tag, first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { ${JOB_FIELDS} } }
  }
}`;
const WATCH = `subscription Watch($type: String, $tag: String) { jobUpdated(type: $type, tag: $tag) { ${JOB_FIELDS} } }`;

// What a bulk operation can act on (the API's rule): jobs in these statuses.
const BULK = {
  cancel: { statuses: ['PENDING', 'PROCESSING'], verb: 'Cancel', done: 'cancelled', mutation: 'cancelJobs' },
  retry: { statuses: ['FAILED', 'CANCELLED'], verb: 'Retry', done: 'put back to pending', mutation: 'retryJobs' },
};

function filtersFrom(query) {
  const status = query.get('status') || '';
  return {
    status: STATUSES.includes(status) ? status : '',
    type: query.get('type') || '',
    tag: query.get('tag') || '',
  };
}

function variablesOf(f) {
  return { status: f.status || null, type: f.type || null, tag: f.tag || null };
}

function searchOf(f) {
  const p = new URLSearchParams();
  for (const k of ['status', 'type', 'tag']) if (f[k]) p.set(k, f[k]);
  const s = p.toString();
  return s ? `?${s}` : '';
}

/** How many jobs a bulk operation on the filters would touch (totalCount per status it acts on). */
async function countFor(op, f) {
  const statuses = BULK[op].statuses.filter((s) => !f.status || s === f.status);
  if (statuses.length === 0) return 0;
  const fields = statuses.map((s) => `${s}: jobs(status: ${s}, type: $type, tag: $tag, first: 1) { totalCount }`).join('\n');
  const data = await gql(`query Count($type: String, $tag: String) { ${fields} }`, { type: f.type || null, tag: f.tag || null });
  return statuses.reduce((n, s) => n + data[s].totalCount, 0);
}

function Filters({ filters, onApply }) {
  const [draft, setDraft] = useState(filters);
  useEffect(() => setDraft(filters), [filters.status, filters.type, filters.tag]);
  const set = (k) => (e) => setDraft({ ...draft, [k]: e.target.value.trim() });
  const submit = (e) => {
    e.preventDefault();
    onApply(draft);
  };
  return html`<form class="filters" onSubmit=${submit} aria-label="Filters">
    <label>Status
      <select id="filter-status" value=${draft.status} onChange=${(e) => onApply({ ...draft, status: e.target.value })}>
        <option value="">any</option>
        ${STATUSES.map((s) => html`<option value=${s}>${s.toLowerCase()}</option>`)}
      </select>
    </label>
    <label>Type <input id="filter-type" value=${draft.type} onInput=${set('type')} placeholder="any" /></label>
    <label>Tag <input id="filter-tag" value=${draft.tag} onInput=${set('tag')} placeholder="any" /></label>
    <button type="submit">Apply</button>
    ${(filters.status || filters.type || filters.tag) &&
    html`<button type="button" class="link" onClick=${() => onApply({ status: '', type: '', tag: '' })}>Clear</button>`}
  </form>`;
}

function Bulk({ filters, forbidden, onDone }) {
  // { op, count } while asking, { op, busy } while running.
  const [ask, setAsk] = useState(null);
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  const confirmRef = useRef(null);
  // The question takes the focus (its first button) as it appears, so the
  // keyboard answers it at once.
  useLayoutEffect(() => confirmRef.current?.querySelector('button')?.focus(), [ask?.op, ask?.count]);

  const prepare = async (op) => {
    setResult(null);
    setError(null);
    try {
      setAsk({ op, count: await countFor(op, filters) });
    } catch (err) {
      setError(err);
    }
  };
  const run = async () => {
    const { op } = ask;
    const m = BULK[op];
    setAsk({ ...ask, busy: true });
    let total = 0;
    try {
      const filter = variablesOf(filters);
      for (;;) {
        const data = await gql(`mutation Bulk($filter: JobFilter!) { ${m.mutation}(filter: $filter, limit: 1000) { count more } }`, { filter });
        total += data[m.mutation].count;
        if (!data[m.mutation].more || data[m.mutation].count === 0) break;
      }
      setResult(`${total} ${total === 1 ? 'job' : 'jobs'} ${m.done}.`);
      onDone();
    } catch (err) {
      if (err.code === 'FORBIDDEN') forbidden();
      setError(err);
      if (total) setResult(`${total} jobs ${m.done} before the error.`);
    }
    setAsk(null);
  };

  const what = [filters.status && `status ${filters.status.toLowerCase()}`, filters.type && `type “${filters.type}”`, filters.tag && `tag “${filters.tag}”`]
    .filter(Boolean)
    .join(', ');
  return html`<div class="bulk">
    <button type="button" id="bulk-cancel" onClick=${() => prepare('cancel')} disabled=${ask}>Cancel all matching…</button>
    <button type="button" id="bulk-retry" onClick=${() => prepare('retry')} disabled=${ask}>Retry all matching…</button>
    ${ask &&
    html`<div class="confirm" role="alertdialog" aria-labelledby="bulk-question" id="bulk-confirm" ref=${confirmRef}>
      <p id="bulk-question" data-count=${ask.count}>
        ${ask.count === 0
          ? `No ${BULK[ask.op].statuses.join(' or ').toLowerCase()} job matches${what ? ` ${what}` : ''}: nothing to ${ask.op}.`
          : `${BULK[ask.op].verb} ${ask.count} ${ask.count === 1 ? 'job' : 'jobs'} (${BULK[ask.op].statuses.join(' or ').toLowerCase()})${what ? ` matching ${what}` : ', all of them'}?`}
      </p>
      ${ask.count > 0 &&
      html`<button type="button" id="bulk-yes" onClick=${run} disabled=${ask.busy}>${BULK[ask.op].verb} ${ask.count}</button>`}
      <button type="button" id="bulk-no" onClick=${() => setAsk(null)} disabled=${ask.busy}>${ask.count ? 'Keep them' : 'Close'}</button>
    </div>`}
    ${result && html`<p class="ok" role="status" id="bulk-result">${result}</p>`}
    <${ErrorText} error=${error} />
  </div>`;
}

// A row renders again only when its job changed (events replace the
// job object of a row; other rows keep theirs).
class Row extends Component {
  shouldComponentUpdate(next) {
    return next.job !== this.props.job;
  }

  render({ job }) {
    return rowOf(job);
  }
}

function rowOf(job) {
  return html`<tr data-id=${job.id} data-status=${job.status} class=${`row s-${job.status.toLowerCase()}${FINAL.has(job.status) ? ' final' : ''}`}>
    <td class="id"><a href=${`${BASE}/jobs/${encodeURIComponent(job.id)}`} title=${job.id} aria-label=${`job ${job.id}`}>${shortId(job.id)}</a></td>
    <td>${job.type}</td>
    <td><${StatusBadge} status=${job.status} cancelRequested=${job.cancelRequested} />
      ${job.status === 'PROCESSING' && html` <${ProgressBar} value=${job.progress} label=${`progress of ${job.id}`} />`}</td>
    <td class="num">${job.attempts}/${job.maxAttempts}</td>
    <td class="err">${job.error || ''}</td>
    <td>${job.tags.join(', ')}</td>
    <td class="time"><time datetime=${job.createdAt}>${formatTime(job.createdAt)}</time></td>
  </tr>`;
}

export function Jobs({ query, session, forbidden }) {
  const filters = filtersFrom(query);
  const key = searchOf(filters);
  // Cursors of the pages before this one: [] on the first page.
  const [cursors, setCursors] = useState([]);
  const [page, setPage] = useState(null); // { rows, totalCount, hasNextPage, endCursor, after }
  const [error, setError] = useState(null);
  const [loading, setLoading] = useState(true);
  const current = useRef({ filters, after: null });
  const seq = useRef(0);

  const read = async (after = current.current.after) => {
    const n = ++seq.current;
    current.current = { filters, after };
    setLoading(true);
    try {
      const data = await gql(LIST, { ...variablesOf(filters), first: PAGE_SIZE, after });
      if (n !== seq.current) return;
      const c = data.jobs;
      // Events applied while the list was on its way may be newer than
      // what it read (a refresh after a bulk change races the jobs it
      // changed): a row keeps the newer version of its job.
      setPage((prev) => {
        const shown = new Map((prev?.rows ?? []).map((r) => [r.id, r]));
        const rows = c.edges.map((e) => {
          const had = shown.get(e.node.id);
          return { ...(had && had.version > e.node.version ? had : e.node), cursor: e.cursor };
        });
        return { rows, totalCount: c.totalCount, hasNextPage: c.pageInfo.hasNextPage, endCursor: c.pageInfo.endCursor, after };
      });
      setError(null);
    } catch (err) {
      if (n === seq.current) setError(err);
    }
    if (n === seq.current) setLoading(false);
  };

  // Events of a frame, applied at once: rows change in place; on the
  // first page a job not shown that matches the filters and is newer than
  // the newest row joins at the top; the page never grows past PAGE_SIZE.
  const push = useFrameBatch((events) => {
    setPage((p) => {
      if (!p) return p;
      const f = current.current.filters;
      const rows = p.rows.slice();
      const index = new Map(rows.map((r, i) => [r.id, i]));
      let added = 0;
      let newer = 0;
      let pushedOff = false;
      for (const j of events) {
        const i = index.get(j.id);
        if (i !== undefined) {
          if (j.version >= rows[i].version) rows[i] = { ...j, cursor: rows[i].cursor };
          continue;
        }
        const newest = rows[0];
        const matches = !f.status || j.status === f.status;
        if (p.after !== null) {
          // Not on the first page: say that newer jobs came.
          if (matches && j.version === 1) newer++;
          continue;
        }
        // Jobs made in one request can share their createdAt: the id
        // (UUIDv7, in the order they were made) tells which is newer.
        if (matches && (!newest || j.createdAt > newest.createdAt || (j.createdAt === newest.createdAt && j.id > newest.id))) {
          rows.unshift(j);
          if (rows.length > PAGE_SIZE) {
            rows.pop();
            pushedOff = true;
          }
          index.clear();
          rows.forEach((r, k) => index.set(r.id, k));
          added++;
        }
      }
      return { ...p, rows, totalCount: p.totalCount + added + newer, hasNextPage: p.hasNextPage || pushedOff, newer: (p.newer || 0) + newer };
    });
  });

  useEffect(() => {
    setCursors([]);
    setPage(null);
    read(null);
  }, [key]);
  useFirehose(WATCH, { type: filters.type || null, tag: filters.tag || null }, { onData: (data) => push(data.jobUpdated), onResume: () => read(), onError: setError }, [key]);
  useReconnected(() => read());

  const apply = (f) => navigate(`${BASE}/jobs${searchOf(f)}`);
  const next = () => {
    // Rows pushed off the page by new jobs come first on the next one.
    setCursors([...cursors, page.after]);
    read(page.rows[page.rows.length - 1]?.cursor ?? page.endCursor);
  };
  const prev = () => {
    const before = cursors.slice();
    const after = before.pop();
    setCursors(before);
    read(after);
  };
  const first = () => {
    setCursors([]);
    read(null);
  };

  const pageNo = cursors.length + 1;
  return html`<section aria-labelledby="jobs-title">
    <h1 id="jobs-title">Jobs</h1>
    <${Filters} filters=${filters} onApply=${apply} />
    ${session.canWrite && html`<${Bulk} filters=${filters} forbidden=${forbidden} onDone=${() => read()} />`}
    <${ErrorText} error=${error} />
    <p class="summary" aria-live="polite">
      ${page ? html`<span id="total" data-total=${page.totalCount}>${page.totalCount.toLocaleString()} ${page.totalCount === 1 ? 'job' : 'jobs'}</span>, page ${pageNo}` : 'Loading…'}
      ${loading && page ? ' (refreshing…)' : ''}
      ${page?.newer > 0 && html` <button type="button" class="link" id="newer" onClick=${first}>${page.newer} newer ${page.newer === 1 ? 'job' : 'jobs'}: show the first page</button>`}
    </p>
    <div class="table-wrap">
      <table id="jobs-table">
        <caption class="visually-hidden">Jobs, newest first</caption>
        <thead>
          <tr><th scope="col">ID</th><th scope="col">Type</th><th scope="col">Status</th><th scope="col">Attempts</th><th scope="col">Error</th><th scope="col">Tags</th><th scope="col">Created</th></tr>
        </thead>
        <tbody>
          ${page?.rows.map((job) => html`<${Row} key=${job.id} job=${job} />`)}
          ${page && page.rows.length === 0 && html`<tr><td colspan="7" class="empty">No job matches.</td></tr>`}
        </tbody>
      </table>
    </div>
    <nav class="pager" aria-label="Pages">
      <button type="button" id="page-first" onClick=${first} disabled=${cursors.length === 0}>First</button>
      <button type="button" id="page-prev" onClick=${prev} disabled=${cursors.length === 0}>Newer</button>
      <button type="button" id="page-next" onClick=${next} disabled=${!page?.hasNextPage}>Older</button>
    </nav>
  </section>`;
}
