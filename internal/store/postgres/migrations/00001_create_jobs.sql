-- The jobs table and the indexes of the store's hot queries. Every column
-- maps to a field of domain.Job except the lease (lease_owner,
-- lease_expires_at: set only while processing) and writer/prior_writer (the
-- random token of the statement that wrote the current version and of the
-- one before it, with which an instance publishes its own changes of a job
-- in version order).

-- +goose Up
CREATE TABLE jobs (
    id               uuid        PRIMARY KEY,
    seq              bigint      GENERATED ALWAYS AS IDENTITY,
    type             text        NOT NULL,
    -- payload and result are kept byte for byte (jsonb would reformat them).
    payload          bytea,
    status           text        NOT NULL CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'cancelled')),
    attempts         integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL,
    error            text        NOT NULL DEFAULT '',
    -- errors is the history of failed attempts, [{attempt, message, at}],
    -- NULL before the first failure.
    errors           jsonb,
    idempotency_key  text,
    timeout_ms       bigint      NOT NULL DEFAULT 0,
    run_at           timestamptz NOT NULL,
    priority         smallint    NOT NULL DEFAULT 0,
    progress         smallint,
    result           bytea,
    cancel_requested boolean     NOT NULL DEFAULT false,
    version          bigint      NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    lease_owner      text,
    lease_expires_at timestamptz,
    writer           bigint      NOT NULL DEFAULT 0,
    prior_writer     bigint      NOT NULL DEFAULT 0,
    CONSTRAINT jobs_seq_key UNIQUE (seq)
);

-- Idempotent creation: INSERT ... ON CONFLICT (idempotency_key) WHERE
-- idempotency_key IS NOT NULL DO NOTHING.
CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;
-- Claim: runnable jobs in dispatch order.
CREATE INDEX jobs_claim ON jobs (priority DESC, run_at, seq) WHERE status = 'pending';
-- NextRunAt: the earliest future run_at among pending jobs.
CREATE INDEX jobs_next_run_at ON jobs (run_at) WHERE status = 'pending';
-- RescueExpired (and Heartbeat, which scans the processing jobs).
CREATE INDEX jobs_lease_expiry ON jobs (lease_expires_at) WHERE status = 'processing';
-- List newest first by status, by type and status, and Stats per type.
CREATE INDEX jobs_status_seq ON jobs (status, seq DESC);
CREATE INDEX jobs_type_status_seq ON jobs (type, status, seq DESC);
-- DeleteFinished: finished_at is set exactly in the final statuses.
CREATE INDEX jobs_finished_at ON jobs (finished_at) WHERE finished_at IS NOT NULL;

-- +goose Down
DROP TABLE jobs;
