// Hostile requests of a few kilobytes each, sent from several clients at
// once, while a normal client creates jobs and watches them through
// graphql-ws. Every hostile request gets a quick, clear refusal or a bounded
// answer; the normal client keeps its latency and loses no job; the server's
// memory stays bounded and its CPU returns to idle once the attackers leave.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';

import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

import { startServer } from '../lib/server.mjs';
import { JOB_UPDATED, createJob, gqlPost, request, withDeadline } from '../lib/util.mjs';

const HOSTILE_MS = 8_000;
// Bounds the normal client must stay within while it is under attack.
const NORMAL_P99_MS = 1_000;
const RSS_LIMIT_MB = 300;
const MAX_CONNECTIONS = 150;
const BIG_JOBS = 60;

/** The process's resident memory, in MiB, from /proc. */
function rssMiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}

/** The process's CPU time so far (user + system), in seconds. */
function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
}

const percentile = (values, p) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
};

// The attacks: each returns a description of what it got, and throws when
// the answer is not the bounded, coded refusal it must be.
function attacks(server, unread) {
  const code = (res) => res.json?.errors?.[0]?.extensions?.code;
  const post = (query, timeoutMs = 10_000) => gqlPost(server.url, query, undefined, { timeoutMs });
  const expectCode = (res, codes, what) => {
    assert.ok(codes.includes(code(res)), `${what}: HTTP ${res.status}, code ${code(res)}; body ${res.text.slice(0, 300)}`);
    assert.ok(res.text.length < 64 * 1024, `${what}: a ${res.text.length}-byte answer`);
  };
  const bigAliases = `{ ${Array.from({ length: 24 }, (_, i) => `a${i}: jobs(type: "big", first: 500) { nodes { payload } }`).join(' ')} }`;
  const introspection = `{ ${Array.from({ length: 2_000 }, (_, i) => `s${i}: __schema { types { name fields { name args { name } } } }`).join(' ')} }`;
  const fragments = ['fragment F0 on Query { __typename }'];
  for (let i = 1; i <= 40; i++) fragments.push(`fragment F${i} on Query { ...F${i - 1} ...F${i - 1} }`);
  const fanOut = `query { ...F40 } ${fragments.join(' ')}`;
  const typenames = `{ ${'__typename '.repeat(20_000)}}`;
  // 30,000: under MAX_BODY_BYTES, so the document itself is measured.
  const directives = `{ ${'__typename @skip(if: false) '.repeat(30_000)}}`;
  const creates = `mutation { ${Array.from({ length: 12_000 }, (_, i) => `c${i}: createJob(input: { type: "flood" }) { id }`).join(' ')} }`;
  return {
    'large payloads under aliases': async () => expectCode(await post(bigAliases), ['RESPONSE_TOO_LARGE', 'COMPLEXITY_LIMIT_EXCEEDED', 'SERVER_BUSY'], 'aliases'),
    'introspection aliases': async () => expectCode(await post(introspection), ['QUERY_TOO_LARGE', 'COMPLEXITY_LIMIT_EXCEEDED'], 'introspection'),
    'fragment fan-out over GET': async () => {
      const res = await request(`${server.url}/query?query=${encodeURIComponent(fanOut)}`, { timeoutMs: 10_000 });
      expectCode(res, ['QUERY_TOO_LARGE', 'COMPLEXITY_LIMIT_EXCEEDED'], 'fragment fan-out');
    },
    '20,000 __typename': async () => expectCode(await post(typenames), ['QUERY_TOO_LARGE'], '__typename'),
    '30,000 directives': async () => expectCode(await post(directives), ['QUERY_TOO_LARGE'], 'directives'),
    '12,000 createJob aliases': async () => expectCode(await post(creates), ['TOO_MANY_JOBS', 'QUERY_TOO_LARGE'], 'createJob aliases'),
    // A large answer asked for and never read: over HTTP the write
    // deadline (WRITE_TIMEOUT) frees it; over a websocket the connection's
    // outgoing queue is bounded and WS_WRITE_TIMEOUT ends it. The sockets
    // stay open, unread, until the attackers stop.
    'large answers never read over HTTP': () =>
      new Promise((resolve, reject) => {
        const { hostname, port } = new URL(server.url);
        const body = JSON.stringify({ query: '{ jobs(type: "big", first: 60) { nodes { payload } } }' });
        const socket = net.connect(Number(port), hostname, () => {
          socket.write(`POST /query HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`, () => {
            socket.pause();
            resolve();
          });
        });
        socket.on('error', () => {});
        socket.setTimeout(10_000, () => reject(new Error('the large HTTP request was never written')));
        unread.push(socket);
      }),
    'large answers never read over a websocket': () =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(server.wsUrl, 'graphql-transport-ws');
        unread.push(ws);
        ws.on('error', () => {});
        ws.on('open', () => ws.send(JSON.stringify({ type: 'connection_init' })));
        ws.on('message', (data) => {
          if (JSON.parse(data).type !== 'connection_ack') return;
          for (let i = 0; i < 50; i++) {
            ws.send(JSON.stringify({ id: String(i), type: 'subscribe', payload: { query: '{ jobs(type: "big", first: 20) { nodes { payload } } }' } }));
          }
          ws._socket.pause(); // read nothing more
          resolve();
        });
        ws.on('close', () => resolve());
        setTimeout(() => reject(new Error('the websocket attack never got connection_ack')), 10_000).unref();
      }),
    'a body that never arrives': () =>
      new Promise((resolve, reject) => {
        const { hostname, port } = new URL(server.url);
        const socket = net.connect(Number(port), hostname, () => {
          socket.write(`POST /jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{`);
        });
        let answer = '';
        socket.setTimeout(10_000, () => {
          socket.destroy();
          reject(new Error('no answer to a body that never arrived'));
        });
        socket.on('data', (d) => {
          answer += d;
        });
        socket.on('error', reject);
        socket.on('close', () => {
          // 408, or 503 when the connection came over the limit.
          if (/^HTTP\/1\.1 (408|503) /.test(answer)) resolve();
          else reject(new Error(`a stalled body was answered ${JSON.stringify(answer.slice(0, 200))}`));
        });
      }),
  };
}

