// Job lifecycle operations seen by a real client: cancelling a job while its
// handler runs, retrying a failed one, and the stats query.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

import { startServer } from '../lib/server.mjs';
import {
  JOB_UPDATED,
  createCollector,
  createJob,
  gqlData,
  gqlPost,
  jobsFrom,
  uniqueType,
  waitForJobStatus,
} from '../lib/util.mjs';

const T = { timeout: 30_000 };

describe('job lifecycle', { timeout: 60_000 }, () => {
  let server;
  let client;

  before(async () => {
    server = await startServer({ WORKERS: '2', PROCESSING_TIME: '30s', RETRY_BACKOFF: '50ms' }, { label: 'lifecycle' });
    client = createClient({ url: server.wsUrl, webSocketImpl: WebSocket, retryAttempts: 0, shouldRetry: () => false });
  }, { timeout: 20_000 });

  after(async () => {
    await client?.dispose();
    await server?.stop();
  });

  it('cancelJob on a processing job cancels its handler; the subscriber sees CANCELLED and completion', T, async () => {
    const job = await createJob(server.url, uniqueType('cancel'));
    await waitForJobStatus(server.url, job.id, 'PROCESSING');
    const c = createCollector('cancel');
    client.subscribe({ query: JOB_UPDATED, variables: { id: job.id } }, c.sink);
    await c.waitUntil((msgs) => jobsFrom(msgs).length >= 1, 10_000, 'the snapshot');

    const data = await gqlData(server.url, 'mutation($id: ID!) { cancelJob(id: $id) { status cancelRequested } }', { id: job.id });
    assert.deepEqual(data.cancelJob, { status: 'PROCESSING', cancelRequested: true });

    await c.waitEnd(10_000, 'the subscription to complete after cancellation');
    assert.equal(c.ended.kind, 'complete');
    const states = jobsFrom(c.messages);
    assert.equal(states.at(-1).status, 'CANCELLED', `states: ${states.map((s) => s.status)}`);
    for (let i = 1; i < states.length; i++) assert.equal(states[i].version, states[i - 1].version + 1);

    // A final job cannot be cancelled again.
    const again = await gqlPost(server.url, 'mutation($id: ID!) { cancelJob(id: $id) { status } }', { id: job.id });
    assert.equal(again.json.errors[0].extensions.code, 'CONFLICT');
  });

  it('retryJob puts a failed job back to PENDING keeping its error history', T, async () => {
    const job = await gqlData(server.url, 'mutation($input: CreateJobInput!) { createJob(input: $input) { id } }', {
      input: { type: uniqueType('retry'), payload: { durationMs: 0, fail: true }, maxAttempts: 1 },
    }).then((d) => d.createJob);
    await waitForJobStatus(server.url, job.id, 'FAILED');
    const data = await gqlData(server.url, 'mutation($id: ID!) { retryJob(id: $id) { status attempts errors { attempt message } } }', { id: job.id });
    assert.equal(data.retryJob.status, 'PENDING');
    assert.equal(data.retryJob.attempts, 1);
    assert.equal(data.retryJob.errors.length, 1);
    assert.match(data.retryJob.errors[0].message, /simulated failure/);
    const failedAgain = await waitForJobStatus(server.url, job.id, 'FAILED');
    assert.equal(failedAgain.attempts, 2);
  });

  it('createJob with an idempotencyKey makes one job however many requests race', T, async () => {
    const key = `key-${uniqueType('idem')}`;
    const mutation = 'mutation($input: CreateJobInput!) { createJob(input: $input) { id idempotencyKey } }';
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => gqlData(server.url, mutation, { input: { type: 'idem', payload: { i }, idempotencyKey: key } })),
    );
    const ids = new Set(results.map((r) => r.createJob.id));
    assert.equal(ids.size, 1, `ids: ${[...ids]}`);
    assert.equal(results[0].createJob.idempotencyKey, key);
    // The REST API honours the same key.
    const rest = await fetch(`${server.url}/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'idem', idempotencyKey: key }),
    });
    assert.equal(rest.status, 201);
    assert.equal((await rest.json()).id, [...ids][0]);
  });

  it('a subscriber watches a job fail, back off, retry and complete', T, async () => {
    const { createJob: job } = await gqlData(server.url, 'mutation($input: CreateJobInput!) { createJob(input: $input) { id } }', {
      input: { type: uniqueType('flaky'), payload: { durationMs: 0, failTimes: 2 }, maxAttempts: 3 },
    });
    const c = createCollector('flaky');
    client.subscribe({ query: 'subscription($id: ID) { jobUpdated(id: $id) { status attempts version runAt errors { attempt message } } }', variables: { id: job.id } }, c.sink);
    await c.waitEnd(15_000, 'the flaky job to complete');
    assert.equal(c.ended.kind, 'complete');
    const states = jobsFrom(c.messages);
    const last = states.at(-1);
    assert.equal(last.status, 'COMPLETED');
    assert.equal(last.attempts, 3);
    assert.deepEqual(last.errors.map((e) => e.attempt), [1, 2]);
    // Each failure sent it back to PENDING with runAt pushed out.
    const retries = states.filter((s) => s.status === 'PENDING' && s.attempts > 0);
    assert.ok(retries.length >= 1, `statuses: ${states.map((s) => s.status)}`);
    for (let i = 1; i < states.length; i++) assert.equal(states[i].version, states[i - 1].version + 1);
  });

  it('a scheduled job waits for its runAt, then runs', T, async () => {
    const runAt = new Date(Date.now() + 700).toISOString();
    const { createJob: job } = await gqlData(server.url, 'mutation($input: CreateJobInput!) { createJob(input: $input) { id status runAt } }', {
      input: { type: uniqueType('later'), payload: { durationMs: 0 }, runAt },
    });
    assert.equal(job.status, 'PENDING');
    const done = await waitForJobStatus(server.url, job.id, 'COMPLETED');
    assert.ok(new Date(done.startedAt) >= new Date(runAt), `started ${done.startedAt}, runAt ${runAt}`);
  });

  it('stats counts jobs per status for a type', T, async () => {
    const type = uniqueType('stats');
    const a = await createJob(server.url, type, { durationMs: 0 });
    await gqlData(server.url, 'mutation($input: CreateJobInput!) { createJob(input: $input) { id } }', {
      input: { type, payload: { durationMs: 0, fail: true }, maxAttempts: 1 },
    });
    await waitForJobStatus(server.url, a.id, 'COMPLETED');
    // The failing one may still be running: poll until it is counted.
    const final = await (async () => {
      for (const deadline = Date.now() + 10_000; Date.now() < deadline;) {
        const s = (await gqlData(server.url, 'query($t: String) { stats(type: $t) { pending processing completed failed cancelled } }', { t: type })).stats;
        if (s.failed === 1) return s;
        await new Promise((r) => setTimeout(r, 25));
      }
      throw new Error('the failing job never counted as failed');
    })();
    assert.deepEqual(final, { pending: 0, processing: 0, completed: 1, failed: 1, cancelled: 0 });
  });
});
