// The dashboard at /ui/ in a real browser (headless Chromium): jobs made
// through its form move live in the table, failures show their error,
// cancel and retry answer with the server's word (CONFLICT included),
// filters, paging and bulk actions, and the live connection indicator
// across a server restart.
//
// Every run writes a screenshot of each page to e2e/screenshots/ (or
// SCREENSHOT_DIR); a failing test adds FAILED-<test>.png there. The folder
// is not committed and is emptied of dashboard shots at the start.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { useBrowser } from '../lib/browser.mjs';
import { createSqliteDatabase } from '../lib/database.mjs';
import { newToken, startServer, useServer, writeTokensFile } from '../lib/server.mjs';
import { gqlData, gqlPost, uniqueType, waitFor, waitForJobStatus, withDeadline } from '../lib/util.mjs';

const T = { timeout: 60_000 };
const D = { timeout: 300_000 };
const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SHOTS = path.resolve(process.env.SCREENSHOT_DIR || path.join(E2E_DIR, 'screenshots'));
const WAIT = 15_000;

mkdirSync(SHOTS, { recursive: true });
for (const f of readdirSync(SHOTS)) if (/^(dashboard-|FAILED-dashboard-).*\.png$/.test(f)) rmSync(path.join(SHOTS, f));

const browser = useBrowser();

/** Saves a screenshot of the page as dashboard-<name>.png. */
async function shot(page, name) {
  await page.page.screenshot({ path: path.join(SHOTS, `dashboard-${name}.png`), fullPage: true });
}

/**
 * A test with an open page of the dashboard at `path`: the page is
 * screenshotted as FAILED-dashboard-<name>.png when the test fails, and
 * closed after it.
 */
function withPage(name, server, pathname, fn, { viewport = { width: 1100, height: 800 } } = {}) {
  it(name, T, async () => {
    const page = await browser.open(`${server.url}${pathname}`);
    await page.page.setViewport(viewport);
    try {
      await fn(page);
    } catch (err) {
      const file = `FAILED-dashboard-${name.replace(/[^a-z0-9]+/gi, '-').slice(0, 60)}.png`;
      await page.page.screenshot({ path: path.join(SHOTS, file), fullPage: true }).catch(() => {});
      err.message += `\nscreenshot: ${path.join(SHOTS, file)}; console: ${page.consoleErrors.join(' | ') || '(none)'}\nserver log:\n${server.tail?.(15).split('\n').map((l) => l.slice(0, 300)).join('\n')}`;
      throw err;
    } finally {
      await page.close();
    }
  });
}

/** Waits until `selector` matches in the page. */
function waitSelector(page, selector, timeout = WAIT) {
  return page.page.waitForSelector(selector, { timeout });
}

function text(page, selector) {
  return page.page.$eval(selector, (el) => el.textContent.trim());
}

/** Sets a form control's value as typing would (the app listens to input events). */
async function fill(page, selector, value) {
  // The app renders its views once it has asked the server who may do what.
  await waitSelector(page, selector);
  await page.page.$eval(
    selector,
    (el, v) => {
      el.value = v;
      el.dispatchEvent(new Event('input', { bubbles: true }));
      el.dispatchEvent(new Event('change', { bubbles: true }));
    },
    value,
  );
}

/** The local time `ms` from now as a datetime-local value, to the second. */
function localInputTime(ms) {
  const d = new Date(Date.now() + ms);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/**
 * Records, per row of the jobs table, the statuses it showed, in order
 * (window.__rows[id]), and marks the document so that a reload would show.
 */
function recordRows() {
  window.__rows = {};
  window.__sameDocument = true;
  const look = () => {
    for (const tr of document.querySelectorAll('#jobs-table tr[data-id]')) {
      const seen = (window.__rows[tr.dataset.id] ??= []);
      if (seen[seen.length - 1] !== tr.dataset.status) seen.push(tr.dataset.status);
    }
  };
  new MutationObserver(look).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ['data-status'] });
  look();
}

const CREATE_JOBS = 'mutation($inputs: [CreateJobInput!]!) { createJobs(inputs: $inputs) { id } }';
const STATS = '{ stats { pending processing completed failed cancelled } }';

