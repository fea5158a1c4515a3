-- Jobs keep the W3C traceparent of the span that created them ('' when
-- tracing was off), so that every attempt's span links to the creation
-- even when another process runs it much later. It never changes and is
-- never filtered on: no index. Adding a column with a constant default
-- rewrites nothing.

-- +goose Up
ALTER TABLE jobs ADD COLUMN trace_parent text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE jobs DROP COLUMN trace_parent;
