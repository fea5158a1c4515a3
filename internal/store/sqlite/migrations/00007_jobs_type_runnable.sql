-- The pending jobs of each type in dispatch order. Claims under type
-- controls use it when closed types (paused, at their concurrency, out of
-- rate tokens) hold many pending jobs: they take the first runnable jobs
-- of each open type from it, one seek per type and priority, instead of
-- walking jobs_runnable past the closed types' backlogs. Every pending job
-- is in it, as in jobs_runnable: each change into or out of pending (a
-- creation, a claim, a retry) writes one more index entry.

-- +goose Up
CREATE INDEX jobs_type_runnable ON jobs (type, priority DESC, run_at, seq) WHERE status = 'pending';

-- +goose Down
DROP INDEX jobs_type_runnable;
