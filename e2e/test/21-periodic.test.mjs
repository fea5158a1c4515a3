// Periodic jobs with real clients: upsertPeriodicJob, periodicJobs and
// deletePeriodicJob over the npm graphql-ws client, a schedule's jobs
// (tagged periodic:<name>) appearing tick after tick, bad input named in
// BAD_USER_INPUT, the definitions of PERIODIC_FILE refused to the API with
// CONFLICT naming the file, and two processes on one PostgreSQL schema
// making one job per tick of an @every 1s schedule, through a kill -9 of
// one of them and its restart.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';

import { createPostgresSchema, needPostgres } from '../lib/database.mjs';
import { wsClient } from '../lib/fleet.mjs';
import { startServer, useServer } from '../lib/server.mjs';
import { gqlData, safeStringify, uniqueType, waitFor, withDeadline } from '../lib/util.mjs';

const T = { timeout: 60_000 };

const FIELDS = 'name schedule timezone paused nextRunAt lastRunAt lastJob { id tags } source job { type payload priority maxAttempts timeoutSeconds tags }';
const UPSERT = `mutation($input: PeriodicJobInput!) { upsertPeriodicJob(input: $input) { ${FIELDS} } }`;
const LIST = `query { periodicJobs { ${FIELDS} } }`;
const DELETE = 'mutation($name: String!) { deletePeriodicJob(name: $name) }';
const COUNT_TAG = 'query($tag: String) { jobs(tag: $tag, first: 0) { totalCount } }';

