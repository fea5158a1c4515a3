// Periodic jobs: their schedules, next runs and last job, live as their
// jobs are made, with pause/resume and delete. At most LIST_LIMIT rows,
// with a filter by name or job type to find the others.

import { useEffect, useRef, useState } from 'preact/hooks';

import { gql } from './gql.js';
import { BASE, ErrorText, ListFilter, StatusBadge, firstMatching, formatTime, html, useFirehose, useReconnected } from './ui.js';

const PERIODIC_FIELDS = `name schedule timezone paused nextRunAt lastRunAt source
  lastJob { id status }
  job { type payload priority maxAttempts timeoutSeconds tags }`;
const PERIODIC = `query Periodic { periodicJobs { ${PERIODIC_FIELDS} } }`;
const UPSERT = `mutation Upsert($input: PeriodicJobInput!) { upsertPeriodicJob(input: $input) { ${PERIODIC_FIELDS} } }`;
const DELETE = 'mutation Delete($name: String!) { deletePeriodicJob(name: $name) }';
// A new job of a periodic job (tagged periodic:<name>) means a tick: its
// row's next run and last job changed.
const TICKS = 'subscription Ticks { jobUpdated { tags version } }';

function inputOf(p, paused) {
  const own = `periodic:${p.name}`;
  const job = { type: p.job.type, priority: p.job.priority, maxAttempts: p.job.maxAttempts, tags: p.job.tags.filter((t) => t !== own) };
  if (p.job.payload !== null && p.job.payload !== undefined) job.payload = p.job.payload;
  if (p.job.timeoutSeconds != null) job.timeoutSeconds = p.job.timeoutSeconds;
  return { name: p.name, schedule: p.schedule, timezone: p.timezone, paused, job };
}

export function Periodic({ session, forbidden }) {
  const [list, setList] = useState(null);
  const [error, setError] = useState(null);
  const [asking, setAsking] = useState(null); // name to delete
  const [filter, setFilter] = useState('');
  const read = async () => {
    try {
      setList((await gql(PERIODIC)).periodicJobs);
      setError(null);
    } catch (err) {
      setError(err);
    }
  };
  const timer = useRef(0);
  const soon = () => {
    if (!timer.current) timer.current = setTimeout(() => { timer.current = 0; read(); }, 500);
  };
  useEffect(() => {
    read();
    return () => clearTimeout(timer.current);
  }, []);
  useFirehose(TICKS, {}, { onData: (d) => d.jobUpdated.version === 1 && d.jobUpdated.tags.some((t) => t.startsWith('periodic:')) && soon(), onResume: read, onError: setError }, []);
  useReconnected(read);

  const act = async (fn) => {
    setError(null);
    try {
      await fn();
      await read();
    } catch (err) {
      if (err.code === 'FORBIDDEN') forbidden();
      setError(err);
    }
  };
  const togglePause = (p) => act(() => gql(UPSERT, { input: inputOf(p, !p.paused) }));
  const remove = (name) => act(async () => {
    setAsking(null);
    await gql(DELETE, { name });
  });

  if (error?.code === 'FORBIDDEN' && !list)
    return html`<section><h1>Periodic jobs</h1><p class="muted" id="periodic-forbidden">Periodic jobs are shown to admins and viewers.</p></section>`;
  const { shown, matched } = firstMatching(list || [], filter, (p) => `${p.name} ${p.job.type}`);
  return html`<section aria-labelledby="periodic-title">
    <h1 id="periodic-title">Periodic jobs</h1>
    <${ErrorText} error=${error} />
    ${list &&
    html`<${ListFilter} id="periodic-filter" label="Filter by name or job type" noun=${list.length === 1 ? 'periodic job' : 'periodic jobs'} filter=${filter}
      onFilter=${setFilter} shown=${shown.length} matched=${matched} total=${list.length} />`}
    <div class="table-wrap">
      <table id="periodic-table">
        <thead><tr><th scope="col">Name</th><th scope="col">Schedule</th><th scope="col">Job type</th><th scope="col">Next run</th><th scope="col">Last job</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
        <tbody>
          ${shown.map(
            (p) => html`<tr key=${p.name} data-name=${p.name} data-paused=${String(p.paused)}>
              <td>${p.name}${p.source === 'FILE' ? html` <small class="muted">(PERIODIC_FILE)</small>` : ''}</td>
              <td><code>${p.schedule}</code> <small class="muted">${p.timezone}</small></td>
              <td>${p.job.type}</td>
              <td>${p.paused ? html`<span class="badge s-cancelled">PAUSED</span>` : formatTime(p.nextRunAt)}</td>
              <td>${p.lastJob ? html`<a href=${`${BASE}/jobs/${encodeURIComponent(p.lastJob.id)}`}><${StatusBadge} status=${p.lastJob.status} /></a> ${formatTime(p.lastRunAt)}` : p.lastRunAt ? formatTime(p.lastRunAt) : '—'}</td>
              <td>${session.canOperate && p.source !== 'FILE' &&
                (asking === p.name
                  ? html`<span role="alertdialog" aria-label=${`Delete ${p.name}?`}>Delete ${p.name}? <button type="button" class="delete-yes" onClick=${() => remove(p.name)}>Delete</button> <button type="button" onClick=${() => setAsking(null)}>Keep</button></span>`
                  : html`<button type="button" class="pause" onClick=${() => togglePause(p)}>${p.paused ? 'Resume' : 'Pause'}</button> <button type="button" class="delete" onClick=${() => setAsking(p.name)}>Delete…</button>`)}</td>
            </tr>`,
          )}
          ${list && list.length === 0 && html`<tr><td colspan="6" class="empty">No periodic job. Define them with upsertPeriodicJob or PERIODIC_FILE.</td></tr>`}
          ${list && list.length > 0 && matched === 0 && html`<tr><td colspan="6" class="empty">No periodic job matches “${filter.trim()}”.</td></tr>`}
        </tbody>
      </table>
    </div>
  </section>`;
}
