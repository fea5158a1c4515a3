// A real browser (headless Chromium) calling the server from pages of other
// origins: CORS for fetch, the Origin check of the websocket handshake, and
// cross-site HTML forms, with AUTH=token and AUTH=none.
//
// The pages are served from http://localhost:PORT (lib/browser.mjs), the
// server is called at http://127.0.0.1:PORT: another origin and another
// site. `allowed` is the origin a test names in CORS_ALLOWED_ORIGINS,
// `other` one it does not.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { clientPageRoutes, useBrowser, useStaticSite } from '../lib/browser.mjs';
import { newToken, useServer, writeTokensFile } from '../lib/server.mjs';
import { CREATE_JOB, JOB_UPDATED, assertJobStream, jobsFrom, request, uniqueType } from '../lib/util.mjs';

const T = { timeout: 30_000 };
const D = { timeout: 120_000 };
const JOB_ENV = { WORKERS: '2', PROCESSING_TIME: '200ms' };

const browser = useBrowser();
const allowed = useStaticSite(clientPageRoutes());
const other = useStaticSite(clientPageRoutes());

// ---- Functions run in the page (serialized: they see only the page's
// globals and their argument).

/** fetch in the page: { status, text } or { error: { name, message } }. */
function pageFetch({ url, method = 'GET', headers = {}, body, credentials = 'same-origin' }) {
  return fetch(url, { method, headers, body, credentials }).then(
    async (res) => ({ status: res.status, text: await res.text() }),
    (err) => ({ error: { name: err.name, message: err.message } }),
  );
}

/** Opens a websocket and reports whether it opened or closed first. */
function pageOpenSocket({ url }) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, 'graphql-transport-ws');
    ws.onopen = () => {
      resolve({ opened: true });
      ws.close(1000);
    };
    ws.onclose = (event) => resolve({ opened: false, code: event.code });
  });
}

/**
 * Subscribes jobUpdated(id) with the graphql-ws client the page loaded
 * (window.graphqlWs) and resolves once the subscription ends:
 * { messages, ended: { kind: 'complete' } | { kind: 'error', error } }.
 */
function pageWatchJob({ url, query, id, token }) {
  const describe = (e) => {
    if (e && typeof e === 'object' && 'code' in e && 'reason' in e) return `close ${e.code} ${e.reason}`;
    if (Array.isArray(e)) return JSON.stringify(e);
    return e instanceof Error ? e.message : JSON.stringify(e);
  };
  const client = window.graphqlWs.createClient({
    url,
    retryAttempts: 0,
    connectionParams: token ? { Authorization: `Bearer ${token}` } : {},
  });
  const messages = [];
  return new Promise((resolve) => {
    client.subscribe(
      { query, variables: { id } },
      {
        next: (m) => messages.push(m),
        error: (e) => resolve({ messages, ended: { kind: 'error', error: describe(e) } }),
        complete: () => resolve({ messages, ended: { kind: 'complete' } }),
      },
    );
  }).finally(() => client.dispose());
}

/** Adds a POST form with hidden fields and a submit button #go to the page. */
function pageAddForm({ action, enctype, fields }) {
  const form = document.createElement('form');
  form.method = 'POST';
  form.action = action;
  form.enctype = enctype;
  for (const [name, value] of fields) {
    const input = document.createElement('input');
    input.type = 'hidden';
    input.name = name;
    input.value = value;
    form.append(input);
  }
  const button = document.createElement('button');
  button.id = 'go';
  button.type = 'submit';
  button.textContent = 'go';
  form.append(button);
  document.body.append(form);
}

// ---- Node-side helpers.

