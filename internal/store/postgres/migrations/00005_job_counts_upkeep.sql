-- job_counts upkeep:
--   - the shard is floor(random() * 16): (random() * 15)::int rounded, which
--     gave shards 0 and 15 half the weight of the others;
--   - TRUNCATE jobs empties job_counts (no statement of the store
--     truncates, but an operator may).
-- The store also folds the shards of each (type, status) into one row and
-- drops the zero rows from time to time (compactCounts), so that the table
-- does not keep a row per shard for every type ever used.

-- +goose Up
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION jobs_count_insert() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT SET jit = off AS $$
BEGIN
    INSERT INTO job_counts AS c (type, status, shard, n)
    SELECT type, status, floor(random() * 16)::int, count(*) FROM new_rows
    GROUP BY type, status ORDER BY type, status
    ON CONFLICT (type, status, shard) DO UPDATE SET n = c.n + excluded.n;
    RETURN NULL;
END $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION jobs_count_delete() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT SET jit = off AS $$
BEGIN
    INSERT INTO job_counts AS c (type, status, shard, n)
    SELECT type, status, floor(random() * 16)::int, -count(*) FROM old_rows
    GROUP BY type, status ORDER BY type, status
    ON CONFLICT (type, status, shard) DO UPDATE SET n = c.n + excluded.n;
    RETURN NULL;
END $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION jobs_count_update() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT SET jit = off AS $$
BEGIN
    INSERT INTO job_counts AS c (type, status, shard, n)
    SELECT type, status, floor(random() * 16)::int, sum(d) FROM (
        SELECT type, status, 1 AS d FROM new_rows
        UNION ALL
        SELECT type, status, -1 FROM old_rows
    ) changes
    GROUP BY type, status HAVING sum(d) <> 0 ORDER BY type, status
    ON CONFLICT (type, status, shard) DO UPDATE SET n = c.n + excluded.n;
    RETURN NULL;
END $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION jobs_count_truncate() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM job_counts;
    RETURN NULL;
END $$;
-- +goose StatementEnd

CREATE TRIGGER jobs_count_truncate AFTER TRUNCATE ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_count_truncate();

-- +goose Down
DROP TRIGGER jobs_count_truncate ON jobs;
DROP FUNCTION jobs_count_truncate();
