// Several server processes sharing one PostgreSQL schema: each job runs
// once, every instance's subscribers see every instance's changes,
// cancellation and crash recovery work across processes.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { createPostgresSchema, needPostgres } from '../lib/database.mjs';
import { allJobsOfType, createJobTracker, mapLimit, startWebhookRecorder, statsOf, subscribeLive, wsClient } from '../lib/fleet.mjs';
import { startServer } from '../lib/server.mjs';
import { createJob, gqlData, request, uniqueType, waitFor } from '../lib/util.mjs';

const T = { timeout: 120_000 };
const JOBS = 5_000;
const CANCEL = 'mutation($id: ID!) { cancelJob(id: $id) { id status cancelRequested } }';

/** POST /jobs on one server; returns the created job's id. */
async function createRest(baseUrl, type, payload) {
  const res = await request(`${baseUrl}/jobs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ type, payload }),
  });
  assert.equal(res.status, 201, `POST /jobs: ${res.text}`);
  return res.json.id;
}

/** Counts of each value of key(x). */
function countBy(items, key) {
  const counts = new Map();
  for (const x of items) counts.set(key(x), (counts.get(key(x)) ?? 0) + 1);
  return counts;
}

async function stopAll(servers) {
  for (const s of servers) await s?.stop().catch(() => {});
}

describe('two server processes on one PostgreSQL schema', { timeout: 400_000 }, () => {
  it(`${JOBS} jobs created on both instances run exactly once; a subscriber of one sees them all complete`, T, async (t) => {
    if (!(await needPostgres(t))) return;
    const db = await createPostgresSchema('fleet');
    const hooks = await startWebhookRecorder();
    const servers = [];
    let ws;
    try {
      const env = { DATABASE_URL: db.databaseUrl, WORKERS: '16', MAX_ATTEMPTS: '1' };
      const a = await startServer({ ...env, INSTANCE_ID: 'fleet-a', HANDLERS_FILE: hooks.handlersFile({ e2e: '/a' }) }, { label: 'A' });
      servers.push(a);
      const b = await startServer({ ...env, INSTANCE_ID: 'fleet-b', HANDLERS_FILE: hooks.handlersFile({ e2e: '/b' }) }, { label: 'B' });
      servers.push(b);

      ws = wsClient(a.wsUrl);
      const tracker = createJobTracker('subscriber of A');
      const probes = await subscribeLive(ws, tracker, { type: 'e2e' }, () => createJob(a.url, 'e2e', { probe: true }));

      const started = Date.now();
      const ids = await mapLimit(
        Array.from({ length: JOBS }, (_, i) => i),
        32,
        (i) => createRest(i % 2 === 0 ? a.url : b.url, 'e2e', { i }),
      );
      const createdMs = Date.now() - started;
      const created = new Set([...probes, ...ids]);
      assert.equal(created.size, JOBS + probes.size, 'every creation returned a new id');

      await waitFor(
        async () => {
          const s = await statsOf(a.url, 'e2e');
          return s.completed + s.failed + s.cancelled === created.size ? s : false;
        },
        { timeoutMs: 90_000, intervalMs: 250, label: `${created.size} jobs to finish` },
      );
      const doneMs = Date.now() - started;
      const stats = await statsOf(b.url, 'e2e');
      assert.deepEqual(stats, { pending: 0, processing: 0, completed: created.size, failed: 0, cancelled: 0 }, 'stats seen by B');

      await tracker.waitUntil(
        () => tracker.completed.size >= created.size && [...created].every((id) => tracker.completed.has(id)),
        20_000,
        'a COMPLETED event of every job on the subscriber of A',
      );
      const eventsMs = Date.now() - started;

      // Each job delivered exactly once, by one of the two instances.
      const perJob = countBy(hooks.deliveries, (d) => d.id);
      const twice = [...perJob].filter(([, n]) => n > 1);
      assert.deepEqual(twice, [], 'no job delivered more than once');
      assert.deepEqual(new Set(perJob.keys()), created, 'every job delivered, no other');
      assert.ok(hooks.deliveries.every((d) => d.attempt === 1 && d.type === 'e2e'), 'first attempts of type e2e only');
      const perPath = countBy(hooks.deliveries, (d) => d.path);
      console.log(
        `fleet: created ${JOBS} in ${createdMs} ms, all finished after ${doneMs} ms, ` +
          `subscriber saw every COMPLETED after ${eventsMs} ms (${tracker.events.length} events); deliveries ${JSON.stringify(Object.fromEntries(perPath))}`,
      );
      assert.deepEqual([...perPath.keys()].sort(), ['/a', '/b'], 'only the configured paths');
      assert.ok(perPath.get('/a') > 0 && perPath.get('/b') > 0, 'both instances ran jobs');
      const fromB = hooks.deliveries.filter((d) => d.path === '/b').map((d) => d.id);
      assert.ok(fromB.every((id) => tracker.completed.has(id)), 'A streamed the completion of jobs B ran');
      assert.deepEqual(tracker.errors, [], 'no error messages on the stream');
      assert.equal(tracker.ended, null, 'the subscription without id stays open');
      assert.ok(tracker.events.every((e) => e.type === 'e2e'), 'only jobs of the subscribed type');

      const jobs = await allJobsOfType(b.url, 'e2e');
      assert.equal(jobs.length, created.size, 'jobs(type) lists every job once');
      assert.ok(jobs.every((j) => j.status === 'COMPLETED' && j.attempts === 1), 'each COMPLETED after one attempt');

      await ws.dispose();
      ws = undefined;
      for (const s of servers) {
        const { code, signal } = await s.stop();
        assert.equal(code, 0, `exit code (signal ${signal})\n${s.tail()}`);
      }
    } finally {
      await ws?.dispose();
      await stopAll(servers);
      await hooks.close();
      await db.drop();
    }
  });

  it('cancelJob sent to one instance cancels a job another instance is running', T, async (t) => {
    if (!(await needPostgres(t))) return;
    const db = await createPostgresSchema('cancel');
    const hooks = await startWebhookRecorder();
    const servers = [];
    try {
      // Default lease (30 s: heartbeat every 10 s) and poll (5 s): the
      // cancellation has to travel by notification to be prompt.
      const env = { DATABASE_URL: db.databaseUrl, WORKERS: '2' };
      const a = await startServer({ ...env, INSTANCE_ID: 'cancel-a', HANDLERS_FILE: hooks.handlersFile({ hang: '/hang-a' }) }, { label: 'A' });
      servers.push(a);
      const b = await startServer({ ...env, INSTANCE_ID: 'cancel-b', HANDLERS_FILE: hooks.handlersFile({ hang: '/hang-b' }) }, { label: 'B' });
      servers.push(b);

      // Created on B, a job is usually claimed by B; retry until one is.
      const heldByA = [];
      let target;
      for (let i = 0; i < 10 && !target; i++) {
        const id = await createRest(b.url, 'hang', { i });
        const d = await hooks.waitFor(() => hooks.deliveries.find((x) => x.id === id), 10_000, `delivery of ${id}`);
        if (d.path === '/hang-b') target = d;
        else heldByA.push(id);
      }
      assert.ok(target, `a hanging job delivered by B (all ${heldByA.length} went to A)`);

      const sentAt = Date.now();
      const { cancelJob } = await gqlData(a.url, CANCEL, { id: target.id });
      assert.ok(
        (cancelJob.status === 'PROCESSING' && cancelJob.cancelRequested) || cancelJob.status === 'CANCELLED',
        `cancelJob answer: ${JSON.stringify(cancelJob)}`,
      );
      const cancelled = await waitFor(
        async () => {
          const { job } = await gqlData(a.url, 'query($id: ID!) { job(id: $id) { status attempts cancelRequested } }', { id: target.id });
          return job.status === 'CANCELLED' ? job : false;
        },
        { timeoutMs: 10_000, label: `job ${target.id} to be CANCELLED` },
      );
      const cancelMs = Date.now() - sentAt;
      await hooks.waitFor(() => target.abortedAt, 5_000, 'B to abort the webhook request');
      console.log(`cancel across instances: CANCELLED ${cancelMs} ms after cancelJob; request aborted after ${target.abortedAt - sentAt} ms`);
      assert.ok(cancelMs < 3_000, `CANCELLED ${cancelMs} ms after cancelJob on the other instance`);
      assert.equal(cancelled.attempts, 1);
      assert.equal(hooks.deliveries.filter((d) => d.id === target.id).length, 1, 'delivered once, never again');

      for (const id of heldByA) await gqlData(a.url, CANCEL, { id });
      for (const s of servers) {
        const { code, signal } = await s.stop();
        assert.equal(code, 0, `exit code (signal ${signal})\n${s.tail()}`);
      }
    } finally {
      await stopAll(servers);
      await hooks.close();
      await db.drop();
    }
  });

  it('kill -9 of one instance: the other rescues its jobs once their leases expire and completes them', T, async (t) => {
    if (!(await needPostgres(t))) return;
    const db = await createPostgresSchema('rescue');
    const servers = [];
    let b;
    try {
      const env = { DATABASE_URL: db.databaseUrl, WORKERS: '2', LEASE_DURATION: '2s' };
      const a = await startServer({ ...env, INSTANCE_ID: 'rescue-a' }, { label: 'survivor A' });
      servers.push(a);
      b = await startServer({ ...env, INSTANCE_ID: 'rescue-b' }, { label: 'victim B' });
      const type = uniqueType('rescue');
      // 3 s jobs outlive the 2 s lease: only heartbeats keep them leased.
      const created = new Set();
      for (let i = 0; i < 4; i++) created.add((await createJob(i % 2 ? b.url : a.url, type, { durationMs: 3_000, i })).id);

      // Two workers each: two jobs run on each instance.
      const leased = await waitFor(
        async () => {
          const rows = await db.query(`SELECT id::text, lease_owner FROM ${db.table} WHERE status = 'processing'`);
          const owners = countBy(rows, (r) => r.lease_owner);
          return owners.get('rescue-a') === 2 && owners.get('rescue-b') === 2 ? rows : false;
        },
        { timeoutMs: 10_000, label: 'two jobs leased to each instance' },
      );
      const ofB = new Set(leased.filter((r) => r.lease_owner === 'rescue-b').map((r) => r.id));
      const killedAt = Date.now();
      await b.kill();

      await waitFor(
        async () => (await statsOf(a.url, type)).completed === created.size,
        { timeoutMs: 20_000, intervalMs: 100, label: 'A to complete every job, its own and those of B' },
      );
      assert.equal(a.process.exitCode, null, 'A kept running');
      const jobs = await allJobsOfType(a.url, type);
      assert.deepEqual(new Set(jobs.map((j) => j.id)), created);
      const delays = [];
      for (const job of jobs) {
        assert.equal(job.status, 'COMPLETED');
        if (ofB.has(job.id)) {
          assert.equal(job.attempts, 2, `B's job ran again on A: ${JSON.stringify(job)}`);
          assert.equal(job.errors.length, 1, JSON.stringify(job));
          assert.match(job.errors[0].message, /^worker lost: /);
          delays.push(Date.parse(job.errors[0].at) - killedAt);
        } else {
          assert.equal(job.attempts, 1, `A's own job, kept leased by heartbeats, ran once: ${JSON.stringify(job)}`);
          assert.deepEqual(job.errors, []);
        }
      }
      console.log(`rescue by the survivor: B's jobs rescued ${delays.join(', ')} ms after kill -9`);
      for (const d of delays) assert.ok(d >= 1_200, `rescued ${d} ms after the kill, before the lease could expire`);
      const rows = await db.query(`SELECT count(*)::int AS n FROM ${db.table} WHERE lease_owner IS NOT NULL`);
      assert.equal(rows[0].n, 0, 'no lease left behind');

      const { code, signal } = await a.stop();
      assert.equal(code, 0, `exit code of A (signal ${signal})\n${a.tail()}`);
    } finally {
      await b?.kill();
      await stopAll(servers);
      await db.drop();
    }
  });
});
