// Drives a real headless Chromium (Debian's `chromium`, through puppeteer-core,
// which never downloads a browser) against the server, and serves pages from
// a second origin so that a page can call the server cross-origin.
//
// A describe whose tests share one browser and one page server:
//
//   const browser = useBrowser();
//   const site = useStaticSite({ '/': { type: 'text/html', body: '<p>hi</p>' } });
//   it('...', async () => {
//     const page = await browser.open(`${site.origin}/`);
//     try {
//       const n = await page.run((a) => a + 2, 40);        // page.evaluate with a deadline
//       assert.deepEqual(page.consoleErrors, []);
//     } finally {
//       await page.close();
//     }
//   });
//
// The browser is CHROMIUM_PATH, else `chromium` on PATH. Each launch gets a
// fresh user-data-dir, removed at close; close() also makes sure that no
// process of that browser is left.
//
// Browsers treat http://127.0.0.1:P and http://localhost:P as two origins
// (and two sites): the server is reached as 127.0.0.1 (server.url), the
// pages are served as http://localhost:PORT, so every call from a page to
// the server is cross-origin without any DNS.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';

import puppeteer from 'puppeteer-core';

import { withDeadline } from './util.mjs';

const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The graphql-ws client's browser build (UMD: defines `globalThis.graphqlWs`). */
export const GRAPHQL_WS_UMD = path.join(E2E_DIR, 'node_modules', 'graphql-ws', 'umd', 'graphql-ws.min.js');

/** The Chromium executable: CHROMIUM_PATH, else `command -v chromium`. */
export function chromiumPath() {
  if (process.env.CHROMIUM_PATH) return process.env.CHROMIUM_PATH;
  try {
    return execFileSync('sh', ['-c', 'command -v chromium'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error(
      'chromium not found: install it with `apt-get install -y chromium` (Debian package) or set CHROMIUM_PATH',
    );
  }
}

/**
 * The pids of running processes whose command line contains `needle`, read
 * from /proc. Used to prove that a closed browser left no process behind:
 * every Chromium process (browser, renderers, zygote, GPU and network
 * services) carries its --user-data-dir on its command line.
 */
export function processesWith(needle) {
  const pids = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let cmdline;
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
    } catch {
      continue; // exited while we looked
    }
    if (cmdline.includes(needle)) pids.push({ pid: Number(entry), cmdline: cmdline.split('\0').join(' ').trim() });
  }
  return pids;
}

/**
 * Launches headless Chromium with a fresh user-data-dir.
 *
 * @param {{ launchTimeoutMs?: number, protocolTimeoutMs?: number }} [opts]
 * @returns {Promise<{ browser, userDataDir: string, pid: number, version: string,
 *   open: (url: string, opts?: { timeoutMs?: number, prepare?: (page) => Promise<void> }) => Promise<BrowserPage>,
 *   close: () => Promise<void> }>}
 */
export async function launchBrowser({ launchTimeoutMs = 30_000, protocolTimeoutMs = 30_000 } = {}) {
  const executablePath = chromiumPath();
  const userDataDir = mkdtempSync(path.join(os.tmpdir(), 'e2e-chromium-'));
  let browser;
  try {
    browser = await puppeteer.launch({
      executablePath,
      headless: true,
      userDataDir,
      // We run as root, where Chromium's sandbox cannot start.
      args: ['--no-sandbox', '--headless=new', '--disable-gpu', `--user-data-dir=${userDataDir}`],
      timeout: launchTimeoutMs,
      protocolTimeout: protocolTimeoutMs,
      // The test runner owns the process; a signal to it must not race
      // puppeteer's own handlers.
      handleSIGINT: false,
      handleSIGTERM: false,
      handleSIGHUP: false,
    });
  } catch (err) {
    rmSync(userDataDir, { recursive: true, force: true });
    throw new Error(`launch ${executablePath}: ${err.message}`, { cause: err });
  }
  const pid = browser.process()?.pid;
  const version = await browser.version();
  const pages = new Set();

  let closing;
  /**
   * Closes every page and the browser, waits for its processes to exit and
   * removes the user-data-dir. Rejects when a process of it is still there.
   */
  function close() {
    closing ??= (async () => {
      for (const page of [...pages]) await page.close().catch(() => {});
      try {
        await withDeadline(browser.close(), 15_000, 'chromium to close');
      } catch (err) {
        browser.process()?.kill('SIGKILL');
        throw err;
      } finally {
        rmSync(userDataDir, { recursive: true, force: true });
      }
      const left = processesWith(userDataDir);
      assert.deepEqual(left, [], `chromium processes left after close`);
    })();
    return closing;
  }

  /**
   * Opens `url` in a new page of its own browser context (no shared cookies
   * or cache) and waits for its load event. `prepare(page)`, when given,
   * runs before the navigation (request interception, viewport).
   */
  async function open(url, { timeoutMs = 15_000, prepare } = {}) {
    const context = await browser.createBrowserContext();
    const page = await context.newPage();
    const handle = wrapPage(context, page);
    pages.add(handle);
    const closePage = handle.close;
    handle.close = () => {
      pages.delete(handle);
      return closePage();
    };
    try {
      if (prepare) await prepare(page);
      const res = await page.goto(url, { waitUntil: 'load', timeout: timeoutMs });
      assert.ok(res && res.ok(), `GET ${url}: HTTP ${res?.status()}`);
    } catch (err) {
      await handle.close();
      throw err;
    }
    return handle;
  }

  return { browser, userDataDir, pid, version, open, close };
}

