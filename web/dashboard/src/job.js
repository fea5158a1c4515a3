// A job: payload and result, a timeline of its statuses, its attempts
// and errors, live progress, and cancel and retry with the server's answer.

import { useEffect, useState } from 'preact/hooks';

import { gql, live } from './gql.js';
import { BASE, ErrorText, ProgressBar, StatusBadge, formatTime, html, useFrameBatch, useReconnected } from './ui.js';

const FIELDS = `id type status attempts maxAttempts error progress tags createdAt updatedAt startedAt finishedAt version
  priority runAt cancelRequested payload result idempotencyKey owner timeoutSeconds errors { attempt message at }`;
const GET = `query Job($id: ID!) { job(id: $id) { ${FIELDS} } }`;
const WATCH = `subscription WatchJob($id: ID!) { jobUpdated(id: $id) { ${FIELDS} } }`;
const CANCEL = `mutation Cancel($id: ID!) { cancelJob(id: $id) { ${FIELDS} } }`;
const RETRY = `mutation Retry($id: ID!) { retryJob(id: $id) { ${FIELDS} } }`;

function Json({ value, id }) {
  if (value === undefined || value === null) return html`<p class="muted" id=${id}>none</p>`;
  return html`<pre class="json" id=${id} tabindex="0">${JSON.stringify(value, null, 2)}</pre>`;
}

/**
 * The statuses the job went through as far as its fields tell (created,
 * each failed attempt, the current attempt's start, its end), joined with
 * the changes seen live while the page was open.
 */
function timeline(job, seen) {
  const steps = [{ at: job.createdAt, status: 'PENDING', what: 'created' }];
  for (const e of job.errors) steps.push({ at: e.at, status: 'FAILED', what: `attempt ${e.attempt} failed` });
  if (job.startedAt) steps.push({ at: job.startedAt, status: 'PROCESSING', what: `attempt ${job.attempts} started` });
  if (job.finishedAt) steps.push({ at: job.finishedAt, status: job.status, what: job.status.toLowerCase() });
  for (const s of seen) {
    if (!steps.some((x) => x.status === s.status && Math.abs(Date.parse(x.at) - Date.parse(s.at)) < 1000)) steps.push(s);
  }
  return steps.sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
}