describe('hostile load', { timeout: 120_000 }, () => {
  let server;

  before(async () => {
    server = await startServer(
      {
        WORKERS: '4',
        PROCESSING_TIME: '20ms',
        BODY_TIMEOUT: '2s',
        WRITE_TIMEOUT: '2s',
        WS_WRITE_TIMEOUT: '2s',
        MAX_INFLIGHT_RESPONSE_BYTES: String(64 << 20),
        MAX_CONNECTIONS: String(MAX_CONNECTIONS),
      },
      { label: 'hostile' },
    );
    const payload = { blob: 'x'.repeat(60_000) };
    for (let i = 0; i < BIG_JOBS; i++) {
      const res = await gqlPost(server.url, 'mutation($p: JSON) { createJob(input: { type: "big", payload: $p, runAt: "2999-01-01T00:00:00Z" }) { id } }', { p: payload });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.errors, undefined, res.text);
    }
  }, { timeout: 30_000 });

  after(async () => {
    if (!server) return;
    const { code, signal } = await server.stop();
    assert.equal(code, 0, `server exit code (signal ${signal})\n${server.tail()}`);
  }, { timeout: 30_000 });

  it('refuses every attack quickly while a normal client keeps its latency and its jobs', { timeout: 90_000 }, async () => {
    const baselineRss = rssMiB(server.pid);
    let peakRss = baselineRss;
    const sampler = setInterval(() => {
      peakRss = Math.max(peakRss, rssMiB(server.pid));
    }, 50);

    // The normal client: create a job, watch it to COMPLETED.
    const client = createClient({ url: server.wsUrl, webSocketImpl: WebSocket, retryAttempts: 0 });
    const latencies = [];
    const healthLatencies = [];
    let created = 0;
    let completed = 0;
    let normalRunning = true;
    const normal = (async () => {
      while (normalRunning) {
        const start = Date.now();
        const job = await createJob(server.url, 'normal', { durationMs: 10 });
        created++;
        await withDeadline(
          new Promise((resolve, reject) => {
            const dispose = client.subscribe(
              { query: JOB_UPDATED, variables: { id: job.id } },
              {
                next: (msg) => {
                  if (msg.data?.jobUpdated?.status === 'COMPLETED') {
                    dispose();
                    resolve();
                  }
                },
                error: reject,
                complete: () => {},
              },
            );
          }),
          10_000,
          `normal job ${job.id} to complete`,
        );
        completed++;
        latencies.push(Date.now() - start);
        const h = Date.now();
        const res = await request(`${server.url}/health`);
        assert.equal(res.status, 200, `/health under attack: ${res.status} ${res.text}`);
        healthLatencies.push(Date.now() - h);
      }
    })();

    // The attackers: several clients, each running every attack in turn.
    const unread = [];
    const list = attacks(server, unread);
    const answered = Object.fromEntries(Object.keys(list).map((name) => [name, []]));
    const until = Date.now() + HOSTILE_MS;
    const attacker = async () => {
      while (Date.now() < until) {
        for (const [name, attack] of Object.entries(list)) {
          const start = Date.now();
          await attack();
          answered[name].push(Date.now() - start);
        }
      }
    };
    try {
      await Promise.all([attacker(), attacker(), attacker(), attacker()]);
    } finally {
      for (const s of unread) (s.terminate ?? s.destroy).call(s);
    }
    normalRunning = false;
    await normal;
    await client.dispose();
    clearInterval(sampler);

    console.log(
      `hostile load: normal p99 ${percentile(latencies, 99)} ms over ${created} jobs, /health p99 ${percentile(healthLatencies, 99)} ms, ` +
        `peak RSS ${peakRss.toFixed(0)} MiB (from ${baselineRss.toFixed(0)}); slowest refusal ` +
        Object.entries(answered)
          .map(([name, times]) => `${name} ${Math.max(...times)} ms`)
          .join(', '),
    );
    for (const [name, times] of Object.entries(answered)) {
      assert.ok(times.length > 0, `${name}: never answered`);
      const worst = Math.max(...times);
      assert.ok(worst < 5_000, `${name}: slowest answer took ${worst} ms`);
    }
    assert.equal(completed, created, 'every normal job completed');
    assert.ok(created >= 10, `the normal client created only ${created} jobs in ${HOSTILE_MS} ms`);
    const p99 = percentile(latencies, 99);
    assert.ok(p99 < NORMAL_P99_MS, `normal create-to-completed p99 ${p99} ms under attack (bound ${NORMAL_P99_MS} ms)`);
    const healthP99 = percentile(healthLatencies, 99);
    assert.ok(healthP99 < NORMAL_P99_MS, `/health p99 ${healthP99} ms under attack`);
    assert.ok(peakRss < RSS_LIMIT_MB, `peak RSS ${peakRss.toFixed(0)} MiB (from ${baselineRss.toFixed(0)}), bound ${RSS_LIMIT_MB}`);

    // Once the attackers have left, the server goes back to idle: over one
    // second, starting one second after, it uses little CPU.
    await new Promise((r) => setTimeout(r, 1_000));
    const cpuBefore = cpuSeconds(server.pid);
    await new Promise((r) => setTimeout(r, 1_000));
    const busy = cpuSeconds(server.pid) - cpuBefore;
    console.log(`hostile load: ${busy.toFixed(2)} s of CPU in the second after the attack`);
    assert.ok(busy < 0.2, `the server used ${busy.toFixed(2)} s of CPU in the second after the attack ended`);

    // And it still works.
    const res = await request(`${server.url}/health`);
    assert.equal(res.status, 200);
  });

  it('connections held open beyond MAX_CONNECTIONS are refused cleanly while /health answers', { timeout: 30_000 }, async () => {
    const { hostname, port } = new URL(server.url);
    const connect = () =>
      new Promise((resolve, reject) => {
        const socket = net.connect(Number(port), hostname, () => resolve(socket));
        socket.on('error', reject);
      });
    // Each of these sends nothing: it holds its place until its headers
    // time out.
    const held = [];
    try {
      for (let i = 0; i < MAX_CONNECTIONS; i++) held.push(await connect());
      // A new connection is answered at once and closed: 503 for an API
      // request, while /health is still answered.
      const ask = async (path) => {
        const socket = await connect();
        return withDeadline(
          new Promise((resolve) => {
            let text = '';
            socket.on('data', (d) => {
              text += d;
            });
            socket.on('close', () => resolve(text));
            socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
          }),
          5_000,
          `an answer to GET ${path} over the limit`,
        );
      };
      const refused = await ask('/jobs');
      assert.match(refused, /^HTTP\/1\.1 503 /, refused);
      assert.match(refused, /Retry-After: 1/i, refused);
      assert.match(refused, /"error":"too many open connections/, refused);
      const health = await ask('/health');
      assert.match(health, /^HTTP\/1\.1 200 /, health);
      assert.match(health, /"status":"ok"/, health);
    } finally {
      for (const s of held) s.destroy();
    }
  });
});
