// A subscriber that stops reading must never hurt the server: its subscription
// ends with extensions.code SLOW_SUBSCRIBER and everything else goes on.
// The server is started with SUBSCRIBER_BUFFER=1 and SUBSCRIBER_MAX_BACKLOG=1024
// (the broker raises any smaller value to its coalescing threshold, 1024)
// and jobs carry ~60 KB payloads, so a few hundred changes overflow it. The
// clients stop reading at the socket (http response / ws paused), so TCP
// backpressure reaches the server.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { describe, it } from 'node:test';

import WebSocket from 'ws';

import { useServer } from '../lib/server.mjs';
import { JOB_UPDATED, gqlPost, request, uniqueType, waitFor, withDeadline } from '../lib/util.mjs';

const T = { timeout: 60_000 };
// Incompressible, so that permessage-deflate cannot shrink it.
const BLOB = randomBytes(45_000).toString('base64');
const JOBS = 600;

async function createBigJobs(server, type, count) {
  const started = Date.now();
  for (let i = 0; i < count; i++) {
    assert.equal(server.process.exitCode, null, `server exited while jobs were being created\n${server.tail()}`);
    const res = await gqlPost(server.url, 'mutation($in: CreateJobInput!) { createJob(input: $in) { id } }', {
      in: { type, payload: { blob: BLOB, i, durationMs: 0 } },
    });
    assert.equal(res.status, 200, res.text.slice(0, 300));
    assert.equal(res.json.errors, undefined, res.text.slice(0, 300));
  }
  return Date.now() - started;
}

async function assertServerAlive(server) {
  assert.equal(server.process.exitCode, null, `the server process died\n${server.tail()}`);
  const health = await request(`${server.url}/health`);
  assert.equal(health.status, 200);
}

