-- Jobs keep the W3C traceparent of the span that created them ('' when
-- tracing was off), so that every attempt's span links to the creation
-- even when it runs much later. It never changes and is never filtered on:
-- no index.

-- +goose Up
ALTER TABLE jobs ADD COLUMN trace_parent TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE jobs DROP COLUMN trace_parent;
