// Job types with real clients: pauseJobType, resumeJobType,
// setJobTypeLimits, jobTypes and jobType over HTTP, the jobTypeUpdated
// subscription over graphql-ws, PAUSED_TYPES at start, and bad input
// named in BAD_USER_INPUT.

import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

import { startServer, useServer } from '../lib/server.mjs';
import { gqlPost, safeStringify, uniqueType, waitForJobStatus, withDeadline } from '../lib/util.mjs';

const T = { timeout: 30_000 };
const FIELDS = 'name paused concurrency ratePerSecond rateBurst stats { pending processing completed }';
const PAUSED_AT_START = 'e2e-paused-at-start';

async function gql(server, query, variables) {
  const res = await gqlPost(server.url, query, variables);
  assert.equal(res.status, 200, res.text);
  return res.json;
}

async function data(server, query, variables) {
  const json = await gql(server, query, variables);
  assert.equal(json.errors, undefined, safeStringify(json));
  return json.data;
}

describe('job types', { timeout: 90_000 }, () => {
  const server = useServer({ WORKERS: '2', PROCESSING_TIME: '50ms', PAUSED_TYPES: PAUSED_AT_START }, { label: 'types' });

  it('pause, limits and resume, streamed by jobTypeUpdated', T, async () => {
    const type = uniqueType('types');
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
      const until = (pred, label, ms = 10_000) => withDeadline(new Promise((resolve, reject) => { waiters.push({ pred, resolve, reject }); check(); }), ms, label);
      client.subscribe(
        { query: `subscription { jobTypeUpdated { ${FIELDS} } }` },
        {
          next: (msg) => {
            if (msg.errors) failed = new Error(safeStringify(msg.errors));
            else seen.push(msg.data.jobTypeUpdated);
            check();
          },
          error: (err) => {
            failed = new Error(safeStringify(err));
            check();
          },
          complete: () => {},
        },
      );
      // The subscription is live once it sees a pause: one sent before it
      // registered is missed, so pausing (which is idempotent) is repeated.
      let live = false;
      for (let i = 0; i < 10 && !live; i++) {
        const p = await data(server, `mutation($n: String!) { pauseJobType(name: $n) { ${FIELDS} } }`, { n: type });
        assert.equal(p.pauseJobType.paused, true);
        assert.equal(p.pauseJobType.name, type);
        live = await until((s) => s.some((t) => t.name === type && t.paused), 'pause', 1_000).then(() => true, () => false);
      }
      assert.ok(live, 'jobTypeUpdated never showed the pause');

      // A paused type's job waits; another type's job runs meanwhile.
      const held = await data(server, 'mutation($t: String!) { createJob(input: {type: $t}) { id } }', { t: type });
      const other = await data(server, 'mutation($t: String!) { createJob(input: {type: $t}) { id } }', { t: `${type}-other` });
      await waitForJobStatus(server.url, other.createJob.id, 'COMPLETED');
      const still = await data(server, 'query($id: ID!) { job(id: $id) { status } }', { id: held.createJob.id });
      assert.equal(still.job.status, 'PENDING', 'a paused type\'s job ran');

      const limited = await data(server, `mutation($n: String!) { setJobTypeLimits(name: $n, concurrency: 1, ratePerSecond: 2.5) { ${FIELDS} } }`, { n: type });
      assert.deepEqual(
        { c: limited.setJobTypeLimits.concurrency, r: limited.setJobTypeLimits.ratePerSecond, b: limited.setJobTypeLimits.rateBurst, p: limited.setJobTypeLimits.paused },
        { c: 1, r: 2.5, b: 3, p: true },
      );
      await until((s) => s.some((t) => t.name === type && t.concurrency === 1 && t.ratePerSecond === 2.5), 'the limits on jobTypeUpdated');

      const listed = await data(server, `{ jobTypes { ${FIELDS} } }`);
      const mine = listed.jobTypes.find((t) => t.name === type);
      assert.ok(mine, safeStringify(listed));
      assert.equal(mine.stats.pending, 1);
      assert.ok(listed.jobTypes.some((t) => t.name === PAUSED_AT_START && t.paused), 'PAUSED_TYPES type not listed as paused');
      const names = listed.jobTypes.map((t) => t.name);
      assert.deepEqual(names, [...names].sort(), 'jobTypes is not in name order');

      const resumed = await data(server, `mutation($n: String!) { resumeJobType(name: $n) { ${FIELDS} } }`, { n: type });
      assert.equal(resumed.resumeJobType.paused, false);
      await until((s) => s.some((t) => t.name === type && !t.paused), 'the resume on jobTypeUpdated');
      await waitForJobStatus(server.url, held.createJob.id, 'COMPLETED');

      const cleared = await data(server, `mutation($n: String!) { setJobTypeLimits(name: $n) { ${FIELDS} } }`, { n: type });
      assert.deepEqual(
        [cleared.setJobTypeLimits.concurrency, cleared.setJobTypeLimits.ratePerSecond, cleared.setJobTypeLimits.rateBurst],
        [null, null, null],
      );
      await until((s) => s.some((t) => t.name === type && t.concurrency === null && !t.paused), 'the cleared limits on jobTypeUpdated');
      const one = await data(server, `query($n: String!) { jobType(name: $n) { ${FIELDS} } }`, { n: type });
      assert.equal(one.jobType.stats.completed, 1, safeStringify(one));
      const none = await data(server, 'query($n: String!) { jobType(name: $n) { name } }', { n: `${type}-never` });
      assert.equal(none.jobType, null);
    } finally {
      await client.dispose();
    }
  });

  it('bad input is refused with its code and field', T, async () => {
    const cases = [
      ['mutation { setJobTypeLimits(name: "x", concurrency: 0) { name } }', /concurrency/],
      ['mutation { setJobTypeLimits(name: "x", concurrency: -3) { name } }', /concurrency/],
      ['mutation { setJobTypeLimits(name: "x", ratePerSecond: -1) { name } }', /ratePerSecond/],
      ['mutation { setJobTypeLimits(name: "x", ratePerSecond: 0) { name } }', /ratePerSecond/],
      ['mutation { setJobTypeLimits(name: "x", ratePerSecond: 1, rateBurst: 0) { name } }', /rateBurst/],
      ['mutation { setJobTypeLimits(name: "x", rateBurst: 4) { name } }', /rateBurst/],
      ['mutation { setJobTypeLimits(name: "has space", concurrency: 1) { name } }', /name/],
      ['mutation { pauseJobType(name: "") { name } }', /name/],
      ['mutation { resumeJobType(name: "bad/name") { name } }', /name/],
      ['{ jobType(name: "bad name") { name } }', /name/],
    ];
    for (const [query, field] of cases) {
      const res = await gql(server, query);
      assert.equal(res.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT', `${query}: ${safeStringify(res)}`);
      assert.match(res.errors[0].message, field, query);
    }
  });
});

describe('job types with HANDLERS_FILE', { timeout: 60_000 }, () => {
  it('a type no handler serves is refused in limits and pause, naming name', T, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jobqueue-e2e-'));
    const file = join(dir, 'handlers.json');
    // Never called: the test makes no job.
    writeFileSync(file, JSON.stringify({ email: { url: 'http://127.0.0.1:9/email' } }));
    const server = await startServer({ HANDLERS_FILE: file }, { label: 'types-handlers' });
    try {
      for (const query of [
        'mutation { setJobTypeLimits(name: "emial", concurrency: 2) { name } }',
        'mutation { pauseJobType(name: "emial") { name } }',
      ]) {
        const res = await gql(server, query);
        assert.equal(res.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT', `${query}: ${safeStringify(res)}`);
        assert.match(res.errors[0].message, /^name: /, query);
        assert.match(res.errors[0].message, /emial/, query);
      }
      const ok = await data(server, 'mutation { setJobTypeLimits(name: "email", concurrency: 2) { name concurrency } }');
      assert.deepEqual(ok.setJobTypeLimits, { name: 'email', concurrency: 2 });
    } finally {
      await server.stop();
    }
  });
});
