// Databases for the tests of the durable stores: a fresh SQLite file or a
// fresh PostgreSQL schema per test, removed at the end, and control of the
// local PostgreSQL cluster for the restart test.
//
//   if (!(await backend.available(t))) return;   // skips (loudly) or fails without PostgreSQL
//   const db = await backend.create('restart');  // { name, databaseUrl, drop(), query?() }
//   ... startServer({ DATABASE_URL: db.databaseUrl }) ...
//   await db.drop();
//
// PostgreSQL is JOBQUEUE_TEST_POSTGRES_URL, else TEST_DATABASE_URL, else the
// local test database.
// When it cannot be reached the PostgreSQL tests are skipped with a warning,
// or fail when JOBQUEUE_REQUIRE_POSTGRES=1 (CI on a machine that has it).

import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

import pg from 'pg';

export const POSTGRES_URL =
  process.env.JOBQUEUE_TEST_POSTGRES_URL ||
  process.env.TEST_DATABASE_URL ||
  'postgres://postgres@127.0.0.1:5432/test?sslmode=disable';
const REQUIRE_POSTGRES = process.env.JOBQUEUE_REQUIRE_POSTGRES === '1';

const run = promisify(execFile);

function redacted(url) {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable URL)';
  }
}

/**
 * Runs one statement on a connection of its own and returns the rows. A
 * connection per call survives PostgreSQL restarts, which kill pooled ones.
 */
export async function pgQuery(sql, params = [], { timeoutMs = 5_000 } = {}) {
  const client = new pg.Client({
    connectionString: POSTGRES_URL,
    connectionTimeoutMillis: timeoutMs,
    query_timeout: timeoutMs,
    application_name: 'jobqueue-e2e',
  });
  client.on('error', () => {}); // a dying server must not crash the test process
  await client.connect();
  try {
    return (await client.query(sql, params)).rows;
  } finally {
    await client.end().catch(() => {});
  }
}

let reachability;
/** Resolves to null when PostgreSQL answers, else to the connection error. */
export function postgresUnreachable() {
  reachability ??= pgQuery('SELECT 1', [], { timeoutMs: 3_000 }).then(
    () => null,
    (err) => err,
  );
  return reachability;
}

/**
 * For a test that needs PostgreSQL: true when it is reachable. Otherwise it
 * skips the test with a warning and returns false, or throws when
 * JOBQUEUE_REQUIRE_POSTGRES=1.
 */
export async function needPostgres(t) {
  const err = await postgresUnreachable();
  if (!err) return true;
  const why = `PostgreSQL at ${redacted(POSTGRES_URL)} is unreachable (${err.message || err})`;
  if (REQUIRE_POSTGRES) throw new Error(`${why}; JOBQUEUE_REQUIRE_POSTGRES=1 makes this a failure`);
  console.warn(
    `\n*** WARNING: SKIPPING "${t.name}": ${why}.\n` +
      '*** Start PostgreSQL or set JOBQUEUE_TEST_POSTGRES_URL; JOBQUEUE_REQUIRE_POSTGRES=1 turns this into a failure.\n',
  );
  t.skip(why);
  return false;
}

function uniqueName(label) {
  const clean = label.toLowerCase().replace(/[^a-z0-9]+/g, '_');
  return `e2e_${clean}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * Creates a fresh schema; its DATABASE_URL selects it with search_path.
 * `table` is the schema-qualified jobs table, for inspecting the store.
 */
export async function createPostgresSchema(label) {
  const name = uniqueName(label);
  const quoted = `"${name}"`;
  await pgQuery(`CREATE SCHEMA ${quoted}`);
  const url = new URL(POSTGRES_URL);
  url.searchParams.set('search_path', name);
  return {
    backend: 'postgres',
    name,
    databaseUrl: url.toString(),
    table: `${quoted}.jobs`,
    query: pgQuery,
    async drop() {
      await pgQuery(`DROP SCHEMA IF EXISTS ${quoted} CASCADE`, [], { timeoutMs: 15_000 });
    },
  };
}

/** A SQLite database file in a fresh temporary directory. */
export function createSqliteDatabase(label) {
  const dir = mkdtempSync(path.join(tmpdir(), `jobqueue-e2e-${label}-`));
  const file = path.join(dir, 'jobs.db');
  return {
    backend: 'sqlite',
    name: file,
    databaseUrl: `sqlite:${file}`,
    table: null,
    query: null,
    async drop() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The durable backends, for tests written once and run on each. */
export const DURABLE_BACKENDS = [
  { name: 'sqlite', available: async () => true, create: async (label) => createSqliteDatabase(label) },
  { name: 'postgres', available: needPostgres, create: createPostgresSchema },
];

let cluster;
/**
 * The [version, name] of the local cluster that serves POSTGRES_URL's port:
 * JOBQUEUE_TEST_POSTGRES_CLUSTER ("15 main"), else found with pg_lsclusters.
 */
async function postgresCluster() {
  cluster ??= (async () => {
    const configured = process.env.JOBQUEUE_TEST_POSTGRES_CLUSTER;
    if (configured) return configured.trim().split(/\s+/);
    const port = new URL(POSTGRES_URL).port || '5432';
    const { stdout } = await run('pg_lsclusters', ['--no-header'], { timeout: 10_000 });
    const found = stdout
      .split('\n')
      .map((line) => line.trim().split(/\s+/))
      .find((f) => f[2] === port);
    if (!found) throw new Error(`no cluster on port ${port} in pg_lsclusters:\n${stdout}`);
    return found.slice(0, 2);
  })();
  return cluster;
}

async function pgCtlCluster(action, extra = []) {
  return run('pg_ctlcluster', ['--skip-systemctl-redirect', ...extra, ...(await postgresCluster()), action], {
    timeout: 60_000,
  });
}

/** Whether pg_ctlcluster can control the cluster (a local Debian install). */
export async function canControlPostgres() {
  try {
    await pgCtlCluster('status');
    return true;
  } catch (err) {
    // status exits 3 for a stopped cluster: still controllable.
    return err.code === 3;
  }
}

/** Stops the cluster (fast mode: open connections are ended). */
export function stopPostgres() {
  return pgCtlCluster('stop', ['-m', 'fast']);
}

/** Starts the cluster unless it runs, then waits until it answers queries. */
export async function ensurePostgresRunning({ timeoutMs = 30_000 } = {}) {
  try {
    await pgCtlCluster('status');
  } catch {
    await pgCtlCluster('start');
  }
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await pgQuery('SELECT 1', [], { timeoutMs: 2_000 });
      return;
    } catch (err) {
      if (Date.now() >= deadline) throw new Error(`PostgreSQL not answering ${timeoutMs} ms after start: ${err.message}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}
