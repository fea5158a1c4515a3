// Overview: counts by status, live, and the throughput of the last
// minutes (completed and failed per second) as an SVG chart.

import { useEffect, useRef, useState } from 'preact/hooks';

import { gql } from './gql.js';
import { BASE, ErrorText, STATUSES, html, useFirehose, useFrameBatch, useReconnected } from './ui.js';

const STATS = 'query Stats { stats { pending processing completed failed cancelled } }';
// Jobs that finished lately, to draw the minutes before the page opened.
// The API lists jobs newest first and at most 500 at a time, with no
// filter by finish time: with more in the window than that, the chart
// starts where what was read starts (see `from`).
const RECENT_MAX = 500;
const RECENT = `query Recent {
  completed: jobs(status: COMPLETED, first: ${RECENT_MAX}) { pageInfo { hasNextPage } nodes { id finishedAt } }
  failed: jobs(status: FAILED, first: ${RECENT_MAX}) { pageInfo { hasNextPage } nodes { id finishedAt } }
}`;
const FINISHED = 'subscription Finished { jobUpdated { id status finishedAt } }';

const WINDOW_S = 300; // the chart's five minutes
const BUCKET_S = 5; // one point per five seconds
const BUCKETS = WINDOW_S / BUCKET_S;

/**
 * Finished jobs per bucket over the window. `seen` keeps the jobs counted
 * (so the listing and the events never count one twice) and is pruned
 * with the window, so it holds at most the window's jobs. `from` is the
 * time from which every finished job is counted: the window's start when
 * the listing held them all, else the finish of the oldest job it gave
 * (earlier ones were not read); the events count everything after.
 */
function newSeries() {
  return { seen: new Map(), from: Infinity };
}

function record(series, id, status, finishedAt) {
  if (status !== 'COMPLETED' && status !== 'FAILED') return;
  const at = Date.parse(finishedAt);
  if (!at || Date.now() - at > WINDOW_S * 1000 || series.seen.has(id)) return;
  series.seen.set(id, { at, failed: status === 'FAILED' });
}

/**
 * Counts what the listing of recent jobs gave. The first listing sets
 * `from`; one read again (after a reconnect) can only move it later, past
 * what it left out.
 */
function backfill(series, data) {
  let from = 0;
  for (const [status, list] of [['COMPLETED', data.completed], ['FAILED', data.failed]]) {
    for (const j of list.nodes) record(series, j.id, status, j.finishedAt);
    if (list.pageInfo.hasNextPage) {
      const oldest = Math.min(...list.nodes.map((j) => Date.parse(j.finishedAt) || Infinity));
      if (oldest !== Infinity) from = Math.max(from, oldest);
    }
  }
  series.from = series.from === Infinity ? from : Math.max(series.from, from);
}

/**
 * Jobs per second in each bucket, oldest first; null for a bucket that
 * starts before `from` (not all of its jobs were read), or for all of them
 * until the listing has been read.
 */
function buckets(series, now) {
  const completed = new Array(BUCKETS).fill(0);
  const failed = new Array(BUCKETS).fill(0);
  for (const [id, { at, failed: f }] of series.seen) {
    const age = (now - at) / 1000;
    if (age > WINDOW_S) {
      series.seen.delete(id);
      continue;
    }
    const i = BUCKETS - 1 - Math.min(BUCKETS - 1, Math.max(0, Math.floor(age / BUCKET_S)));
    (f ? failed : completed)[i]++;
  }
  const known = (i) => now - (BUCKETS - i) * BUCKET_S * 1000 >= series.from;
  const rate = (n, i) => (known(i) ? n / BUCKET_S : null);
  const from = Number.isFinite(series.from) && series.from > now - WINDOW_S * 1000 ? series.from : null;
  return { completed: completed.map(rate), failed: failed.map(rate), from };
}

const clock = new Intl.DateTimeFormat(undefined, { timeStyle: 'medium' });