const dir = mkdtempSync(join(tmpdir(), 'jobqueue-periodic-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const periodicFile = join(dir, 'periodic.yaml');
writeFileSync(
  periodicFile,
  `# periodic jobs of the e2e server
periodic:
  - name: file-beat
    schedule: "@every 1s"
    job:
      type: beat
      payload: {from: file}
      tags: [e2e]
`,
);

/** Runs one query or mutation over graphql-ws; resolves with its result ({ data, errors }). */
function over(client, query, variables) {
  return withDeadline(
    new Promise((resolve, reject) => {
      let result;
      client.subscribe(
        { query, variables },
        {
          next: (msg) => {
            result = msg;
          },
          error: (err) => reject(new Error(safeStringify(err))),
          complete: () => resolve(result),
        },
      );
    }),
    10_000,
    query.slice(0, 40),
  );
}

/** The one error of a result, with its code. */
function oneError(result) {
  assert.equal(result?.errors?.length, 1, safeStringify(result));
  return { code: result.errors[0].extensions?.code, message: result.errors[0].message };
}

async function countTag(baseUrl, tag) {
  return (await gqlData(baseUrl, COUNT_TAG, { tag })).jobs.totalCount;
}

describe('periodic jobs', { timeout: 120_000 }, () => {
  const server = useServer({ PERIODIC_FILE: periodicFile, WORKERS: '4', PROCESSING_TIME: '10ms' }, { label: 'periodic' });

  it('upsertPeriodicJob makes a job at each tick, periodicJobs shows it, deletePeriodicJob ends it', T, async () => {
    const client = wsClient(server.wsUrl);
    try {
      const name = uniqueType('tick');
      const created = await over(client, UPSERT, {
        input: { name, schedule: '@every 1s', job: { type: 'tick', payload: { n: 1 }, priority: 3, tags: ['e2e'] } },
      });
      assert.equal(created.errors, undefined, safeStringify(created));
      const p = created.data.upsertPeriodicJob;
      assert.equal(p.name, name);
      assert.equal(p.timezone, 'UTC');
      assert.equal(p.source, 'API');
      assert.equal(p.paused, false);
      assert.deepEqual(p.job, { type: 'tick', payload: { n: 1 }, priority: 3, maxAttempts: 3, timeoutSeconds: null, tags: ['e2e', `periodic:${name}`] });
      assert.ok(p.nextRunAt, 'nextRunAt of a running schedule');

      // Ticks arrive: jobs tagged periodic:<name>, the last one shown.
      await waitFor(async () => (await countTag(server.url, `periodic:${name}`)) >= 3, { timeoutMs: 15_000, intervalMs: 200, label: 'three ticks' });
      const listed = await over(client, LIST);
      assert.equal(listed.errors, undefined, safeStringify(listed));
      const mine = listed.data.periodicJobs.find((x) => x.name === name);
      assert.ok(mine?.lastRunAt && mine.lastJob, safeStringify(mine));
      assert.deepEqual(mine.lastJob.tags, ['e2e', `periodic:${name}`]);
      assert.ok(Date.parse(mine.nextRunAt) > Date.parse(mine.lastRunAt), 'nextRunAt after lastRunAt');
      assert.equal(Date.parse(mine.lastRunAt) % 1000, 0, `@every 1s ticks on whole seconds: ${mine.lastRunAt}`);
      const fromFile = listed.data.periodicJobs.find((x) => x.name === 'file-beat');
      assert.equal(fromFile?.source, 'FILE', safeStringify(listed.data.periodicJobs));

      // Pausing stops the ticks: while the file's schedule ticks twice
      // more, the paused one makes at most the job already in flight.
      const paused = await over(client, UPSERT, { input: { name, schedule: '@every 1s', paused: true, job: { type: 'tick' } } });
      assert.equal(paused.data?.upsertPeriodicJob?.nextRunAt, null, safeStringify(paused));
      const atPause = await countTag(server.url, `periodic:${name}`);
      const beats = await countTag(server.url, 'periodic:file-beat');
      await waitFor(async () => (await countTag(server.url, 'periodic:file-beat')) >= beats + 2, { timeoutMs: 10_000, intervalMs: 200, label: 'two beats of the file' });
      assert.ok((await countTag(server.url, `periodic:${name}`)) <= atPause + 1, 'a paused schedule kept making jobs');

      const deleted = await over(client, DELETE, { name });
      assert.deepEqual(deleted.data, { deletePeriodicJob: true }, safeStringify(deleted));
      const again = await over(client, DELETE, { name });
      assert.equal(oneError(again).code, 'NOT_FOUND');
      const after = await over(client, LIST);
      assert.ok(!after.data.periodicJobs.some((x) => x.name === name), 'deleted, still listed');
      assert.ok((await countTag(server.url, `periodic:${name}`)) >= 3, 'the jobs it made are kept');
    } finally {
      await client.dispose();
    }
  });

  it('bad input is BAD_USER_INPUT naming the field', T, async () => {
    const client = wsClient(server.wsUrl);
    try {
      const job = { type: 'tick' };
      const cases = [
        [{ name: 'bad-cron', schedule: 'every day at 9', job }, /^schedule: /],
        [{ name: 'bad-cron', schedule: '* * * * * * *', job }, /^schedule: /],
        [{ name: 'bad-tz', schedule: '@hourly', timezone: 'Europe/Atlantis', job }, /^timezone: unknown time zone/],
        [{ name: '', schedule: '@hourly', job }, /^name: must not be empty/],
        [{ name: 'bad-type', schedule: '@hourly', job: { type: 'has space' } }, /^job\.type: /],
        [{ name: 'bad-key', schedule: '@hourly', job: { type: 'tick', idempotencyKey: 'k' } }, /^job\.idempotencyKey: /],
      ];
      for (const [input, message] of cases) {
        const res = await over(client, UPSERT, { input });
        const err = oneError(res);
        assert.equal(err.code, 'BAD_USER_INPUT', safeStringify(res));
        assert.match(err.message, message);
      }
      const listed = await over(client, LIST);
      assert.deepEqual(listed.data.periodicJobs.map((x) => x.name).filter((n) => n.startsWith('bad-')), []);
    } finally {
      await client.dispose();
    }
  });

  it('the definitions of PERIODIC_FILE are refused to the API with CONFLICT naming the file', T, async () => {
    const client = wsClient(server.wsUrl);
    try {
      const upsert = await over(client, UPSERT, { input: { name: 'file-beat', schedule: '@daily', job: { type: 'beat' } } });
      const err = oneError(upsert);
      assert.equal(err.code, 'CONFLICT');
      assert.ok(err.message.includes(periodicFile), `message names the file: ${err.message}`);
      const del = oneError(await over(client, DELETE, { name: 'file-beat' }));
      assert.equal(del.code, 'CONFLICT');
      assert.ok(del.message.includes(periodicFile), del.message);
      const listed = await over(client, LIST);
      const beat = listed.data.periodicJobs.find((x) => x.name === 'file-beat');
      assert.equal(beat.schedule, '@every 1s');
      assert.deepEqual(beat.job.payload, { from: 'file' });
      assert.deepEqual(beat.job.tags, ['e2e', 'periodic:file-beat']);
      await waitFor(async () => (await countTag(server.url, 'periodic:file-beat')) >= 2, { timeoutMs: 10_000, intervalMs: 200, label: 'the file schedule ticks' });
    } finally {
      await client.dispose();
    }
  });
});

describe('periodic jobs on two processes sharing PostgreSQL', { timeout: 120_000 }, () => {
  it('an @every 1s schedule makes one job per tick, not two, through a kill -9 and a restart', { timeout: 90_000 }, async (t) => {
    if (!(await needPostgres(t))) return;
    const db = await createPostgresSchema('periodic');
    const servers = [];
    try {
      const env = { DATABASE_URL: db.databaseUrl, WORKERS: '4', PROCESSING_TIME: '10ms', POLL_INTERVAL: '1s' };
      const a = await startServer({ ...env, INSTANCE_ID: 'periodic-a' }, { label: 'A' });
      servers.push(a);
      let b = await startServer({ ...env, INSTANCE_ID: 'periodic-b' }, { label: 'B' });
      servers.push(b);
      const name = uniqueType('shared');
      const tag = `periodic:${name}`;
      // Defined on B: A learns of it within its POLL_INTERVAL.
      await gqlData(b.url, UPSERT, { input: { name, schedule: '@every 1s', job: { type: 'shared' } } });

      await waitFor(async () => (await countTag(a.url, tag)) >= 4, { timeoutMs: 15_000, intervalMs: 200, label: 'four ticks' });
      await b.kill(); // kill -9, whatever it was doing
      const killedAt = await countTag(a.url, tag);
      await waitFor(async () => (await countTag(a.url, tag)) >= killedAt + 3, { timeoutMs: 15_000, intervalMs: 200, label: 'ticks after the kill' });
      b = await startServer({ ...env, INSTANCE_ID: 'periodic-b2' }, { label: 'B again' });
      servers.push(b);
      const restartedAt = await countTag(b.url, tag);
      await waitFor(async () => (await countTag(b.url, tag)) >= restartedAt + 3, { timeoutMs: 15_000, intervalMs: 200, label: 'ticks after the restart' });

      // Stop the schedule, then compare its jobs with its ticks: @every 1s
      // ticks on whole seconds from the first, so the ticks up to the
      // last run are one per second.
      await gqlData(a.url, UPSERT, { input: { name, schedule: '@every 1s', paused: true, job: { type: 'shared' } } });
      const rows = await db.query(
        `SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created FROM ${db.table} WHERE tags @> ARRAY[$1]::text[] ORDER BY seq`,
        [tag],
      );
      const last = (await db.query(`SELECT extract(epoch FROM last_run_at)::float8 AS at FROM "${db.name}".periodic_jobs WHERE name = $1`, [name]))[0].at;
      const firstTick = Math.floor(Date.parse(rows[0].created) / 1000);
      const ticks = Math.round(last) - firstTick + 1;
      console.log(`periodic on two processes: ${rows.length} jobs for ${ticks} ticks (kill -9 of B and a restart in between)`);
      assert.ok(rows.length <= ticks, `${rows.length} jobs for ${ticks} ticks: a tick made two jobs`);
      // A scheduler that wakes more than a second late (a loaded machine)
      // catches up on the last tick only: a few ticks may have no job.
      assert.ok(rows.length >= ticks * 0.7, `${rows.length} jobs for ${ticks} ticks: the schedule stalled`);
    } finally {
      for (const s of servers) await s.kill();
      await db.drop();
    }
  });
});
