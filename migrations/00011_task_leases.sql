-- Executors: the leases of tasks that workers outside taskd claimed over
-- HTTP (kinds with run: external), and the HTTP status of each attempt of a
-- kind that taskd pushes to an endpoint (run: http).
--
-- A claimed task is a River job in state 'running' with one row here. The
-- token fences its worker: completing, failing or heartbeating it needs the
-- token of the current claim, checked in the same statement that changes
-- the task, so a worker whose lease expired (and whose task another worker
-- has claimed since) cannot finish the newer attempt. A lease that expires
-- makes the task available again (internal/store/queries/leases.sql,
-- LeaseExpire); the heartbeat rescue of dead taskd processes leaves leased
-- tasks alone, since their workers are not taskd processes.

-- The index serves claims (LeaseClaim, LeaseClaimableKinds): one kind's
-- ready tasks in claim order. River's own indexes lead with the queue, or
-- hold every task of a kind, finished ones included, so without it every
-- claim would read and sort a kind's whole backlog. It is partial: a task
-- has an entry only while it is available, at the cost of one index entry
-- per insert for every kind (measured in docs/PERFORMANCE.md). It is built
-- CONCURRENTLY, so that migrating a busy table does not block inserts;
-- that needs its own statement outside a transaction, so each statement
-- commits on its own; after a failure, running the migration again is
-- harmless.

-- +goose NO TRANSACTION
-- +goose Up

CREATE TABLE IF NOT EXISTS task_leases (
    task_id bigint PRIMARY KEY REFERENCES river_job (id) ON DELETE CASCADE,
    token uuid NOT NULL,
    worker text NOT NULL,
    -- The attempt as task_attempts numbers it, and River's attempted_at, to
    -- write the attempt's row when the lease ends.
    attempt integer NOT NULL,
    started_at timestamptz NOT NULL,
    -- How far a heartbeat without "extend" moves expires_at.
    lease_secs double precision NOT NULL,
    expires_at timestamptz NOT NULL
);

CREATE INDEX IF NOT EXISTS task_leases_expires_at_idx ON task_leases (expires_at);

-- Adding a nullable column without a default only touches the catalog.
ALTER TABLE task_attempts ADD COLUMN IF NOT EXISTS http_status integer;

CREATE INDEX CONCURRENTLY IF NOT EXISTS river_job_available_kind_idx
    ON river_job (kind, priority, scheduled_at, id)
    WHERE state = 'available';

-- +goose Down

DROP INDEX CONCURRENTLY IF EXISTS river_job_available_kind_idx;
ALTER TABLE task_attempts DROP COLUMN IF EXISTS http_status;
DROP TABLE IF EXISTS task_leases;
