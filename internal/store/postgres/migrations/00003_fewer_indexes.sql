-- Every change of a job writes a new row version into every index of the
-- table (status and updated_at change each time, so no update is HOT):
-- each index costs every job two index insertions and their WAL. Two
-- indexes did not pay for that:
--   - jobs_updated_at served only the listener's re-sync after a lost
--     connection, which now walks the table once in seq order instead (a
--     rare pass, against a cost on every change);
--   - jobs_type_status_seq served listing by type and status together,
--     which jobs_type_seq or jobs_status_seq (filtering the other column)
--     serve as well.
-- Without them a no-op job burns down with about 15 % less WAL and
-- database CPU (bench/burndown).

--
-- Concurrently, outside a transaction: a running server's statements on
-- jobs are not held up while the indexes go.

-- +goose NO TRANSACTION
-- +goose Up
DROP INDEX CONCURRENTLY IF EXISTS jobs_updated_at;
DROP INDEX CONCURRENTLY IF EXISTS jobs_type_status_seq;

-- +goose Down
CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_type_status_seq ON jobs (type, status, seq DESC);
CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_updated_at ON jobs (updated_at);
