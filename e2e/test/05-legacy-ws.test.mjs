// Subscriptions over websocket with the legacy graphql-ws protocol
// (npm subscriptions-transport-ws, Apollo's original client).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import subscriptionsTransportWs from 'subscriptions-transport-ws';
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

const { SubscriptionClient } = subscriptionsTransportWs;
const T = { timeout: 30_000 };

function newClient(wsUrl) {
  return new SubscriptionClient(wsUrl, { reconnect: false, lazy: true, timeout: 10_000 }, WebSocket);
}

/** A client whose connection is acknowledged (connection_ack) before it is returned. */
async function connectedClient(wsUrl) {
  const client = new SubscriptionClient(wsUrl, { reconnect: false, lazy: false, timeout: 10_000 }, WebSocket);
  const connected = new Promise((resolve, reject) => {
    client.onConnected(resolve);
    client.onError((err) => reject(new Error(`legacy websocket error: ${safeStringify(err)}`)));
  });
  try {
    await withDeadline(connected, 5_000, 'the legacy connection to be acknowledged');
  } catch (err) {
    client.close();
    throw err;
  }
  return client;
}

function subscribeJob(client, variables, name) {
  const c = createCollector(name);
  const subscription = client.request({ query: JOB_UPDATED, variables }).subscribe(c.sink);
  c.unsubscribe = () => subscription.unsubscribe();
  return c;
}

describe('subscriptions-transport-ws (legacy graphql-ws protocol)', { timeout: 90_000 }, () => {
  const server = useServer({ WORKERS: '2', PROCESSING_TIME: '20ms' }, { label: 'legacy-ws' });

  it('jobUpdated(id:) receives the states in order and completes', T, async () => {
    // Connect first, so that the 300 ms the job runs are not spent on the handshake.
    const client = await connectedClient(server.wsUrl);
    try {
      const payload = { durationMs: 300 };
      const created = await createJob(server.url, 'legacy-walk', payload);
      const before = await getJob(server.url, created.id);
      const sub = subscribeJob(client, { id: created.id }, 'legacy jobUpdated(id)');
      const end = await sub.waitEnd(10_000, 'the legacy subscription to complete by itself');
      assert.equal(end.kind, 'complete', `ended with ${end.kind}: ${safeStringify(end.error)}`);
      const states = jobsFrom(sub.messages);
      assert.ok(['PENDING', 'PROCESSING'].includes(states[0].status), `first state: ${states[0].status}`);
      assertJobStream(states, {
        id: created.id,
        minFirstVersion: before.version,
        finalStatus: 'COMPLETED',
        label: 'legacy jobUpdated(id)',
      });
      const last = states[states.length - 1];
      assert.equal(last.attempts, 1);
      assert.deepEqual(last.payload, payload);
      assert.equal(last.version, (await getJob(server.url, created.id)).version);
    } finally {
      client.close();
    }
  });

  it('a late legacy subscriber gets one final snapshot, then completion', T, async () => {
    const client = newClient(server.wsUrl);
    try {
      const created = await createJob(server.url, 'legacy-late', { durationMs: 1 });
      const done = await waitForJobStatus(server.url, created.id, 'COMPLETED');
      const sub = subscribeJob(client, { id: created.id }, 'legacy late subscriber');
      const end = await sub.waitEnd(10_000, 'the legacy late subscription to complete');
      assert.equal(end.kind, 'complete', `ended with ${end.kind}: ${safeStringify(end.error)}`);
      const states = jobsFrom(sub.messages);
      assert.equal(states.length, 1, JSON.stringify(states));
      assert.equal(states[0].status, 'COMPLETED');
      assert.equal(states[0].version, done.version);
    } finally {
      client.close();
    }
  });

  it('jobUpdated(id:) with an unknown id errors with NOT_FOUND', T, async () => {
    const client = newClient(server.wsUrl);
    try {
      const sub = subscribeJob(client, { id: 'no-such-job-e2e' }, 'legacy unknown id');
      const end = await sub.waitEnd(10_000, 'the legacy unknown-id subscription to end');
      // The contract names no legacy-protocol form for this error: accept a GQL_ERROR
      // (the client hands its first error to `error`) or a GQL_DATA carrying
      // errors followed by GQL_COMPLETE.
      let errors;
      if (end.kind === 'error') {
        errors = [end.error];
      } else {
        errors = sub.messages.flatMap((m) => m.errors ?? []);
        console.log('legacy unknown id: NOT_FOUND came as a data message with errors, then complete');
      }
      assert.ok(
        errors.some((e) => e?.extensions?.code === 'NOT_FOUND'),
        `extensions.code NOT_FOUND expected; ended ${end.kind} ${safeStringify(end.error)} after ${JSON.stringify(sub.messages)}`,
      );
      assert.ok(!sub.messages.some((m) => m.data?.jobUpdated), `no job data: ${JSON.stringify(sub.messages)}`);
    } finally {
      client.close();
    }
  });
});
