-- The jobs table: one row per job, its current version only. Times are
-- integer unix microseconds (UTC); payload and result are the client's bytes
-- as given; errors is the JSON array of failed attempts, oldest first:
-- [{"attempt":1,"message":"...","at":<unix µs>}, ...].

-- +goose Up
CREATE TABLE jobs (
    -- Creation order: AUTOINCREMENT never hands out a seq again, not even
    -- the largest one after its job was deleted, so cursors stay valid.
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT    NOT NULL UNIQUE,
    type             TEXT    NOT NULL,
    payload          BLOB,
    status           TEXT    NOT NULL CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'cancelled')),
    attempts         INTEGER NOT NULL,
    max_attempts     INTEGER NOT NULL,
    error            TEXT    NOT NULL,
    errors           TEXT    NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    -- NULL when the job has none (see jobs_idempotency_key).
    idempotency_key  TEXT,
    timeout_ns       INTEGER NOT NULL,
    run_at           INTEGER NOT NULL,
    priority         INTEGER NOT NULL,
    progress         INTEGER,
    result           BLOB,
    cancel_requested INTEGER NOT NULL,
    version          INTEGER NOT NULL,
    -- The claim of a processing job; NULL in every other status.
    lease_owner      TEXT,
    lease_expires_at INTEGER
) STRICT;

-- Idempotency keys are unique; jobs without one take no room here.
CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;
-- The pending jobs in dispatch order: Claim and NextRunAt walk it one
-- priority at a time.
CREATE INDEX jobs_runnable ON jobs (priority DESC, run_at, seq) WHERE status = 'pending';
-- DeleteFinished: finished_at is set exactly in the final statuses.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
-- List pages by status (and Heartbeat and RescueExpired, which scan the
-- processing jobs: there are few, the workers' claims, and leases need no
-- index that every claim and every completion would have to write).
CREATE INDEX jobs_status ON jobs (status, seq);
-- List pages by type. It leaves status out, so that a change of status
-- does not have to move the job in it too.
CREATE INDEX jobs_type ON jobs (type, seq);

-- How many jobs each type has in each status: Stats and the totals of List
-- read them instead of counting jobs. The store updates them in the
-- transaction of every change, once per transaction (cheaper than a
-- trigger per row). A count that fell to zero stays: one row per type and
-- status.
CREATE TABLE job_counts (
    type   TEXT    NOT NULL,
    status TEXT    NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (type, status)
) STRICT, WITHOUT ROWID;

-- +goose Down
DROP TABLE job_counts;
DROP TABLE jobs;
