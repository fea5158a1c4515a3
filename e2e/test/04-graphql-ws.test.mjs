// Subscriptions over websocket with the graphql-transport-ws protocol (npm graphql-ws).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

import { useServer } from '../lib/server.mjs';
import {
  JOB_UPDATED,
  assertJobStream,
  createCollector,
  createJob,
  getJob,
  jobsFrom,
  safeStringify,
  waitForJobStatus,
  withDeadline,
} from '../lib/util.mjs';

const T = { timeout: 30_000 };

function newClient(wsUrl) {
  return createClient({
    url: wsUrl,
    webSocketImpl: WebSocket,
    retryAttempts: 0,
    shouldRetry: () => false,
    connectionAckWaitTimeout: 5_000,
  });
}

/** A non-lazy client whose connection is acknowledged before it is returned. */
async function connectedClient(wsUrl) {
  let onConnected;
  const connected = new Promise((resolve) => {
    onConnected = resolve;
  });
  let failure;
  const client = createClient({
    url: wsUrl,
    webSocketImpl: WebSocket,
    lazy: false,
    retryAttempts: 0,
    shouldRetry: () => false,
    connectionAckWaitTimeout: 5_000,
    on: { connected: onConnected },
    onNonLazyError: (err) => {
      failure = err;
    },
  });
  try {
    await withDeadline(connected, 5_000, 'the graphql-ws connection to be acknowledged');
  } catch (err) {
    await client.dispose();
    throw failure ? new Error(`connection failed: ${safeStringify(failure)}`) : err;
  }
  return client;
}

function subscribeJob(client, variables, name) {
  const c = createCollector(name);
  c.unsubscribe = client.subscribe({ query: JOB_UPDATED, variables }, c.sink);
  return c;
}

/** Groups the Job states of a stream by job id, keeping arrival order. */
function byJob(messages) {
  const map = new Map();
  for (const job of jobsFrom(messages)) {
    if (!map.has(job.id)) map.set(job.id, []);
    map.get(job.id).push(job);
  }
  return map;
}

/**
 * The subscribe message may reach the server after a job created over HTTP, so
 * creates probe jobs (one per retry interval) until an event of one of them
 * arrives: from then on the subscription is live. Returns the probe ids.
 */
async function waitUntilLive(collector, makeProbe, { timeoutMs = 10_000, retryMs = 250 } = {}) {
  const probes = new Set();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    probes.add((await makeProbe()).id);
    try {
      await collector.waitUntil(
        (msgs) => msgs.some((m) => probes.has(m.data?.jobUpdated?.id)),
        Math.max(1, Math.min(retryMs, deadline - Date.now())),
        `an event of a probe job (${probes.size} created)`,
      );
      return probes;
    } catch (err) {
      if (collector.ended || Date.now() >= deadline) throw err;
    }
  }
}

function assertOrderedAndFinal(events, id, finalStatus, label) {
  const versions = events.map((e) => e.version);
  for (let i = 1; i < events.length; i++) {
    assert.ok(versions[i] > versions[i - 1], `${label} ${id}: versions out of order ${versions}`);
  }
  const statuses = events.map((e) => e.status);
  assert.equal(statuses.filter((s) => s === finalStatus).length, 1, `${label} ${id}: one ${finalStatus}: ${statuses}`);
  assert.equal(statuses[statuses.length - 1], finalStatus, `${label} ${id}: nothing after ${finalStatus}: ${statuses}`);
  const gaps = versions.some((v, i) => i > 0 && v !== versions[i - 1] + 1);
  return gaps ? `${id}: versions ${versions.join(',')}` : null;
}

