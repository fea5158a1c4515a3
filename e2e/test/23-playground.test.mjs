// The GraphiQL playground at / in a real browser (headless Chromium): it
// renders from the server alone (every request the page makes is
// intercepted, and one to another host fails the test), runs the
// example's CreateJob mutation and shows the WatchJobs subscription's
// events over the websocket, and its Docs read the schema; with AUTH=token, a token typed in the Headers
// tab is sent over HTTP and in connection_init.
//
// Screenshots go to e2e/screenshots/ on every run (playground.png,
// playground-auth.png), and <name>-failed.png when a test fails.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { useBrowser } from '../lib/browser.mjs';
import { newToken, useServer, writeTokensFile } from '../lib/server.mjs';
import { getJob } from '../lib/util.mjs';

const SCREENSHOTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'screenshots');
// The example's job works for 10 s; loading GraphiQL takes seconds on a
// busy machine.
const T = { timeout: 60_000 };
const D = { timeout: 120_000 };

const browser = useBrowser();

/**
 * Opens the playground of `server` with every request checked: one to
 * another host is aborted and recorded in `foreign`; websockets are
 * recorded in `sockets`. Waits for the query editor to hold the example.
 */
async function openPlayground(server) {
  const host = new URL(server.url).host;
  const foreign = [];
  const sockets = [];
  const page = await browser.open(`${server.url}/`, {
    timeoutMs: 30_000,
    prepare: async (p) => {
      await p.setViewport({ width: 1200, height: 720 });
      await p.setRequestInterception(true);
      p.on('request', (req) => {
        const url = new URL(req.url());
        if (url.protocol === 'data:' || url.host === host) {
          req.continue();
        } else {
          foreign.push(req.url());
          req.abort();
        }
      });
      // Request interception does not see websockets: the DevTools
      // protocol reports each one the page opens.
      const cdp = await p.createCDPSession();
      cdp.on('Network.webSocketCreated', (e) => sockets.push(e.url));
      await cdp.send('Network.enable');
    },
  });
  await page.page.waitForSelector('.graphiql-query-editor .CodeMirror', { timeout: 20_000 });
  const query = await page.run(() => document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.getValue());
  assert.match(query, /mutation CreateJob/, 'the editor opens with the example');
  assert.match(query, /subscription WatchJobs/, 'the editor opens with the example');
  return { page, foreign, sockets, host };
}

/** Presses ▶ and picks the operation `name` from its menu. */
async function runOperation(page, name) {
  // The menu opens once GraphiQL has parsed the editor's operations; a
  // press before that (a busy machine) opens nothing, and a button that
  // GraphiQL re-rendered meanwhile (after its schema fetch) is detached:
  // press again.
  const selector = `::-p-xpath(//*[@role="menuitem" and normalize-space()="${name}"])`;
  for (let attempt = 1; ; attempt++) {
    try {
      await page.page.click('.graphiql-execute-button');
      const item = await page.page.waitForSelector(selector, { timeout: 5_000 });
      await item.click();
      return;
    } catch (err) {
      if (attempt === 4) throw err;
      await page.page.keyboard.press('Escape');
    }
  }
}

/**
 * Records every value the response pane shows from now on (a
 * subscription's events replace one another there) in window.responses.
 */
function pageRecordResponses() {
  const cm = document.querySelector('.graphiql-response .CodeMirror').CodeMirror;
  window.responses = [];
  cm.on('change', () => window.responses.push(cm.getValue()));
}

/**
 * Whether the response pane shows what `want` names, as its JSON (or
 * false): { kind: 'created' } a createJob answer; { kind: 'event', id }
 * an event of job id; { kind: 'completed', id } its COMPLETED event;
 * { kind: 'refused' } an "invalid credential" error. (One function run in
 * the page: its Content-Security-Policy forbids building one there.)
 */
function pageResponseShows(want) {
  let json;
  try {
    json = JSON.parse(document.querySelector('.graphiql-response .CodeMirror').CodeMirror.getValue());
  } catch {
    return false;
  }
  const job = json.data?.jobUpdated;
  const ok = {
    created: () => typeof json.data?.createJob?.id === 'string',
    event: () => job?.id === want.id,
    completed: () => job?.id === want.id && job.status === 'COMPLETED',
    refused: () => (json.errors ?? []).some((e) => /invalid credential/.test(e.message)),
  }[want.kind]();
  return ok ? json : false;
}

/** Waits until the response pane shows `want` (see pageResponseShows); returns its JSON. */
async function waitForResponse(page, want, { timeoutMs = 10_000 } = {}) {
  try {
    const handle = await page.page.waitForFunction(pageResponseShows, { timeout: timeoutMs }, want);
    return await handle.jsonValue();
  } catch (err) {
    const shown = await page.run(() => document.querySelector('.graphiql-response .CodeMirror').CodeMirror.getValue());
    throw new Error(
      `waiting for ${JSON.stringify(want)}: ${err.message}; the response pane shows: ${shown}; console: ${page.consoleErrors.join(' | ')}`,
    );
  }
}

/** The jobUpdated events the response pane showed, of job `id`. */
async function eventsOf(page, id) {
  const shown = await page.run(() => window.responses);
  const events = [];
  for (const text of shown) {
    try {
      const job = JSON.parse(text).data?.jobUpdated;
      if (job?.id === id) events.push(job);
    } catch {
      // an empty pane between two operations
    }
  }
  return events;
}

/**
 * Runs CreateJob, then WatchJobs until the job's COMPLETED shows (or, with
 * untilFirstEvent, until its first event); returns { id, events }.
 */