export function Job({ id, session, forbidden }) {
  const [job, setJob] = useState(undefined); // null: no such job
  const [error, setError] = useState(null);
  const [seen, setSeen] = useState([]);
  const [answer, setAnswer] = useState(null); // { ok, text } or { error }
  const [busy, setBusy] = useState(false);
  const [gone, setGone] = useState(false);

  const take = (j) =>
    setJob((old) => {
      if (old && j.version < old.version) return old;
      if (old && j.status !== old.status) setSeen((s) => [...s, { at: j.updatedAt, status: j.status, what: `now ${j.status.toLowerCase()}` }].slice(-50));
      return j;
    });
  const push = useFrameBatch((events) => take(events[events.length - 1]));

  const read = async () => {
    try {
      const data = await gql(GET, { id });
      setJob((old) => (old && data.job && data.job.version < old.version ? old : data.job));
      setError(null);
    } catch (err) {
      setError(err);
    }
  };

  // Bumped to follow the job again once a retry restarts it (the
  // subscription ends at a final status).
  const [watchGen, setWatchGen] = useState(0);
  useEffect(() => {
    read();
  }, [id]);
  useEffect(
    () =>
      live.subscribe(WATCH, { id }, {
        next: (data) => data && push(data.jobUpdated),
        error: (err) => err.code !== 'NOT_FOUND' && setError(err),
      }),
    [id, watchGen],
  );
  useReconnected(read);

  const act = async (name, mutation) => {
    setBusy(true);
    setAnswer(null);
    try {
      const data = await gql(mutation, { id });
      const j = data[name];
      take(j);
      setAnswer({
        ok: true,
        text:
          name === 'cancelJob'
            ? j.status === 'CANCELLED'
              ? 'Cancelled.'
              : 'Cancellation requested: the job stops when its handler returns.'
            : 'Back to pending: it runs again.',
      });
      if (name === 'retryJob') setWatchGen((g) => g + 1);
    } catch (err) {
      if (err.code === 'FORBIDDEN') forbidden();
      // The job changed where this page could not see it: show it as it is.
      if (err.code === 'CONFLICT') {
        read();
        setWatchGen((g) => g + 1);
      }
      setAnswer({ error: err });
      // Deleted (deleteJob, or RETENTION) since this page read it: no
      // event says so, so the page learns it here.
      if (err.code === 'NOT_FOUND') setGone(true);
    }
    setBusy(false);
  };

  if (job === undefined) return html`<section><h1>Job</h1>${error ? html`<${ErrorText} error=${error} />` : html`<p>Loading…</p>`}</section>`;
  if (job === null)
    return html`<section><h1>Job not found</h1><p id="not-found">There is no job ${id} (or you may not see it). <a href=${`${BASE}/jobs`}>All jobs</a></p></section>`;

  const canCancel = !gone && (job.status === 'PENDING' || (job.status === 'PROCESSING' && !job.cancelRequested));
  const canRetry = !gone && (job.status === 'FAILED' || job.status === 'CANCELLED');
  return html`<section aria-labelledby="job-title" class="job" data-id=${job.id}>
    <p><a href=${`${BASE}/jobs`}>← Jobs</a></p>
    <h1 id="job-title">${job.type} <small class="mono">${job.id}</small></h1>
    <p class="status-line">
      <span id="job-status"><${StatusBadge} status=${job.status} cancelRequested=${job.cancelRequested} /></span>
      ${job.status === 'PROCESSING' && html`<${ProgressBar} value=${job.progress ?? 0} label="progress" /> <span id="job-progress">${job.progress ?? 0}%</span>`}
    </p>
    <${ErrorText} error=${error} />
    ${session.canWrite &&
    html`<div class="actions">
      <button type="button" id="job-cancel" onClick=${() => act('cancelJob', CANCEL)} disabled=${busy || !canCancel}>Cancel</button>
      <button type="button" id="job-retry" onClick=${() => act('retryJob', RETRY)} disabled=${busy || !canRetry}>Retry</button>
      <span id="job-answer" aria-live="polite">
        ${answer?.ok && html`<span class="ok">${answer.text}</span>`}
        ${answer?.error &&
        html`<${ErrorText} error=${answer.error} hint=${gone ? 'The job no longer exists: it was deleted after this page showed it. What is shown is how it was then.' : undefined} />`}
      </span>
    </div>`}
    ${job.error && html`<h2>Last error</h2><pre class="error-text" id="job-error">${job.error}</pre>`}
    <dl class="facts">
      <dt>Attempts</dt><dd id="job-attempts">${job.attempts} of ${job.maxAttempts}</dd>
      <dt>Priority</dt><dd>${job.priority}</dd>
      <dt>Run at</dt><dd>${formatTime(job.runAt)}</dd>
      <dt>Timeout</dt><dd>${job.timeoutSeconds ? `${job.timeoutSeconds} s` : 'server default'}</dd>
      <dt>Tags</dt><dd>${job.tags.length ? job.tags.join(', ') : '—'}</dd>
      <dt>Idempotency key</dt><dd>${job.idempotencyKey || '—'}</dd>
      ${job.owner && html`<dt>Owner</dt><dd>${job.owner}</dd>`}
      <dt>Version</dt><dd>${job.version}</dd>
    </dl>
    <h2>Timeline</h2>
    <ol class="timeline" id="job-timeline">
      ${timeline(job, seen).map((s) => html`<li><time datetime=${s.at}>${formatTime(s.at)}</time> <${StatusBadge} status=${s.status} /> ${s.what}</li>`)}
    </ol>
    <div class="two">
      <div><h2>Payload</h2><${Json} value=${job.payload} id="job-payload" /></div>
      <div><h2>Result</h2><${Json} value=${job.result} id="job-result" /></div>
    </div>
    <h2>Errors</h2>
    ${job.errors.length === 0
      ? html`<p class="muted">No failed attempt.</p>`
      : html`<table id="job-errors">
          <thead><tr><th scope="col">Attempt</th><th scope="col">At</th><th scope="col">Message</th></tr></thead>
          <tbody>${job.errors.map((e) => html`<tr><td class="num">${e.attempt}</td><td>${formatTime(e.at)}</td><td class="err">${e.message}</td></tr>`)}</tbody>
        </table>`}
  </section>`;
}
