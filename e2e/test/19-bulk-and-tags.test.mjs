// Bulk operations and tags with real clients: createJobs (all or nothing),
// jobs(tag:), the jobUpdated firehose by tag over graphql-ws, cancelJobs and
// retryJobs by filter, deleteJob, and bad input named in BAD_USER_INPUT.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

import { useServer } from '../lib/server.mjs';
import { gqlPost, safeStringify, uniqueType, withDeadline } from '../lib/util.mjs';

const T = { timeout: 30_000 };
const CREATE_JOBS = 'mutation($in: [CreateJobInput!]!) { createJobs(inputs: $in) { id type tags status } }';
const LATER = '2999-01-01T00:00:00Z'; // due never: the jobs stay PENDING

async function gql(server, query, variables) {
  const res = await gqlPost(server.url, query, variables);
  assert.equal(res.status, 200, res.text);
  return res.json;
}

describe('bulk operations and tags', { timeout: 90_000 }, () => {
  const server = useServer({ WORKERS: '2', PROCESSING_TIME: '50ms' }, { label: 'bulk' });

  it('createJobs creates all or nothing, tags filter listings and the firehose', T, async () => {
    const type = uniqueType('bulk');
    const client = createClient({ url: server.wsUrl, webSocketImpl: WebSocket, retryAttempts: 0 });
    try {
      const seen = [];
      const waiters = [];
      let failed;
      const check = () => {
        for (const w of [...waiters]) {
          if (failed) w.reject(failed);
          else if (w.pred(seen)) w.resolve();
          else continue;
          waiters.splice(waiters.indexOf(w), 1);
        }
      };
      const until = (pred, label) => withDeadline(new Promise((resolve, reject) => { waiters.push({ pred, resolve, reject }); check(); }), 10_000, label);
      client.subscribe(
        { query: 'subscription($tag: String) { jobUpdated(tag: $tag) { id tags status } }', variables: { tag: `${type}-red` } },
        {
          next: (msg) => {
            if (msg.errors) failed = new Error(safeStringify(msg.errors));
            else seen.push(msg.data.jobUpdated);
            check();
          },
          error: (err) => {
            failed = new Error(safeStringify(err));
            check();
          },
          complete: () => {},
        },
      );
      // The firehose is live once it sees a probe carrying the tag run
      // (it runs after the subscription has had time to register).
      // A probe that finished before the subscription registered is
      // missed; then another is sent (as lib/fleet.mjs's subscribeLive does).
      const until2 = (pred) => withDeadline(new Promise((resolve, reject) => { waiters.push({ pred, resolve, reject }); check(); }), 2_000, 'probe').then(() => true, () => false);
      let live = false;
      for (let i = 0; i < 5 && !live; i++) {
        const probe = await gql(server, CREATE_JOBS, { in: [{ type, tags: [`${type}-red`] }] });
        const probeId = probe.data.createJobs[0].id;
        live = await until2((s) => s.some((j) => j.id === probeId && j.status === 'COMPLETED'));
      }
      assert.ok(live, 'the tag firehose never saw a probe');

      const bad = await gql(server, CREATE_JOBS, { in: [{ type }, { type }, { type: 'has space' }] });
      assert.equal(bad.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT', safeStringify(bad));
      assert.match(bad.errors[0].message, /inputs\[2\]\.type/);
      const before = await gql(server, 'query($t: String) { jobs(type: $t) { totalCount } }', { t: type });

      const made = await gql(server, CREATE_JOBS, {
        in: [
          { type, tags: [`${type}-red`, 'x'] },
          { type, tags: [`${type}-blue`], runAt: LATER },
          { type, tags: [`${type}-blue`], runAt: LATER },
        ],
      });
      assert.equal(made.errors, undefined, safeStringify(made));
      assert.deepEqual(made.data.createJobs.map((j) => j.tags), [[`${type}-red`, 'x'].sort(), [`${type}-blue`], [`${type}-blue`]]);
      const after = await gql(server, 'query($t: String) { jobs(type: $t) { totalCount } }', { t: type });
      assert.equal(after.data.jobs.totalCount, before.data.jobs.totalCount + 3, 'the failed call created nothing');

      const blue = await gql(server, 'query($tag: String) { jobs(tag: $tag) { totalCount nodes { id } } }', { tag: `${type}-blue` });
      assert.equal(blue.data.jobs.totalCount, 2, safeStringify(blue));

      const redId = made.data.createJobs[0].id;
      await until((s) => s.some((j) => j.id === redId && j.status === 'COMPLETED'), 'the red job to complete on the tag firehose');
      assert.ok(seen.every((j) => j.tags.includes(`${type}-red`)), `the firehose showed other tags: ${safeStringify(seen)}`);

      // Bulk: cancel the blue ones a page of one at a time, retry them all.
      const c1 = await gql(server, 'mutation($tag: String) { cancelJobs(filter: {tag: $tag}, limit: 1) { count more } }', { tag: `${type}-blue` });
      assert.deepEqual(c1.data.cancelJobs, { count: 1, more: true });
      const c2 = await gql(server, 'mutation($tag: String) { cancelJobs(filter: {tag: $tag}, limit: 1) { count more } }', { tag: `${type}-blue` });
      assert.deepEqual(c2.data.cancelJobs, { count: 1, more: false });
      const r = await gql(server, 'mutation($t: String) { retryJobs(filter: {type: $t, status: CANCELLED}) { count more } }', { t: type });
      assert.deepEqual(r.data.retryJobs, { count: 2, more: false });

      // deleteJob: a pending job is a conflict; a cancelled one goes.
      const id = made.data.createJobs[1].id;
      const pending = await gql(server, 'mutation($id: ID!) { deleteJob(id: $id) }', { id });
      assert.equal(pending.errors?.[0]?.extensions?.code, 'CONFLICT', safeStringify(pending));
      await gql(server, 'mutation($id: ID!) { cancelJob(id: $id) { id } }', { id });
      const deleted = await gql(server, 'mutation($id: ID!) { deleteJob(id: $id) }', { id });
      assert.equal(deleted.data.deleteJob, true, safeStringify(deleted));
      const gone = await gql(server, 'query($id: ID!) { job(id: $id) { id } }', { id });
      assert.equal(gone.data.job, null);
    } finally {
      await client.dispose();
    }
  });

  it('bad input is refused with its code and field', T, async () => {
    const tooMany = await gqlPost(server.url, CREATE_JOBS, { in: Array.from({ length: 101 }, () => ({ type: 'x' })) });
    assert.equal(tooMany.json.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT', tooMany.text);
    assert.match(tooMany.json.errors[0].message, /^inputs: at most 100 inputs/, tooMany.text);
    assert.equal(tooMany.json.data ?? null, null, tooMany.text);
    // Two lists within the bound each, over it together: the request asks too much.
    const fifty = Array.from({ length: 51 }, () => ({ type: 'x' }));
    const twoLists = await gqlPost(server.url, 'mutation($in: [CreateJobInput!]!) { a: createJobs(inputs: $in) { id } b: createJobs(inputs: $in) { id } }', { in: fifty });
    assert.equal(twoLists.json.errors?.[0]?.extensions?.code, 'TOO_MANY_JOBS', twoLists.text);
    const tags = await gql(server, CREATE_JOBS, { in: [{ type: 'x', tags: Array.from({ length: 11 }, (_, i) => `t${i}`) }] });
    assert.equal(tags.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT', safeStringify(tags));
    assert.match(tags.errors[0].message, /tags/);
    const limit = await gql(server, 'mutation { cancelJobs(filter: {}, limit: 0) { count } }');
    assert.equal(limit.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT', safeStringify(limit));
    assert.match(limit.errors[0].message, /limit/);
  });
});
