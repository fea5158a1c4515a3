-- Indexes on the jobs' owner (migration 00007):
--   - jobs_owner_seq lists an owner's jobs newest first, in the order of
--     every other listing, however many jobs others have: a user's jobs
--     query walks its own jobs only. Jobs without an owner (authentication
--     off) take no room in it and cost no write; an owned job pays one
--     index insertion more per change (changes of jobs are not HOT, see
--     migration 00003). The listing adds the literal condition
--     owner <> '' so that the planner can use the partial index with a
--     parameter for the owner.
--   - Idempotency keys are scoped per owner, so that no caller gets
--     another's job back through a key: the unique index on
--     idempotency_key gives way to one on (owner, idempotency_key).
--     Every job so far has the owner '', so the new index holds whatever
--     the old one held.
-- An instance of an earlier version still running once the old index is
-- gone fails its creations with an idempotency key (its ON CONFLICT names
-- the old index): upgrade the instances together.

--
-- Outside a transaction, concurrently: a running server keeps reading and
-- writing jobs while the indexes are built. The drops before each build
-- clear an invalid index a failed earlier attempt may have left.

-- +goose NO TRANSACTION
-- +goose Up
DROP INDEX CONCURRENTLY IF EXISTS jobs_owner_seq;
CREATE INDEX CONCURRENTLY jobs_owner_seq ON jobs (owner, seq DESC) WHERE owner <> '';
DROP INDEX CONCURRENTLY IF EXISTS jobs_owner_idempotency_key;
CREATE UNIQUE INDEX CONCURRENTLY jobs_owner_idempotency_key ON jobs (owner, idempotency_key) WHERE idempotency_key IS NOT NULL;
DROP INDEX CONCURRENTLY IF EXISTS jobs_idempotency_key;

-- +goose Down
-- Fails while two owners have a job with the same key.
DROP INDEX CONCURRENTLY IF EXISTS jobs_idempotency_key;
CREATE UNIQUE INDEX CONCURRENTLY jobs_idempotency_key ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;
DROP INDEX CONCURRENTLY IF EXISTS jobs_owner_idempotency_key;
DROP INDEX CONCURRENTLY IF EXISTS jobs_owner_seq;
