// Subscriptions over Server-Sent Events (gqlgen's SSE transport):
// POST /query with Accept: text/event-stream.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { useServer } from '../lib/server.mjs';
import {
  JOB_UPDATED,
  assertJobStream,
  createJob,
  getJob,
  request,
  uniqueType,
  waitForJobStatus,
} from '../lib/util.mjs';

const T = { timeout: 30_000 };

/**
 * Opens an SSE subscription. Returns { response, events (async iterator of
 * { event, data, raw }), abort() }. The whole exchange is aborted after timeoutMs.
 */
async function openSse(baseUrl, query, variables, { timeoutMs = 15_000 } = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new Error(`SSE deadline of ${timeoutMs} ms passed`)), timeoutMs);
  const response = await fetch(`${baseUrl}/query`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify({ query, variables }),
    signal: controller.signal,
  });

  async function* events() {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) {
          buffer += decoder.decode();
          if (buffer.trim() !== '') yield { event: 'eof-garbage', data: buffer, raw: buffer };
          return;
        }
        buffer += decoder.decode(value, { stream: true });
        let m;
        while ((m = /\r?\n\r?\n/.exec(buffer))) {
          const block = buffer.slice(0, m.index);
          buffer = buffer.slice(m.index + m[0].length);
          const frame = parseBlock(block);
          if (frame) yield frame;
        }
      }
    } finally {
      reader.releaseLock();
    }
  }

  return {
    response,
    events: events(),
    abort() {
      controller.abort();
    },
    done() {
      clearTimeout(timer);
    },
  };
}

/** Parses one SSE event block; comment-only blocks (keep-alives) give null. */
function parseBlock(block) {
  let event = 'message';
  const data = [];
  let hasField = false;
  for (const line of block.split(/\r?\n/)) {
    if (line === '' || line.startsWith(':')) continue;
    const i = line.indexOf(':');
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? '' : line.slice(i + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    hasField = true;
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  }
  return hasField ? { event, data: data.join('\n'), raw: block } : null;
}

/** Reads frames until `event: complete`; asserts the stream then ends. Returns the parsed `next` payloads. */
async function readUntilComplete(sse) {
  const nexts = [];
  const frames = [];
  let completed = false;
  for await (const frame of sse.events) {
    frames.push(frame.raw);
    if (completed) assert.fail(`frame after "event: complete": ${JSON.stringify(frame.raw)}`);
    if (frame.event === 'complete') {
      completed = true;
      continue;
    }
    assert.equal(frame.event, 'next', `unexpected SSE event ${JSON.stringify(frame.raw)}`);
    nexts.push(JSON.parse(frame.data));
  }
  assert.ok(completed, `the stream ends with "event: complete"; frames: ${JSON.stringify(frames)}`);
  return nexts;
}

describe('SSE subscriptions', { timeout: 90_000 }, () => {
  const server = useServer({ WORKERS: '2', PROCESSING_TIME: '20ms' }, { label: 'sse' });

  it('jobUpdated(id:) streams `event: next` frames ending with `event: complete`', T, async () => {
    const payload = { durationMs: 300 };
    const created = await createJob(server.url, 'sse-walk', payload);
    const before = await getJob(server.url, created.id);
    const sse = await openSse(server.url, JOB_UPDATED, { id: created.id });
    try {
      assert.equal(sse.response.status, 200);
      assert.match(sse.response.headers.get('content-type') ?? '', /text\/event-stream/);
      const nexts = await readUntilComplete(sse);
      for (const n of nexts) assert.equal(n.errors, undefined, JSON.stringify(n));
      const states = nexts.map((n) => n.data.jobUpdated);
      assert.ok(['PENDING', 'PROCESSING'].includes(states[0].status), `first state ${states[0].status}`);
      assertJobStream(states, {
        id: created.id,
        minFirstVersion: before.version,
        finalStatus: 'COMPLETED',
        label: 'SSE jobUpdated(id)',
      });
      assert.deepEqual(states[states.length - 1].payload, payload);
    } finally {
      sse.done();
    }
  });

  it('a late SSE subscriber gets one final snapshot, then complete', T, async () => {
    const created = await createJob(server.url, 'sse-late', { durationMs: 1, fail: true });
    const done = await waitForJobStatus(server.url, created.id, 'FAILED');
    const sse = await openSse(server.url, JOB_UPDATED, { id: created.id });
    try {
      const nexts = await readUntilComplete(sse);
      assert.equal(nexts.length, 1, JSON.stringify(nexts));
      const state = nexts[0].data.jobUpdated;
      assert.equal(state.status, 'FAILED');
      assert.equal(state.version, done.version);
      assert.equal(typeof state.error, 'string');
    } finally {
      sse.done();
    }
  });

  it('jobUpdated(id:) with an unknown id reports NOT_FOUND over SSE', T, async () => {
    const sse = await openSse(server.url, JOB_UPDATED, { id: 'no-such-job-e2e' });
    try {
      const nexts = await readUntilComplete(sse);
      const errors = nexts.flatMap((n) => n.errors ?? []);
      assert.ok(
        errors.some((e) => e?.extensions?.code === 'NOT_FOUND'),
        `NOT_FOUND error in ${JSON.stringify(nexts)}`,
      );
      assert.ok(
        !nexts.some((n) => n.data?.jobUpdated),
        `no job data for an unknown id: ${JSON.stringify(nexts)}`,
      );
    } finally {
      sse.done();
    }
  });

  it('jobUpdated(type:) over SSE streams live until the client leaves', T, async () => {
    const type = uniqueType('sse-type');
    const sse = await openSse(server.url, JOB_UPDATED, { type });
    try {
      assert.equal(sse.response.status, 200);
      // Keep creating jobs of the type until one shows up: the subscription is then live.
      const seen = new Map();
      const created = [];
      let completedId = null;
      const iterator = sse.events;
      let pending = iterator.next();
      const createNext = async () => created.push((await createJob(server.url, type, { durationMs: 1 })).id);
      await createNext();
      while (completedId === null) {
        const tick = new Promise((resolve) => setTimeout(() => resolve('tick'), 500));
        const r = await Promise.race([pending, tick]);
        if (r === 'tick') {
          // No frame yet: the first job may have been created before the subscription was live.
          if (created.length < 10) await createNext();
          continue;
        }
        assert.ok(!r.done, 'the stream without id must not end by itself');
        pending = iterator.next();
        assert.equal(r.value.event, 'next', r.value.raw);
        const job = JSON.parse(r.value.data).data.jobUpdated;
        assert.equal(job.type, type);
        assert.ok(created.includes(job.id), `job ${job.id} is one of ours`);
        const prev = seen.get(job.id);
        if (prev !== undefined) assert.ok(job.version > prev, 'versions increase');
        seen.set(job.id, job.version);
        if (job.status === 'COMPLETED') completedId = job.id;
      }
      sse.abort();
      await pending.catch(() => {});
    } finally {
      sse.done();
    }
    // The server copes with the client leaving.
    const health = await request(`${server.url}/health`);
    assert.equal(health.status, 200);
    const after = await createJob(server.url, type, { durationMs: 1 });
    await waitForJobStatus(server.url, after.id, 'COMPLETED');
  });
});
