-- Jobs get tags: labels given at creation (at most 10, sorted, without
-- duplicates), never changed; '{}' for none. Adding a column with a
-- constant default rewrites nothing. The index that lists jobs by tag is
-- built concurrently by the next migration.
--
-- No counts are kept per tag (a job's tags would multiply the rows the
-- count triggers write on every change): the total of a listing by tag is
-- counted among the tag's jobs, through that index.

-- +goose Up
ALTER TABLE jobs ADD COLUMN tags text[] NOT NULL DEFAULT '{}';

-- +goose Down
ALTER TABLE jobs DROP COLUMN tags;
