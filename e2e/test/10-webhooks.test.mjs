// Webhook handlers: the server delivers jobs to a local HTTP server of the
// test's, configured through HANDLERS_FILE.

import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { startServer } from '../lib/server.mjs';
import { gqlData, gqlPost, waitForJobStatus } from '../lib/util.mjs';

const T = { timeout: 30_000 };
const CREATE = 'mutation($input: CreateJobInput!) { createJob(input: $input) { id } }';

describe('webhook handlers', { timeout: 60_000 }, () => {
  let hooks;
  let server;
  const calls = new Map(); // path → count
  const deliveries = [];

  before(async () => {
    hooks = createServer((req, res) => {
      calls.set(req.url, (calls.get(req.url) ?? 0) + 1);
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        deliveries.push({ path: req.url, body: JSON.parse(body) });
        switch (req.url) {
          case '/ok':
            res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ sent: true }));
            break;
          case '/fail':
            res.writeHead(503).end('down');
            break;
          case '/gone':
            res.writeHead(410).end('gone');
            break;
          case '/slow':
            break; // never answers: the job's timeout ends the request
        }
      });
    });
    await new Promise((resolve) => hooks.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${hooks.address().port}`;
    const dir = mkdtempSync(join(tmpdir(), 'jobqueue-e2e-'));
    const file = join(dir, 'handlers.json');
    writeFileSync(file, JSON.stringify({
      ok: { url: `${base}/ok` },
      fail: { url: `${base}/fail` },
      gone: { url: `${base}/gone` },
      slow: { url: `${base}/slow` },
    }));
    server = await startServer({ HANDLERS_FILE: file, WORKERS: '4', MAX_ATTEMPTS: '2', RETRY_BACKOFF: '20ms' }, { label: 'webhooks' });
  }, { timeout: 20_000 });

  after(async () => {
    await server?.stop();
    hooks?.closeAllConnections();
    await new Promise((resolve) => hooks?.close(resolve));
  });

  it('a 2xx answer completes the job with the body as result', T, async () => {
    const { createJob: job } = await gqlData(server.url, CREATE, { input: { type: 'ok', payload: { to: 'a@b.c' } } });
    await waitForJobStatus(server.url, job.id, 'COMPLETED');
    const { job: done } = await gqlData(server.url, 'query($id: ID!) { job(id: $id) { result attempts } }', { id: job.id });
    assert.deepEqual(done.result, { sent: true });
    const d = deliveries.find((x) => x.body.id === job.id);
    assert.deepEqual(d.body, { id: job.id, type: 'ok', payload: { to: 'a@b.c' }, attempt: 1 });
  });

  it('a failing endpoint is retried until the attempts run out; a refusing one is not retried', T, async () => {
    const { createJob: failing } = await gqlData(server.url, CREATE, { input: { type: 'fail' } });
    const { createJob: gone } = await gqlData(server.url, CREATE, { input: { type: 'gone' } });
    const f = await waitForJobStatus(server.url, failing.id, 'FAILED');
    const g = await waitForJobStatus(server.url, gone.id, 'FAILED');
    assert.equal(f.attempts, 2);
    assert.match(f.error, /503/);
    assert.equal(g.attempts, 1);
    assert.match(g.error, /410/);
  });

  it('a slow endpoint fails the attempt at the job timeout', T, async () => {
    const { createJob: job } = await gqlData(server.url, CREATE, { input: { type: 'slow', timeoutSeconds: 1, maxAttempts: 1 } });
    const failed = await waitForJobStatus(server.url, job.id, 'FAILED', { timeoutMs: 15_000 });
    assert.match(failed.error, /timed out after 1s/);
  });

  it('a type without a handler is refused', T, async () => {
    const res = await gqlPost(server.url, CREATE, { input: { type: 'sms' } });
    assert.equal(res.json.errors[0].extensions.code, 'BAD_USER_INPUT');
    assert.match(res.json.errors[0].message, /no handler/);
  });
});
