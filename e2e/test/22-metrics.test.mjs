// /metrics, /ready and X-Request-Id on the real binary: a known run (three
// jobs completed, one failed after a retry), then a scrape parsed as the
// Prometheus text format, checked count by count.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { useServer } from '../lib/server.mjs';
import { request, waitFor } from '../lib/util.mjs';

const T = { timeout: 30_000 };

/**
 * Parses the Prometheus text exposition format strictly: every line is a
 * comment (# HELP, # TYPE) or a sample `name{labels} value`; anything else
 * throws. Returns { types: Map(name → type), samples: [{ name, labels, value }] }.
 */
function parseMetrics(text) {
  const types = new Map();
  const samples = [];
  const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( \d+)?$/;
  const label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('# HELP ')) continue;
    if (line.startsWith('# TYPE ')) {
      const [name, type] = line.slice(7).split(' ');
      assert.ok(['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(type), `bad TYPE line: ${line}`);
      types.set(name, type);
      continue;
    }
    const m = sample.exec(line);
    assert.ok(m, `not a sample line: ${JSON.stringify(line)}`);
    const labels = {};
    if (m[3]) {
      label.lastIndex = 0;
      while (label.lastIndex < m[3].length) {
        const l = label.exec(m[3]);
        assert.ok(l, `bad labels in ${JSON.stringify(line)}`);
        labels[l[1]] = l[2].replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
      }
    }
    const value = Number(m[4] === '+Inf' ? Infinity : m[4] === '-Inf' ? -Infinity : m[4]);
    assert.ok(!Number.isNaN(value) || m[4] === 'NaN', `bad value in ${JSON.stringify(line)}`);
    samples.push({ name: m[1], labels, value });
  }
  return { types, samples };
}

/** The value of the one sample named name whose labels include want. */
function valueOf(parsed, name, want = {}) {
  const found = parsed.samples.filter(
    (s) => s.name === name && Object.entries(want).every(([k, v]) => s.labels[k] === v),
  );
  assert.equal(found.length, 1, `${name}${JSON.stringify(want)}: ${found.length} samples`);
  return found[0].value;
}

async function scrape(url) {
  const res = await request(`${url}/metrics`);
  assert.equal(res.status, 200, res.text);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
  return parseMetrics(res.text);
}

describe('metrics, readiness and request ids', { timeout: 120_000 }, () => {
  const server = useServer(
    { WORKERS: '2', PROCESSING_TIME: '10ms', MAX_ATTEMPTS: '2', RETRY_BACKOFF: '10ms', RETRY_BACKOFF_MAX: '10ms' },
    { label: 'metrics' },
  );

  it('GET /ready answers 200 {"ready":true}', T, async () => {
    const res = await request(`${server.url}/ready`);
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.json, { ready: true });
  });

  it('X-Request-Id is returned as sent, or generated', T, async () => {
    let res = await request(`${server.url}/health`, { headers: { 'x-request-id': 'e2e-abc-1' } });
    assert.equal(res.headers.get('x-request-id'), 'e2e-abc-1');
    res = await request(`${server.url}/health`, { headers: { 'x-request-id': 'has spaces' } });
    const generated = res.headers.get('x-request-id');
    assert.ok(generated && generated !== 'has spaces' && /^[!-~]{1,128}$/.test(generated), generated);
  });

  it('counts a known run: 3 completed, 1 failed after a retry', T, async () => {
    const ids = [];
    for (const body of [{ type: 'ok' }, { type: 'ok' }, { type: 'ok' }, { type: 'bad', payload: { fail: true } }]) {
      const res = await request(`${server.url}/jobs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      assert.equal(res.status, 201, res.text);
      ids.push(res.json.id);
    }
    // The counts follow the store's writes: wait until the run is counted.
    const want = [
      ['jobqueue_jobs_created_total', { type: 'ok' }, 3],
      ['jobqueue_jobs_created_total', { type: 'bad' }, 1],
      ['jobqueue_jobs_finished_total', { type: 'ok', status: 'completed' }, 3],
      ['jobqueue_jobs_finished_total', { type: 'bad', status: 'failed' }, 1],
      ['jobqueue_job_attempts_total', { type: 'ok', outcome: 'completed' }, 3],
      ['jobqueue_job_attempts_total', { type: 'bad', outcome: 'retried' }, 1],
      ['jobqueue_job_attempts_total', { type: 'bad', outcome: 'failed' }, 1],
      ['jobqueue_jobs', { status: 'completed' }, 3],
      ['jobqueue_jobs', { status: 'failed' }, 1],
      ['jobqueue_jobs', { status: 'pending' }, 0],
      ['jobqueue_job_attempt_duration_seconds_count', { type: 'bad' }, 2],
      ['jobqueue_job_end_to_end_seconds_count', { type: 'ok' }, 3],
      ['jobqueue_workers', {}, 2],
      ['jobqueue_workers_busy', {}, 0],
      ['jobqueue_oldest_runnable_job_age_seconds', {}, 0],
    ];
    let parsed;
    await waitFor(async () => {
      parsed = await scrape(server.url);
      return want.every(([name, labels, v]) => valueOf(parsed, name, labels) === v);
    }, { label: 'the run counted', timeoutMs: 20_000 });
    for (const [name, labels, v] of want) {
      assert.equal(valueOf(parsed, name, labels), v, `${name}${JSON.stringify(labels)}`);
    }
    assert.equal(valueOf(parsed, 'jobqueue_http_request_duration_seconds_count', { route: 'POST /jobs', code: '2xx' }), 4);
    assert.ok(valueOf(parsed, 'jobqueue_claim_jobs_sum') >= 5, 'five attempts were claimed');
    assert.equal(parsed.types.get('jobqueue_job_wait_seconds'), 'histogram');
    assert.equal(parsed.types.get('jobqueue_jobs_created_total'), 'counter');
    assert.equal(valueOf(parsed, 'jobqueue_build_info', { backend: 'memory' }), 1);
    assert.ok(parsed.samples.some((s) => s.name === 'go_goroutines'), 'Go runtime metrics');
    assert.ok(parsed.samples.some((s) => s.name === 'process_cpu_seconds_total'), 'process metrics');
    for (const s of parsed.samples) {
      if (s.labels.route) assert.ok(!ids.some((id) => s.labels.route.includes(id)), `a raw path as route: ${s.labels.route}`);
    }
  });

  it('serves OpenMetrics when asked', T, async () => {
    const res = await request(`${server.url}/metrics`, { headers: { accept: 'application/openmetrics-text; version=1.0.0' } });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/openmetrics-text/);
    assert.ok(res.text.endsWith('# EOF\n'), 'ends with # EOF');
  });
});
