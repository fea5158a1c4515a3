// Starts the job-queue server binary as a black box and stops it again.
//
//   const server = await startServer({ WORKERS: '4', PROCESSING_TIME: '20ms' });
//   server.url    -> 'http://127.0.0.1:43567'
//   server.wsUrl  -> 'ws://127.0.0.1:43567/query'
//   await server.stop() -> { code, signal, durationMs }   (SIGTERM, waits for exit)
//   await server.kill() -> { code, signal, at }           (SIGKILL: a crash, no shutdown)
//
// A describe whose tests share one server takes it from useServer, which
// starts it before them and stops it after them:
//
//   const server = useServer({ WORKERS: '2' }, { label: 'rest' });
//
// When the environment depends on what earlier hooks made (a port, a file),
// pass a function: it is called in the `before` hook.
//
//   const server = useServer(() => ({ CORS_ALLOWED_ORIGINS: site.origin }));
//
// The binary comes from env SERVER_BIN (default ../bin/server relative to e2e/).
// The port is read from the JSON log line {"msg":"listening","addr":"host:port"}.

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';

const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// Configuration variables of the server; removed from the inherited environment
// so that a developer's shell cannot change what the tests exercise.
const SERVER_CONFIG_VARS = [
  'PORT',
  'WORKERS',
  'QUEUE_CAPACITY',
  'PROCESSING_TIME',
  'SHUTDOWN_TIMEOUT',
  'LOG_FORMAT',
  'LOG_LEVEL',
  'MAX_BODY_BYTES',
  'MAX_PAYLOAD_BYTES',
  'REST_LIST_MAX',
  'MAX_SUBSCRIPTIONS_PER_CONN',
  'COMPLEXITY_LIMIT',
  'MAX_QUERY_TOKENS',
  'MAX_QUERY_DEPTH',
  'MAX_QUERY_ALIASES',
  'MAX_QUERY_DIRECTIVES',
  'MAX_QUERY_FRAGMENT_SPREADS',
  'MAX_QUERY_FIELDS',
  'MAX_JOBS_PER_REQUEST',
  'ERROR_HISTORY',
  'MAX_CONNECTIONS',
  'BODY_TIMEOUT',
  'REQUEST_TIMEOUT',
  'MAX_RESPONSE_BYTES',
  'HEAVY_COMPLEXITY',
  'HEAVY_QUERIES',
  'WRITE_TIMEOUT',
  'MAX_INFLIGHT_RESPONSE_BYTES',
  'AUTH',
  'API_TOKENS_FILE',
  'JWT_JWKS_URL',
  'JWT_SECRET',
  'JWT_ISSUER',
  'JWT_AUDIENCE',
  'JWT_ROLE_CLAIM',
  'CORS_ALLOWED_ORIGINS',
  'WS_READ_LIMIT',
  'WS_KEEPALIVE',
  'WS_INIT_TIMEOUT',
  'WS_WRITE_TIMEOUT',
  'SUBSCRIBER_BUFFER',
  'SUBSCRIBER_MAX_BACKLOG',
  'DEBUG_ADDR',
  'DATABASE_URL',
  'INSTANCE_ID',
  'LEASE_DURATION',
  'POLL_INTERVAL',
  'HANDLERS_FILE',
  'MAX_ATTEMPTS',
  'JOB_TIMEOUT',
  'RETRY_BACKOFF',
  'RETRY_BACKOFF_MAX',
  'RETENTION',
  'RETENTION_SWEEP',
];

const MAX_LOG_LINES = 2000;
const running = new Set();

// Never leave a server behind if the test process dies early.
process.on('exit', () => {
  for (const child of running) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
});

export function serverBinary() {
  const configured = process.env.SERVER_BIN;
  if (configured) return path.resolve(process.cwd(), configured);
  return path.resolve(E2E_DIR, '..', 'bin', 'server');
}

/** Turns the logged listen address into a host usable in a URL. */
export function urlHostFromAddr(addr) {
  const i = addr.lastIndexOf(':');
  if (i < 0) throw new Error(`listen address without a port: ${JSON.stringify(addr)}`);
  let host = addr.slice(0, i);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  const port = Number(addr.slice(i + 1));
  if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new Error(`listen address with a bad port: ${JSON.stringify(addr)}`);
  }
  if (host === '' || host === '::' || host === '0.0.0.0' || host === 'localhost') {
    host = '127.0.0.1';
  } else if (host.includes(':')) {
    host = `[${host}]`;
  }
  return { host, port };
}

/**
 * @param {Record<string,string>} env extra environment for the server
 * @param {{ startTimeoutMs?: number, label?: string }} [opts]
 */
