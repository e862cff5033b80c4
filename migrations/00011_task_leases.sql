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

-- +goose Up

CREATE TABLE task_leases (
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

CREATE INDEX task_leases_expires_at_idx ON task_leases (expires_at);

-- Adding a nullable column without a default only touches the catalog.
ALTER TABLE task_attempts ADD COLUMN http_status integer;

-- +goose Down

ALTER TABLE task_attempts DROP COLUMN http_status;
DROP TABLE task_leases;
