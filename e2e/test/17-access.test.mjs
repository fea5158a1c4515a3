// Access control with real clients: static tokens over plain HTTP, the npm
// graphql-ws client with connectionParams, the legacy
// subscriptions-transport-ws client, Server-Sent Events with a header, the
// protocol's close codes with authentication on, and two users who never see
// each other's jobs while an admin and a viewer see both.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';

import { createClient } from 'graphql-ws';
import subscriptionsTransportWs from 'subscriptions-transport-ws';
import WebSocket from 'ws';

import { serverBinary, useServer } from '../lib/server.mjs';
import { CREATE_JOB, JOB_UPDATED, gqlPost, request, safeStringify, uniqueType, withDeadline } from '../lib/util.mjs';

const { SubscriptionClient } = subscriptionsTransportWs;
const T = { timeout: 30_000 };

// Tokens made as the README says: `server token new`, the entries in a file.
const dir = mkdtempSync(join(tmpdir(), 'jobqueue-access-'));
const tokens = {};
const entries = [];
for (const [name, role] of [['ops', 'admin'], ['watch', 'viewer'], ['ann', 'user'], ['bob', 'user']]) {
  const [token, entry] = execFileSync(serverBinary(), ['token', 'new', '--name', name, '--role', role], { encoding: 'utf8' })
    .trim()
    .split('\n');
  tokens[name] = token;
  entries.push(entry);
}
const tokensFile = join(dir, 'tokens.json');
writeFileSync(tokensFile, `{"tokens": [${entries.join(',')}]}`);
after(() => rmSync(dir, { recursive: true, force: true }));

const bearer = (name) => ({ authorization: `Bearer ${tokens[name]}` });

async function gql(server, name, query, variables) {
  const res = await gqlPost(server.url, query, variables, { headers: name ? bearer(name) : {} });
  return res;
}

async function create(server, name, type) {
  const res = await gql(server, name, CREATE_JOB, { input: { type } });
  assert.equal(res.status, 200, res.text);
  assert.equal(res.json.errors, undefined, res.text);
  return res.json.data.createJob;
}

/** Resolves with the close event of a graphql-ws client that is expected to be refused. */
function refusedClient(url, connectionParams) {
  return new Promise((resolve, reject) => {
    const client = createClient({
      url,
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      lazy: false,
      connectionParams,
      on: {
        connected: () => reject(new Error('connection acknowledged without a valid credential')),
        closed: (event) => resolve({ code: event?.code, reason: event?.reason }),
      },
      onNonLazyError: () => {},
    });
    setTimeout(() => client.dispose(), 10_000).unref();
  });
}

/**
 * Collects the jobUpdated events of a graphql-ws subscription; until(pred)
 * resolves once pred(seen) holds, checked at every event.
 */
function watch(client, variables) {
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
  const dispose = client.subscribe(
    { query: JOB_UPDATED, variables },
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
    dispose,
    until: (pred) =>
      new Promise((resolve, reject) => {
        waiters.push({ pred, resolve, reject });
        check();
      }),
  };
}

const completed = (seen, id) => seen.some((j) => j.id === id && j.status === 'COMPLETED');

