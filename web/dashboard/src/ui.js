// Shared pieces of the views: the html template tag, the router, hooks
// for the live connection and for batching updates per animation frame,
// and small formatting helpers.

import { h } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import htm from 'htm';

import { live } from './gql.js';

export const html = htm.bind(h);

export const BASE = '/ui';

export const STATUSES = ['PENDING', 'PROCESSING', 'COMPLETED', 'FAILED', 'CANCELLED'];
export const FINAL = new Set(['COMPLETED', 'FAILED', 'CANCELLED']);

/** The fields every view reads of a job. */
export const JOB_FIELDS = 'id type status attempts maxAttempts error progress tags createdAt updatedAt startedAt finishedAt version priority runAt cancelRequested';

// ---- Routing: the URL is the state of which view is shown (deep links
// and reloads land where they were; the server answers every /ui/ path
// with the app).

const routeListeners = new Set();

/** Shows path (under /ui/) without a reload. */
export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  for (const fn of routeListeners) fn();
}

addEventListener('popstate', () => {
  for (const fn of routeListeners) fn();
});

// Links inside the app change the view without a reload.
addEventListener('click', (event) => {
  const a = event.target.closest?.('a[href]');
  if (!a || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || a.target) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !(url.pathname === BASE || url.pathname.startsWith(`${BASE}/`))) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
});

/** The current location, re-rendering the caller when it changes. */
export function useLocation() {
  const [, setTick] = useState(0);
  useEffect(() => {
    const fn = () => setTick((n) => n + 1);
    routeListeners.add(fn);
    return () => routeListeners.delete(fn);
  }, []);
  return { path: location.pathname, query: new URLSearchParams(location.search) };
}

// ---- The live connection.

/** The live connection's state, re-rendering the caller when it changes. */
export function useLiveState() {
  const [state, setState] = useState(live.state);
  useEffect(() => {
    const fn = () => setState(live.state);
    live.addEventListener('state', fn);
    // The state may have changed between the render and this effect.
    fn();
    return () => live.removeEventListener('state', fn);
  }, []);
  return state;
}

/** Calls fn after every reconnect of the live connection. */
export function useReconnected(fn) {
  const ref = useRef(fn);
  ref.current = fn;
  useEffect(() => {
    const handler = () => ref.current();
    live.addEventListener('reconnected', handler);
    return () => live.removeEventListener('reconnected', handler);
  }, []);
}

/**
 * Follows a subscription of the firehose while deps hold: onData gets each
 * result's data. When the server ends it for falling behind
 * (SLOW_SUBSCRIBER) it is made again and onResume is called (what the view
 * shows may have missed changes: read it again); another error goes to
 * onError.
 */
export function useFirehose(query, variables, { onData, onResume, onError }, deps) {
  const handlers = useRef({});
  handlers.current = { onData, onResume, onError };
  useEffect(() => {
    let stop = () => {};
    const subscribe = () => {
      stop = live.subscribe(query, variables, {
        next: (data) => data && handlers.current.onData(data),
        error: (err) => {
          if (err.code !== 'SLOW_SUBSCRIBER') {
            handlers.current.onError(err);
            return;
          }
          subscribe();
          handlers.current.onResume();
        },
      });
    };
    subscribe();
    return () => stop();
  }, deps);
}

/**
 * Returns push(item): items pushed are handed to apply(items) once per
 * animation frame, so a burst of events renders once. A hidden tab gets no
 * animation frames: there a timer (which browsers slow to about once a
 * second) hands them over instead, so they never pile up unbounded.
 */
export function useFrameBatch(apply) {
  const state = useRef({ items: [], frame: 0, timer: 0, apply });
  state.current.apply = apply;
  useEffect(
    () => () => {
      cancelAnimationFrame(state.current.frame);
      clearTimeout(state.current.timer);
    },
    [],
  );
  return (item) => {
    const s = state.current;
    s.items.push(item);
    if (s.items.length > 1) return; // a flush is due already
    const flush = () => {
      cancelAnimationFrame(s.frame);
      clearTimeout(s.timer);
      const items = s.items;
      s.items = [];
      s.apply(items);
    };
    s.frame = requestAnimationFrame(flush);
    s.timer = setTimeout(flush, 250);
  };
}

// ---- Formatting.

// One formatter: building one per call costs more than a whole row.
const timeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'short', timeStyle: 'medium' });

export function formatTime(t) {
  return t ? timeFormat.format(new Date(t)) : '—';
}

/** The end of an id: ids are UUIDv7, whose start is the same for jobs of one moment. */
export function shortId(id) {
  return id.length > 12 ? `…${id.slice(-8)}` : id;
}

export function StatusBadge({ status, cancelRequested }) {
  return html`<span class=${`badge s-${status.toLowerCase()}`} data-status=${status}>${status}${cancelRequested && status === 'PROCESSING' ? ' (cancelling)' : ''}</span>`;
}

/** A server error in words, with its code, and what it means here (hint) when the view knows. */
export function ErrorText({ error, id, hint }) {
  if (!error) return null;
  const code = error.code && error.code !== 'ERROR' ? html`<code class="code">${error.code}</code> ` : null;
  return html`<p class="error" role="alert" id=${id}>${code}${error.message}${hint && html` <span class="hint">${hint}</span>`}</p>`;
}

export function ProgressBar({ value, label }) {
  if (value == null) return null;
  return html`<progress max="100" value=${value} aria-label=${label || 'progress'}>${value}%</progress>`;
}

// ---- Long lists: a page renders at most LIST_LIMIT rows of a list that
// has no paging in the API (job types, periodic jobs), with a filter box
// to find the others, so that ten thousand of them cannot freeze it.

export const LIST_LIMIT = 200;

/**
 * The first `limit` items whose text (textOf) contains `filter`, ignoring
 * case, and how many match in all.
 */
export function firstMatching(items, filter, textOf, limit = LIST_LIMIT) {
  const needle = filter.trim().toLowerCase();
  const shown = [];
  let matched = 0;
  for (const item of items) {
    if (needle && !textOf(item).toLowerCase().includes(needle)) continue;
    matched++;
    if (shown.length < limit) shown.push(item);
  }
  return { shown, matched };
}

/**
 * The filter box of a long list and what it shows: "Showing 200 of 10,000
 * types" (of those matching the filter, when there is one).
 */
export function ListFilter({ id, label, noun, filter, onFilter, shown, matched, total }) {
  const all = `${total.toLocaleString()} ${noun}`;
  let summary;
  if (filter.trim()) summary = `${shown.toLocaleString()} of ${matched.toLocaleString()} matching “${filter.trim()}” shown (${all} in all)`;
  else if (shown < total) summary = `Showing ${shown.toLocaleString()} of ${all}: filter to find the others`;
  else summary = all;
  return html`<div class="list-filter">
    <label for=${id}>${label}</label>
    <input id=${id} type="search" value=${filter} onInput=${(e) => onFilter(e.target.value)} placeholder="any" autocomplete="off" />
    <span class="muted" id=${`${id}-summary`} aria-live="polite" data-shown=${shown} data-matched=${matched} data-total=${total}>${summary}</span>
  </div>`;
}
