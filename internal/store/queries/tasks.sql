-- TaskGetByID reads a task with its attempts in one round trip.
-- name: TaskGetByID :one
SELECT
    j.id, j.kind, j.queue, j.state, j.args, j.priority, j.attempt, j.max_attempts, j.tags,
    j.created_at, j.scheduled_at, j.attempted_at, j.attempted_by, j.finalized_at,
    (j.metadata -> 'output')::jsonb AS output,
    j.errors,
    (j.metadata ? 'cancel_attempted_at')::boolean AS cancel_requested,
    coalesce((j.metadata ->> 'batch_id')::bigint, 0)::bigint AS batch_id, -- 0: none
    coalesce((j.metadata ->> 'after_batch')::bigint, 0)::bigint AS after_batch, -- 0: not a batch's callback
    -- The task's own retry policy and timeout (jobs.OwnPolicy), {} when none.
    jsonb_strip_nulls(jsonb_build_object('backoff', j.metadata -> 'backoff', 'timeout', j.metadata -> 'timeout')) AS policy,
    coalesce(j.metadata ->> 'schedule', '')::text AS schedule, -- '': none
    coalesce((
        SELECT json_agg(json_build_object(
            'attempt', a.attempt, 'worker', a.worker, 'started_at', a.started_at,
            'finished_at', a.finished_at, 'outcome', a.outcome, 'error', a.error,
            'duration_ms', a.duration_ms, 'http_status', a.http_status) ORDER BY a.id)
        FROM task_attempts a
        WHERE a.task_id = j.id
    ), '[]')::jsonb AS attempts
FROM river_job j
WHERE j.id = @id;

-- TaskList serves GET /v1/tasks. Every filter is optional; the store runs it
-- unprepared so PostgreSQL plans it with the actual values (a NULL filter
-- folds away and the matching (col, id) index is used).
-- name: TaskList :many
SELECT
    id, kind, queue, state, args, priority, attempt, max_attempts, tags,
    created_at, scheduled_at, attempted_at, attempted_by, finalized_at,
    (metadata -> 'output')::jsonb AS output,
    errors,
    (metadata ? 'cancel_attempted_at')::boolean AS cancel_requested,
    coalesce((metadata ->> 'batch_id')::bigint, 0)::bigint AS batch_id,
    coalesce((metadata ->> 'after_batch')::bigint, 0)::bigint AS after_batch,
    jsonb_strip_nulls(jsonb_build_object('backoff', metadata -> 'backoff', 'timeout', metadata -> 'timeout')) AS policy,
    coalesce(metadata ->> 'schedule', '')::text AS schedule,
    '[]'::jsonb AS attempts -- lists leave attempts out; the column keeps the row type TaskGetByID's
FROM river_job
WHERE (sqlc.narg('state')::text IS NULL OR state = sqlc.narg('state')::text::river_job_state)
    AND (sqlc.narg('states')::text[] IS NULL OR state = ANY(sqlc.narg('states')::text[]::river_job_state[]))
    AND (sqlc.narg('kind')::text IS NULL OR kind = sqlc.narg('kind')::text)
    AND (sqlc.narg('queue')::text IS NULL OR queue = sqlc.narg('queue')::text)
    -- queues: the queues of a tenant's token (auth.Principal.Queues).
    AND (sqlc.narg('queues')::text[] IS NULL OR queue = ANY(sqlc.narg('queues')::text[]))
    AND (sqlc.narg('before_id')::bigint IS NULL OR id < sqlc.narg('before_id')::bigint)
ORDER BY id DESC
LIMIT @max::int;

-- TaskQueue is the queue of a task, which never changes: what a tenant's
-- token is checked against before it may touch the task.
-- name: TaskQueue :one
SELECT queue FROM river_job WHERE id = @id;

-- name: TaskLockState :one
SELECT state::text FROM river_job WHERE id = @id FOR UPDATE;

-- A retried task must not show the result of its previous run.
-- name: TaskClearOutput :exec
UPDATE river_job SET metadata = metadata - 'output' WHERE id = @id;

-- AttemptInsertChecked writes attempts that are not stored yet, of tasks
-- that still exist, for the writes that can come late (there is no foreign
-- key to keep out attempts of deleted tasks; migration 00017): the retry of
-- a write that failed, which may have committed all the same (a connection
-- lost during the commit), and attempts written while their process's
-- heartbeat is too old, whose tasks may have been rescued, run elsewhere and
-- deleted since. An attempt is the same when its task, number and start
-- are. The job rows are locked as the foreign key's check did (FOR KEY
-- SHARE), so that a delete running meanwhile waits for this insert and its
-- trigger then sees the rows.
-- name: AttemptInsertChecked :execrows
INSERT INTO task_attempts (task_id, attempt, worker, started_at, finished_at, outcome, error, duration_ms, http_status)
SELECT a.task_id, a.attempt, a.worker, a.started_at, a.finished_at, a.outcome, nullif(a.error, ''), a.duration_ms, nullif(a.http_status, 0)
FROM (
    SELECT
        unnest(@task_id::bigint[]) AS task_id,
        unnest(@attempt::integer[]) AS attempt,
        unnest(@worker::text[]) AS worker,
        unnest(@started_at::timestamptz[]) AS started_at,
        unnest(@finished_at::timestamptz[]) AS finished_at,
        unnest(@outcome::text[]) AS outcome,
        unnest(@error::text[]) AS error,
        unnest(@duration_ms::double precision[]) AS duration_ms,
        unnest(@http_status::integer[]) AS http_status
) AS a
WHERE EXISTS (SELECT 1 FROM river_job j WHERE j.id = a.task_id FOR KEY SHARE)
    AND NOT EXISTS (
        SELECT 1 FROM task_attempts t
        WHERE t.task_id = a.task_id AND t.attempt = a.attempt AND t.started_at = a.started_at
    );

-- The fast path for attempts of tasks this process still runs: COPY,
-- unchecked. Their tasks exist, because River deletes no running job
-- (JobDelete refuses it, the cleaner takes finalized jobs only).
-- name: AttemptCopy :copyfrom
INSERT INTO task_attempts (task_id, attempt, worker, started_at, finished_at, outcome, error, duration_ms, http_status)
VALUES (@task_id, @attempt, @worker, @started_at, @finished_at, @outcome, @error, @duration_ms, @http_status);

-- name: TasksDeleteUncommitted :exec
-- Tasks inserted earlier in the same transaction and not to be kept.
DELETE FROM river_job WHERE id = ANY(@ids::bigint[]);