describe('graphql-ws (graphql-transport-ws) subscriptions', { timeout: 110_000 }, () => {
  const server = useServer({ WORKERS: '4', PROCESSING_TIME: '20ms' }, { label: 'graphql-ws' });

  it('jobUpdated(id:) streams the current state, every change in order, then completes', T, async () => {
    // Connect first, so that the 300 ms the job runs are not spent on the handshake.
    const client = await connectedClient(server.wsUrl);
    const second = await connectedClient(server.wsUrl);
    try {
      const payload = { durationMs: 300 };
      const created = await createJob(server.url, 'ws-walk', payload);
      const before = await getJob(server.url, created.id);
      const sub = subscribeJob(client, { id: created.id }, 'jobUpdated(id)');
      const sub2 = subscribeJob(second, { id: created.id }, 'jobUpdated(id) second client');

      const end = await sub.waitEnd(10_000, 'the subscription to complete by itself');
      assert.equal(end.kind, 'complete', `ended with ${end.kind}: ${safeStringify(end.error)}`);
      const states = jobsFrom(sub.messages);
      assert.ok(['PENDING', 'PROCESSING'].includes(states[0].status), `first state: ${states[0].status}`);
      assertJobStream(states, {
        id: created.id,
        minFirstVersion: before.version,
        finalStatus: 'COMPLETED',
        label: 'jobUpdated(id)',
      });
      assert.ok(states.some((s) => s.status === 'PROCESSING'), 'the PROCESSING state is seen (job runs 300 ms)');
      const last = states[states.length - 1];
      assert.equal(last.attempts, 1);
      assert.equal(last.error, null);
      assert.equal(last.type, 'ws-walk');
      assert.deepEqual(last.payload, payload);
      assert.equal(typeof last.startedAt, 'string');
      assert.equal(typeof last.finishedAt, 'string');
      assert.equal(last.version, (await getJob(server.url, created.id)).version, 'last streamed state is the stored one');

      const end2 = await sub2.waitEnd(10_000, 'the second subscription to complete');
      assert.equal(end2.kind, 'complete');
      const states2 = jobsFrom(sub2.messages);
      assertJobStream(states2, { id: created.id, finalStatus: 'COMPLETED', label: 'second client' });
      assert.equal(states2[states2.length - 1].version, last.version, 'both subscribers end on the same version');
    } finally {
      await client.dispose();
      await second.dispose();
    }
  });

  it('a failing job ends FAILED with an error message, then completes', T, async () => {
    const client = newClient(server.wsUrl);
    try {
      const created = await createJob(server.url, 'ws-fail', { fail: true, durationMs: 100 });
      const sub = subscribeJob(client, { id: created.id }, 'failing job');
      const end = await sub.waitEnd(10_000, 'the failing job subscription to complete');
      assert.equal(end.kind, 'complete', `ended with ${end.kind}: ${safeStringify(end.error)}`);
      const states = jobsFrom(sub.messages);
      assertJobStream(states, { id: created.id, finalStatus: 'FAILED', label: 'failing job' });
      const last = states[states.length - 1];
      assert.equal(typeof last.error, 'string', `error on the FAILED state: ${JSON.stringify(last)}`);
      assert.ok(last.error.length > 0);
      assert.equal(typeof last.finishedAt, 'string');
      assert.ok(last.attempts >= 1);
    } finally {
      await client.dispose();
    }
  });

  it('a late subscriber gets exactly one final snapshot, then completion', T, async () => {
    const client = newClient(server.wsUrl);
    try {
      const created = await createJob(server.url, 'ws-late', { durationMs: 1 });
      const done = await waitForJobStatus(server.url, created.id, 'COMPLETED');
      const sub = subscribeJob(client, { id: created.id }, 'late subscriber');
      const end = await sub.waitEnd(10_000, 'the late subscription to complete');
      assert.equal(end.kind, 'complete', `ended with ${end.kind}: ${safeStringify(end.error)}`);
      const states = jobsFrom(sub.messages);
      assert.equal(states.length, 1, `exactly one message: ${JSON.stringify(states)}`);
      assert.equal(states[0].id, created.id);
      assert.equal(states[0].status, 'COMPLETED');
      assert.equal(states[0].version, done.version);
    } finally {
      await client.dispose();
    }
  });

  it('jobUpdated(id:) with an unknown id errors with NOT_FOUND', T, async () => {
    const client = newClient(server.wsUrl);
    try {
      const sub = subscribeJob(client, { id: 'no-such-job-e2e' }, 'unknown id');
      const end = await sub.waitEnd(10_000, 'the unknown-id subscription to end');
      assert.equal(
        end.kind,
        'error',
        `the error callback must fire; got ${end.kind} after messages ${JSON.stringify(sub.messages)}`,
      );
      assert.ok(Array.isArray(end.error), `an array of GraphQL errors, got ${safeStringify(end.error)}`);
      assert.ok(
        end.error.some((e) => e?.extensions?.code === 'NOT_FOUND'),
        `extensions.code NOT_FOUND in ${JSON.stringify(end.error)}`,
      );
      assert.equal(sub.messages.length, 0, `no data before the error: ${JSON.stringify(sub.messages)}`);
    } finally {
      await client.dispose();
    }
  });

  it('jobUpdated without id streams every job in version order until each completes', T, async () => {
    const client = newClient(server.wsUrl);
    try {
      const sub = subscribeJob(client, {}, 'all jobs');
      await waitUntilLive(sub, () => createJob(server.url, 'e2e-all', { durationMs: 1, probe: true }));

      const ids = [];
      for (let i = 0; i < 20; i++) ids.push((await createJob(server.url, 'e2e-all', { durationMs: 10, i })).id);

      await sub.waitUntil(
        (msgs) => {
          const done = new Set(
            msgs.filter((m) => m.data?.jobUpdated?.status === 'COMPLETED').map((m) => m.data.jobUpdated.id),
          );
          return ids.every((id) => done.has(id));
        },
        20_000,
        'COMPLETED of all 20 jobs',
      );
      assert.equal(sub.ended, null, 'the stream without id stays open');

      const grouped = byJob(sub.messages);
      const gaps = [];
      for (const id of ids) {
        const events = grouped.get(id);
        assert.ok(events, `events of job ${id}`);
        const gap = assertOrderedAndFinal(events, id, 'COMPLETED', 'all jobs');
        if (gap) gaps.push(gap);
        assert.equal(events[events.length - 1].version, (await getJob(server.url, id)).version);
      }
      if (gaps.length > 0) console.log(`note: intermediate states skipped (allowed when far behind): ${gaps.join('; ')}`);
    } finally {
      await client.dispose();
    }
  });

  it('jobUpdated(type:) without id streams only jobs of that type', T, async () => {
    const client = newClient(server.wsUrl);
    try {
      const sub = subscribeJob(client, { type: 'a' }, 'type a');
      await waitUntilLive(sub, () => createJob(server.url, 'a', { durationMs: 1, probe: true }));

      const aIds = [];
      const bIds = [];
      for (let i = 0; i < 10; i++) {
        aIds.push((await createJob(server.url, 'a', { durationMs: 10, i })).id);
        bIds.push((await createJob(server.url, 'b', { durationMs: 10, i })).id);
      }
      for (const id of bIds) await waitForJobStatus(server.url, id, 'COMPLETED');
      // Barrier: a type-a job created after every b job finished.
      const sentinel = await createJob(server.url, 'a', { durationMs: 1, sentinel: true });
      const wanted = [...aIds, sentinel.id];
      await sub.waitUntil(
        (msgs) => {
          const done = new Set(
            msgs.filter((m) => m.data?.jobUpdated?.status === 'COMPLETED').map((m) => m.data.jobUpdated.id),
          );
          return wanted.every((id) => done.has(id));
        },
        20_000,
        'COMPLETED of every type-a job',
      );

      const states = jobsFrom(sub.messages);
      const foreign = states.filter((s) => s.type !== 'a');
      assert.deepEqual(foreign, [], 'only type-a jobs are streamed');
      const grouped = byJob(sub.messages);
      for (const id of bIds) assert.ok(!grouped.has(id), `type-b job ${id} streamed`);
      for (const id of wanted) assertOrderedAndFinal(grouped.get(id), id, 'COMPLETED', 'type a');
    } finally {
      await client.dispose();
    }
  });
});
