-- The claim under type controls as one function, so that it is one
-- statement (one round trip, like the claim without controls) and locks
-- the control rows of only the limited types among its candidates.
--
-- claim_controlled(writer, cutoff, lim, now, owner, lease_until) claims
-- up to lim pending jobs with run_at <= cutoff, in dispatch order, of the
-- types that may take more, and returns their new rows. cutoff is also
-- the rate buckets' clock (the claimer's, as in the other stores); now
-- is the time written (started_at, updated_at).
-- It runs as one transaction with the caller's shared typesLock (see
-- Store.claim), so no change of controls happens meanwhile. It is
-- VOLATILE: each query inside takes a fresh snapshot (READ COMMITTED), so
-- the processing counts it reads after locking a control row hold every
-- claim committed before the lock.
--
--  1. Closed from the start: the paused types, and the limited types whose
--     quota is already zero (read without a lock: a type found closed
--     wrongly is only left for the next claim; a type found open is
--     checked again under its lock).
--  2. The candidates: pending jobs in dispatch order (FOR UPDATE SKIP
--     LOCKED) of the types not closed. When the closed types hold a
--     large pending backlog (job_counts: more than max(1000, 50 × the
--     open types)), walking jobs_claim would step over all of it: the
--     candidates are then the first jobs of each open type with pending
--     jobs (jobs_type_claim, migration 00015), merged in dispatch order,
--     and locked by id; those another claim holds are not offered again,
--     and the pick goes on while it finds jobs. The choice is made again
--     whenever types close during the claim (a limited type whose quota
--     this claim took would otherwise have its backlog walked next).
--  3. The control rows of the limited types among the candidates not
--     locked yet. A claim waits for a control row only when its name
--     sorts after every control row it holds (in name order within one
--     statement): waits then always go up in name order, so claims cannot
--     deadlock. A row it may not wait for is skipped if another claim
--     holds it: its type is closed for this claim, and the setting
--     jobqueue.claim_skipped is set for the transaction, so that the
--     caller retries soon instead of sleeping while work is there.
--  4. The processing jobs of each newly locked type, from job_counts,
--     counted after the lock; its quota (TypeControl.Quota): concurrency
--     minus processing, and the whole tokens of its rate bucket.
--  5. The candidates in order: each taken while its type has quota left;
--     one over quota closes its type, and the pick goes on without it,
--     for at most 64 rounds: a claim that stops there sets
--     jobqueue.claim_skipped too, since runnable jobs may remain.
--  6. The claim of the jobs taken, and the tokens spent
--     (TypeControl.Spend: as of the later of cutoff and the bucket's time).

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION type_tokens(rate double precision, burst integer, tokens double precision, tokens_at timestamptz, at timestamptz)
RETURNS double precision LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN tokens_at IS NULL THEN burst::double precision
        ELSE least(burst::double precision, tokens + greatest(extract(epoch FROM at - tokens_at)::double precision, 0) * rate) END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION claim_controlled(p_writer bigint, p_cutoff timestamptz, p_limit integer, p_now timestamptz,
    p_owner text, p_lease timestamptz)
RETURNS SETOF jobs LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT SET jit = off AS $$
DECLARE
    v_closed    text[];
    v_open      text[];
    v_per_type  boolean := false;
    v_recheck   boolean;
    v_backlog   bigint;
    v_held      text[] := '{}';
    v_left      integer[] := '{}';
    v_taken     integer[] := '{}';
    v_rated     boolean[] := '{}';
    v_spend     boolean := false;
    v_lim_all   text[];
    v_chosen    uuid[] := '{}';
    v_tried     uuid[] := '{}';
    v_offer     uuid[];
    v_full      boolean;
    v_cand_id   uuid[];
    v_cand_type text[];
    v_limited   text[];
    v_got       text[];
    v_top       text;
    v_need      integer;
    v_again     boolean;
    v_rounds    integer := 0;
    v_k         integer;
    v_q         integer;
    v_t         text;
    r           record;
BEGIN
    -- 1.
    SELECT coalesce(array_agg(c.name) FILTER (WHERE c.paused
                OR c.concurrency IS NOT NULL AND c.concurrency <= (
                    SELECT coalesce(sum(n), 0) FROM job_counts WHERE type = c.name AND status = 'processing')
                OR c.rate_per_second IS NOT NULL AND type_tokens(c.rate_per_second, c.rate_burst, c.tokens, c.tokens_at, p_cutoff) < 1), '{}'),
           coalesce(array_agg(c.name) FILTER (WHERE c.concurrency IS NOT NULL OR c.rate_per_second IS NOT NULL), '{}')
    INTO v_closed, v_lim_all
    FROM job_type_controls c;
    v_recheck := cardinality(v_closed) > 0;
    LOOP
        v_need := p_limit - cardinality(v_chosen);
        EXIT WHEN v_need <= 0;
        v_rounds := v_rounds + 1;
        -- Whether to go type by type, decided again whenever types
        -- closed (a limited type open at the start closes once this
        -- claim took its quota, and its backlog must not be walked then).
        IF v_recheck AND NOT v_per_type THEN
            SELECT coalesce(sum(p.n) FILTER (WHERE p.type = ANY (v_closed)), 0),
                   coalesce(array_agg(p.type) FILTER (WHERE p.type <> ALL (v_closed)), '{}')
            INTO v_backlog, v_open
            FROM (SELECT type, sum(n) AS n FROM job_counts WHERE status = 'pending' GROUP BY type HAVING sum(n) > 0) p;
            v_per_type := v_backlog > greatest(1000, 50 * cardinality(v_open));
        END IF;
        v_recheck := false;
        -- 2.
        IF v_per_type THEN
            v_open := ARRAY(SELECT o FROM unnest(v_open) o WHERE o <> ALL (v_closed));
            v_offer := ARRAY(
                SELECT f.id FROM unnest(v_open) o(name) CROSS JOIN LATERAL (
                    SELECT id, priority, run_at, seq FROM jobs
                    WHERE status = 'pending' AND type = o.name AND run_at <= p_cutoff
                        AND id <> ALL (v_chosen) AND id <> ALL (v_tried)
                    ORDER BY priority DESC, run_at, seq LIMIT v_need) f
                ORDER BY f.priority DESC, f.run_at, f.seq LIMIT v_need);
            EXIT WHEN cardinality(v_offer) = 0;
            SELECT coalesce(array_agg(j.id ORDER BY j.priority DESC, j.run_at, j.seq), '{}'),
                   coalesce(array_agg(j.type ORDER BY j.priority DESC, j.run_at, j.seq), '{}')
            INTO v_cand_id, v_cand_type
            FROM (SELECT id, type, priority, run_at, seq FROM jobs
                WHERE id = ANY (v_offer) AND status = 'pending' AND run_at <= p_cutoff
                FOR UPDATE SKIP LOCKED) j;
            -- Offered jobs that other claims hold are not offered again.
            v_tried := v_tried || v_offer;
            v_full := cardinality(v_offer) = v_need;
            v_again := cardinality(v_cand_id) < cardinality(v_offer);
        ELSE
            SELECT coalesce(array_agg(j.id ORDER BY j.priority DESC, j.run_at, j.seq), '{}'),
                   coalesce(array_agg(j.type ORDER BY j.priority DESC, j.run_at, j.seq), '{}')
            INTO v_cand_id, v_cand_type
            FROM (SELECT id, type, priority, run_at, seq FROM jobs
                WHERE status = 'pending' AND run_at <= p_cutoff AND type <> ALL (v_closed) AND id <> ALL (v_chosen)
                ORDER BY priority DESC, run_at, seq LIMIT v_need
                FOR UPDATE SKIP LOCKED) j;
            EXIT WHEN cardinality(v_cand_id) = 0;
            v_full := cardinality(v_cand_id) = v_need;
            v_again := false;
        END IF;
        -- 3.
        v_limited := ARRAY(SELECT DISTINCT t FROM unnest(v_cand_type) t WHERE t = ANY (v_lim_all) AND t <> ALL (v_held));
        IF cardinality(v_limited) > 0 THEN
            v_top := (SELECT max(h) FROM unnest(v_held) h);
            v_got := '{}';
            IF v_top IS NOT NULL THEN
                FOR r IN SELECT c.name, c.concurrency, c.rate_per_second, c.rate_burst, c.tokens, c.tokens_at
                    FROM job_type_controls c WHERE c.name = ANY (v_limited) AND c.name < v_top
                    FOR UPDATE SKIP LOCKED
                LOOP
                    v_held := v_held || r.name;
                    v_left := v_left || CASE WHEN r.rate_per_second IS NULL THEN -1
                        ELSE floor(type_tokens(r.rate_per_second, r.rate_burst, r.tokens, r.tokens_at, p_cutoff))::integer END;
                    v_taken := v_taken || 0;
                    v_rated := v_rated || (r.rate_per_second IS NOT NULL);
                    v_got := v_got || r.name;
                END LOOP;
            END IF;
            FOR r IN SELECT c.name, c.concurrency, c.rate_per_second, c.rate_burst, c.tokens, c.tokens_at
                FROM job_type_controls c WHERE c.name = ANY (v_limited) AND (v_top IS NULL OR c.name > v_top)
                ORDER BY c.name FOR UPDATE
            LOOP
                v_held := v_held || r.name;
                v_left := v_left || CASE WHEN r.rate_per_second IS NULL THEN -1
                    ELSE floor(type_tokens(r.rate_per_second, r.rate_burst, r.tokens, r.tokens_at, p_cutoff))::integer END;
                v_taken := v_taken || 0;
                v_rated := v_rated || (r.rate_per_second IS NOT NULL);
                v_got := v_got || r.name;
            END LOOP;
            FOREACH v_t IN ARRAY v_limited LOOP
                IF v_t <> ALL (v_got) THEN
                    v_closed := v_closed || v_t;
                    v_recheck := true;
                    PERFORM set_config('jobqueue.claim_skipped', 'on', true);
                END IF;
            END LOOP;
            -- 4.
            FOR r IN SELECT c.name, c.concurrency, (
                    SELECT coalesce(sum(n), 0) FROM job_counts WHERE type = c.name AND status = 'processing') AS processing
                FROM job_type_controls c WHERE c.name = ANY (v_got) AND c.concurrency IS NOT NULL
            LOOP
                v_k := array_position(v_held, r.name);
                v_q := greatest(r.concurrency - r.processing, 0);
                IF v_left[v_k] < 0 OR v_q < v_left[v_k] THEN
                    v_left[v_k] := v_q;
                END IF;
            END LOOP;
        END IF;
        -- 5.
        FOR i IN 1 .. cardinality(v_cand_id) LOOP
            v_t := v_cand_type[i];
            IF v_t = ANY (v_closed) THEN
                v_again := true;
                CONTINUE;
            END IF;
            v_k := array_position(v_held, v_t);
            IF v_k IS NOT NULL THEN
                IF v_left[v_k] = 0 THEN
                    v_closed := v_closed || v_t;
                    v_recheck := true;
                    v_again := true;
                    CONTINUE;
                END IF;
                v_left[v_k] := v_left[v_k] - 1;
                v_taken[v_k] := v_taken[v_k] + 1;
                v_spend := v_spend OR v_rated[v_k];
            END IF;
            v_chosen := v_chosen || v_cand_id[i];
        END LOOP;
        EXIT WHEN NOT v_again OR NOT v_full;
        IF v_rounds >= 64 THEN
            -- Enough for one statement: runnable jobs may remain, so the
            -- dispatcher is told to claim again soon (as after a skip).
            PERFORM set_config('jobqueue.claim_skipped', 'on', true);
            EXIT;
        END IF;
    END LOOP;
    IF cardinality(v_chosen) = 0 THEN
        RETURN;
    END IF;
    -- 6.
    RETURN QUERY UPDATE jobs SET status = 'processing', attempts = attempts + 1, started_at = p_now, progress = NULL, result = NULL,
            lease_owner = p_owner, lease_expires_at = p_lease,
            version = version + 1, updated_at = p_now, prior_writer = writer, writer = p_writer
        WHERE id = ANY (v_chosen) AND status = 'pending'
        RETURNING jobs.*;
    IF NOT v_spend THEN
        RETURN;
    END IF;
    UPDATE job_type_controls c
    SET tokens = type_tokens(c.rate_per_second, c.rate_burst, c.tokens, c.tokens_at, greatest(p_cutoff, c.tokens_at)) - s.taken,
        tokens_at = greatest(p_cutoff, c.tokens_at)
    FROM unnest(v_held, v_taken) AS s(name, taken)
    WHERE c.name = s.name AND s.taken > 0 AND c.rate_per_second IS NOT NULL;
END $$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION claim_controlled(bigint, timestamptz, integer, timestamptz, text, timestamptz);
DROP FUNCTION type_tokens(double precision, integer, double precision, timestamptz, timestamptz);