/**
 * @typedef {object} BrowserPage
 * @property {import('puppeteer-core').Page} page
 * @property {string[]} consoleErrors  console.error calls, uncaught exceptions and
 *   the browser's own error log entries (CORS refusals, failed websocket
 *   handshakes), in order
 * @property {(fn: Function, arg?: any, opts?: { timeoutMs?: number }) => Promise<any>} run
 * @property {() => Promise<void>} close
 */

function wrapPage(context, page) {
  const consoleErrors = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') consoleErrors.push(msg.text());
  });
  page.on('pageerror', (err) => consoleErrors.push(`uncaught: ${err.message}`));

  /**
   * Runs `fn` in the page (page.evaluate: fn is serialized, so it sees only
   * the page's globals and `arg`, which must be JSON-like) and returns what
   * it returns, or what its promise resolves to. Fails after timeoutMs.
   */
  function run(fn, arg, { timeoutMs = 10_000 } = {}) {
    return withDeadline(page.evaluate(fn, arg), timeoutMs, `page.evaluate in ${page.url()}`);
  }

  let closed;
  return {
    page,
    consoleErrors,
    run,
    close: () => {
      closed ??= context.close();
      return closed;
    },
  };
}

/**
 * Launches a browser in a `before` hook of the enclosing describe (or file)
 * and closes it in an `after` hook, which fails when a Chromium process is
 * left. Returns the handle of launchBrowser, filled in once `before` ran.
 */
export function useBrowser(opts = {}) {
  const handle = {};
  before(async () => {
    Object.assign(handle, await launchBrowser(opts));
  }, { timeout: 40_000 });
  after(async () => {
    if (handle.close) await handle.close();
  }, { timeout: 30_000 });
  return handle;
}

/**
 * Serves fixed responses on 127.0.0.1 at a random port: a "second origin"
 * for pages that call the server. `routes` maps a path to
 * { type, body } (a string or Buffer) or to { file, type }. Unknown paths
 * get 404. Every response says Cache-Control: no-store.
 *
 * Returns { origin: 'http://localhost:PORT', port, url(path), requests, close() }.
 */
export async function startStaticSite(routes = {}) {
  const requests = [];
  const server = http.createServer((req, res) => {
    const pathname = new URL(req.url, 'http://x').pathname;
    requests.push({ method: req.method, path: pathname });
    const route = routes[pathname];
    if (!route || req.method !== 'GET') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    const body = route.file ? readFileSync(route.file) : route.body;
    res.writeHead(200, { 'content-type': route.type, 'cache-control': 'no-store' }).end(body);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  const origin = `http://localhost:${port}`;
  return {
    origin,
    port,
    url: (p = '/') => `${origin}${p}`,
    requests,
    close: () =>
      new Promise((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}

/** startStaticSite in a `before` hook, closed in an `after` hook. */
export function useStaticSite(routes) {
  const site = {};
  let started;
  before(async () => {
    started = await startStaticSite(routes);
    Object.assign(site, started);
  });
  after(async () => {
    if (started) await started.close();
  });
  return site;
}

/** A page that loads the graphql-ws client; serve with graphqlWsRoutes(). */
export const CLIENT_PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>e2e client</title>
<link rel="icon" href="data:,">
<script src="/graphql-ws.min.js"></script>
</head><body><p>e2e client page</p></body></html>`;

/** Routes of a site whose "/" is CLIENT_PAGE, with the graphql-ws browser build beside it. */
export function clientPageRoutes() {
  assert.ok(existsSync(GRAPHQL_WS_UMD), `graphql-ws browser build missing at ${GRAPHQL_WS_UMD}; run npm ci`);
  return {
    '/': { type: 'text/html; charset=utf-8', body: CLIENT_PAGE },
    '/graphql-ws.min.js': { type: 'text/javascript; charset=utf-8', file: GRAPHQL_WS_UMD },
  };
}