async function createAndWatch(page, { untilFirstEvent = false } = {}) {
  await runOperation(page, 'CreateJob');
  const created = await waitForResponse(page, { kind: 'created' });
  const { id, status } = created.data.createJob;
  assert.equal(status, 'PENDING', JSON.stringify(created));

  await page.run(pageRecordResponses);
  await runOperation(page, 'WatchJobs');
  await waitForResponse(page, { kind: untilFirstEvent ? 'event' : 'completed', id }, { timeoutMs: 20_000 });
  return { id, events: await eventsOf(page, id) };
}

/** Runs `fn(page)` on a fresh playground; screenshots it as `name`.png, or `name`-failed.png when fn throws. */
async function withPlayground(server, name, fn) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  rmSync(path.join(SCREENSHOTS, `${name}-failed.png`), { force: true });
  const opened = await openPlayground(server);
  try {
    await fn(opened);
    await opened.page.page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`) });
  } catch (err) {
    await opened.page.page.screenshot({ path: path.join(SCREENSHOTS, `${name}-failed.png`) }).catch(() => {});
    throw err;
  } finally {
    await opened.page.close();
  }
}

/**
 * Asserts that the page asked nothing of another host, that its websockets
 * went to the server, and that the console logged no error but those
 * matching `expected` (a script or style the page's policy refused would
 * show there).
 */
function assertOnlyServer({ foreign, sockets, host, page }, expected = /^$/) {
  assert.deepEqual(foreign, [], 'requests to another host');
  assert.ok(sockets.length > 0, 'the subscription opened a websocket');
  for (const url of sockets) {
    assert.equal(new URL(url).host, host, `websocket ${url}`);
    assert.equal(new URL(url).pathname, '/query', `websocket ${url}`);
  }
  assert.deepEqual(page.consoleErrors.filter((e) => !expected.test(e)), [], 'console errors');
}

/**
 * Finds the Headers editor (the editor holding a JSON object with an
 * Authorization key), sets its text to `text` when given, and returns
 * { value, visible } (null when there is none).
 */
function pageHeadersEditor(text) {
  const editor = [...document.querySelectorAll('.CodeMirror')].find((e) => {
    try {
      return 'Authorization' in JSON.parse(e.CodeMirror.getValue());
    } catch {
      return false;
    }
  });
  if (!editor) return null;
  if (text !== undefined) editor.CodeMirror.setValue(text);
  return { value: editor.CodeMirror.getValue(), visible: editor.getBoundingClientRect().height > 0 };
}

describe('the playground, AUTH=none', D, () => {
  const server = useServer({ WORKERS: '2' }, { label: 'playground' });

  it('renders from the server alone, runs CreateJob and shows the job move to COMPLETED through WatchJobs', T, async () => {
    await withPlayground(server, 'playground', async (opened) => {
      const { page } = opened;
      // The schema's introspection passed the server's limits: Docs lists
      // its root types.
      await page.page.click('button[aria-label="Show Documentation Explorer"]');
      await page.page.waitForFunction(
        () => /mutation: Mutation[\s\S]*subscription: Subscription/.test(document.querySelector('.graphiql-doc-explorer')?.innerText ?? ''),
        { timeout: 10_000 },
      );
      await page.page.click('button[aria-label="Hide Documentation Explorer"]');
      const { id, events } = await createAndWatch(page);
      const statuses = events.map((e) => e.status);
      assert.equal(statuses.at(-1), 'COMPLETED', JSON.stringify(events));
      assert.ok(statuses.includes('PROCESSING'), `a PROCESSING event before the end: ${JSON.stringify(events)}`);
      const progress = events.map((e) => e.progress).filter((p) => p !== null);
      assert.ok(progress.length >= 2, `progress events: ${JSON.stringify(events)}`);
      assert.deepEqual(progress, [...progress].sort((a, b) => a - b), 'progress goes up');
      assert.equal(progress.at(-1), 100);
      assert.equal((await getJob(server.url, id)).status, 'COMPLETED');
      assertOnlyServer(opened);
    });
  });
});

describe('the playground, AUTH=token', D, () => {
  let dir;
  const tokens = {};
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'e2e-tokens-'));
    const user = await newToken('e2e-playground', 'user');
    tokens.user = user.token;
    tokens.file = writeTokensFile(path.join(dir, 'tokens.json'), [user.entry]);
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  const server = useServer(() => ({ WORKERS: '2', AUTH: 'token', API_TOKENS_FILE: tokens.file }), {
    label: 'playground auth',
  });

  it('opens the Headers tab with the Authorization header; with a token there, mutations and subscriptions run', T, async () => {
    await withPlayground(server, 'playground-auth', async (opened) => {
      const { page } = opened;
      const headers = await page.run(pageHeadersEditor);
      assert.ok(headers?.visible, `a visible Headers editor with Authorization: ${JSON.stringify(headers)}`);
      assert.match(headers.value, /"Bearer <token>"/);

      // The placeholder is refused, in words.
      await runOperation(page, 'CreateJob');
      await waitForResponse(page, { kind: 'refused' });

      await page.run(pageHeadersEditor, JSON.stringify({ Authorization: `Bearer ${tokens.user}` }, null, 2));
      const { events } = await createAndWatch(page, { untilFirstEvent: true });
      assert.ok(events.length > 0, 'the subscription, authenticated at connection_init, shows the job');
      // The schema's introspection and the run before the token was typed.
      assertOnlyServer(opened, /status of 401 \(Unauthorized\)/);
    });
  });
});
