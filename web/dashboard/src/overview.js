// Overview: counts by status, live, and the throughput of the last
// minutes (completed and failed per second) as an SVG chart.

import { useEffect, useRef, useState } from 'preact/hooks';

import { gql } from './gql.js';
import { BASE, ErrorText, STATUSES, html, useFirehose, useFrameBatch, useReconnected } from './ui.js';

const STATS = 'query Stats { stats { pending processing completed failed cancelled } }';
// Jobs that finished lately, to draw the minutes before the page opened.
const RECENT = `query Recent {
  completed: jobs(status: COMPLETED, first: 500) { nodes { id finishedAt } }
  failed: jobs(status: FAILED, first: 500) { nodes { id finishedAt } }
}`;
const FINISHED = 'subscription Finished { jobUpdated { id status finishedAt } }';

const WINDOW_S = 300; // the chart's five minutes
const BUCKET_S = 5; // one point per five seconds
const BUCKETS = WINDOW_S / BUCKET_S;

/**
 * Finished jobs per bucket over the window. `seen` keeps the jobs counted
 * (so the listing and the events never count one twice) and is pruned
 * with the window, so it holds at most the window's jobs.
 */
function newSeries() {
  return { seen: new Map() };
}

function record(series, id, status, finishedAt) {
  if (status !== 'COMPLETED' && status !== 'FAILED') return;
  const at = Date.parse(finishedAt);
  if (!at || Date.now() - at > WINDOW_S * 1000 || series.seen.has(id)) return;
  series.seen.set(id, { at, failed: status === 'FAILED' });
}

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
  return { completed: completed.map((n) => n / BUCKET_S), failed: failed.map((n) => n / BUCKET_S) };
}

function Chart({ completed, failed }) {
  const W = 600;
  const H = 160;
  const max = Math.max(1, ...completed, ...failed);
  const points = (values) =>
    values.map((v, i) => `${((i / (BUCKETS - 1)) * W).toFixed(1)},${(H - (v / max) * (H - 10)).toFixed(1)}`).join(' ');
  const last = (values) => values[values.length - 1].toFixed(1);
  const total = (values) => Math.round(values.reduce((a, b) => a + b, 0) * BUCKET_S);
  return html`<figure class="chart">
    <svg viewBox=${`0 0 ${W} ${H + 20}`} role="img" aria-labelledby="chart-title">
      <title id="chart-title">Jobs finished per second over the last five minutes: ${total(completed)} completed, ${total(failed)} failed</title>
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
      const data = await gql(RECENT);
      for (const j of data.completed.nodes) record(series, j.id, 'COMPLETED', j.finishedAt);
      for (const j of data.failed.nodes) record(series, j.id, 'FAILED', j.finishedAt);
      setNow(Date.now());
    } catch (err) {
      setError(err);
    }
  };
  const push = useFrameBatch((events) => {
    for (const j of events) record(series, j.id, j.status, j.finishedAt);
    setNow(Date.now());
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
