// PostgreSQL restarted under load, with two server processes on it: while
// it is down they answer at once that the store is unavailable (and /ready
// says 503 while /health stays 200), afterwards
// they recover by themselves, and no acknowledged job is lost.
//
// This file restarts the local cluster, so it runs last and alone
// (npm test runs one file at a time); it always starts PostgreSQL again.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { canControlPostgres, createPostgresSchema, ensurePostgresRunning, needPostgres, stopPostgres } from '../lib/database.mjs';
import { statsOf } from '../lib/fleet.mjs';
import { startServer } from '../lib/server.mjs';
import { CREATE_JOB, gqlPost, request, uniqueType, waitFor } from '../lib/util.mjs';

const OUTAGE_MS = 2_000;
// Longest a request may take while PostgreSQL is down: an answer, not a hang.
const PROMPT_MS = 3_000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Creates one job over REST or GraphQL. Returns { ok, id } when the job was
 * acknowledged, { unavailable } for a 503 or SERVICE_UNAVAILABLE, and
 * { unexpected } for anything else (another status or code, a timeout).
 */
async function tryCreate(server, via, type, payload) {
  const startedAt = Date.now();
  const took = () => Date.now() - startedAt;
  try {
    if (via === 'rest') {
      const res = await request(`${server.url}/jobs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ type, payload }),
        timeoutMs: 10_000,
      });
      if (res.status === 201 && res.json?.id) return { ok: true, id: res.json.id, ms: took() };
      if (res.status === 503 && typeof res.json?.error === 'string') return { unavailable: true, ms: took() };
      return { unexpected: `REST ${res.status} ${res.text}`, ms: took() };
    }
    const res = await gqlPost(server.url, CREATE_JOB, { input: { type, payload } }, { timeoutMs: 10_000 });
    const id = res.json?.data?.createJob?.id;
    if (res.status === 200 && id && !res.json.errors) return { ok: true, id, ms: took() };
    const codes = (res.json?.errors ?? []).map((e) => e.extensions?.code);
    if (codes.length > 0 && codes.every((c) => c === 'SERVICE_UNAVAILABLE')) return { unavailable: true, ms: took() };
    return { unexpected: `GraphQL ${res.status} ${res.text}`, ms: took() };
  } catch (err) {
    return { unexpected: `${via}: ${err.message}`, ms: took() };
  }
}

/** A read while PostgreSQL is down: stats must answer SERVICE_UNAVAILABLE, GET /jobs 503. */
async function assertUnavailableReads(server, label) {
  const t0 = Date.now();
  const gql = await gqlPost(server.url, 'query { stats { pending } }', undefined, { timeoutMs: 10_000 });
  const gqlMs = Date.now() - t0;
  assert.equal(gql.status, 200, `${label} stats HTTP status: ${gql.text}`);
  assert.equal(gql.json?.errors?.[0]?.extensions?.code, 'SERVICE_UNAVAILABLE', `${label} stats while PostgreSQL is down: ${gql.text}`);
  const t1 = Date.now();
  const rest = await request(`${server.url}/jobs?limit=1`, { timeoutMs: 10_000 });
  const restMs = Date.now() - t1;
  assert.equal(rest.status, 503, `${label} GET /jobs while PostgreSQL is down: ${rest.status} ${rest.text}`);
  assert.equal(rest.headers.get('content-type'), 'application/json', `${label} 503 is JSON`);
  assert.equal(typeof rest.json?.error, 'string', `${label} 503 body: ${rest.text}`);
  assert.ok(gqlMs < PROMPT_MS && restMs < PROMPT_MS, `${label} answered in ${gqlMs} ms (GraphQL) and ${restMs} ms (REST)`);
  return Math.max(gqlMs, restMs);
}

describe('PostgreSQL restart under load', { timeout: 130_000 }, () => {
  it('two servers answer SERVICE_UNAVAILABLE while it is down, recover by themselves and lose no acknowledged job', { timeout: 120_000 }, async (t) => {
    if (!(await needPostgres(t))) return;
    if (!(await canControlPostgres())) {
      const why = 'pg_ctlcluster cannot control the PostgreSQL cluster (set JOBQUEUE_TEST_POSTGRES_CLUSTER="VERSION NAME")';
      if (process.env.JOBQUEUE_REQUIRE_POSTGRES === '1') throw new Error(why);
      console.warn(`\n*** WARNING: SKIPPING "${t.name}": ${why}\n`);
      t.skip(why);
      return;
    }
    const db = await createPostgresSchema('pg_restart');
    const servers = [];
    let streaming = false;
    let loops = [];
    try {
      const env = { DATABASE_URL: db.databaseUrl, WORKERS: '4', LEASE_DURATION: '4s', POLL_INTERVAL: '500ms' };
      const a = await startServer({ ...env, INSTANCE_ID: 'restart-a' }, { label: 'A' });
      servers.push(a);
      const b = await startServer({ ...env, INSTANCE_ID: 'restart-b' }, { label: 'B' });
      servers.push(b);
      const type = uniqueType('pg-restart');

      // The load: on each server, one loop creating over REST and one over
      // GraphQL, each pausing 10 ms between requests.
      const acked = new Set();
      const lastAck = new Map(); // server label → time of its last acknowledged creation
      const ackCount = new Map();
      const unexpected = [];
      const unavailable = { count: 0, maxMs: 0 };
      streaming = true;
      const loop = async (server, label, via) => {
        for (let i = 0; streaming; i++) {
          const r = await tryCreate(server, via, type, { durationMs: 20, via, i });
          if (r.ok) {
            acked.add(r.id);
            lastAck.set(label, Date.now());
            ackCount.set(label, (ackCount.get(label) ?? 0) + 1);
          } else if (r.unavailable) {
            unavailable.count++;
            unavailable.maxMs = Math.max(unavailable.maxMs, r.ms);
          } else {
            unexpected.push(`${label}: ${r.unexpected} (${r.ms} ms)`);
          }
          await sleep(10);
        }
      };
      loops = [loop(a, 'A', 'rest'), loop(a, 'A', 'graphql'), loop(b, 'B', 'rest'), loop(b, 'B', 'graphql')];
      await waitFor(() => (ackCount.get('A') ?? 0) >= 20 && (ackCount.get('B') ?? 0) >= 20, {
        timeoutMs: 15_000,
        label: '20 creations acknowledged by each server',
      });

      const stopAt = Date.now();
      await stopPostgres();
      const downAt = Date.now();
      const ackedBeforeOutage = acked.size;
      // Throughout the outage both servers answer at once, and say why.
      let probes = 0;
      let slowest = 0;
      do {
        for (const [server, label] of [[a, 'A'], [b, 'B']]) {
          slowest = Math.max(slowest, await assertUnavailableReads(server, label));
          for (const via of ['rest', 'graphql']) {
            const r = await tryCreate(server, via, type, { probe: true });
            assert.ok(r.unavailable, `${label} ${via} creation while PostgreSQL is down: ${JSON.stringify(r)}`);
            assert.ok(r.ms < PROMPT_MS, `${label} ${via} creation answered after ${r.ms} ms`);
          }
          const health = await request(`${server.url}/health`, { timeoutMs: PROMPT_MS });
          assert.equal(health.status, 200, `${label} /health while PostgreSQL is down`);
          // Alive, but not ready: a load balancer sends its requests elsewhere.
          const ready = await request(`${server.url}/ready`, { timeoutMs: PROMPT_MS });
          assert.equal(ready.status, 503, `${label} /ready while PostgreSQL is down: ${ready.text}`);
          assert.deepEqual(ready.json, { ready: false, reason: 'store unavailable' }, `${label} /ready body`);
          probes++;
        }
        await sleep(100);
      } while (Date.now() - downAt < OUTAGE_MS);
      assert.equal(a.process.exitCode, null, `A still runs\n${a.tail()}`);
      assert.equal(b.process.exitCode, null, `B still runs\n${b.tail()}`);

      const startAt = Date.now();
      await ensurePostgresRunning();
      const upAt = Date.now();
      // Both recover by themselves: creations are acknowledged again.
      const recovered = await waitFor(
        () => (lastAck.get('A') ?? 0) > upAt && (lastAck.get('B') ?? 0) > upAt && { A: lastAck.get('A') - upAt, B: lastAck.get('B') - upAt },
        { timeoutMs: 20_000, intervalMs: 50, label: 'both servers to acknowledge creations again after PostgreSQL is back' },
      );
      for (const [server, label] of [[a, 'A'], [b, 'B']]) {
        await waitFor(async () => (await request(`${server.url}/ready`, { timeoutMs: PROMPT_MS })).status === 200, {
          timeoutMs: 10_000,
          label: `${label} /ready to answer 200 again after PostgreSQL is back`,
        });
      }
      const countsAtRecovery = { A: ackCount.get('A'), B: ackCount.get('B') };
      await waitFor(() => ackCount.get('A') >= countsAtRecovery.A + 20 && ackCount.get('B') >= countsAtRecovery.B + 20, {
        timeoutMs: 15_000,
        label: '20 more creations acknowledged by each server',
      });
      streaming = false;
      await Promise.all(loops);

      console.log(
        `pg restart: stop took ${downAt - stopAt} ms, down ${startAt - downAt} ms (${probes} probe rounds, slowest read ${slowest} ms), ` +
          `start took ${upAt - startAt} ms; first acknowledgement after restart: ${JSON.stringify(recovered)} ms; ` +
          `${acked.size} acknowledged (${ackedBeforeOutage} before the outage), ${unavailable.count} unavailable answers ` +
          `(slowest ${unavailable.maxMs} ms), ${unexpected.length} unexpected`,
      );
      assert.deepEqual(unexpected, [], 'every creation was either acknowledged or refused as unavailable');

      // Every acknowledged job completes; no stored job is left unfinished.
      const ids = [...acked];
      let rows;
      await waitFor(
        async () => {
          rows = await db.query(`SELECT id::text, status, attempts, error FROM ${db.table} WHERE type = $1`, [type]);
          return rows.length >= ids.length && rows.every((r) => r.status === 'completed');
        },
        { timeoutMs: 45_000, intervalMs: 250, label: 'every stored job to be completed' },
      ).catch((err) => {
        const unfinished = (rows ?? []).filter((r) => r.status !== 'completed');
        throw new Error(`${err.message}; unfinished: ${JSON.stringify(unfinished.slice(0, 10))} (${unfinished.length})`);
      });
      const stored = new Map(rows.map((r) => [r.id, r]));
      const lost = ids.filter((id) => !stored.has(id));
      assert.deepEqual(lost, [], 'acknowledged jobs missing from the store');
      const again = rows.filter((r) => r.attempts > 1);
      console.log(
        `pg restart: ${rows.length} stored (${rows.length - ids.length} not acknowledged), all completed; ` +
          `${again.length} ran more than once: ${JSON.stringify(again.slice(0, 5))}`,
      );
      const stats = await statsOf(a.url, type);
      assert.deepEqual(stats, { pending: 0, processing: 0, completed: rows.length, failed: 0, cancelled: 0 }, 'stats after recovery');

      for (const s of servers) {
        const { code, signal } = await s.stop();
        assert.equal(code, 0, `exit code (signal ${signal})\n${s.tail()}`);
      }
    } finally {
      streaming = false;
      await ensurePostgresRunning();
      await Promise.all(loops);
      for (const s of servers) await s.stop().catch(() => {});
      await db.drop();
    }
  });
});
