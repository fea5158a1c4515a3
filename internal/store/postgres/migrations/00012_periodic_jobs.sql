-- Periodic jobs: one row per definition, by name. job is the template as
-- JSON text (domain.JobTemplate), compared as text when a definition is
-- put again. last_run_at is the tick of the last job the definition
-- created: the statement that inserts a tick's job advances it with a
-- compare-and-set (last_run_at < the tick) in the same transaction, and
-- the row lock makes racing instances wait for each other and then find
-- the tick taken (see store.Periodics).

-- +goose Up
CREATE TABLE periodic_jobs (
    name        text        PRIMARY KEY,
    schedule    text        NOT NULL,
    timezone    text        NOT NULL,
    paused      boolean     NOT NULL,
    source      text        NOT NULL,
    job         text        NOT NULL,
    revision    bigint      NOT NULL,
    updated_at  timestamptz NOT NULL,
    last_run_at timestamptz,
    last_job_id uuid
);

-- +goose Down
DROP TABLE periodic_jobs;
