// Graceful shutdown: SIGTERM with a job in flight and a live websocket subscription.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

import { startServer } from '../lib/server.mjs';
import { JOB_UPDATED, createCollector, createJob, jobsFrom, safeStringify, withDeadline } from '../lib/util.mjs';

describe('graceful shutdown', { timeout: 60_000 }, () => {
  it('SIGTERM exits 0 within the shutdown timeout and closes websockets cleanly', { timeout: 40_000 }, async () => {
    const server = await startServer(
      { WORKERS: '1', PROCESSING_TIME: '30s', SHUTDOWN_TIMEOUT: '1s' },
      { label: 'shutdown' },
    );
    const closes = [];
    let resolveClosed;
    const firstClose = new Promise((resolve) => {
      resolveClosed = resolve;
    });
    const client = createClient({
      url: server.wsUrl,
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      shouldRetry: () => false,
      on: {
        closed: (event) => {
          closes.push({ code: event?.code, reason: event?.reason, wasClean: event?.wasClean });
          resolveClosed(event);
        },
      },
    });
    try {
      const job = await createJob(server.url, 'slow', { note: 'runs for PROCESSING_TIME=30s' });
      assert.equal(job.status, 'PENDING');

      // The live subscription: wait on it until the job is PROCESSING.
      const sub = createCollector('shutdown subscription');
      sub.unsubscribe = client.subscribe({ query: JOB_UPDATED, variables: { id: job.id } }, sub.sink);
      await sub.waitUntil(
        (msgs) => msgs.some((m) => m.data?.jobUpdated?.status === 'PROCESSING'),
        10_000,
        'the job to be PROCESSING',
      );
      const states = jobsFrom(sub.messages);
      assert.ok(states.every((s) => s.status === 'PENDING' || s.status === 'PROCESSING'));

      const { code, signal, durationMs } = await server.stop({ timeoutMs: 10_000 });
      console.log(`shutdown: exit code ${code}, signal ${signal}, ${durationMs} ms after SIGTERM`);
      assert.equal(code, 0, `exit code after SIGTERM (signal ${signal})\n${server.tail()}`);
      assert.ok(durationMs < 8_000, `exited ${durationMs} ms after SIGTERM; SHUTDOWN_TIMEOUT is 1s`);

      const closeEvent = await withDeadline(firstClose, 5_000, 'the websocket client to see a close event');
      console.log(`shutdown: websocket close events ${JSON.stringify(closes)}`);
      assert.equal(typeof closeEvent.code, 'number', `close code present: ${safeStringify(closeEvent)}`);
      assert.ok(
        [1000, 1001].includes(closeEvent.code),
        `close code 1000 or 1001 expected, got ${closeEvent.code} (${JSON.stringify(closeEvent.reason)})`,
      );

      // The subscription did not end as if the job had finished.
      const after = jobsFrom(sub.messages);
      assert.ok(
        !after.some((s) => s.status === 'COMPLETED'),
        `no COMPLETED for a 30s job cut short: ${JSON.stringify(after)}`,
      );
    } finally {
      await client.dispose();
      await server.stop().catch(() => {});
    }
  });

  it('SIGTERM on an idle server exits 0 promptly', { timeout: 30_000 }, async () => {
    const server = await startServer({ SHUTDOWN_TIMEOUT: '5s' }, { label: 'idle-shutdown' });
    const { code, signal, durationMs } = await server.stop({ timeoutMs: 10_000 });
    assert.equal(code, 0, `exit code (signal ${signal})\n${server.tail()}`);
    assert.ok(durationMs < 5_000, `idle server took ${durationMs} ms to exit`);
  });
});