export async function startServer(env = {}, opts = {}) {
  const { startTimeoutMs = 15_000, label = 'server' } = opts;
  const bin = serverBinary();
  if (!existsSync(bin)) {
    throw new Error(
      `server binary not found at ${bin}; build it with ` +
        '`cd /work/main && go build -o bin/server ./cmd/server` or set SERVER_BIN',
    );
  }

  const baseEnv = { ...process.env };
  for (const name of SERVER_CONFIG_VARS) delete baseEnv[name];
  const childEnv = {
    ...baseEnv,
    PORT: '0',
    LOG_FORMAT: 'json',
    LOG_LEVEL: 'info',
    ...Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v)])),
  };

  const child = spawn(bin, [], { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);

  const logLines = [];
  const remember = (stream, line) => {
    logLines.push(`[${stream}] ${line}`);
    if (logLines.length > MAX_LOG_LINES) logLines.shift();
  };

  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      running.delete(child);
      resolve({ code, signal, at: Date.now() });
    });
  });
  const spawnError = new Promise((_, reject) => child.once('error', reject));
  spawnError.catch(() => {});

  readline.createInterface({ input: child.stdout }).on('line', (l) => remember('stdout', l));
  const stderrLines = readline.createInterface({ input: child.stderr });

  const listening = new Promise((resolve) => {
    stderrLines.on('line', (line) => {
      remember('stderr', line);
      let entry;
      try {
        entry = JSON.parse(line);
      } catch {
        return; // not a JSON log line
      }
      if (entry && entry.msg === 'listening' && typeof entry.addr === 'string') resolve(entry.addr);
    });
  });

  const tail = (n = 40) => logLines.slice(-n).join('\n');
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${label}: no "listening" log line within ${startTimeoutMs} ms\n${tail()}`)),
      startTimeoutMs,
    );
  });
  const early = exited.then(({ code, signal }) => {
    throw new Error(`${label}: exited before listening (code ${code}, signal ${signal})\n${tail()}`);
  });

  let addr;
  try {
    addr = await Promise.race([listening, deadline, early, spawnError]);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  } finally {
    clearTimeout(timer);
  }

  const { host, port } = urlHostFromAddr(addr);
  const url = `http://${host}:${port}`;
  const wsUrl = `ws://${host}:${port}/query`;

  let stopping;
  /**
   * Sends SIGTERM and waits for the process to exit. After timeoutMs it is
   * killed with SIGKILL and the promise rejects.
   */
  function stop({ timeoutMs = 15_000 } = {}) {
    if (stopping) return stopping;
    stopping = (async () => {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(
          `${label}: the server had already exited before stop() (code ${child.exitCode}, ` +
            `signal ${child.signalCode})\n${tail()}`,
        );
      }
      const sentAt = Date.now();
      child.kill('SIGTERM');
      let t;
      const timeout = new Promise((resolve) => {
        t = setTimeout(() => resolve(null), timeoutMs);
      });
      const result = await Promise.race([exited, timeout]);
      clearTimeout(t);
      if (result === null) {
        child.kill('SIGKILL');
        await exited;
        throw new Error(`${label}: did not exit within ${timeoutMs} ms of SIGTERM; killed\n${tail()}`);
      }
      return { code: result.code, signal: result.signal, durationMs: result.at - sentAt };
    })();
    return stopping;
  }

  /** Kills the process with SIGKILL, as a crash would, and waits for it to exit. */
  function kill() {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    return exited;
  }

  return {
    url,
    wsUrl,
    addr,
    pid: child.pid,
    process: child,
    exited,
    logs: () => logLines.slice(),
    tail,
    stop,
    kill,
  };
}

/**
 * Starts a server (startServer) in a `before` hook of the enclosing describe
 * and stops it in an `after` hook, asserting that it exits 0 on SIGTERM.
 * Returns the server's handle, empty until the `before` hook has run; the
 * tests, and hooks registered after this call, find it filled in.
 *
 * @param {Record<string,string> | (() => Record<string,string>)} env extra
 *   environment for the server, or a function called in the `before` hook
 *   that returns it
 * @param {{ startTimeoutMs?: number, label?: string, hookTimeoutMs?: number }} [opts]
 */
export function useServer(env = {}, opts = {}) {
  const { hookTimeoutMs = 20_000, ...startOpts } = opts;
  const server = {};
  let started = false;
  before(async () => {
    Object.assign(server, await startServer(typeof env === 'function' ? env() : env, startOpts));
    started = true;
  }, { timeout: hookTimeoutMs });
  after(async () => {
    if (!started) return;
    const { code, signal } = await server.stop();
    assert.equal(code, 0, `server exit code (signal ${signal})\n${server.tail()}`);
  }, { timeout: hookTimeoutMs });
  return server;
}

/**
 * Makes a static API token with `server token new --name NAME --role ROLE`,
 * which prints the token and then its tokens-file entry, one per line.
 * Returns { token, entry }.
 */
export async function newToken(name, role) {
  const bin = serverBinary();
  const stdout = await new Promise((resolve, reject) => {
    execFile(bin, ['token', 'new', '--name', name, '--role', role], { timeout: 10_000 }, (err, out, errOut) => {
      if (err) reject(new Error(`${bin} token new --name ${name} --role ${role}: ${err.message}\n${errOut}`));
      else resolve(out);
    });
  });
  const lines = stdout.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 2, `token new prints the token and its entry, got: ${stdout}`);
  return { token: lines[0], entry: JSON.parse(lines[1]) };
}

/** Writes an API_TOKENS_FILE listing `entries` (from newToken) at `file`. */
export function writeTokensFile(file, entries) {
  writeFileSync(file, JSON.stringify({ tokens: entries }, null, 2));
  return file;
}