async function createJobs(server, inputs) {
  return (await gqlData(server.url, CREATE_JOBS, { inputs })).createJobs.map((j) => j.id);
}

/** The ids of the jobs table's rows, top to bottom. */
function rowIds(page) {
  return page.page.$$eval('#jobs-table tr[data-id]', (rows) => rows.map((r) => r.dataset.id));
}

describe('dashboard', D, () => {
  const server = useServer({ WORKERS: '4', PROCESSING_TIME: '100ms' }, { label: 'dashboard' });

  withPage('a job made with the form moves PENDING → PROCESSING → COMPLETED in the table, without a reload', server, '/ui/jobs', async (list) => {
    const type = uniqueType('dash-form');
    await fill(list, '#filter-type', type);
    await list.page.click('.filters button[type="submit"]');
    await list.page.waitForFunction((t) => location.search === `?type=${t}`, { timeout: WAIT }, type);
    await waitSelector(list, '#jobs-table td.empty');
    await list.run(recordRows);

    const form = await browser.open(`${server.url}/ui/create`);
    try {
      await form.page.setViewport({ width: 1100, height: 900 });
      await fill(form, '#f-type', type);
      await fill(form, '#f-payload', '{"durationMs": 1500, "progress": true}');
      await fill(form, '#f-priority', '5');
      await fill(form, '#f-maxAttempts', '2');
      await fill(form, '#f-timeoutSeconds', '60');
      await fill(form, '#f-idempotencyKey', `${type}-key`);
      await fill(form, '#f-tags', 'dash, e2e');
      // Scheduled a few seconds out, so that PENDING is shown on its own
      // (not in the same frame as PROCESSING), even on a busy machine.
      await fill(form, '#f-runAt', localInputTime(4000));
      await shot(form, 'create');
      await form.page.click('#create-submit');
      await form.page.waitForFunction(() => /^\/ui\/jobs\/[^/]+$/.test(location.pathname), { timeout: WAIT });
      const id = decodeURIComponent(form.page.url().split('/').pop());
      await waitSelector(form, '#job-status [data-status="PROCESSING"]');
      await waitSelector(form, '#job-progress');
      await shot(form, 'job-running');
      await waitSelector(form, '#job-status [data-status="COMPLETED"]');
      assert.match(await text(form, '#job-result'), /"simulated": true/);
      assert.match(await text(form, '#job-payload'), /"durationMs": 1500/);
      const timeline = await text(form, '#job-timeline');
      for (const s of ['PENDING', 'PROCESSING', 'COMPLETED']) assert.ok(timeline.includes(s), `timeline shows ${s}: ${timeline}`);
      await shot(form, 'job');

      // The job has every field the form sent.
      const job = (await gqlData(server.url, 'query($id: ID!) { job(id: $id) { priority maxAttempts timeoutSeconds idempotencyKey tags } }', { id })).job;
      assert.deepEqual(job, { priority: 5, maxAttempts: 2, timeoutSeconds: 60, idempotencyKey: `${type}-key`, tags: ['dash', 'e2e'] });

      await list.page.waitForFunction((i) => window.__rows[i]?.at(-1) === 'COMPLETED', { timeout: WAIT }, id);
      const { seen, sameDocument } = await list.run((i) => ({ seen: window.__rows[i], sameDocument: window.__sameDocument }), id);
      assert.deepEqual(seen, ['PENDING', 'PROCESSING', 'COMPLETED'], 'the row changed in place');
      assert.equal(sameDocument, true, 'no reload');
      assert.deepEqual(await rowIds(list), [id]);
      await shot(list, 'jobs-live');
      assert.deepEqual(form.consoleErrors, []);
      assert.deepEqual(list.consoleErrors, []);
    } finally {
      await form.close();
    }
  });

  withPage('the form checks the payload as JSON, and shows the server refusing a field beside it', server, '/ui/create', async (page) => {
    const before = await gqlData(server.url, STATS);
    await fill(page, '#f-type', uniqueType('dash-bad'));
    await fill(page, '#f-payload', '{"durationMs": ');
    await page.page.click('#create-submit');
    await waitSelector(page, '#e-payload');
    assert.match(await text(page, '#e-payload'), /not JSON/);

    await fill(page, '#f-payload', '{}');
    await fill(page, '#f-type', 'has space');
    await page.page.click('#create-submit');
    await waitSelector(page, '#e-type');
    assert.match(await text(page, '#e-type'), /^type: may contain only letters/);
    assert.equal(await page.run(() => document.activeElement.id), 'f-type', 'the refused field has the focus');
    await shot(page, 'create-error');
    assert.deepEqual(await gqlData(server.url, STATS), before, 'no job made');
  });

  withPage('a job with payload {"fail": true} shows its error; retry runs it again', server, '/ui/create', async (page) => {
    await fill(page, '#f-type', uniqueType('dash-fail'));
    await fill(page, '#f-payload', '{"fail": true, "durationMs": 300}');
    await fill(page, '#f-maxAttempts', '1');
    await page.page.click('#create-submit');
    await waitSelector(page, '#job-status [data-status="FAILED"]');
    assert.equal(await text(page, '#job-error'), 'simulated failure (payload.fail is true)');
    assert.equal(await page.page.$$eval('#job-errors tbody tr', (r) => r.length), 1);
    await shot(page, 'job-failed');

    await page.page.click('#job-retry');
    await waitSelector(page, '#job-answer .ok');
    assert.match(await text(page, '#job-answer'), /Back to pending/);
    // It runs again, live, and fails again: two attempts in its history.
    await page.page.waitForFunction(() => document.querySelector('#job-attempts')?.textContent === '2 of 1', { timeout: WAIT });
    await waitSelector(page, '#job-status [data-status="FAILED"]');
    await page.page.waitForFunction(() => document.querySelectorAll('#job-errors tbody tr').length === 2, { timeout: WAIT });
  });

  withPage('the same job, failed, retried from one tab: the other tab shows the CONFLICT and the job as it is', server, '/ui/jobs', async (page) => {
    const type = uniqueType('dash-conflict');
    const [id] = await createJobs(server, [{ type, maxAttempts: 1, payload: { failTimes: 1, durationMs: 3000 } }]);
    await waitForJobStatus(server.url, id, ['FAILED'], { timeoutMs: WAIT });
    const other = await browser.open(`${server.url}/ui/jobs/${id}`);
    try {
      await page.page.goto(`${server.url}/ui/jobs/${id}`);
      await waitSelector(page, '#job-status [data-status="FAILED"]');
      await waitSelector(other, '#job-status [data-status="FAILED"]');
      await other.page.click('#job-retry');
      await waitSelector(other, '#job-answer .ok');
      // This tab's watch ended with the final status: it still offers retry.
      await page.page.click('#job-retry');
      await waitSelector(page, '#job-answer .error');
      assert.match(await text(page, '#job-answer'), /^CONFLICT .*(pending|processing)/i);
      await waitSelector(page, '#job-status :is([data-status="PENDING"], [data-status="PROCESSING"])');
      await shot(page, 'job-conflict');
    } finally {
      await other.close();
    }
  });

  withPage('cancel a running job', server, '/ui/', async (page) => {
    const [id] = await createJobs(server, [{ type: uniqueType('dash-cancel'), payload: { durationMs: 60000, progress: true } }]);
    await waitForJobStatus(server.url, id, ['PROCESSING'], { timeoutMs: WAIT });
    await page.page.goto(`${server.url}/ui/jobs/${id}`);
    await waitSelector(page, '#job-status [data-status="PROCESSING"]');
    await page.page.click('#job-cancel');
    await waitSelector(page, '#job-status [data-status="CANCELLED"]');
    assert.match(await text(page, '#job-answer'), /Cancel/);
    assert.equal(await page.page.$eval('#job-cancel', (b) => b.disabled), true, 'nothing left to cancel');
    assert.equal(await page.page.$eval('#job-retry', (b) => b.disabled), false, 'a cancelled job may be retried');
    await shot(page, 'job-cancelled');
  });

  withPage('filters by status, type and tag; pages through a type with a cursor', server, '/ui/jobs', async (page) => {
    const type = uniqueType('dash-page');
    const later = new Date(Date.now() + 3600_000).toISOString();
    // 45 jobs that wait an hour (they stay PENDING), the first 5 tagged.
    const ids = await createJobs(
      server,
      Array.from({ length: 45 }, (_, i) => ({ type, runAt: later, tags: i < 5 ? ['blue'] : [] })),
    );
    assert.equal(ids.length, 45);
    const listed = await gqlData(server.url, 'query($type: String) { jobs(type: $type, first: 45) { nodes { id } } }', { type });
    const newestFirst = listed.jobs.nodes.map((j) => j.id);

    await fill(page, '#filter-type', type);
    await page.page.click('.filters button[type="submit"]');
    await page.page.waitForFunction(() => document.querySelector('#total')?.dataset.total === '45', { timeout: WAIT });
    assert.deepEqual(await rowIds(page), newestFirst.slice(0, 20));
    await shot(page, 'jobs');

    await page.page.click('#page-next');
    await page.page.waitForFunction((id) => document.querySelector('#jobs-table tr[data-id]')?.dataset.id === id, { timeout: WAIT }, newestFirst[20]);
    assert.deepEqual(await rowIds(page), newestFirst.slice(20, 40));
    await page.page.click('#page-next');
    await page.page.waitForFunction((id) => document.querySelector('#jobs-table tr[data-id]')?.dataset.id === id, { timeout: WAIT }, newestFirst[40]);
    assert.deepEqual(await rowIds(page), newestFirst.slice(40));
    assert.equal(await page.page.$eval('#page-next', (b) => b.disabled), true, 'no page after the last');
    await page.page.click('#page-prev');
    await page.page.waitForFunction((id) => document.querySelector('#jobs-table tr[data-id]')?.dataset.id === id, { timeout: WAIT }, newestFirst[20]);
    // A job made meanwhile is announced, not inserted into page 2.
    const [newest] = await createJobs(server, [{ type, runAt: later }]);
    await waitSelector(page, '#newer');
    assert.equal(await text(page, '#newer'), '1 newer job: show the first page');
    assert.deepEqual(await rowIds(page), newestFirst.slice(20, 40));
    await page.page.click('#newer');
    await page.page.waitForFunction((id) => document.querySelector('#jobs-table tr[data-id]')?.dataset.id === id, { timeout: WAIT }, newest);
    assert.deepEqual(await rowIds(page), [newest, ...newestFirst.slice(0, 19)]);
    assert.equal(await page.page.$('#newer'), null);

    await fill(page, '#filter-tag', 'blue');
    await page.page.click('.filters button[type="submit"]');
    await page.page.waitForFunction(() => document.querySelector('#total')?.dataset.total === '5', { timeout: WAIT });
    assert.deepEqual(await rowIds(page), newestFirst.slice(40));
    assert.equal(new URL(page.page.url()).search, `?type=${type}&tag=blue`);

    await page.page.select('#filter-status', 'COMPLETED');
    await page.page.waitForFunction(() => document.querySelector('#total')?.dataset.total === '0', { timeout: WAIT });
    await waitSelector(page, '#jobs-table td.empty');
    await page.page.select('#filter-status', 'PENDING');
    await page.page.waitForFunction(() => document.querySelector('#total')?.dataset.total === '5', { timeout: WAIT });
  });

  withPage('bulk cancel and retry of what the filter selects, after a confirmation that counts the jobs', server, '/ui/jobs', async (page) => {
    const type = uniqueType('dash-bulk');
    const later = new Date(Date.now() + 3600_000).toISOString();
    const ids = await createJobs(server, Array.from({ length: 25 }, () => ({ type, runAt: later, payload: { durationMs: 0 } })));
    const [other] = await createJobs(server, [{ type: uniqueType('dash-bulk-other'), runAt: later }]);

    await page.page.goto(`${server.url}/ui/jobs?type=${type}`);
    await page.page.waitForFunction(() => document.querySelector('#total')?.dataset.total === '25', { timeout: WAIT });
    await page.page.click('#bulk-cancel');
    await waitSelector(page, '#bulk-question[data-count="25"]');
    assert.match(await text(page, '#bulk-question'), new RegExp(`^Cancel 25 jobs \\(pending or processing\\) matching type “${type}”\\?$`));
    await shot(page, 'bulk-confirm');
    await page.page.click('#bulk-yes');
    await waitSelector(page, '#bulk-result');
    assert.equal(await text(page, '#bulk-result'), '25 jobs cancelled.');
    // The rows change live.
    await page.page.waitForFunction(() => [...document.querySelectorAll('#jobs-table tr[data-id]')].every((r) => r.dataset.status === 'CANCELLED'), { timeout: WAIT });
    assert.equal((await gqlData(server.url, 'query($id: ID!) { job(id: $id) { status } }', { id: other })).job.status, 'PENDING', 'another type is untouched');

    await page.page.click('#bulk-retry');
    await waitSelector(page, '#bulk-question[data-count="25"]');
    await page.page.click('#bulk-yes');
    await waitSelector(page, '#bulk-result');
    assert.equal(await text(page, '#bulk-result'), '25 jobs put back to pending.');
    for (const id of ids) await waitForJobStatus(server.url, id, ['COMPLETED'], { timeoutMs: WAIT });
    await page.page.waitForFunction(() => [...document.querySelectorAll('#jobs-table tr[data-id]')].every((r) => r.dataset.status === 'COMPLETED'), { timeout: WAIT });

    await page.page.click('#bulk-cancel');
    await waitSelector(page, '#bulk-question[data-count="0"]');
    assert.equal(await page.page.$('#bulk-yes'), null, 'nothing to confirm');
  });

  withPage('the overview counts jobs by status, live, and draws the throughput', server, '/ui/', async (page) => {
    // Jobs of earlier tests may still finish meanwhile: the page must come
    // to show the server's count as it is now, whatever it has become.
    const showsServerCount = async (atLeast) => {
      const completed = (await gqlData(server.url, STATS)).stats.completed;
      const shown = await page.page.$eval('[data-count="COMPLETED"]', (e) => e.textContent).catch(() => null);
      return completed >= atLeast && shown === completed.toLocaleString('en-US') && { completed };
    };
    const { completed: before } = await waitFor(() => showsServerCount(0), { timeoutMs: WAIT, intervalMs: 100, label: 'the overview to show the completed count' });
    const [id] = await createJobs(server, [{ type: uniqueType('dash-overview'), payload: { durationMs: 0 } }]);
    await waitForJobStatus(server.url, id, ['COMPLETED'], { timeoutMs: WAIT });
    await waitFor(() => showsServerCount(before + 1), { timeoutMs: WAIT, intervalMs: 100, label: 'the overview to count the new completed job, live' });
    const title = await text(page, '.chart title');
    assert.match(title, /[1-9]\d* completed/, 'jobs completed in the last minutes are charted');
    assert.equal(await page.page.$$eval('.chart polyline', (l) => l.length), 2);
    await shot(page, 'overview');
  });

  withPage('is usable from the keyboard: links, the filters and the confirmation', server, '/ui/', async (page) => {
    /** Presses Tab until the focused element matches selector (at most 30 times). */
    async function tabTo(selector) {
      for (let i = 0; i < 30; i++) {
        await page.page.keyboard.press('Tab');
        if (await page.run((s) => document.activeElement?.matches(s), selector)) return;
      }
      assert.fail(`Tab never reached ${selector}`);
    }
    await waitSelector(page, '#live[data-state="connected"]');
    await tabTo('nav a[href="/ui/jobs"]');
    await page.page.keyboard.press('Enter');
    await waitSelector(page, '#jobs-table');
    await tabTo('#filter-type');
    await page.page.keyboard.type('no-such-type');
    await page.page.keyboard.press('Enter');
    await page.page.waitForFunction(() => location.search === '?type=no-such-type', { timeout: WAIT });
    await tabTo('#bulk-retry');
    await page.page.keyboard.press('Enter');
    await waitSelector(page, '#bulk-question[data-count="0"]');
    assert.equal(await page.run(() => document.activeElement?.id), 'bulk-no', 'the confirmation has the focus');
    await page.page.keyboard.press('Enter');
    await page.page.waitForFunction(() => !document.querySelector('#bulk-confirm'), { timeout: WAIT });
  });

  withPage('periodic jobs: schedule, next run and last job live; pause, resume and delete', server, '/ui/periodic', async (page) => {
    const name = uniqueType('dash-every');
    await gqlData(server.url, 'mutation($input: PeriodicJobInput!) { upsertPeriodicJob(input: $input) { name } }', {
      input: { name, schedule: '@every 1s', job: { type: name, payload: { durationMs: 0 }, tags: ['nightly'] } },
    });
    const row = `#periodic-table tr[data-name="${name}"]`;
    await page.page.reload();
    await waitSelector(page, row);
    // A tick makes a job; the row shows it without a reload.
    await waitSelector(page, `${row} a[href^="/ui/jobs/"]`);
    assert.match(await text(page, row), /@every 1s/);
    await shot(page, 'periodic');

    await page.page.click(`${row} button.pause`);
    await waitSelector(page, `${row}[data-paused="true"]`);
    const periodic = async () => (await gqlData(server.url, '{ periodicJobs { name paused job { tags } } }')).periodicJobs.find((p) => p.name === name);
    assert.deepEqual(await periodic(), { name, paused: true, job: { tags: ['nightly', `periodic:${name}`] } }, 'paused, its template kept');
    await page.page.click(`${row} button.pause`);
    await waitSelector(page, `${row}[data-paused="false"]`);

    await page.page.click(`${row} button.delete`);
    await waitSelector(page, `${row} button.delete-yes`);
    await page.page.click(`${row} button.delete-yes`);
    await page.page.waitForFunction((s) => !document.querySelector(s), { timeout: WAIT }, row);
    assert.equal(await periodic(), undefined, 'deleted');
  });

  withPage('job types: counts, pause and resume (live from another client too), limits with the server refusing a bad one', server, '/ui/types', async (page) => {
    const type = uniqueType('dash-type');
    await createJobs(server, [{ type, runAt: new Date(Date.now() + 3600_000).toISOString() }]);
    const row = `#types-table tr[data-type="${type}"]`;
    await page.page.reload();
    await waitSelector(page, row);
    assert.match(await text(page, `${row} td:nth-child(3)`), /^1$/, 'one pending');
    const jobType = async () => (await gqlData(server.url, 'query($n: String!) { jobType(name: $n) { paused concurrency ratePerSecond rateBurst } }', { n: type })).jobType;

    await page.page.click(`${row} button.pause`);
    await waitSelector(page, `${row}[data-paused="true"]`);
    assert.equal((await jobType()).paused, true);
    // Resumed by another client: the row follows through jobTypeUpdated.
    await gqlData(server.url, 'mutation($n: String!) { resumeJobType(name: $n) { name } }', { n: type });
    await waitSelector(page, `${row}[data-paused="false"]`);

    await page.page.click(`${row} button[aria-label="Edit the limits of ${type}"]`);
    await fill(page, `#limits-${type} input[name="concurrency"]`, '0');
    await page.page.click(`#limits-${type} button[type="submit"]`);
    await waitSelector(page, `#limits-${type} .error`);
    assert.match(await text(page, `#limits-${type} .error`), /BAD_USER_INPUT.*concurrency/);
    await fill(page, `#limits-${type} input[name="concurrency"]`, '3');
    await fill(page, `#limits-${type} input[name="ratePerSecond"]`, '2');
    await page.page.click(`#limits-${type} button[type="submit"]`);
    await page.page.waitForFunction((s) => !document.querySelector(s), { timeout: WAIT }, `#limits-${type}`);
    assert.match(await text(page, row), /3 at once, 2\/s \(burst 2\)/);
    assert.deepEqual(await jobType(), { paused: false, concurrency: 3, ratePerSecond: 2, rateBurst: 2 });
    await shot(page, 'types');
  });

  withPage('works at phone width', server, '/ui/jobs', async (page) => {
    await waitSelector(page, '#jobs-table tr[data-id]');
    const overflow = await page.run(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than the screen`);
    await shot(page, 'jobs-phone');
  }, { viewport: { width: 390, height: 844, isMobile: true } });
});

describe('dashboard across a server restart', D, () => {
  let db;
  let server;
  before(async () => {
    db = createSqliteDatabase('dashboard-restart');
    server = await startServer({ WORKERS: '2', DATABASE_URL: db.databaseUrl }, { label: 'dashboard restart' });
  }, { timeout: 20_000 });
  after(async () => {
    if (server) await server.stop().catch(() => {});
    if (db) await db.drop();
  });

  it('the indicator goes reconnecting, then offline, then live again, and the page re-reads its jobs', T, async () => {
    const page = await browser.open(`${server.url}/ui/jobs`);
    try {
      await waitSelector(page, '#live[data-state="connected"]');
      await page.run(() => {
        window.__states = [];
        const live = document.getElementById('live');
        new MutationObserver(() => window.__states.push(live.dataset.state)).observe(live, { attributes: true, attributeFilter: ['data-state'] });
      });
      let reread = false;
      let onReread;
      const reads = new Promise((resolve) => {
        onReread = resolve;
      });
      page.page.on('request', (req) => {
        if (reread && req.method() === 'POST' && new URL(req.url()).pathname === '/query' && /query Jobs\(/.test(req.postData() ?? '')) onReread();
      });

      const port = new URL(server.url).port;
      const { code } = await server.stop();
      assert.equal(code, 0);
      server = undefined;
      await waitSelector(page, '#live[data-state="reconnecting"]');
      await shot(page, 'live-reconnecting');
      await waitSelector(page, '#live[data-state="offline"]', 20_000);
      await shot(page, 'live-offline');

      reread = true;
      server = await startServer({ WORKERS: '2', DATABASE_URL: db.databaseUrl, PORT: port }, { label: 'dashboard restarted' });
      const [id] = await createJobs(server, [{ type: uniqueType('dash-restart'), payload: { durationMs: 0 } }]);
      await waitSelector(page, '#live[data-state="connected"]', 20_000);
      await waitSelector(page, `#jobs-table tr[data-id="${id}"]`);
      await withDeadline(reads, WAIT, 'the page to read its jobs again after reconnecting');
      const states = await page.run(() => window.__states);
      assert.deepEqual([...new Set(states)], ['reconnecting', 'offline', 'connected'], `states: ${states}`);
      await shot(page, 'live-reconnected');
    } finally {
      await page.close();
    }
  });
});

