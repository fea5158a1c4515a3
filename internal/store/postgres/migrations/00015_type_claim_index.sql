-- Pending jobs per type in dispatch order, for the claim under type
-- controls when paused or full types hold a large pending backlog: it
-- takes the first jobs of each open type from here (claim_controlled)
-- instead of walking jobs_claim through the backlog, whose type only the
-- heap tells. Only pending versions enter it (a job's creation, and its
-- return to pending by a retry, a release or a rescue).
--
-- Concurrently, outside a transaction, as in 00006; the first drop clears
-- an invalid index a failed earlier attempt may have left.

-- +goose NO TRANSACTION
-- +goose Up
DROP INDEX CONCURRENTLY IF EXISTS jobs_type_claim;
CREATE INDEX CONCURRENTLY jobs_type_claim ON jobs (type, priority DESC, run_at, seq) WHERE status = 'pending';

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS jobs_type_claim;
