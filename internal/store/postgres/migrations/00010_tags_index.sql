-- jobs_tags finds the jobs carrying a tag (tags @> ARRAY[tag]) without
-- reading the others, however many jobs there are. It is partial: jobs
-- without tags take no room in it and cost no index insertion on their
-- changes (changes of jobs are not HOT, see migration 00003). The listing
-- adds the literal condition tags <> '{}' so that the planner can use it.

--
-- Outside a transaction, concurrently: a running server keeps reading and
-- writing jobs while the index is built. The drop clears an invalid index
-- a failed earlier attempt may have left.

-- +goose NO TRANSACTION
-- +goose Up
DROP INDEX CONCURRENTLY IF EXISTS jobs_tags;
CREATE INDEX CONCURRENTLY jobs_tags ON jobs USING gin (tags) WHERE tags <> '{}';

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS jobs_tags;
