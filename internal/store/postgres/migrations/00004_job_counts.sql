-- Counts of jobs per type and status, kept by statement triggers, so that
-- totals (jobs { totalCount }) and stats read a few rows instead of
-- counting the whole table.
--
-- Every statement that inserts, deletes or changes the status of jobs adds
-- its net change per (type, status) to one of 16 shards picked at random:
-- concurrent statements seldom wait for each other's count rows, and a
-- statement locks its rows in (type, status) order, so two statements never
-- deadlock over them. Readers sum the shards.
--
-- The functions run with jit = off: a trigger's queries over transition
-- tables get generic plans estimated costly enough for JIT, whose
-- compilation then takes hundreds of milliseconds per statement.

-- +goose Up
CREATE TABLE job_counts (
    type   text    NOT NULL,
    status text    NOT NULL,
    shard  integer NOT NULL,
    n      bigint  NOT NULL,
    PRIMARY KEY (type, status, shard)
);

-- No writer may change jobs between the count below and the triggers.
LOCK TABLE jobs IN SHARE MODE;

INSERT INTO job_counts (type, status, shard, n)
SELECT type, status, 0, count(*) FROM jobs GROUP BY type, status;

-- +goose StatementBegin
CREATE FUNCTION jobs_count_insert() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT SET jit = off AS $$
BEGIN
    INSERT INTO job_counts AS c (type, status, shard, n)
    SELECT type, status, (random() * 15)::int, count(*) FROM new_rows
    GROUP BY type, status ORDER BY type, status
    ON CONFLICT (type, status, shard) DO UPDATE SET n = c.n + excluded.n;
    RETURN NULL;
END $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION jobs_count_delete() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT SET jit = off AS $$
BEGIN
    INSERT INTO job_counts AS c (type, status, shard, n)
    SELECT type, status, (random() * 15)::int, -count(*) FROM old_rows
    GROUP BY type, status ORDER BY type, status
    ON CONFLICT (type, status, shard) DO UPDATE SET n = c.n + excluded.n;
    RETURN NULL;
END $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION jobs_count_update() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT SET jit = off AS $$
BEGIN
    INSERT INTO job_counts AS c (type, status, shard, n)
    SELECT type, status, (random() * 15)::int, sum(d) FROM (
        SELECT type, status, 1 AS d FROM new_rows
        UNION ALL
        SELECT type, status, -1 FROM old_rows
    ) changes
    GROUP BY type, status HAVING sum(d) <> 0 ORDER BY type, status
    ON CONFLICT (type, status, shard) DO UPDATE SET n = c.n + excluded.n;
    RETURN NULL;
END $$;
-- +goose StatementEnd

CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION jobs_count_insert();
CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION jobs_count_delete();
CREATE TRIGGER jobs_count_update AFTER UPDATE ON jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION jobs_count_update();

-- +goose Down
DROP TRIGGER jobs_count_update ON jobs;
DROP TRIGGER jobs_count_delete ON jobs;
DROP TRIGGER jobs_count_insert ON jobs;
DROP FUNCTION jobs_count_update();
DROP FUNCTION jobs_count_delete();
DROP FUNCTION jobs_count_insert();
DROP TABLE job_counts;
