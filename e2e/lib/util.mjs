// Small helpers shared by the e2e tests: GraphQL over HTTP, polling with a
// deadline, and a collector for subscription streams.

import assert from 'node:assert/strict';

export const JOB_FIELDS = `
  id
  type
  payload
  status
  attempts
  error
  createdAt
  updatedAt
  startedAt
  finishedAt
  version
`;

export const FINAL_STATUSES = new Set(['COMPLETED', 'FAILED', 'CANCELLED']);

export const CREATE_JOB = `
  mutation CreateJob($input: CreateJobInput!) {
    createJob(input: $input) { ${JOB_FIELDS} }
  }
`;

export const GET_JOB = `
  query GetJob($id: ID!) {
    job(id: $id) { ${JOB_FIELDS} }
  }
`;

export const JOB_UPDATED = `
  subscription JobUpdated($id: ID, $type: String) {
    jobUpdated(id: $id, type: $type) { ${JOB_FIELDS} }
  }
`;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Races a promise against a deadline; rejects with `label` when it passes. */
export async function withDeadline(promise, ms, label) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${label}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Calls `probe` every `intervalMs` until it returns a truthy value, and returns
 * that value. Fails after `timeoutMs` with `label` and the last value seen.
 */
export async function waitFor(probe, { timeoutMs = 10_000, intervalMs = 25, label = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  let lastError;
  for (;;) {
    try {
      last = await probe();
      lastError = undefined;
      if (last) return last;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const detail = lastError ? `last error: ${lastError.stack ?? lastError}` : `last value: ${JSON.stringify(last)}`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${label}; ${detail}`);
    }
    await sleep(intervalMs);
  }
}

/** Plain JSON HTTP request with a timeout. Returns { status, headers, text, json }. */
export async function request(url, { method = 'GET', headers = {}, body, timeoutMs = 10_000 } = {}) {
  let res;
  let text;
  try {
    res = await fetch(url, { method, headers, body, signal: AbortSignal.timeout(timeoutMs) });
    text = await res.text();
  } catch (err) {
    const cause = err.cause ? ` (cause: ${err.cause.code ?? ''} ${err.cause.message ?? err.cause})` : '';
    throw new Error(`${method} ${url}: ${err.message}${cause}`, { cause: err });
  }
  let json;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/**
 * POSTs a GraphQL operation to `${baseUrl}/query` with Content-Type and Accept
 * application/json. Returns { status, headers, text, json }.
 */
export function gqlPost(baseUrl, query, variables, { headers = {}, timeoutMs = 10_000 } = {}) {
  return request(`${baseUrl}/query`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json', ...headers },
    body: JSON.stringify(variables === undefined ? { query } : { query, variables }),
    timeoutMs,
  });
}

/** Like gqlPost but asserts HTTP 200 and no errors; returns `data`. */
export async function gqlData(baseUrl, query, variables) {
  const res = await gqlPost(baseUrl, query, variables);
  assert.equal(res.status, 200, `HTTP status for ${query.trim().split('\n')[0]}: ${res.text}`);
  assert.ok(res.json, `JSON body expected, got: ${res.text}`);
  assert.equal(res.json.errors, undefined, `unexpected GraphQL errors: ${JSON.stringify(res.json.errors)}`);
  return res.json.data;
}

export async function createJob(baseUrl, type, payload) {
  const input = payload === undefined ? { type } : { type, payload };
  const data = await gqlData(baseUrl, CREATE_JOB, { input });
  return data.createJob;
}

export async function getJob(baseUrl, id) {
  const data = await gqlData(baseUrl, GET_JOB, { id });
  return data.job;
}

/** Polls job(id) until its status is one of `statuses`; returns the job. */
export function waitForJobStatus(baseUrl, id, statuses, { timeoutMs = 10_000 } = {}) {
  const wanted = new Set([].concat(statuses));
  return waitFor(
    async () => {
      const job = await getJob(baseUrl, id);
      return job && wanted.has(job.status) ? job : false;
    },
    { timeoutMs, label: `job ${id} to reach ${[...wanted].join('|')}` },
  );
}

/**
 * A sink for subscription clients ({ next, error, complete }) that records
 * everything and lets tests wait on it with deadlines. `summarize(messages)`,
 * when given, replaces the full list of messages in failure messages.
 */
export function createCollector(name = 'subscription', { summarize } = {}) {
  const messages = [];
  const waiters = new Set();
  let ended = null; // { kind: 'complete' } | { kind: 'error', error }
  let resolveEnd;
  const endPromise = new Promise((resolve) => {
    resolveEnd = resolve;
  });

  const notify = () => {
    for (const w of [...waiters]) w();
  };

  const sink = {
    next(value) {
      messages.push(value);
      notify();
    },
    error(error) {
      if (ended) return;
      ended = { kind: 'error', error };
      resolveEnd(ended);
      notify();
    },
    complete() {
      if (ended) return;
      ended = { kind: 'complete' };
      resolveEnd(ended);
      notify();
    },
  };

  const describe = () =>
    `${name}: ${summarize ? summarize(messages) : `${messages.length} message(s) ${JSON.stringify(messages)}`}; ended: ${
      ended ? `${ended.kind} ${ended.error ? safeStringify(ended.error) : ''}` : 'no'
    }`;

  /** Resolves once predicate(messages) is true; rejects on deadline or if the stream ends first. */
  function waitUntil(predicate, timeoutMs, label) {
    return new Promise((resolve, reject) => {
      let timer;
      const check = () => {
        let ok;
        try {
          ok = predicate(messages);
        } catch (err) {
          done();
          reject(err);
          return;
        }
        if (ok) {
          done();
          resolve(ok);
        } else if (ended) {
          done();
          reject(new Error(`stream ended before ${label}; ${describe()}`));
        }
      };
      const done = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${label}; ${describe()}`));
      }, timeoutMs);
      waiters.add(check);
      check();
    });
  }

  /** Resolves with { kind, error? } when the stream ends; rejects after timeoutMs. */
  function waitEnd(timeoutMs, label = 'the stream to end') {
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${label}; ${describe()}`)),
        timeoutMs,
      );
    });
    return Promise.race([endPromise, timeout]).finally(() => clearTimeout(timer));
  }

  return {
    sink,
    messages,
    get ended() {
      return ended;
    },
    waitUntil,
    waitEnd,
    describe,
  };
}

export function safeStringify(value) {
  try {
    if (value instanceof Error) return `${value.name}: ${value.message}`;
    if (value && typeof value === 'object' && 'code' in value && 'reason' in value) {
      return `CloseEvent(code=${value.code}, reason=${JSON.stringify(value.reason)})`;
    }
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

/** The Job objects carried by a list of GraphQL `next` payloads. */
export function jobsFrom(messages) {
  return messages.map((m, i) => {
    assert.equal(m.errors, undefined, `message ${i} carries errors: ${JSON.stringify(m)}`);
    assert.ok(m.data && m.data.jobUpdated, `message ${i} lacks data.jobUpdated: ${JSON.stringify(m)}`);
    return m.data.jobUpdated;
  });
}

/** Asserts the stream of one job's states: versions +1 each, ending in `finalStatus`. */
export function assertJobStream(states, { id, minFirstVersion = 1, finalStatus, label = 'stream' }) {
  assert.ok(states.length > 0, `${label}: no states received`);
  for (const s of states) assert.equal(s.id, id, `${label}: state of another job ${JSON.stringify(s)}`);
  assert.ok(
    states[0].version >= minFirstVersion,
    `${label}: first version ${states[0].version} < ${minFirstVersion} (query's version when subscribing)`,
  );
  for (let i = 1; i < states.length; i++) {
    assert.equal(
      states[i].version,
      states[i - 1].version + 1,
      `${label}: versions must increase by 1; got ${states.map((s) => s.version).join(',')}`,
    );
  }
  const last = states[states.length - 1];
  assert.equal(last.status, finalStatus, `${label}: last status; statuses ${states.map((s) => s.status).join(',')}`);
  for (const s of states.slice(0, -1)) {
    assert.ok(!FINAL_STATUSES.has(s.status), `${label}: final status ${s.status} before the end`);
  }
}

export function uniqueType(prefix) {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}