function Chart({ completed, failed, from }) {
  const W = 600;
  const H = 160;
  const drawn = (values) => values.filter((v) => v !== null);
  const max = Math.max(1, ...drawn(completed), ...drawn(failed));
  const x = (i) => ((i / (BUCKETS - 1)) * W).toFixed(1);
  const points = (values) =>
    values.map((v, i) => (v === null ? null : `${x(i)},${(H - (v / max) * (H - 10)).toFixed(1)}`)).filter(Boolean).join(' ');
  const last = (values) => (values[values.length - 1] === null ? '—' : values[values.length - 1].toFixed(1));
  const total = (values) => Math.round(drawn(values).reduce((a, b) => a + b, 0) * BUCKET_S);
  // The buckets not drawn: before the first one all of whose jobs are known.
  const firstKnown = completed.findIndex((v) => v !== null);
  const unknownW = firstKnown < 0 ? W : firstKnown === 0 ? 0 : Number(x(firstKnown));
  const span = from ? `since ${clock.format(from)}` : 'over the last five minutes';
  return html`<figure class="chart" data-from=${from ? new Date(from).toISOString() : undefined} data-drawn=${drawn(completed).length}>
    <svg viewBox=${`0 0 ${W} ${H + 20}`} role="img" aria-labelledby="chart-title">
      <title id="chart-title">Jobs finished per second ${span}: ${total(completed)} completed, ${total(failed)} failed</title>
      ${unknownW > 0 &&
      html`<rect x="0" y="10" width=${unknownW} height=${H - 10} class="unknown" />
        <text x=${Math.max(4, unknownW / 2)} y=${H / 2 + 5} class="tick" text-anchor=${unknownW > 100 ? 'middle' : 'start'}>not read</text>`}
      <line x1="0" y1=${H} x2=${W} y2=${H} class="axis" />
      <line x1="0" y1="10" x2=${W} y2="10" class="grid" />
      <text x="4" y="22" class="tick">${max.toFixed(1)}/s</text>
      <text x="0" y=${H + 16} class="tick">−5 min</text>
      <text x=${W} y=${H + 16} class="tick" text-anchor="end">now</text>
      <polyline points=${points(completed)} class="line completed" />
      <polyline points=${points(failed)} class="line failed" />
    </svg>
    <figcaption>
      <span class="key completed">completed ${last(completed)}/s</span>
      <span class="key failed">failed ${last(failed)}/s</span>
      <span class="muted">(per second, averaged over ${BUCKET_S} s)</span>
      ${from &&
      html`<span class="muted" id="chart-from">${`Counted since ${clock.format(from)}: more jobs finished in the minutes before than the page reads back (the newest ${RECENT_MAX} completed and the newest ${RECENT_MAX} failed); it counts every job that finishes while it is open.`}</span>`}
    </figcaption>
  </figure>`;
}

export function Overview() {
  const [stats, setStats] = useState(null);
  const [error, setError] = useState(null);
  const [now, setNow] = useState(Date.now());
  const series = useRef(newSeries()).current;
  const statsTimer = useRef(0);

  const readStats = async () => {
    try {
      setStats((await gql(STATS)).stats);
      setError(null);
    } catch (err) {
      setError(err);
    }
  };
  // Counts change with every event; read them at most once a second.
  const soon = () => {
    if (!statsTimer.current) statsTimer.current = setTimeout(() => { statsTimer.current = 0; readStats(); }, 1000);
  };
  const readRecent = async () => {
    try {
      backfill(series, await gql(RECENT));
      setNow(Date.now());
    } catch (err) {
      setError(err);
    }
  };
  // The chart is drawn again by the clock, once a second: with thousands
  // of jobs in the window, drawing it for every frame of events would cost
  // more than the events.
  const push = useFrameBatch((events) => {
    for (const j of events) record(series, j.id, j.status, j.finishedAt);
    soon();
  });

  useEffect(() => {
    readStats();
    readRecent();
    const tick = setInterval(() => setNow(Date.now()), 1000);
    return () => {
      clearInterval(tick);
      clearTimeout(statsTimer.current);
    };
  }, []);
  const reread = () => {
    readStats();
    readRecent();
  };
  useFirehose(FINISHED, {}, { onData: (data) => push(data.jobUpdated), onResume: reread, onError: setError }, []);
  useReconnected(reread);

  const series5 = buckets(series, now);
  return html`<section aria-labelledby="overview-title">
    <h1 id="overview-title">Overview</h1>
    <${ErrorText} error=${error} />
    <ul class="counts" aria-label="Jobs by status">
      ${STATUSES.map((s) => {
        const n = stats ? stats[s.toLowerCase()] : null;
        return html`<li class=${`count s-${s.toLowerCase()}`}>
          <a href=${`${BASE}/jobs?status=${s}`}>
            <span class="n" data-count=${s}>${n == null ? '…' : n.toLocaleString()}</span>
            <span class="label">${s.toLowerCase()}</span>
          </a>
        </li>`;
      })}
    </ul>
    <p class="muted">
      ${stats ? `${stats.processing} running now. ` : ''}The API does not say how many workers the server has.
    </p>
    <h2>Throughput</h2>
    <${Chart} ...${series5} />
  </section>`;
}
