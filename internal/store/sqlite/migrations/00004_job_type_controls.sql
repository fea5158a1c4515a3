-- The operators' controls of job types: one row per type that has any
-- (paused, or a concurrency or rate limit); a type left without controls
-- loses its row. Claims read the table in their write transaction.
--   - concurrency, rate_per_second and rate_burst are NULL when not set;
--   - tokens is the rate bucket's content at tokens_at (unix µs); a NULL
--     tokens_at is a full bucket.

-- +goose Up
CREATE TABLE job_type_controls (
    name            TEXT    PRIMARY KEY,
    paused          INTEGER NOT NULL,
    concurrency     INTEGER,
    rate_per_second REAL,
    rate_burst      INTEGER,
    tokens          REAL    NOT NULL,
    tokens_at       INTEGER
) STRICT, WITHOUT ROWID;

-- +goose Down
DROP TABLE job_type_controls;
