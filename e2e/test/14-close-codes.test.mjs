// Close codes of the graphql-transport-ws protocol, as the npm graphql-ws
// client sees them: 4409 for a second subscription with an id already in
// use, 4408 for a connection that sends no connection_init in time.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

import { useServer } from '../lib/server.mjs';
import { JOB_UPDATED, createJob, createCollector, safeStringify, withDeadline } from '../lib/util.mjs';

const T = { timeout: 30_000 };
const INIT_TIMEOUT_MS = 500;

/** Resolves with the first close event the client reports. */
function firstClose() {
  let resolve;
  const closed = new Promise((r) => {
    resolve = r;
  });
  return { closed, onClosed: (event) => resolve({ code: event?.code, reason: event?.reason }) };
}

describe('graphql-transport-ws close codes', { timeout: 60_000 }, () => {
  const server = useServer({ WORKERS: '1', PROCESSING_TIME: '20ms', WS_INIT_TIMEOUT: `${INIT_TIMEOUT_MS}ms` }, { label: 'close-codes' });

  it('a second subscription with an id in use closes the socket with 4409', T, async () => {
    const { closed, onClosed } = firstClose();
    const client = createClient({
      url: server.wsUrl,
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      shouldRetry: () => false,
      generateID: () => 'same-id',
      on: { closed: onClosed },
    });
    try {
      // A job that stays pending long enough for both subscribes: a job of
      // a type no handler is slow for would complete at once.
      const job = await createJob(server.url, 'close-codes', { durationMs: 3_000 });
      const first = createCollector('first');
      client.subscribe({ query: JOB_UPDATED, variables: { id: job.id } }, first.sink);
      await first.waitUntil((msgs) => msgs.length > 0, 5_000, 'the first subscription to be live');
      const second = createCollector('second');
      client.subscribe({ query: JOB_UPDATED, variables: { id: job.id } }, second.sink);

      const event = await withDeadline(closed, 5_000, 'the socket to close');
      assert.equal(event.code, 4409, `close ${safeStringify(event)}`);
      assert.equal(event.reason, 'Subscriber for same-id already exists');
      const end = await first.waitEnd(5_000, 'the first subscription to end with the socket');
      assert.equal(end.kind, 'error', `the first subscription ended with ${end.kind}`);
    } finally {
      await client.dispose();
    }
  });

  it('a client that sends no connection_init in time is closed with 4408', T, async () => {
    const { closed, onClosed } = firstClose();
    const started = Date.now();
    const client = createClient({
      url: server.wsUrl,
      webSocketImpl: WebSocket,
      lazy: false,
      retryAttempts: 0,
      shouldRetry: () => false,
      // The client sends connection_init only once its parameters resolve.
      connectionParams: () => new Promise((resolve) => setTimeout(() => resolve({}), INIT_TIMEOUT_MS * 6)),
      onNonLazyError: () => {},
      on: { closed: onClosed },
    });
    try {
      const event = await withDeadline(closed, 10_000, 'the socket to close');
      assert.equal(event.code, 4408, `close ${safeStringify(event)}`);
      assert.equal(event.reason, 'Connection initialisation timeout');
      assert.ok(Date.now() - started >= INIT_TIMEOUT_MS, 'not before WS_INIT_TIMEOUT');
    } finally {
      await client.dispose();
    }
  });
});