describe('access control', { timeout: 120_000 }, () => {
  const server = useServer(
    { AUTH: 'token', API_TOKENS_FILE: tokensFile, WORKERS: '2', PROCESSING_TIME: '200ms', WS_INIT_TIMEOUT: '500ms' },
    { label: 'access' },
  );

  it('plain HTTP without a token gets 401 with WWW-Authenticate and UNAUTHENTICATED; /health stays open', T, async () => {
    const q = await gql(server, null, '{ stats { pending } }');
    assert.equal(q.status, 401, q.text);
    assert.match(q.headers.get('www-authenticate') ?? '', /^Bearer/);
    assert.equal(q.json.errors[0].extensions.code, 'UNAUTHENTICATED', q.text);
    const bad = await request(`${server.url}/jobs`, { headers: { authorization: 'Bearer jq_not-a-token' } });
    assert.equal(bad.status, 401, bad.text);
    assert.match(bad.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
    assert.ok(bad.json.error, bad.text);
    const rest = await request(`${server.url}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"type":"x"}' });
    assert.equal(rest.status, 401, rest.text);
    const health = await request(`${server.url}/health`);
    assert.equal(health.status, 200);
    const ok = await request(`${server.url}/jobs`, { headers: bearer('ops') });
    assert.equal(ok.status, 200, ok.text);
  });

  it('graphql-ws with connectionParams creates a job and watches it to COMPLETED; without a token it is closed with 4403', T, async () => {
    const client = createClient({
      url: server.wsUrl,
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      connectionParams: async () => ({ Authorization: `Bearer ${tokens.ann}` }),
    });
    try {
      const type = uniqueType('ws-auth');
      const job = await create(server, 'ann', type);
      const w = watch(client, { id: job.id });
      await withDeadline(w.until((seen) => completed(seen, job.id)), 15_000, 'the job to complete over graphql-ws');
      w.dispose();
    } finally {
      await client.dispose();
    }
    for (const params of [undefined, {}, { Authorization: 'Bearer jq_wrong' }]) {
      const closed = await withDeadline(refusedClient(server.wsUrl, params), 10_000, 'the refusal');
      assert.equal(closed.code, 4403, `connectionParams ${safeStringify(params)}: ${safeStringify(closed)}`);
    }
  });

  it('the legacy client authenticates with connectionParams; a bad token gets a connection error', T, async () => {
    const type = uniqueType('legacy-auth');
    const job = await create(server, 'bob', type);
    const client = new SubscriptionClient(server.wsUrl, { reconnect: false, connectionParams: { authToken: tokens.bob }, timeout: 10_000 }, WebSocket);
    try {
      const seen = [];
      await withDeadline(
        new Promise((resolve, reject) => {
          client.request({ query: JOB_UPDATED, variables: { id: job.id } }).subscribe({
            next: (msg) => {
              if (msg.errors) return reject(new Error(safeStringify(msg.errors)));
              seen.push(msg.data.jobUpdated.status);
              if (msg.data.jobUpdated.status === 'COMPLETED') resolve();
            },
            error: (err) => reject(new Error(safeStringify(err))),
          });
        }),
        15_000,
        'the job to complete over the legacy protocol',
      );
    } finally {
      client.close();
    }
    const refused = new SubscriptionClient(server.wsUrl, { reconnect: false, connectionParams: { authToken: 'jq_wrong' }, timeout: 10_000 }, WebSocket);
    try {
      const err = await withDeadline(
        new Promise((resolve) => {
          refused.request({ query: JOB_UPDATED, variables: { id: job.id } }).subscribe({ next: () => {}, error: resolve });
          refused.onError(resolve);
          refused.onDisconnected(() => resolve(new Error('disconnected')));
        }),
        10_000,
        'the legacy refusal',
      );
      assert.ok(err, 'an error or a disconnection');
    } finally {
      refused.close();
    }
  });

  it('SSE with an Authorization header streams the job; without one it is 401', T, async () => {
    const job = await create(server, 'ann', uniqueType('sse-auth'));
    const body = JSON.stringify({ query: JOB_UPDATED, variables: { id: job.id } });
    const none = await fetch(`${server.url}/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body,
      signal: AbortSignal.timeout(10_000),
    });
    assert.equal(none.status, 401);
    await none.body?.cancel();
    const res = await fetch(`${server.url}/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...bearer('ann') },
      body,
      signal: AbortSignal.timeout(15_000),
    });
    assert.equal(res.status, 200);
    const text = await res.text(); // the stream completes with the job
    assert.match(text, /"status":"COMPLETED"/, text.slice(0, 500));
  });

  it('close codes with authentication on: 4400, 4401, 4408, 4409, 4429', T, async () => {
    const raw = (steps) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(server.wsUrl, 'graphql-transport-ws');
        ws.on('open', () => steps(ws));
        ws.on('close', (code) => resolve(code));
        ws.on('error', reject);
      });
    const init = (ws) => ws.send(JSON.stringify({ type: 'connection_init', payload: { Authorization: `Bearer ${tokens.ops}` } }));
    const sub = (id) => JSON.stringify({ id, type: 'subscribe', payload: { query: 'subscription { jobUpdated { id } }' } });
    const afterAck = (ws, f) => ws.on('message', (m) => JSON.parse(m).type === 'connection_ack' && f());
    assert.equal(await raw((ws) => ws.send('{"type":"nonsense"}')), 4400);
    assert.equal(await raw((ws) => ws.send(sub('1'))), 4401);
    assert.equal(await raw(() => {}), 4408);
    assert.equal(await raw((ws) => { init(ws); afterAck(ws, () => { ws.send(sub('a')); ws.send(sub('a')); }); }), 4409);
    assert.equal(await raw((ws) => { init(ws); afterAck(ws, () => init(ws)); }), 4429);
    assert.equal(await raw((ws) => ws.send(JSON.stringify({ type: 'connection_init', payload: { Authorization: 'Bearer no' } }))), 4403);
  });

  it('two users never see each other’s jobs; the viewer sees both and may not act; the admin may', T, async () => {
    const type = uniqueType('owners');
    const viewerClient = createClient({ url: server.wsUrl, webSocketImpl: WebSocket, retryAttempts: 0, connectionParams: { Authorization: `Bearer ${tokens.watch}` } });
    const bobClient = createClient({ url: server.wsUrl, webSocketImpl: WebSocket, retryAttempts: 0, connectionParams: { Authorization: `Bearer ${tokens.bob}` } });
    try {
      // Firehoses of this type. Each is live once it has seen a probe job
      // of bob's (the viewer sees every job); the jobs come after.
      const viewerSaw = watch(viewerClient, { type });
      const bobSaw = watch(bobClient, { type });
      const probe = await create(server, 'bob', type);
      await withDeadline(Promise.all([viewerSaw.until((s) => s.some((j) => j.id === probe.id)), bobSaw.until((s) => s.some((j) => j.id === probe.id))]), 10_000, 'both firehoses to be live');
      const annJob = await create(server, 'ann', type);
      const bobJob = await create(server, 'bob', type);

      const owner = await gql(server, 'ops', 'query($id: ID!) { job(id: $id) { owner } }', { id: annJob.id });
      assert.equal(owner.json.data.job.owner, 'ann', owner.text);

      // bob: ann's job does not exist for him, anywhere.
      const byId = await gql(server, 'bob', 'query($id: ID!) { job(id: $id) { id } }', { id: annJob.id });
      assert.equal(byId.json.data.job, null, byId.text); // as for an id that does not exist
      assert.equal(byId.json.errors, undefined, byId.text);
      const cancel = await gql(server, 'bob', 'mutation($id: ID!) { cancelJob(id: $id) { id } }', { id: annJob.id });
      assert.equal(cancel.json.errors?.[0]?.extensions?.code, 'NOT_FOUND', cancel.text);
      const list = await gql(server, 'bob', 'query($t: String) { jobs(type: $t, first: 100) { nodes { id owner } } }', { t: type });
      assert.deepEqual(list.json.data.jobs.nodes.map((j) => j.id).sort(), [bobJob.id, probe.id].sort(), list.text);
      const rest = await request(`${server.url}/jobs?type=${type}`, { headers: bearer('bob') });
      assert.deepEqual(rest.json.map((j) => j.id).sort(), [bobJob.id, probe.id].sort(), rest.text);
      const stats = await gql(server, 'bob', 'query($t: String) { stats(type: $t) { pending processing completed failed cancelled } }', { t: type });
      const total = Object.values(stats.json.data.stats).reduce((a, b) => a + b, 0);
      assert.equal(total, 2, stats.text);

      // The viewer sees both, and may not act.
      const all = await gql(server, 'watch', 'query($t: String) { jobs(type: $t, first: 100) { nodes { id } } }', { t: type });
      assert.equal(all.json.data.jobs.nodes.length, 3, all.text);
      const viewerCreate = await gql(server, 'watch', CREATE_JOB, { input: { type } });
      assert.equal(viewerCreate.json.errors?.[0]?.extensions?.code, 'FORBIDDEN', viewerCreate.text);
      const viewerRest = await request(`${server.url}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json', ...bearer('watch') }, body: JSON.stringify({ type }) });
      assert.equal(viewerRest.status, 403, viewerRest.text);

      await withDeadline(viewerSaw.until((s) => completed(s, annJob.id) && completed(s, bobJob.id)), 15_000, 'the viewer to see both jobs complete');
      await withDeadline(bobSaw.until((s) => completed(s, bobJob.id)), 15_000, 'bob to see his job complete');
      assert.ok(!bobSaw.seen.some((j) => j.id === annJob.id), `bob's firehose showed ann's job: ${safeStringify(bobSaw.seen)}`);
      viewerSaw.dispose();
      bobSaw.dispose();
    } finally {
      await viewerClient.dispose();
      await bobClient.dispose();
    }
  });
});
