// Types: each job type with its counts, paused state and limits, live
// through jobTypeUpdated, with pause/resume and limit editing. At most
// LIST_LIMIT rows, with a filter by name to find the others.

import { useEffect, useRef, useState } from 'preact/hooks';

import { gql } from './gql.js';
import { BASE, ErrorText, ListFilter, firstMatching, html, useFirehose, useFrameBatch, useReconnected } from './ui.js';

const TYPE_FIELDS = 'name paused concurrency ratePerSecond rateBurst stats { pending processing completed failed cancelled }';
const TYPES = `query Types { jobTypes { ${TYPE_FIELDS} } }`;
const TYPE_UPDATED = `subscription TypeUpdated { jobTypeUpdated { ${TYPE_FIELDS} } }`;
// Any job change may change a type's counts.
const JOB_CHANGED = 'subscription JobChanged { jobUpdated { id } }';
const PAUSE = `mutation Pause($name: String!) { pauseJobType(name: $name) { ${TYPE_FIELDS} } }`;
const RESUME = `mutation Resume($name: String!) { resumeJobType(name: $name) { ${TYPE_FIELDS} } }`;
const LIMITS = `mutation Limits($name: String!, $concurrency: Int, $ratePerSecond: Float, $rateBurst: Int) {
  setJobTypeLimits(name: $name, concurrency: $concurrency, ratePerSecond: $ratePerSecond, rateBurst: $rateBurst) { ${TYPE_FIELDS} }
}`;

function numberOrNull(s) {
  return s.trim() === '' ? null : Number(s);
}

function Limits({ type, readOnly, forbidden, onSaved }) {
  const [editing, setEditing] = useState(false);
  const [form, setForm] = useState({});
  const [error, setError] = useState(null);
  const id = `limits-${type.name}`;
  const open = () => {
    setForm({
      concurrency: type.concurrency == null ? '' : String(type.concurrency),
      ratePerSecond: type.ratePerSecond == null ? '' : String(type.ratePerSecond),
      rateBurst: type.rateBurst == null ? '' : String(type.rateBurst),
    });
    setError(null);
    setEditing(true);
  };
  const save = async (e) => {
    e.preventDefault();
    try {
      const data = await gql(LIMITS, {
        name: type.name,
        concurrency: numberOrNull(form.concurrency),
        ratePerSecond: numberOrNull(form.ratePerSecond),
        rateBurst: numberOrNull(form.rateBurst),
      });
      onSaved(data.setJobTypeLimits);
      setEditing(false);
    } catch (err) {
      if (err.code === 'FORBIDDEN') forbidden();
      setError(err);
    }
  };
  const shown = [
    type.concurrency != null && `${type.concurrency} at once`,
    type.ratePerSecond != null && `${type.ratePerSecond}/s (burst ${type.rateBurst})`,
  ].filter(Boolean);
  if (!editing) {
    return html`<span>${shown.length ? shown.join(', ') : 'none'}</span>
      ${!readOnly && html` <button type="button" class="link" onClick=${open} aria-label=${`Edit the limits of ${type.name}`}>Edit</button>`}`;
  }
  const set = (k) => (e) => setForm({ ...form, [k]: e.target.value });
  return html`<form class="limits" onSubmit=${save} id=${id} novalidate>
    <label>At once <input type="number" min="1" step="1" value=${form.concurrency} onInput=${set('concurrency')} placeholder="no limit" name="concurrency" /></label>
    <label>Per second <input type="number" min="0" step="any" value=${form.ratePerSecond} onInput=${set('ratePerSecond')} placeholder="no limit" name="ratePerSecond" /></label>
    <label>Burst <input type="number" min="1" step="1" value=${form.rateBurst} onInput=${set('rateBurst')} placeholder="default" name="rateBurst" /></label>
    <button type="submit">Save</button>
    <button type="button" onClick=${() => setEditing(false)}>Cancel</button>
    <${ErrorText} error=${error} />
  </form>`;
}

export function Types({ session, forbidden }) {
  const [types, setTypes] = useState(null);
  const [error, setError] = useState(null);
  const [answer, setAnswer] = useState(null);
  const [filter, setFilter] = useState('');
  const timer = useRef(0);

  const read = async () => {
    try {
      setTypes((await gql(TYPES)).jobTypes);
      setError(null);
    } catch (err) {
      setError(err);
    }
  };
  const soon = () => {
    if (!timer.current) timer.current = setTimeout(() => { timer.current = 0; read(); }, 1000);
  };
  const put = (t) =>
    setTypes((list) => {
      if (!list) return list;
      const i = list.findIndex((x) => x.name === t.name);
      if (i < 0) return [...list, t].sort((a, b) => (a.name < b.name ? -1 : 1));
      const next = list.slice();
      next[i] = t;
      return next;
    });
  const push = useFrameBatch((changes) => changes.forEach(put));

  useEffect(() => {
    read();
    return () => clearTimeout(timer.current);
  }, []);
  useFirehose(TYPE_UPDATED, {}, { onData: (d) => push(d.jobTypeUpdated), onResume: read, onError: setError }, []);
  useFirehose(JOB_CHANGED, {}, { onData: soon, onResume: read, onError: setError }, []);
  useReconnected(read);

  const toggle = async (t) => {
    setAnswer(null);
    try {
      const data = await gql(t.paused ? RESUME : PAUSE, { name: t.name });
      put(data.pauseJobType || data.resumeJobType);
    } catch (err) {
      if (err.code === 'FORBIDDEN') forbidden();
      setAnswer(err);
    }
  };

  const { shown, matched } = firstMatching(types || [], filter, (t) => t.name);
  return html`<section aria-labelledby="types-title">
    <h1 id="types-title">Job types</h1>
    <${ErrorText} error=${error || answer} />
    ${types &&
    html`<${ListFilter} id="types-filter" label="Filter by name" noun=${types.length === 1 ? 'type' : 'types'} filter=${filter} onFilter=${setFilter}
      shown=${shown.length} matched=${matched} total=${types.length} />`}
    <div class="table-wrap">
      <table id="types-table">
        <thead><tr><th scope="col">Type</th><th scope="col">State</th><th scope="col" class="num">Pending</th><th scope="col" class="num">Running</th><th scope="col" class="num">Completed</th><th scope="col" class="num">Failed</th><th scope="col">Limits</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
        <tbody>
          ${shown.map(
            (t) => html`<tr key=${t.name} data-type=${t.name} data-paused=${String(t.paused)}>
              <td><a href=${`${BASE}/jobs?type=${encodeURIComponent(t.name)}`}>${t.name}</a></td>
              <td>${t.paused ? html`<span class="badge s-cancelled">PAUSED</span>` : html`<span class="badge s-completed">RUNNING</span>`}</td>
              <td class="num">${t.stats.pending}</td>
              <td class="num">${t.stats.processing}</td>
              <td class="num">${t.stats.completed}</td>
              <td class="num">${t.stats.failed}</td>
              <td><${Limits} type=${t} readOnly=${!session.canOperate} forbidden=${forbidden} onSaved=${put} /></td>
              <td>${session.canOperate && html`<button type="button" class="pause" onClick=${() => toggle(t)}>${t.paused ? 'Resume' : 'Pause'}</button>`}</td>
            </tr>`,
          )}
          ${types && types.length === 0 && html`<tr><td colspan="8" class="empty">No job type yet.</td></tr>`}
          ${types && types.length > 0 && matched === 0 && html`<tr><td colspan="8" class="empty">No type matches “${filter.trim()}”.</td></tr>`}
        </tbody>
      </table>
    </div>
  </section>`;
}
