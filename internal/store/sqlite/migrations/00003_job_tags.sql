-- Jobs get tags: labels given at creation (at most 10), never changed.
--   - jobs.tags holds them as a JSON array of strings, sorted, '[]' for
--     none: what a read of the job returns.
--   - job_tags has one row per tag of a job, keyed by (tag, job_seq), so
--     that listing by tag walks the tag's jobs newest first from the
--     cursor down, however many jobs have other tags or none. The store
--     writes it in the transaction that creates the job; the trigger below
--     removes a deleted job's rows.
--   - There are no counts per tag: a listing's total by tag counts the
--     tag's rows (bounded by the tag's jobs, not by all jobs).

-- +goose Up
ALTER TABLE jobs ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
CREATE TABLE job_tags (
    tag     TEXT    NOT NULL,
    job_seq INTEGER NOT NULL,
    PRIMARY KEY (tag, job_seq)
) STRICT, WITHOUT ROWID;
-- +goose StatementBegin
CREATE TRIGGER jobs_delete_tags AFTER DELETE ON jobs WHEN old.tags <> '[]' BEGIN
    DELETE FROM job_tags WHERE tag IN (SELECT value FROM json_each(old.tags)) AND job_seq = old.seq;
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER jobs_delete_tags;
DROP TABLE job_tags;
ALTER TABLE jobs DROP COLUMN tags;