function bearer(token) {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function consoleOf(page) {
  return page.consoleErrors.join(' | ') || '(no error)';
}

/** The jobs GET /jobs lists (all of them: a test server holds a few). */
async function listJobs(server, token, query = '') {
  const res = await request(`${server.url}/jobs${query}`, { headers: bearer(token) });
  assert.equal(res.status, 200, `GET /jobs${query}: ${res.text}`);
  assert.ok(Array.isArray(res.json), `GET /jobs${query} lists jobs: ${res.text}`);
  return res.json;
}

/** Creates a job from the page with fetch POST /query; returns the job. */
async function createJobFromPage(page, server, type, token) {
  const res = await page.run(pageFetch, {
    url: `${server.url}/query`,
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...bearer(token) },
    body: JSON.stringify({ query: CREATE_JOB, variables: { input: { type } } }),
  });
  assert.equal(res.error, undefined, `fetch: ${JSON.stringify(res.error)}; console: ${consoleOf(page)}`);
  assert.equal(res.status, 200, `createJob: ${res.text}`);
  const body = JSON.parse(res.text);
  assert.equal(body.errors, undefined, `createJob errors: ${res.text}`);
  assert.equal(body.data.createJob.type, type);
  return body.data.createJob;
}

/** Watches the job from the page to its end; asserts it completed. */
async function watchJobFromPage(page, server, job, token) {
  const { messages, ended } = await page.run(
    pageWatchJob,
    { url: server.wsUrl, query: JOB_UPDATED, id: job.id, token },
    { timeoutMs: 15_000 },
  );
  assert.deepEqual(ended, { kind: 'complete' }, `subscription ended: ${JSON.stringify(ended)}; console: ${consoleOf(page)}`);
  assertJobStream(jobsFrom(messages), {
    id: job.id,
    minFirstVersion: job.version,
    finalStatus: 'COMPLETED',
    label: 'page subscription',
  });
}

/** A page of `site` creates a job and watches it to COMPLETED, with no console error. */
async function createAndWatch(site, server, token) {
  const page = await browser.open(site.url('/'));
  try {
    const job = await createJobFromPage(page, server, uniqueType('browser'), token);
    await watchJobFromPage(page, server, job, token);
    assert.deepEqual(page.consoleErrors, []);
  } finally {
    await page.close();
  }
}

/**
 * A page of `site` cannot call the server: fetch rejects with the TypeError
 * of a CORS refusal, the browser's console says so, and no job is made.
 */
async function assertFetchRefused(site, server, { token, adminToken } = {}) {
  const page = await browser.open(site.url('/'));
  try {
    const before = (await listJobs(server, adminToken)).length;
    const created = await page.run(pageFetch, {
      url: `${server.url}/query`,
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...bearer(token) },
      body: JSON.stringify({ query: CREATE_JOB, variables: { input: { type: uniqueType('cors-refused') } } }),
    });
    assert.equal(created.error?.name, 'TypeError', `createJob from ${site.origin} must fail, got ${JSON.stringify(created)}`);
    const listed = await page.run(pageFetch, { url: `${server.url}/jobs`, headers: bearer(token) });
    assert.equal(listed.error?.name, 'TypeError', `GET /jobs from ${site.origin} must fail, got ${JSON.stringify(listed)}`);
    const blamed = page.consoleErrors.filter((e) => e.includes('blocked by CORS policy'));
    assert.equal(blamed.length, 2, `the browser blames CORS for both; console: ${consoleOf(page)}`);
    assert.equal((await listJobs(server, adminToken)).length, before, 'no job made by the refused fetch');
  } finally {
    await page.close();
  }
}

/**
 * A page of `site` cannot open a websocket to the server: the handshake is
 * answered 403, so the socket closes (1006) without opening.
 */
async function assertSocketRefused(site, server) {
  const page = await browser.open(site.url('/'));
  try {
    const socket = await page.run(pageOpenSocket, { url: server.wsUrl });
    assert.deepEqual(socket, { opened: false, code: 1006 }, `websocket from ${site.origin}`);
    assert.ok(
      page.consoleErrors.some((e) => e.includes('WebSocket') && e.includes('403')),
      `the handshake is answered 403; console: ${consoleOf(page)}`,
    );
  } finally {
    await page.close();
  }
}

/**
 * The forms a cross-site page could post; fields(type) would make a job of
 * that type if the server accepted the form.
 */