describe('slow subscribers', { timeout: 110_000 }, () => {
  const server = useServer(
    {
      WORKERS: '4',
      PROCESSING_TIME: '1ms',
      SUBSCRIBER_BUFFER: '1',
      SUBSCRIBER_MAX_BACKLOG: '1024',
      WS_WRITE_TIMEOUT: '60s',
    },
    { label: 'slow-subscriber' },
  );

  it('an SSE subscriber that stops reading ends with SLOW_SUBSCRIBER; the server survives', T, async () => {
    const type = uniqueType('slow-sse');
    // node:http rather than fetch: a paused response stops reading the socket.
    const url = new URL(`${server.url}/query`);
    const body = JSON.stringify({ query: JOB_UPDATED, variables: { type } });
    let req;
    try {
      const res = await withDeadline(
        new Promise((resolve, reject) => {
          req = http.request(
            url,
            {
              method: 'POST',
              headers: {
                'content-type': 'application/json',
                accept: 'text/event-stream',
                'content-length': Buffer.byteLength(body),
              },
            },
            resolve,
          );
          req.on('error', reject);
          req.end(body);
        }),
        5_000,
        'SSE response headers',
      );
      assert.equal(res.statusCode, 200);
      res.pause();
      // Read nothing while the jobs are created: the socket buffers fill up.
      const ms = await createBigJobs(server, type, JOBS);
      console.log(`slow SSE: created ${JOBS} jobs of ~60 KB in ${ms} ms`);
      await assertServerAlive(server);

      // Now drain what the server sent: it must end, and say why.
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      await withDeadline(
        new Promise((resolve, reject) => {
          res.on('end', resolve);
          res.on('error', reject);
          res.resume();
        }),
        30_000,
        'the lagging SSE stream to end',
      );
      const text = Buffer.concat(chunks).toString('utf8');
      const blocks = text.split(/\r?\n\r?\n/).filter((b) => b.split(/\r?\n/).some((l) => l && !l.startsWith(':')));
      const events = blocks.map((b) => {
        const event = /^event: ?(.*)$/m.exec(b)?.[1];
        const data = b
          .split(/\r?\n/)
          .filter((l) => l.startsWith('data:'))
          .map((l) => l.replace(/^data: ?/, ''))
          .join('\n');
        return { event, data };
      });
      assert.ok(events.length > 0, 'some frames were sent');
      assert.equal(events[events.length - 1].event, 'complete', 'the stream ends with event: complete');
      const payloads = events.filter((e) => e.event === 'next').map((e) => JSON.parse(e.data));
      const errors = payloads.flatMap((p) => p.errors ?? []);
      assert.ok(
        errors.some((e) => e?.extensions?.code === 'SLOW_SUBSCRIBER'),
        `an error with extensions.code SLOW_SUBSCRIBER; got ${payloads.length} next frames, errors ${JSON.stringify(errors)}`,
      );
    } finally {
      req?.destroy();
    }
    await assertServerAlive(server);
  });

  it('a graphql-ws subscriber that stops reading gets SLOW_SUBSCRIBER; the server survives', T, async () => {
    const type = uniqueType('slow-ws');
    const ws = new WebSocket(server.wsUrl, 'graphql-transport-ws');
    const messages = [];
    const waiters = new Set();
    let closed = null;
    ws.on('message', (raw) => {
      messages.push(JSON.parse(raw.toString()));
      for (const w of [...waiters]) w();
    });
    ws.on('close', (code, reason) => {
      closed = { code, reason: reason.toString() };
      for (const w of [...waiters]) w();
    });
    const until = (pred, ms, label) =>
      withDeadline(
        new Promise((resolve, reject) => {
          const check = () => {
            const hit = pred();
            if (hit) {
              waiters.delete(check);
              resolve(hit);
            } else if (closed) {
              waiters.delete(check);
              reject(new Error(`socket closed ${JSON.stringify(closed)} before ${label}`));
            }
          };
          waiters.add(check);
          check();
        }),
        ms,
        label,
      );
    try {
      await withDeadline(new Promise((resolve, reject) => {
        ws.once('open', resolve);
        ws.once('error', reject);
      }), 5_000, 'websocket open');
      ws.send(JSON.stringify({ type: 'connection_init' }));
      await until(() => messages.some((m) => m.type === 'connection_ack'), 5_000, 'connection_ack');
      ws.send(JSON.stringify({ id: 's1', type: 'subscribe', payload: { query: JOB_UPDATED, variables: { type } } }));

      // Probe until the subscription is live.
      const probes = new Set();
      await waitFor(
        async () => {
          const res = await gqlPost(server.url, 'mutation($in: CreateJobInput!) { createJob(input: $in) { id } }', {
            in: { type, payload: { probe: true, durationMs: 0 } },
          });
          probes.add(res.json.data.createJob.id);
          return messages.some((m) => m.type === 'next' && probes.has(m.payload?.data?.jobUpdated?.id));
        },
        { timeoutMs: 10_000, intervalMs: 100, label: 'the websocket subscription to be live' },
      );

      ws.pause();
      const ms = await createBigJobs(server, type, JOBS);
      console.log(`slow graphql-ws: created ${JOBS} jobs of ~60 KB in ${ms} ms`);
      await assertServerAlive(server);
      ws.resume();

      const end = await until(
        () => messages.find((m) => m.id === 's1' && (m.type === 'error' || m.type === 'complete')),
        30_000,
        'the subscription to end',
      );
      // Either an `error` message, or a `next` carrying the error before `complete`:
      // the client must learn why its subscription ended.
      const errors =
        end.type === 'error'
          ? end.payload
          : messages.filter((m) => m.id === 's1' && m.type === 'next').flatMap((m) => m.payload?.errors ?? []);
      assert.ok(
        Array.isArray(errors) && errors.some((e) => e?.extensions?.code === 'SLOW_SUBSCRIBER'),
        `SLOW_SUBSCRIBER expected; the subscription ended with ${JSON.stringify(end).slice(0, 300)}, errors ${JSON.stringify(errors)}`,
      );
      // The connection itself stays usable.
      assert.equal(closed, null, 'the connection stays open');
      ws.send(JSON.stringify({ type: 'ping' }));
      await until(() => messages.some((m) => m.type === 'pong'), 5_000, 'pong after the slow subscription ended');
    } finally {
      ws.terminate();
    }
    await assertServerAlive(server);
  });
});
