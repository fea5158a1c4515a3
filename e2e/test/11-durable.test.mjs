// Durable stores (SQLite, PostgreSQL): jobs survive a graceful restart and a
// crash of the server process. The same test body runs on each backend.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { DURABLE_BACKENDS } from '../lib/database.mjs';
import { allJobsOfType, createJobTracker, mapLimit, statsOf, subscribeLive, wsClient } from '../lib/fleet.mjs';
import { startServer } from '../lib/server.mjs';
import { CREATE_JOB, createJob, gqlData, uniqueType, waitFor } from '../lib/util.mjs';

const T = { timeout: 90_000 };
const WORKER_LOST = /^worker lost: /;

/** The ids of jobs whose last state in the stream is `status`. */
function lastIn(tracker, status) {
  return new Set([...tracker.latest.values()].filter((j) => j.status === status).map((j) => j.id));
}

/** Waits until every created job of `type` is COMPLETED, then returns all jobs of the type. */
async function waitAllCompleted(server, type, count, timeoutMs) {
  await waitFor(
    async () => {
      const s = await statsOf(server.url, type);
      return s.completed === count ? s : false;
    },
    { timeoutMs, intervalMs: 100, label: `${count} jobs of ${type} to be COMPLETED` },
  );
  const stats = await statsOf(server.url, type);
  assert.deepEqual(stats, { pending: 0, processing: 0, completed: count, failed: 0, cancelled: 0 }, 'stats of the type');
  return allJobsOfType(server.url, type);
}

/** Asserts that `jobs` are exactly the created ids: none lost, none duplicated. */
function assertSameJobs(jobs, created) {
  const ids = jobs.map((j) => j.id);
  assert.equal(new Set(ids).size, ids.length, 'no job listed twice');
  assert.deepEqual(new Set(ids), created, 'the stored jobs are exactly the created ones');
}