const HOSTILE_FORMS = [
  {
    name: 'text/plain to /jobs',
    path: '/jobs',
    enctype: 'text/plain',
    // Sent as {"type":"…","payload":{"pad":"="}}: valid JSON.
    fields: (type) => [[`{"type":"${type}","payload":{"pad":"`, '"}}']],
  },
  {
    name: 'text/plain to /query',
    path: '/query',
    enctype: 'text/plain',
    fields: (type) => [[`{"query":${JSON.stringify(createMutation(type))},"pad":"`, '"}']],
  },
  {
    name: 'urlencoded to /jobs',
    path: '/jobs',
    enctype: 'application/x-www-form-urlencoded',
    fields: (type) => [['type', type]],
  },
  {
    name: 'urlencoded to /query',
    path: '/query',
    enctype: 'application/x-www-form-urlencoded',
    fields: (type) => [['query', createMutation(type)]],
  },
];

function createMutation(type) {
  return `mutation{createJob(input:{type:"${type}"}){id}}`;
}

/**
 * Opens a page of `site`, adds `form` with the fields that would make a job
 * of `type`, submits it with a click and returns the server's answer,
 * { status, body }.
 */
async function submitForm(site, server, form, type) {
  const page = await browser.open(site.url('/'));
  try {
    await page.run(pageAddForm, { action: `${server.url}${form.path}`, enctype: form.enctype, fields: form.fields(type) });
    // A click, not form.submit() in page.run: the navigation would destroy
    // the context that evaluate waits on.
    const [response] = await Promise.all([page.page.waitForNavigation({ timeout: 10_000 }), page.page.click('#go')]);
    assert.ok(response, 'the form navigated to the server');
    return { status: response.status(), body: await response.text().catch(() => '') };
  } finally {
    await page.close();
  }
}

/**
 * The tests of cross-site forms: each form posted from a page of site()
 * makes no job, and the server refuses each for what it is (`statuses`),
 * not merely because its body failed to parse.
 */
function formsCreateNothing(site, server, { statuses, adminToken = () => undefined }) {
  for (const form of HOSTILE_FORMS) {
    it(`a cross-site form POST (${form.name}) creates nothing`, T, async () => {
      const type = uniqueType('csrf');
      const before = (await listJobs(server, adminToken())).length;
      const answer = await submitForm(site(), server, form, type);
      const made = await listJobs(server, adminToken(), `?type=${encodeURIComponent(type)}`);
      assert.deepEqual(made, [], `no job of the form's type; the server answered ${answer.status} ${answer.body}`);
      assert.equal((await listJobs(server, adminToken())).length, before, 'job count unchanged');
      assert.ok(answer.status >= 400 && answer.status < 500, `a 4xx answer, got ${answer.status} ${answer.body}`);
    });
  }

  it(`cross-site form POSTs are refused with ${statuses.join(' or ')}`, T, async () => {
    const answers = [];
    for (const form of HOSTILE_FORMS) {
      const { status, body } = await submitForm(site(), server, form, uniqueType('csrf'));
      answers.push({ form: form.name, status, body });
    }
    const all = JSON.stringify(answers, null, 1);
    for (const a of answers) {
      assert.ok(statuses.includes(a.status), `${a.form}: answered ${a.status}; want ${statuses.join(' or ')}\n${all}`);
    }
  });
}

/**
 * Makes an admin token (for the tests' own checks from Node) and a user
 * token (for the pages), and the tokens file listing both, in a `before`
 * hook; removes the file in an `after` hook.
 */
function useTokens() {
  const tokens = {};
  let dir;
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'e2e-tokens-'));
    const admin = await newToken('e2e-admin', 'admin');
    const user = await newToken('e2e-browser', 'user');
    tokens.admin = admin.token;
    tokens.user = user.token;
    tokens.file = writeTokensFile(path.join(dir, 'tokens.json'), [admin.entry, user.entry]);
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  return tokens;
}

