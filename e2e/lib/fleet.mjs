// Helpers for tests with many jobs and several server processes: a cheap
// tracker of a jobUpdated stream of thousands of jobs, bounded concurrency,
// paging through every job of a type, and a local webhook endpoint that
// records every delivery.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

import { createCollector, gqlData } from './util.mjs';

/** A graphql-transport-ws client that never reconnects behind the test's back. */
export function wsClient(wsUrl) {
  return createClient({
    url: wsUrl,
    webSocketImpl: WebSocket,
    retryAttempts: 0,
    shouldRetry: () => false,
    connectionAckWaitTimeout: 5_000,
  });
}

export const JOB_UPDATED_BRIEF = `
  subscription JobUpdated($id: ID, $type: String) {
    jobUpdated(id: $id, type: $type) { id type status attempts version error finishedAt }
  }
`;

/**
 * A sink for a jobUpdated stream of many jobs: a createCollector that also
 * indexes the states, every one in arrival order (`events`) and the latest
 * per job (`latest`), so that waiting on thousands of jobs stays cheap.
 * Its waitUntil(predicate, timeoutMs, label) calls predicate() after each
 * message; failures summarise the stream instead of listing it.
 */
export function createJobTracker(name = 'jobUpdated') {
  const events = [];
  const latest = new Map();
  const completed = new Set();
  const errors = [];
  const collector = createCollector(name, {
    summarize: () =>
      `${events.length} event(s) of ${latest.size} job(s), ${completed.size} COMPLETED, ` +
      `${errors.length} error message(s) ${JSON.stringify(errors.slice(0, 3))}`,
  });
  const sink = {
    ...collector.sink,
    next(msg) {
      const job = msg?.data?.jobUpdated;
      if (msg.errors || !job) {
        errors.push(msg);
      } else {
        events.push(job);
        latest.set(job.id, job);
        if (job.status === 'COMPLETED') completed.add(job.id);
      }
      collector.sink.next(msg);
    },
  };
  return {
    sink,
    events,
    latest,
    completed,
    errors,
    get ended() {
      return collector.ended;
    },
    waitUntil: collector.waitUntil,
    describe: collector.describe,
  };
}

/**
 * Subscribes `tracker` on `client`, then creates probe jobs (one per
 * retryMs) until the stream carries one: from then on it is live. Returns
 * the probe jobs' ids; the probes are ordinary jobs the caller must count.
 */
export async function subscribeLive(client, tracker, variables, makeProbe, { timeoutMs = 10_000, retryMs = 300 } = {}) {
  tracker.unsubscribe = client.subscribe({ query: JOB_UPDATED_BRIEF, variables }, tracker.sink);
  const probes = new Set();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    probes.add((await makeProbe()).id);
    try {
      await tracker.waitUntil(
        () => [...probes].some((id) => tracker.latest.has(id)),
        Math.max(1, Math.min(retryMs, deadline - Date.now())),
        `an event of a probe job (${probes.size} created)`,
      );
      return probes;
    } catch (err) {
      if (tracker.ended || Date.now() >= deadline) throw err;
    }
  }
}

/** Calls fn(item, index) for every item with at most `limit` calls in flight; returns the results in order. */
export async function mapLimit(items, limit, fn) {
  const results = new Array(items.length);
  let next = 0;
  async function lane() {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i], i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return results;
}

const JOB_PAGE = `
  query Jobs($type: String, $after: String) {
    jobs(type: $type, first: 500, after: $after) {
      totalCount
      pageInfo { hasNextPage endCursor }
      nodes { id type status attempts error errors { attempt message at } version finishedAt payload }
    }
  }
`;

/** Every job of `type`, paging through jobs(); asserts totalCount matches what the pages hold. */
export async function allJobsOfType(baseUrl, type) {
  const jobs = [];
  let after = null;
  let totalCount;
  for (;;) {
    const { jobs: page } = await gqlData(baseUrl, JOB_PAGE, { type, after });
    totalCount = page.totalCount;
    jobs.push(...page.nodes);
    if (!page.pageInfo.hasNextPage) break;
    after = page.pageInfo.endCursor;
  }
  assert.equal(jobs.length, totalCount, `jobs(type: ${type}) pages hold totalCount jobs`);
  return jobs;
}

export async function statsOf(baseUrl, type) {
  const { stats } = await gqlData(baseUrl, 'query($type: String) { stats(type: $type) { pending processing completed failed cancelled } }', { type });
  return stats;
}

/**
 * A local webhook endpoint. Paths starting with /hang never answer: the
 * request stays open until the server aborts it. Every other path answers
 * 200 {"ok":true}. Every delivery is recorded as { path, id, type, attempt,
 * at }; an aborted hanging request gets `abortedAt`.
 */
export async function startWebhookRecorder() {
  const deliveries = [];
  const waiters = new Set();
  const notify = () => {
    for (const w of [...waiters]) w();
  };
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      body += chunk;
    });
    req.on('end', () => {
      let job;
      try {
        job = JSON.parse(body);
      } catch {
        res.writeHead(400).end('bad json');
        return;
      }
      const delivery = { path: req.url, id: job.id, type: job.type, attempt: job.attempt, at: Date.now() };
      deliveries.push(delivery);
      if (req.url.startsWith('/hang')) {
        res.on('close', () => {
          if (!res.writableEnded) {
            delivery.abortedAt = Date.now();
            notify();
          }
        });
      } else {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
      }
      notify();
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${server.address().port}`;
  const dir = mkdtempSync(path.join(tmpdir(), 'jobqueue-e2e-hooks-'));
  let files = 0;

  /** Resolves with predicate()'s truthy value; rejects after timeoutMs. */
  function waitFor(predicate, timeoutMs, label) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const v = predicate();
        if (v) {
          clearTimeout(timer);
          waiters.delete(check);
          resolve(v);
        }
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${label}; ${deliveries.length} deliveries`));
      }, timeoutMs);
      waiters.add(check);
      check();
    });
  }

  return {
    base,
    deliveries,
    waitFor,
    /** Writes a HANDLERS_FILE mapping each type to base + path; returns its path. */
    handlersFile(routes) {
      const file = path.join(dir, `handlers-${++files}.json`);
      writeFileSync(file, JSON.stringify(Object.fromEntries(Object.entries(routes).map(([type, p]) => [type, { url: base + p }]))));
      return file;
    },
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
