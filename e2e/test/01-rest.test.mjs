// The seed walkthrough over the REST API, with plain fetch.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { useServer } from '../lib/server.mjs';
import { request, waitFor } from '../lib/util.mjs';

const T = { timeout: 20_000 };

function postJob(url, body, headers = { 'content-type': 'application/json' }) {
  return request(`${url}/jobs`, { method: 'POST', headers, body });
}

function assertJsonError(res, status, what) {
  assert.equal(res.status, status, `${what}: HTTP status; body ${res.text}`);
  assert.match(res.headers.get('content-type') ?? '', /application\/json/, `${what}: content-type`);
  assert.ok(res.json && typeof res.json === 'object', `${what}: JSON body expected, got ${res.text}`);
  assert.equal(typeof res.json.error, 'string', `${what}: "error" string expected in ${res.text}`);
  assert.ok(res.json.error.length > 0, `${what}: empty error message`);
}

describe('REST API walkthrough', { timeout: 90_000 }, () => {
  const server = useServer({ WORKERS: '2', PROCESSING_TIME: '50ms' }, { label: 'rest' });

  it('GET /health answers 200 {"status":"ok"}', T, async () => {
    const res = await request(`${server.url}/health`);
    assert.equal(res.status, 200, res.text);
    assert.match(res.headers.get('content-type') ?? '', /application\/json/);
    assert.equal(res.json?.status, 'ok', res.text);
  });

  it('GET / serves the GraphiQL playground as HTML', T, async () => {
    const res = await request(`${server.url}/`, { headers: { accept: 'text/html' } });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/html/);
    assert.match(res.text, /graphiql/i);
  });

  it('POST /jobs creates a pending job that a worker completes', T, async () => {
    const payload = { to: 'user@example.com' };
    const res = await postJob(server.url, JSON.stringify({ type: 'email', payload }));
    assert.equal(res.status, 201, res.text);
    assert.match(res.headers.get('content-type') ?? '', /application\/json/);
    const job = res.json;
    assert.ok(job && typeof job === 'object', res.text);
    assert.equal(typeof job.id, 'string');
    assert.ok(job.id.length > 0);
    assert.equal(job.type, 'email');
    assert.deepEqual(job.payload, payload);
    assert.equal(job.status, 'pending');
    assert.equal(job.attempts, 0);
    assert.equal(job.version, 1);
    assert.equal(job.error ?? null, null);
    assert.equal(job.startedAt ?? null, null);
    assert.equal(job.finishedAt ?? null, null);
    for (const f of ['createdAt', 'updatedAt']) {
      assert.equal(typeof job[f], 'string', `${f} in ${res.text}`);
      assert.ok(!Number.isNaN(Date.parse(job[f])), `${f} is a timestamp: ${job[f]}`);
    }

    const list = await request(`${server.url}/jobs`);
    assert.equal(list.status, 200, list.text);
    assert.ok(Array.isArray(list.json), `array expected: ${list.text}`);
    assert.ok(
      list.json.some((j) => j.id === job.id),
      `GET /jobs lists the new job ${job.id}: ${list.text}`,
    );

    const done = await waitFor(
      async () => {
        const r = await request(`${server.url}/jobs`);
        assert.equal(r.status, 200);
        const found = r.json.find((j) => j.id === job.id);
        assert.ok(found, `job ${job.id} vanished from GET /jobs`);
        assert.ok(['pending', 'processing', 'completed'].includes(found.status), `status ${found.status}`);
        return found.status === 'completed' ? found : false;
      },
      { timeoutMs: 10_000, intervalMs: 20, label: `job ${job.id} to be completed` },
    );
    assert.equal(done.attempts, 1);
    assert.ok(done.version > job.version, `version grew: ${done.version}`);
    assert.equal(typeof done.startedAt, 'string');
    assert.equal(typeof done.finishedAt, 'string');
    assert.equal(done.error ?? null, null);
    assert.deepEqual(done.payload, payload);
    assert.ok(Date.parse(done.finishedAt) >= Date.parse(done.startedAt), 'finishedAt >= startedAt');
  });

  it('GET /jobs lists newest first and ?limit=N caps the list', T, async () => {
    const a = await postJob(server.url, JSON.stringify({ type: 'email', payload: { n: 1 } }));
    const b = await postJob(server.url, JSON.stringify({ type: 'email', payload: { n: 2 } }));
    assert.equal(a.status, 201, a.text);
    assert.equal(b.status, 201, b.text);

    const all = await request(`${server.url}/jobs`);
    assert.equal(all.status, 200);
    assert.ok(all.json.length >= 3, `at least 3 jobs: ${all.text}`);
    const ids = all.json.map((j) => j.id);
    assert.ok(ids.indexOf(b.json.id) < ids.indexOf(a.json.id), `newest first: ${ids}`);
    assert.equal(ids[0], b.json.id, 'the newest job is first');

    const one = await request(`${server.url}/jobs?limit=1`);
    assert.equal(one.status, 200, one.text);
    assert.ok(Array.isArray(one.json), one.text);
    assert.equal(one.json.length, 1, one.text);
    assert.equal(one.json[0].id, b.json.id);

    const two = await request(`${server.url}/jobs?limit=2`);
    assert.equal(two.status, 200, two.text);
    assert.deepEqual(
      two.json.map((j) => j.id),
      [b.json.id, a.json.id],
    );
  });

  it('POST /jobs with bad JSON answers 400 with a JSON error', T, async () => {
    assertJsonError(await postJob(server.url, '{"type": "email", '), 400, 'truncated JSON');
    assertJsonError(await postJob(server.url, 'not json at all'), 400, 'not JSON');
  });

  it('POST /jobs without a type answers 400 with a JSON error', T, async () => {
    assertJsonError(await postJob(server.url, JSON.stringify({ payload: { to: 'x@example.com' } })), 400, 'missing type');
    assertJsonError(await postJob(server.url, JSON.stringify({})), 400, 'empty object');
  });

  it('POST /jobs with a body over 1 MiB answers 413', T, async () => {
    const big = JSON.stringify({ type: 'email', payload: { blob: 'x'.repeat(1024 * 1024 + 1024) } });
    assert.ok(Buffer.byteLength(big) > 1024 * 1024);
    const res = await postJob(server.url, big);
    assert.equal(res.status, 413, res.text.slice(0, 300));
    if (res.json !== undefined) assert.equal(typeof res.json.error, 'string', res.text);

    // The server still works afterwards and the oversized job was not stored.
    const list = await request(`${server.url}/jobs`);
    assert.equal(list.status, 200);
    assert.ok(!list.json.some((j) => j.payload && typeof j.payload.blob === 'string'), 'oversized job stored');
  });
});
