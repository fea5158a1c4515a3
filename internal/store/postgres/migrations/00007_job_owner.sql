-- Jobs get an owner: the identity that created them (a token's name or a
-- JWT's subject), '' for none (authentication off). It never changes.
--
-- job_owner_counts counts the jobs of each owner per type and status, as
-- job_counts (migration 00004) does for all jobs, so that an owner's stats
-- and list totals read a few rows instead of counting the owner's jobs.
-- The same statement triggers keep it, in the same way: every statement
-- adds its net change per (owner, type, status) to one of 16 shards picked
-- at random, locking its rows in (owner, type, status) order, and always
-- after its job_counts rows, so that no two statements deadlock over them;
-- the store folds the shards from time to time (compactCounts). Jobs
-- without an owner are not in it (job_counts has them).
--
-- Every job stored before this migration has no owner, so the new table
-- starts empty. Adding a column with a constant default rewrites nothing.
-- The indexes on owner are built concurrently by the next migration.

-- +goose Up
ALTER TABLE jobs ADD COLUMN owner text NOT NULL DEFAULT '';

CREATE TABLE job_owner_counts (
    owner  text    NOT NULL,
    type   text    NOT NULL,
    status text    NOT NULL,
    shard  integer NOT NULL,
    n      bigint  NOT NULL,
    PRIMARY KEY (owner, type, status, shard)
);

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION jobs_count_insert() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT SET jit = off AS $$
BEGIN
    INSERT INTO job_counts AS c (type, status, shard, n)
    SELECT type, status, floor(random() * 16)::int, count(*) FROM new_rows
    GROUP BY type, status ORDER BY type, status
    ON CONFLICT (type, status, shard) DO UPDATE SET n = c.n + excluded.n;
    INSERT INTO job_owner_counts AS c (owner, type, status, shard, n)
    SELECT owner, type, status, floor(random() * 16)::int, count(*) FROM new_rows WHERE owner <> ''
    GROUP BY owner, type, status ORDER BY owner, type, status
    ON CONFLICT (owner, type, status, shard) DO UPDATE SET n = c.n + excluded.n;
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
    INSERT INTO job_owner_counts AS c (owner, type, status, shard, n)
    SELECT owner, type, status, floor(random() * 16)::int, -count(*) FROM old_rows WHERE owner <> ''
    GROUP BY owner, type, status ORDER BY owner, type, status
    ON CONFLICT (owner, type, status, shard) DO UPDATE SET n = c.n + excluded.n;
    RETURN NULL;
END $$;
-- +goose StatementEnd

-- An update never changes a job's owner or type, so only status changes
-- move counts.
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
    INSERT INTO job_owner_counts AS c (owner, type, status, shard, n)
    SELECT owner, type, status, floor(random() * 16)::int, sum(d) FROM (
        SELECT owner, type, status, 1 AS d FROM new_rows WHERE owner <> ''
        UNION ALL
        SELECT owner, type, status, -1 FROM old_rows WHERE owner <> ''
    ) changes
    GROUP BY owner, type, status HAVING sum(d) <> 0 ORDER BY owner, type, status
    ON CONFLICT (owner, type, status, shard) DO UPDATE SET n = c.n + excluded.n;
    RETURN NULL;
END $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION jobs_count_truncate() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM job_counts;
    DELETE FROM job_owner_counts;
    RETURN NULL;
END $$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION jobs_count_truncate() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM job_counts;
    RETURN NULL;
END $$;
-- +goose StatementEnd

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

DROP TABLE job_owner_counts;
ALTER TABLE jobs DROP COLUMN owner;
