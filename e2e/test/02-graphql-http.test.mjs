// GraphQL over HTTP (POST and GET /query) with plain fetch.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { useServer } from '../lib/server.mjs';
import {
  CREATE_JOB,
  createJob,
  getJob,
  gqlData,
  gqlPost,
  request,
  uniqueType,
  waitForJobStatus,
} from '../lib/util.mjs';

const T = { timeout: 20_000 };
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

const JOBS_PAGE = `
  query Jobs($status: JobStatus, $type: String, $first: Int, $after: String) {
    jobs(status: $status, type: $type, first: $first, after: $after) {
      totalCount
      edges { cursor node { id type status } }
      nodes { id }
      pageInfo { hasNextPage endCursor }
    }
  }
`;

async function jobsPage(url, vars) {
  const data = await gqlData(url, JOBS_PAGE, vars);
  const page = data.jobs;
  assert.deepEqual(
    page.nodes.map((n) => n.id),
    page.edges.map((e) => e.node.id),
    'nodes and edges list the same jobs',
  );
  for (const e of page.edges) assert.equal(typeof e.cursor, 'string');
  if (page.edges.length > 0) {
    assert.equal(page.pageInfo.endCursor, page.edges[page.edges.length - 1].cursor, 'endCursor = last cursor');
  }
  return page;
}

/** Sends createJob with `input` and asserts a BAD_USER_INPUT error naming `field`. */
async function assertBadInput(url, input, field, what) {
  const res = await gqlPost(url, CREATE_JOB, { input });
  assert.equal(res.status, 200, `${what}: HTTP status; ${res.text.slice(0, 500)}`);
  assert.ok(res.json, `${what}: JSON body expected`);
  const errors = res.json.errors;
  assert.ok(Array.isArray(errors) && errors.length > 0, `${what}: errors expected, got ${res.text.slice(0, 500)}`);
  assert.equal(res.json.data?.createJob ?? null, null, `${what}: no job returned`);
  const err = errors[0];
  assert.equal(err.extensions?.code, 'BAD_USER_INPUT', `${what}: extensions.code in ${JSON.stringify(err)}`);
  assert.match(err.message, new RegExp(field, 'i'), `${what}: message names the field "${field}"`);
}

