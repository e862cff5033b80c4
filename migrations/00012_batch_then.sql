-- Batch callbacks: POST /v1/batches with "then" inserts one more task once
-- every task of the batch is final (completed, cancelled, discarded).
--
-- then_request is the callback as submitted (a task of POST /v1/tasks,
-- validated at submit and again when it is inserted); NULL: the batch has
-- none. then_at is when a process decided the callback: the guard that
-- decides it (BatchThenDecide in internal/store/queries/batches.sql) sets
-- it only while it is NULL and no task of the batch is unfinished, in the
-- transaction that inserts the callback task, so that the callback is
-- inserted once however many processes look at once. then_task_id is that
-- task; it has no foreign key, since River's cleaner may delete the
-- callback task before the batch. then_error says why no task was inserted
-- (the stored request no longer validated, say after a configuration
-- change).
--
-- The partial index holds the batches whose callback is still to be
-- decided, for the periodic recheck of every process: it reads only those,
-- however many finished batches are kept. It is built CONCURRENTLY, so
-- that migrating does not block batch inserts; that needs a statement of
-- its own outside a transaction, so each statement commits on its own, and
-- after a failure running the migration again is harmless. Adding nullable
-- columns without defaults only touches the catalog.

-- +goose NO TRANSACTION
-- +goose Up

ALTER TABLE batches
    ADD COLUMN IF NOT EXISTS then_request jsonb,
    ADD COLUMN IF NOT EXISTS then_task_id bigint,
    ADD COLUMN IF NOT EXISTS then_at timestamptz,
    ADD COLUMN IF NOT EXISTS then_error text;

CREATE INDEX CONCURRENTLY IF NOT EXISTS batches_then_pending_idx
    ON batches (id)
    WHERE then_request IS NOT NULL AND then_at IS NULL;

-- +goose Down

DROP INDEX CONCURRENTLY IF EXISTS batches_then_pending_idx;
ALTER TABLE batches
    DROP COLUMN IF EXISTS then_error,
    DROP COLUMN IF EXISTS then_at,
    DROP COLUMN IF EXISTS then_task_id,
    DROP COLUMN IF EXISTS then_request;
