-- taskd's own tables, next to River's. Rows that belong to a task reference
-- river_job with ON DELETE CASCADE, so River's job cleaner (and anything else
-- that deletes a job) takes them along.

-- +goose Up

-- One row per running taskd process (River client). The heartbeat lets any
-- process tell a dead owner's running jobs from a live owner's long ones.
CREATE TABLE taskd_processes (
    client_id text PRIMARY KEY,
    hostname text NOT NULL,
    pid integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

-- One row per attempt at running a task. (task_id, attempt) is not unique:
-- River gives back the attempt number of a snoozed or interrupted attempt.
CREATE TABLE task_attempts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id bigint NOT NULL REFERENCES river_job (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    worker text NOT NULL,
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    outcome text NOT NULL,
    error text,
    duration_ms double precision NOT NULL,
    CONSTRAINT task_attempts_outcome_check CHECK (outcome IN (
        'completed', 'failed', 'timeout', 'panic', 'cancelled', 'snoozed', 'interrupted', 'lost'
    ))
);

CREATE INDEX task_attempts_task_id_idx ON task_attempts (task_id, id);

-- A batch remembers its tasks in submission order. It is deleted by taskd's
-- maintenance once none of its tasks is left.
CREATE TABLE batches (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_ids bigint[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Idempotency-Key header values. A key lives as long as the task or batch it
-- created.
CREATE TABLE idempotency_keys (
    key text PRIMARY KEY,
    request_hash bytea NOT NULL,
    task_id bigint REFERENCES river_job (id) ON DELETE CASCADE,
    batch_id bigint REFERENCES batches (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT idempotency_keys_target_check CHECK ((task_id IS NULL) <> (batch_id IS NULL))
);

CREATE INDEX idempotency_keys_task_id_idx ON idempotency_keys (task_id) WHERE task_id IS NOT NULL;
CREATE INDEX idempotency_keys_batch_id_idx ON idempotency_keys (batch_id) WHERE batch_id IS NOT NULL;

-- No index of taskd's own on river_job: GET /v1/tasks is served by River's
-- (the primary key, river_job_kind, river_job_prioritized_fetching_index),
-- and every index on river_job costs each insert and state change; three
-- (state|kind|queue, id) indexes cost about 10% of end-to-end throughput
-- (docs/PERFORMANCE.md).

-- +goose Down

DROP TABLE idempotency_keys;
DROP TABLE batches;
DROP TABLE task_attempts;
DROP TABLE taskd_processes;