describe('browser harness', D, () => {
  it('a page of the second origin loads the graphql-ws client, runs code and reports console errors', T, async () => {
    const page = await browser.open(allowed.url('/'));
    try {
      const seen = await page.run(() => ({
        origin: location.origin,
        createClient: typeof window.graphqlWs?.createClient,
      }));
      assert.deepEqual(seen, { origin: allowed.origin, createClient: 'function' });
      const fetched = allowed.requests.map((r) => r.path);
      assert.ok(fetched.includes('/graphql-ws.min.js'), `the page fetched the client from its origin: ${fetched}`);
      assert.equal(await page.run(async (n) => (await Promise.resolve(n)) + 2, 40), 42);
      assert.deepEqual(page.consoleErrors, []);
      await page.run(() => console.error('e2e marker'));
      assert.deepEqual(page.consoleErrors, ['e2e marker']);
    } finally {
      await page.close();
    }
  });
});

describe('AUTH=token, CORS_ALLOWED_ORIGINS lists one origin', D, () => {
  const tokens = useTokens();
  const server = useServer(
    () => ({ ...JOB_ENV, AUTH: 'token', API_TOKENS_FILE: tokens.file, CORS_ALLOWED_ORIGINS: allowed.origin }),
    { label: 'browser token cors' },
  );

  it('a page of the allowed origin creates a job with its token and watches it to COMPLETED', T, async () => {
    await createAndWatch(allowed, server, tokens.user);
  });

  it('a page of another origin cannot call the server, even with a token', T, async () => {
    await assertFetchRefused(other, server, { token: tokens.user, adminToken: tokens.admin });
  });

  it('a page of another origin cannot open a websocket', T, async () => {
    await assertSocketRefused(other, server);
  });

  formsCreateNothing(() => allowed, server, { statuses: [401, 403, 415], adminToken: () => tokens.admin });
});

describe('AUTH=token, CORS_ALLOWED_ORIGINS unset: any origin, without credentials', D, () => {
  const tokens = useTokens();
  const server = useServer(() => ({ ...JOB_ENV, AUTH: 'token', API_TOKENS_FILE: tokens.file }), {
    label: 'browser token any origin',
  });

  it('a page of any origin creates a job with its token and watches it to COMPLETED', T, async () => {
    await createAndWatch(other, server, tokens.user);
  });

  it('a fetch with credentials (cookies) is refused', T, async () => {
    const page = await browser.open(other.url('/'));
    try {
      const res = await page.run(pageFetch, {
        url: `${server.url}/jobs`,
        headers: bearer(tokens.user),
        credentials: 'include',
      });
      assert.equal(res.error?.name, 'TypeError', `a credentialed fetch must fail, got ${JSON.stringify(res)}`);
      const plain = await page.run(pageFetch, { url: `${server.url}/jobs`, headers: bearer(tokens.user) });
      assert.equal(plain.status, 200, `the same fetch without credentials: ${JSON.stringify(plain)}`);
    } finally {
      await page.close();
    }
  });
});

describe('AUTH=none, CORS_ALLOWED_ORIGINS unset: no cross-origin access', D, () => {
  const server = useServer({ ...JOB_ENV }, { label: 'browser none' });

  it('a page of another origin cannot call the server', T, async () => {
    await assertFetchRefused(other, server);
  });

  it('a page of another origin cannot open a websocket', T, async () => {
    await assertSocketRefused(other, server);
  });

  formsCreateNothing(() => other, server, { statuses: [403, 415] });
});

describe('AUTH=none, CORS_ALLOWED_ORIGINS lists the page origin', D, () => {
  const server = useServer(() => ({ ...JOB_ENV, CORS_ALLOWED_ORIGINS: allowed.origin }), { label: 'browser none cors' });

  it('a page of the allowed origin creates a job without a token and watches it to COMPLETED', T, async () => {
    await createAndWatch(allowed, server);
  });

  it('a page of another origin still cannot call the server', T, async () => {
    await assertFetchRefused(other, server);
  });

  it('a page of another origin still cannot open a websocket', T, async () => {
    await assertSocketRefused(other, server);
  });
});