describe('GraphQL over HTTP', { timeout: 90_000 }, () => {
  const server = useServer({ WORKERS: '2', PROCESSING_TIME: '20ms' }, { label: 'graphql-http' });

  it('createJob returns the new job PENDING with version 1', T, async () => {
    const payload = { to: 'user@example.com', durationMs: 1 };
    const job = await createJob(server.url, 'email', payload);
    assert.equal(typeof job.id, 'string');
    assert.ok(job.id.length > 0);
    assert.equal(job.type, 'email');
    assert.deepEqual(job.payload, payload);
    assert.equal(job.status, 'PENDING');
    assert.equal(job.version, 1);
    assert.equal(job.attempts, 0);
    assert.equal(job.error, null);
    assert.equal(job.startedAt, null);
    assert.equal(job.finishedAt, null);
    assert.match(job.createdAt, RFC3339);
    assert.match(job.updatedAt, RFC3339);

    const fetched = await getJob(server.url, job.id);
    assert.ok(fetched, 'job(id) finds it');
    assert.equal(fetched.id, job.id);
    assert.equal(fetched.type, 'email');
    assert.deepEqual(fetched.payload, payload);
    assert.ok(fetched.version >= 1);
    assert.equal(fetched.createdAt, job.createdAt);

    const done = await waitForJobStatus(server.url, job.id, 'COMPLETED');
    assert.equal(done.attempts, 1);
    assert.equal(done.version, 3, 'PENDING(1) -> PROCESSING(2) -> COMPLETED(3)');
    assert.match(done.startedAt, RFC3339);
    assert.match(done.finishedAt, RFC3339);
    assert.equal(done.error, null);
  });

  it('payload keeps any JSON value unchanged', T, async () => {
    const values = [
      { nested: { list: [1, 2, { deep: null }], unicode: 'grüße ✓', num: 1.5, neg: -3, yes: true } },
      [1, 'two', { three: 3 }],
      'just a string',
      42,
      false,
      null,
    ];
    for (const value of values) {
      const job = await createJob(server.url, 'echo', value);
      assert.deepEqual(job.payload, value, `createJob echoes ${JSON.stringify(value)}`);
      const fetched = await getJob(server.url, job.id);
      assert.deepEqual(fetched.payload, value, `job(id) returns ${JSON.stringify(value)}`);
    }
    const noPayload = await createJob(server.url, 'echo');
    assert.equal(noPayload.payload, null, 'absent payload is null');
  });

  it('job(id:) with an unknown id is null without errors', T, async () => {
    const res = await gqlPost(server.url, 'query { job(id: "no-such-job-e2e") { id } }');
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.errors, undefined, res.text);
    assert.deepEqual(res.json.data, { job: null });
  });

  it('jobs lists newest first and paginates with first/after', T, async () => {
    const type = uniqueType('page');
    const created = [];
    for (let i = 0; i < 5; i++) created.push((await createJob(server.url, type, { i, durationMs: 1 })).id);
    const newestFirst = [...created].reverse();

    const p1 = await jobsPage(server.url, { type, first: 2 });
    assert.equal(p1.totalCount, 5);
    assert.deepEqual(p1.nodes.map((n) => n.id), newestFirst.slice(0, 2));
    assert.equal(p1.pageInfo.hasNextPage, true);

    const p2 = await jobsPage(server.url, { type, first: 2, after: p1.pageInfo.endCursor });
    assert.equal(p2.totalCount, 5, 'totalCount counts across all pages');
    assert.deepEqual(p2.nodes.map((n) => n.id), newestFirst.slice(2, 4));
    assert.equal(p2.pageInfo.hasNextPage, true);

    // `after` may be any edge's cursor, not only endCursor.
    const fromMiddle = await jobsPage(server.url, { type, first: 10, after: p1.edges[0].cursor });
    assert.deepEqual(fromMiddle.nodes.map((n) => n.id), newestFirst.slice(1));

    const p3 = await jobsPage(server.url, { type, first: 2, after: p2.pageInfo.endCursor });
    assert.deepEqual(p3.nodes.map((n) => n.id), newestFirst.slice(4));
    assert.equal(p3.pageInfo.hasNextPage, false);

    const all = await jobsPage(server.url, { type });
    assert.deepEqual(all.nodes.map((n) => n.id), newestFirst, 'default first (50) returns all 5');
    assert.equal(all.pageInfo.hasNextPage, false);

    // Without a type filter the newest job overall is the last one created.
    const latest = await jobsPage(server.url, { first: 1 });
    assert.equal(latest.nodes[0].id, created[created.length - 1]);
    assert.ok(latest.totalCount >= 5);
  });

  it('jobs filters by status and type, and the filters combine', T, async () => {
    const type = uniqueType('filter');
    const other = uniqueType('filter-other');
    const ok = await createJob(server.url, type, { durationMs: 1 });
    const bad = await createJob(server.url, type, { durationMs: 1, fail: true });
    const otherOk = await createJob(server.url, other, { durationMs: 1 });
    await waitForJobStatus(server.url, ok.id, 'COMPLETED');
    const failed = await waitForJobStatus(server.url, bad.id, 'FAILED');
    assert.equal(typeof failed.error, 'string');
    await waitForJobStatus(server.url, otherOk.id, 'COMPLETED');

    const byType = await jobsPage(server.url, { type });
    assert.equal(byType.totalCount, 2);
    assert.deepEqual(byType.nodes.map((n) => n.id), [bad.id, ok.id]);
    for (const e of byType.edges) assert.equal(e.node.type, type);

    const completed = await jobsPage(server.url, { type, status: 'COMPLETED' });
    assert.equal(completed.totalCount, 1);
    assert.deepEqual(completed.nodes.map((n) => n.id), [ok.id]);

    const failedPage = await jobsPage(server.url, { type, status: 'FAILED' });
    assert.equal(failedPage.totalCount, 1);
    assert.deepEqual(failedPage.nodes.map((n) => n.id), [bad.id]);

    const pending = await jobsPage(server.url, { type, status: 'PENDING' });
    assert.equal(pending.totalCount, 0);
    assert.deepEqual(pending.nodes, []);
    assert.equal(pending.pageInfo.hasNextPage, false);

    const allCompleted = await jobsPage(server.url, { status: 'COMPLETED', first: 500 });
    const ids = allCompleted.nodes.map((n) => n.id);
    assert.ok(ids.includes(ok.id) && ids.includes(otherOk.id), 'status filter alone spans types');
    assert.ok(!ids.includes(bad.id));
    for (const e of allCompleted.edges) assert.equal(e.node.status, 'COMPLETED');

    const unknownType = await jobsPage(server.url, { type: uniqueType('nobody') });
    assert.equal(unknownType.totalCount, 0);
    assert.deepEqual(unknownType.edges, []);
  });

  it('createJob rejects an invalid type with BAD_USER_INPUT naming `type`', T, async () => {
    await assertBadInput(server.url, { type: '' }, 'type', 'empty type');
    await assertBadInput(server.url, { type: 'x'.repeat(129) }, 'type', '129-character type');
    await assertBadInput(server.url, { type: 'has space' }, 'type', 'type with a space');
    await assertBadInput(server.url, { type: 'slash/type' }, 'type', 'type with a slash');
    await assertBadInput(server.url, { type: 'semi;colon' }, 'type', 'type with a semicolon');
    await assertBadInput(server.url, { type: 'emoji😀' }, 'type', 'type with an emoji');
  });

  it('createJob accepts types at the edge of the rules', T, async () => {
    const longest = 'y'.repeat(128);
    assert.equal((await createJob(server.url, longest, { durationMs: 1 })).type, longest);
    const punctuated = 'Az09._:-ok';
    assert.equal((await createJob(server.url, punctuated, { durationMs: 1 })).type, punctuated);
  });

  it('createJob rejects a payload over 64 KiB with BAD_USER_INPUT naming `payload`', T, async () => {
    const type = uniqueType('big');
    // A JSON string of n characters encodes to n + 2 bytes.
    await assertBadInput(server.url, { type, payload: 'x'.repeat(64 * 1024 - 1) }, 'payload', 'payload of 64 KiB + 1 byte');
    await assertBadInput(server.url, { type, payload: { blob: 'x'.repeat(100_000) } }, 'payload', 'payload of ~100 KB');
    const page = await jobsPage(server.url, { type });
    assert.equal(page.totalCount, 0, 'rejected jobs are not stored');

    const atLimit = await createJob(server.url, type, 'x'.repeat(64 * 1024 - 2));
    assert.equal(atLimit.payload.length, 64 * 1024 - 2, 'a payload of exactly 64 KiB is accepted');
  });

  it('GET /query runs queries (with variables)', T, async () => {
    const job = await createJob(server.url, 'get-query', { durationMs: 1 });
    const q = new URLSearchParams({
      query: 'query GetJob($id: ID!) { job(id: $id) { id type } }',
      variables: JSON.stringify({ id: job.id }),
    });
    const res = await request(`${server.url}/query?${q}`, { headers: { accept: 'application/json' } });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.errors, undefined, res.text);
    assert.deepEqual(res.json.data, { job: { id: job.id, type: 'get-query' } });

    const plain = new URLSearchParams({ query: '{ jobs(first: 1) { totalCount } }' });
    const res2 = await request(`${server.url}/query?${plain}`, { headers: { accept: 'application/json' } });
    assert.equal(res2.status, 200, res2.text);
    assert.ok(res2.json.data.jobs.totalCount >= 1, res2.text);
  });

  it('GET /query rejects a mutation with 405 and does not run it', T, async () => {
    const type = uniqueType('getmut');
    const q = new URLSearchParams({ query: `mutation { createJob(input: { type: "${type}" }) { id } }` });
    const res = await request(`${server.url}/query?${q}`, { headers: { accept: 'application/json' } });
    assert.equal(res.status, 405, `GET with a mutation: ${res.status} ${res.text}`);
    const page = await jobsPage(server.url, { type });
    assert.equal(page.totalCount, 0, 'the mutation sent with GET must not create a job');
  });
});