for (const backend of DURABLE_BACKENDS) {
  describe(`durable store: ${backend.name}`, { timeout: 200_000 }, () => {
    it('SIGTERM returns running jobs to PENDING; a restart on the same database completes each job once', T, async (t) => {
      if (!(await backend.available(t))) return;
      const db = await backend.create('restart');
      const env = { DATABASE_URL: db.databaseUrl, WORKERS: '4', SHUTDOWN_TIMEOUT: '100ms' };
      let first;
      let second;
      let ws;
      try {
        first = await startServer({ ...env, INSTANCE_ID: 'restart-first' }, { label: `${backend.name} first` });
        const type = uniqueType('restart');
        ws = wsClient(first.wsUrl);
        const tracker = createJobTracker('first server');
        const created = await subscribeLive(ws, tracker, { type }, () => createJob(first.url, type, { durationMs: 1, probe: true }));
        for (let i = 0; i < 40; i++) {
          created.add((await createJob(first.url, type, { durationMs: 300 + (i % 5) * 50, i })).id);
        }

        // SIGTERM while the second batch of four runs: with 300–500 ms jobs
        // and 100 ms of grace, those cannot finish and are given back.
        await tracker.waitUntil(
          () => tracker.completed.size >= 5 && lastIn(tracker, 'PROCESSING').size > 0,
          20_000,
          'a few COMPLETED jobs and some PROCESSING',
        );
        const processingAtSigterm = lastIn(tracker, 'PROCESSING');
        const { code, signal, durationMs } = await first.stop({ timeoutMs: 10_000 });
        assert.equal(code, 0, `first server exit code (signal ${signal})\n${first.tail()}`);
        assert.ok(durationMs < 5_000, `first server took ${durationMs} ms to exit; SHUTDOWN_TIMEOUT is 100ms`);

        // Shutdown flushes the last changes to subscribers: the released jobs
        // went back to PENDING with the attempt they used.
        const released = new Set(
          [...tracker.latest.values()].filter((j) => j.status === 'PENDING' && j.attempts === 1).map((j) => j.id),
        );
        const completedFirst = new Map(
          [...tracker.latest.values()].filter((j) => j.status === 'COMPLETED').map((j) => [j.id, j]),
        );
        console.log(
          `${backend.name} restart: ${processingAtSigterm.size} PROCESSING at SIGTERM, ${released.size} released, ` +
            `${completedFirst.size} COMPLETED before exit (${durationMs} ms to exit)`,
        );
        assert.ok(released.size > 0, `some running jobs were released at shutdown; ${tracker.describe()}`);
        assert.deepEqual(lastIn(tracker, 'PROCESSING'), new Set(), 'no job left PROCESSING after the server exited');
        if (db.query) {
          const rows = await db.query(`SELECT id::text, status, attempts FROM ${db.table} WHERE status <> 'completed'`);
          assert.ok(rows.every((r) => r.status === 'pending'), `stored unfinished jobs are pending: ${JSON.stringify(rows)}`);
          assert.deepEqual(
            new Set(rows.filter((r) => r.attempts === 1).map((r) => r.id)),
            released,
            'the stored jobs with a spent attempt are the released ones',
          );
        }

        second = await startServer({ ...env, INSTANCE_ID: 'restart-second' }, { label: `${backend.name} second` });
        const jobs = await waitAllCompleted(second, type, created.size, 30_000);
        assertSameJobs(jobs, created);
        for (const job of jobs) {
          const expected = released.has(job.id) ? 2 : 1;
          assert.equal(job.attempts, expected, `attempts of ${released.has(job.id) ? 'released' : 'other'} job ${JSON.stringify(job)}`);
          assert.deepEqual(job.errors, [], `a release is not a failure: ${JSON.stringify(job)}`);
          const before = completedFirst.get(job.id);
          if (before) {
            assert.equal(job.version, before.version, `job ${job.id} completed before the restart is not run again`);
            assert.equal(job.finishedAt, before.finishedAt, `finishedAt of ${job.id} unchanged by the restart`);
          }
        }
        const stopped = await second.stop({ timeoutMs: 10_000 });
        assert.equal(stopped.code, 0, `second server exit code\n${second.tail()}`);
      } finally {
        await ws?.dispose();
        await first?.stop().catch(() => {});
        await second?.stop().catch(() => {});
        await db.drop();
      }
    });

    it('kill -9 while jobs run: a restarted server rescues them once their lease expires', T, async (t) => {
      if (!(await backend.available(t))) return;
      const db = await backend.create('crash');
      const env = { DATABASE_URL: db.databaseUrl, WORKERS: '4', LEASE_DURATION: '2s', SHUTDOWN_TIMEOUT: '100ms' };
      let first;
      let second;
      let ws;
      try {
        first = await startServer({ ...env, INSTANCE_ID: 'crash-first' }, { label: `${backend.name} crashing` });
        const type = uniqueType('crash');
        ws = wsClient(first.wsUrl);
        const tracker = createJobTracker('crashing server');
        const created = await subscribeLive(ws, tracker, { type }, () => createJob(first.url, type, { durationMs: 1, probe: true }));
        await waitFor(async () => (await statsOf(first.url, type)).completed === created.size, {
          label: 'the probes to complete',
        });
        for (let i = 0; i < 10; i++) created.add((await createJob(first.url, type, { durationMs: 1_000, i })).id);

        // Four workers, 1 s jobs: kill as soon as all four run.
        await tracker.waitUntil(() => lastIn(tracker, 'PROCESSING').size === 4, 10_000, 'four jobs PROCESSING');
        const killedAt = Date.now();
        await first.kill();
        const interrupted = lastIn(tracker, 'PROCESSING');
        if (db.query) {
          const rows = await db.query(`SELECT id::text, lease_owner FROM ${db.table} WHERE status = 'processing'`);
          assert.deepEqual(new Set(rows.map((r) => r.id)), interrupted, 'the stored PROCESSING jobs are the ones seen running');
          assert.ok(rows.every((r) => r.lease_owner === 'crash-first'), `leased to the killed process: ${JSON.stringify(rows)}`);
        }

        second = await startServer({ ...env, INSTANCE_ID: 'crash-second' }, { label: `${backend.name} after crash` });
        const jobs = await waitAllCompleted(second, type, created.size, 30_000);
        assertSameJobs(jobs, created);
        const rescueDelays = [];
        for (const job of jobs) {
          if (interrupted.has(job.id)) {
            assert.equal(job.attempts, 2, `the interrupted job ran again: ${JSON.stringify(job)}`);
            assert.equal(job.errors.length, 1, `one failed attempt recorded: ${JSON.stringify(job)}`);
            assert.equal(job.errors[0].attempt, 1, `the lost attempt is the first: ${JSON.stringify(job)}`);
            assert.match(job.errors[0].message, WORKER_LOST);
            assert.match(job.error, WORKER_LOST, 'the job keeps the last failure message');
            rescueDelays.push(Date.parse(job.errors[0].at) - killedAt);
          } else {
            assert.equal(job.attempts, 1, `a job not interrupted ran once: ${JSON.stringify(job)}`);
            assert.deepEqual(job.errors, [], `no failure for ${job.id}`);
            assert.equal(job.error, null, `no error for ${job.id}`);
          }
        }
        console.log(`${backend.name} crash: ${interrupted.size} interrupted; rescued ${rescueDelays.join(', ')} ms after kill -9`);
        // Leases are 2 s, renewed every 2/3 s: none expired sooner than 4/3 s after the kill.
        for (const d of rescueDelays) assert.ok(d >= 1_200, `rescued ${d} ms after the kill, before the lease could expire`);

        const stopped = await second.stop({ timeoutMs: 10_000 });
        assert.equal(stopped.code, 0, `exit code of the server after the crash\n${second.tail()}`);
      } finally {
        await ws?.dispose();
        await first?.kill();
        await second?.stop().catch(() => {});
        await db.drop();
      }
    });

    it('SIGTERM while the dispatcher claims jobs leaves none PROCESSING: the next server needs no rescue', T, async (t) => {
      if (!(await backend.available(t))) return;
      const db = await backend.create('claim_race');
      // The default 30 s lease: a job left leased by a server that exited
      // would wait that long, and then count a lost attempt.
      const env = { DATABASE_URL: db.databaseUrl, WORKERS: '4', SHUTDOWN_TIMEOUT: '100ms' };
      const type = uniqueType('claim-race');
      const created = new Set();
      const leftProcessing = [];
      let server;
      try {
        for (let round = 1; round <= 5; round++) {
          server = await startServer({ ...env, INSTANCE_ID: `claim-race-${round}` }, { label: `${backend.name} round ${round}` });
          // 300 short jobs due at once, once all are stored: the workers
          // then finish one every few ms and the dispatcher claims nonstop.
          const runAt = new Date(Date.now() + 2_000).toISOString();
          const ids = await mapLimit(Array.from({ length: 300 }, (_, i) => i), 8, async (i) => {
            const data = await gqlData(server.url, CREATE_JOB, { input: { type, payload: { durationMs: 2, round, i }, runAt } });
            return data.createJob.id;
          });
          for (const id of ids) created.add(id);
          const before = (await statsOf(server.url, type)).completed;
          await waitFor(async () => (await statsOf(server.url, type)).completed >= before + 50, {
            timeoutMs: 15_000,
            label: `round ${round}: 50 jobs completed`,
          });
          const { code, signal } = await server.stop({ timeoutMs: 10_000 });
          assert.equal(code, 0, `round ${round}: exit code (signal ${signal})\n${server.tail()}`);
          server = undefined;
          if (db.query) {
            const rows = await db.query(
              `SELECT id::text, attempts FROM ${db.table} WHERE status = 'processing' AND lease_owner = $1`,
              [`claim-race-${round}`],
            );
            leftProcessing.push(...rows.map((r) => ({ round, ...r })));
          }
        }
        assert.deepEqual(leftProcessing, [], 'jobs still PROCESSING, leased to a server that exited cleanly');

        server = await startServer({ ...env, INSTANCE_ID: 'claim-race-last' }, { label: `${backend.name} last` });
        const jobs = await waitAllCompleted(server, type, created.size, 20_000);
        assertSameJobs(jobs, created);
        const rescued = jobs.filter((j) => j.errors.length > 0);
        assert.deepEqual(rescued, [], 'no job needed a rescue after clean shutdowns');
        const { code } = await server.stop({ timeoutMs: 10_000 });
        assert.equal(code, 0, `last server exit code\n${server.tail()}`);
      } finally {
        await server?.stop().catch(() => {});
        await db.drop();
      }
    });
  });
}
