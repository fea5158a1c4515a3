-- Indexes for two queries that scanned the whole table: the listener's
-- re-sync after a lost connection (jobs changed since a moment, paged by
-- seq) and listing by type alone, newest first.

-- +goose Up
CREATE INDEX jobs_updated_at ON jobs (updated_at);
CREATE INDEX jobs_type_seq ON jobs (type, seq DESC);

-- +goose Down
DROP INDEX jobs_type_seq;
DROP INDEX jobs_updated_at;
