-- The operators' controls of job types: one row per type that has any
-- (paused, or a concurrency or rate limit); a type left without controls
-- loses its row.
--   - concurrency, rate_per_second and rate_burst are NULL when not set;
--   - tokens is the rate bucket's content at tokens_at; a NULL tokens_at
--     is a full bucket.
-- A claim, when the table has rows, locks the rows of the limited types
-- (FOR UPDATE) and counts their processing jobs after the lock, so that
-- the claims of many instances take turns on a limited type; see
-- Store.Claim.

-- +goose Up
CREATE TABLE job_type_controls (
    name            text             PRIMARY KEY,
    paused          boolean          NOT NULL,
    concurrency     integer,
    rate_per_second double precision,
    rate_burst      integer,
    tokens          double precision NOT NULL,
    tokens_at       timestamptz
);

-- +goose Down
DROP TABLE job_type_controls;