describe('dashboard with AUTH=token', D, () => {
  const tokens = {};
  let dir;
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'e2e-dashboard-tokens-'));
    const admin = await newToken('dash-admin', 'admin');
    const viewer = await newToken('dash-viewer', 'viewer');
    const user = await newToken('dash-user', 'user');
    tokens.admin = admin.token;
    tokens.viewer = viewer.token;
    tokens.user = user.token;
    tokens.file = writeTokensFile(path.join(dir, 'tokens.json'), [admin.entry, viewer.entry, user.entry]);
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  const server = useServer(() => ({ WORKERS: '2', AUTH: 'token', API_TOKENS_FILE: tokens.file }), { label: 'dashboard auth' });

  async function signIn(page, token) {
    await waitSelector(page, '#token');
    await fill(page, '#token', token);
    await page.page.click('.signin button[type="submit"]');
  }

  /** Creates a job of `type` due in an hour (it stays PENDING) as the token's identity; its id. */
  async function createAs(token, type) {
    const create = await gqlPost(server.url, CREATE_JOBS, { inputs: [{ type, runAt: new Date(Date.now() + 3600_000).toISOString() }] }, {
      headers: { Authorization: `Bearer ${token}` },
    });
    assert.equal(create.status, 200, create.text);
    return create.json.data.createJobs[0].id;
  }

  /** Opens the Types page through the navigation and waits for the row of `type`. */
  async function openTypes(page, type) {
    await page.page.click('nav a[href="/ui/types"]');
    await waitSelector(page, `#types-table tr[data-type="${type}"]`);
  }

  /** How many job-type controls (pause or resume, edit the limits) the Types page offers for `type`. */
  function typeControls(page, type) {
    const row = `#types-table tr[data-type="${type}"]`;
    return page.page.$$eval(`${row} button.pause, ${row} button[aria-label^="Edit the limits"]`, (b) => b.length);
  }

  withPage('asks for a token, refuses a wrong one, and offers a viewer nothing that changes a job', server, '/ui/jobs', async (page) => {
    const type = uniqueType('dash-auth');
    const id = await createAs(tokens.admin, type);

    await signIn(page, 'not-a-token');
    await waitSelector(page, '.signin .error');
    assert.match(await text(page, '.signin .error'), /refused/);
    await shot(page, 'signin');

    await signIn(page, tokens.viewer);
    await waitSelector(page, `#jobs-table tr[data-id="${id}"]`);
    await waitSelector(page, '#live[data-state="connected"]');
    assert.match(await text(page, '.who'), /^Signed in as dash-viewer \(viewer\)\s*Sign out$/);
    assert.equal(await text(page, '.who-name'), 'dash-viewer');
    assert.equal(await page.page.$('#bulk-cancel'), null, 'no bulk actions for a viewer');
    assert.equal(await page.page.$('nav a[href="/ui/create"]'), null, 'no Create for a viewer');
    assert.notEqual(await page.page.$('nav a[href="/ui/periodic"]'), null, 'a viewer reads the periodic jobs');
    assert.equal(await page.run(() => sessionStorage.getItem('jobqueue.token')), tokens.viewer);
    await page.page.click(`#jobs-table tr[data-id="${id}"] a`);
    await waitSelector(page, '#job-status [data-status="PENDING"]');
    assert.equal(await page.page.$('#job-cancel'), null, 'no cancel for a viewer');
    await openTypes(page, type);
    assert.equal(await typeControls(page, type), 0, 'no job-type controls for a viewer');

    await page.page.click('.who button');
    await waitSelector(page, '#token');
    assert.equal(await page.run(() => sessionStorage.getItem('jobqueue.token')), null, 'signing out forgets the token');
  });

  withPage('an admin signs in, creates a job with the form and watches it complete', server, '/ui/create', async (page) => {
    await signIn(page, tokens.admin);
    await waitSelector(page, '#f-type');
    assert.match(await text(page, '.who'), /^Signed in as dash-admin \(admin\)/);
    assert.notEqual(await page.page.$('nav a[href="/ui/periodic"]'), null, 'an admin has Periodic');
    const type = uniqueType('dash-admin');
    await fill(page, '#f-type', type);
    await fill(page, '#f-payload', '{"durationMs": 200}');
    await page.page.click('#create-submit');
    await waitSelector(page, '#job-status [data-status="COMPLETED"]');
    assert.notEqual(await page.page.$('#job-retry'), null, 'an admin is offered retry');
    await openTypes(page, type);
    assert.equal(await typeControls(page, type), 2, 'an admin may pause and limit a type');
  });

  withPage('a user is offered its own jobs\' controls, not the operator\'s', server, '/ui/jobs', async (page) => {
    const type = uniqueType('dash-user');
    const mine = await createAs(tokens.user, type);
    const theirs = await createAs(tokens.admin, type);
    await signIn(page, tokens.user);
    await waitSelector(page, `#jobs-table tr[data-id="${mine}"]`);
    assert.match(await text(page, '.who'), /^Signed in as dash-user \(user\)\s*Sign out$/);
    assert.equal(await page.page.$(`#jobs-table tr[data-id="${theirs}"]`), null, 'a user sees only its own jobs');
    assert.notEqual(await page.page.$('#bulk-cancel'), null, 'a user may cancel its jobs in bulk');
    assert.notEqual(await page.page.$('nav a[href="/ui/create"]'), null, 'a user has Create');
    assert.equal(await page.page.$('nav a[href="/ui/periodic"]'), null, 'no Periodic for a user');
    await shot(page, 'user');
    await page.page.click(`#jobs-table tr[data-id="${mine}"] a`);
    await waitSelector(page, '#job-status [data-status="PENDING"]');
    assert.notEqual(await page.page.$('#job-cancel'), null, 'a user may cancel its own job');
    await openTypes(page, type);
    assert.equal(await typeControls(page, type), 0, 'no job-type controls for a user');
  });
});
