-- Jobs get an owner: the identity that created them (a token's name or a
-- JWT's subject), '' for none (authentication off). It never changes.
--   - Idempotency keys are scoped per owner, so that no caller gets
--     another's job back through a key: the unique index becomes
--     (owner, idempotency_key).
--   - jobs_owner pages an owner's jobs newest first; jobs without an owner
--     take no room in it. A query uses it only when its WHERE clause has
--     the term owner <> '' too (SQLite does not infer it from owner = ?).
--   - job_owner_counts counts the jobs of each owner per type and status,
--     as job_counts does for all jobs, so that an owner's stats and totals
--     read a few rows; the store keeps both in the same transaction. Jobs
--     without an owner are not in it.

-- +goose Up
ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT '';
DROP INDEX jobs_idempotency_key;
CREATE UNIQUE INDEX jobs_owner_idempotency_key ON jobs (owner, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_owner ON jobs (owner, seq) WHERE owner <> '';
CREATE TABLE job_owner_counts (
    owner  TEXT    NOT NULL,
    type   TEXT    NOT NULL,
    status TEXT    NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (owner, type, status)
) STRICT, WITHOUT ROWID;

-- +goose Down
DROP TABLE job_owner_counts;
DROP INDEX jobs_owner;
DROP INDEX jobs_owner_idempotency_key;
CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;
ALTER TABLE jobs DROP COLUMN owner;
