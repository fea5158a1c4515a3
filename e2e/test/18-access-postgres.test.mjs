// Two users on two server processes sharing one PostgreSQL schema, with
// static tokens: neither ever sees the other's job, by id, in listings, in
// stats or in the firehose, wherever the job was created or ran; an admin
// sees both, from either instance.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

import { createPostgresSchema, needPostgres } from '../lib/database.mjs';
import { newToken, startServer, writeTokensFile } from '../lib/server.mjs';
import { CREATE_JOB, JOB_UPDATED, gqlPost, request, safeStringify, uniqueType, withDeadline } from '../lib/util.mjs';

/** A graphql-ws firehose of one type as one identity; until(pred) resolves once pred(seen) holds. */
function firehose(wsUrl, token, type) {
  const client = createClient({ url: wsUrl, webSocketImpl: WebSocket, retryAttempts: 0, connectionParams: { Authorization: `Bearer ${token}` } });
  const seen = [];
  const waiters = [];
  let failed;
  const check = () => {
    for (const w of [...waiters]) {
      if (failed) w.reject(failed);
      else if (w.pred(seen)) w.resolve(seen);
      else continue;
      waiters.splice(waiters.indexOf(w), 1);
    }
  };
  client.subscribe(
    { query: JOB_UPDATED, variables: { type } },
    {
      next: (msg) => {
        if (msg.errors) failed = new Error(safeStringify(msg.errors));
        else seen.push(msg.data.jobUpdated);
        check();
      },
      error: (err) => {
        failed = new Error(`subscription error: ${safeStringify(err)}`);
        check();
      },
      complete: () => {},
    },
  );
  return {
    seen,
    until: (pred, label) => withDeadline(new Promise((resolve, reject) => { waiters.push({ pred, resolve, reject }); check(); }), 20_000, label),
    close: () => client.dispose(),
  };
}

const has = (id, status) => (seen) => seen.some((j) => j.id === id && (!status || j.status === status));

describe('two users on two instances sharing PostgreSQL', { timeout: 120_000 }, () => {
  it('never see each other’s jobs; an admin sees both', { timeout: 90_000 }, async (t) => {
    if (!(await needPostgres(t))) return;
    const db = await createPostgresSchema('access');
    const dir = mkdtempSync(join(tmpdir(), 'jobqueue-access-pg-'));
    const servers = [];
    const hoses = [];
    try {
      const ann = await newToken('ann', 'user');
      const bob = await newToken('bob', 'user');
      const ops = await newToken('ops', 'admin');
      const tokensFile = writeTokensFile(join(dir, 'tokens.json'), [ann.entry, bob.entry, ops.entry]);
      const env = { DATABASE_URL: db.databaseUrl, WORKERS: '2', PROCESSING_TIME: '200ms', AUTH: 'token', API_TOKENS_FILE: tokensFile };
      const a = await startServer({ ...env, INSTANCE_ID: 'access-a' }, { label: 'A' });
      servers.push(a);
      const b = await startServer({ ...env, INSTANCE_ID: 'access-b' }, { label: 'B' });
      servers.push(b);
      const as = (who) => ({ authorization: `Bearer ${who.token}` });
      const create = async (server, who, type) => {
        const res = await gqlPost(server.url, CREATE_JOB, { input: { type } }, { headers: as(who) });
        assert.equal(res.json?.errors, undefined, res.text);
        return res.json.data.createJob;
      };

      const type = uniqueType('owners-pg');
      // ann watches on A, bob on B, the admin on B. Each firehose is live
      // once it has seen a probe of its own created on the other instance.
      const annHose = firehose(a.wsUrl, ann.token, type);
      const bobHose = firehose(b.wsUrl, bob.token, type);
      const opsHose = firehose(b.wsUrl, ops.token, type);
      hoses.push(annHose, bobHose, opsHose);
      const annProbe = await create(b, ann, type);
      const bobProbe = await create(a, bob, type);
      await annHose.until(has(annProbe.id), 'ann to see her probe from B on A');
      await bobHose.until(has(bobProbe.id), 'bob to see his probe from A on B');
      await opsHose.until((s) => has(annProbe.id)(s) && has(bobProbe.id)(s), 'the admin to see both probes');

      const annJob = await create(a, ann, type);
      const bobJob = await create(b, bob, type);
      await annHose.until(has(annJob.id, 'COMPLETED'), 'ann to see her job complete');
      await bobHose.until(has(bobJob.id, 'COMPLETED'), 'bob to see his job complete');
      await opsHose.until((s) => has(annJob.id, 'COMPLETED')(s) && has(bobJob.id, 'COMPLETED')(s), 'the admin to see both complete');

      const annIds = new Set([annProbe.id, annJob.id]);
      const bobIds = new Set([bobProbe.id, bobJob.id]);
      assert.ok(annHose.seen.every((j) => annIds.has(j.id)), `ann's firehose: ${safeStringify(annHose.seen)}`);
      assert.ok(bobHose.seen.every((j) => bobIds.has(j.id)), `bob's firehose: ${safeStringify(bobHose.seen)}`);

      for (const [who, own, other] of [[ann, annIds, bobJob], [bob, bobIds, annJob]]) {
        for (const server of [a, b]) {
          const byId = await gqlPost(server.url, 'query($id: ID!) { job(id: $id) { id } }', { id: other.id }, { headers: as(who) });
          assert.equal(byId.json.data.job, null, byId.text);
          const retry = await gqlPost(server.url, 'mutation($id: ID!) { retryJob(id: $id) { id } }', { id: other.id }, { headers: as(who) });
          assert.equal(retry.json.errors?.[0]?.extensions?.code, 'NOT_FOUND', retry.text);
          const list = await gqlPost(server.url, 'query($t: String) { jobs(type: $t, first: 50) { totalCount nodes { id owner } } }', { t: type }, { headers: as(who) });
          assert.deepEqual(new Set(list.json.data.jobs.nodes.map((j) => j.id)), own, list.text);
          assert.equal(list.json.data.jobs.totalCount, own.size, list.text);
          const rest = await request(`${server.url}/jobs?type=${type}`, { headers: as(who) });
          assert.deepEqual(new Set(rest.json.map((j) => j.id)), own, rest.text);
          const stats = await gqlPost(server.url, 'query($t: String) { stats(type: $t) { completed } }', { t: type }, { headers: as(who) });
          assert.equal(stats.json.data.stats.completed, own.size, stats.text);
        }
      }
      const all = await gqlPost(a.url, 'query($t: String) { jobs(type: $t, first: 50) { nodes { id owner } } }', { t: type }, { headers: as(ops) });
      assert.equal(all.json.data.jobs.nodes.length, 4, all.text);
      assert.deepEqual(new Set(all.json.data.jobs.nodes.map((j) => j.owner)), new Set(['ann', 'bob']), all.text);
    } finally {
      for (const h of hoses) await h.close();
      for (const s of servers) {
        const { code } = await s.stop();
        assert.equal(code, 0, s.tail());
      }
      rmSync(dir, { recursive: true, force: true });
      await db.drop();
    }
  });
});
