-- Cluster-wide limits on starting tasks (internal/limits): the slots of
-- concurrency limits, the tasks waiting for one, and the current window of
-- each rate limit. Every process enforces the limits through these rows,
-- under one advisory lock per limit and key, so the caps hold across the
-- cluster whatever the number of processes.

-- +goose Up

-- The slots that the River workers of each process hold, as a count per
-- process: a process takes and gives back the slots of many tasks with
-- one row write per round of decisions, not one per task. A process that
-- dies stops counting once its heartbeat (taskd_processes) is stale.
CREATE TABLE task_limit_holds (
    limit_name text NOT NULL,
    key text NOT NULL,
    client_id text NOT NULL,
    held integer NOT NULL,
    PRIMARY KEY (limit_name, key, client_id)
);

-- Slots held by single tasks: those of external kinds, claimed in one
-- process and completed in any (token: from the lease), and those handed
-- to a waiting task (token 0). A slot is held while its task is running, or available to run after a
-- freed slot was handed to it (token 0 until it starts). A row whose task
-- is in any other state holds nothing, so a process that died holding
-- slots frees them as soon as its tasks leave 'running'.
CREATE TABLE task_slots (
    limit_name text NOT NULL,
    key text NOT NULL,
    task_id bigint NOT NULL REFERENCES river_job (id) ON DELETE CASCADE,
    -- Which acquisition holds it: a release removes only its own.
    token bigint NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (limit_name, key, task_id)
);

CREATE INDEX task_slots_task_id_idx ON task_slots (task_id);

-- Tasks that found no slot, in the order they first asked: a freed slot
-- goes to the oldest, so that no task starves while newer ones with the
-- same key keep arriving.
CREATE TABLE task_limit_waits (
    limit_name text NOT NULL,
    key text NOT NULL,
    task_id bigint NOT NULL REFERENCES river_job (id) ON DELETE CASCADE,
    since timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (limit_name, key, task_id)
);

CREATE INDEX task_limit_waits_order_idx ON task_limit_waits (limit_name, key, since, task_id);
CREATE INDEX task_limit_waits_task_id_idx ON task_limit_waits (task_id);

-- The starts counted in a rate limit's current fixed window.
CREATE TABLE task_rate_windows (
    limit_name text NOT NULL,
    key text NOT NULL,
    window_start timestamptz NOT NULL,
    started integer NOT NULL,
    PRIMARY KEY (limit_name, key)
);

-- +goose Down

DROP TABLE task_limit_holds;
DROP TABLE task_rate_windows;
DROP TABLE task_limit_waits;
DROP TABLE task_slots;
