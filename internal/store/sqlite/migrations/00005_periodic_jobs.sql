-- Periodic jobs: one row per definition, by name. job is the template as
-- JSON (domain.JobTemplate). last_run_at is the tick of the last job the
-- definition created, in microseconds: the store advances it with a
-- compare-and-set in the write that inserts that job, which is what makes
-- each tick create one job at most (see store.Periodics).

-- +goose Up
CREATE TABLE periodic_jobs (
    name        TEXT    PRIMARY KEY,
    schedule    TEXT    NOT NULL,
    timezone    TEXT    NOT NULL,
    paused      INTEGER NOT NULL,
    source      TEXT    NOT NULL,
    job         TEXT    NOT NULL,
    revision    INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    last_run_at INTEGER,
    last_job_id TEXT
) STRICT;

-- +goose Down
DROP TABLE periodic_jobs;
