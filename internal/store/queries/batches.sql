-- A batch's ID is taken before its tasks are inserted, so that each task
-- carries it in its metadata (batch_id) from the start.
-- name: BatchNextID :one
SELECT nextval(pg_get_serial_sequence('batches', 'id'))::bigint AS id;

-- then_request is the batch's callback as submitted; NULL: none.
-- name: BatchInsert :one
INSERT INTO batches (id, task_ids, then_request) OVERRIDING SYSTEM VALUE
VALUES (@id, @task_ids::bigint[], sqlc.narg('then_request')::jsonb)
RETURNING id, created_at;

-- name: BatchGetByID :one
SELECT id, task_ids, created_at, then_task_id, then_error FROM batches WHERE id = @id;

-- The store puts the rows back in submission order.
-- name: BatchTasks :many
SELECT j.id, j.queue, j.state, (j.metadata -> 'output')::jsonb AS output, j.errors
FROM river_job j
WHERE j.id = ANY(@ids::bigint[]);

-- A batch whose callback is still to be decided stays, even with none of
-- its tasks left, until a process has decided it (the recheck finds it).
-- name: BatchDeleteEmpty :execrows
DELETE FROM batches
WHERE id IN (
    SELECT b.id FROM batches b
    WHERE b.created_at < now() - make_interval(secs => @min_age_secs::double precision)
        AND (b.then_request IS NULL OR b.then_at IS NOT NULL)
        AND NOT EXISTS (SELECT 1 FROM river_job j WHERE j.id = ANY(b.task_ids))
    ORDER BY b.id
    LIMIT @max::int
);

-- BatchThenCandidates returns the batches of task_ids (tasks that just
-- became final) whose callback is still to be decided and of one of kinds
-- (those the asking process can insert): primary-key lookups of the tasks
-- and their batches, whatever the size of either table.
-- name: BatchThenCandidates :many
SELECT DISTINCT b.id
FROM river_job j
JOIN batches b ON b.id = (j.metadata ->> 'batch_id')::bigint
WHERE j.id = ANY(@task_ids::bigint[])
    AND j.metadata ? 'batch_id'
    AND b.then_request IS NOT NULL AND b.then_at IS NULL
    AND b.then_request ->> 'kind' = ANY(@kinds::text[]);

-- BatchThenCandidatesByID returns those of batch_ids whose callback is
-- still to be decided and of one of kinds: the batches of tasks that just
-- became final, read from the tasks' metadata by the process that ran them,
-- so that only the batches (a few for a thousand tasks) are looked up.
-- name: BatchThenCandidatesByID :many
SELECT b.id
FROM batches b
WHERE b.id = ANY(@batch_ids::bigint[])
    AND b.then_request IS NOT NULL AND b.then_at IS NULL
    AND b.then_request ->> 'kind' = ANY(@kinds::text[]);

-- BatchThenPending serves the periodic recheck: up to max batches after
-- after_id whose callback is still to be decided (batches_then_pending_idx),
-- and whether every task of each is final or gone. The recheck moves
-- after_id along, so that every pending batch is looked at in turn however
-- many there are.
-- name: BatchThenPending :many
WITH pending AS (
    SELECT b.id, b.task_ids
    FROM batches b
    WHERE b.then_request IS NOT NULL AND b.then_at IS NULL
        AND b.id > @after_id::bigint
        AND b.then_request ->> 'kind' = ANY(@kinds::text[])
    ORDER BY b.id
    LIMIT @max::int
)
SELECT
    p.id,
    NOT EXISTS (
        SELECT 1 FROM river_job j
        WHERE j.id = ANY(p.task_ids) AND j.state NOT IN ('completed', 'cancelled', 'discarded')
    ) AS done
FROM pending p
ORDER BY p.id;

-- BatchThenDecide is the guard of batch callbacks: it marks the callback
-- decided and returns its request only if it was not decided yet and every
-- task of the batch is final or gone. The row lock it takes makes a second
-- process deciding the same batch at the same time wait for the first's
-- commit, then re-check then_at and find it set (PostgreSQL re-evaluates
-- the condition on the updated row): the callback is decided, and
-- inserted in the same transaction, exactly once.
-- name: BatchThenDecide :one
UPDATE batches b
SET then_at = now()
WHERE b.id = @id
    AND b.then_request IS NOT NULL
    AND b.then_at IS NULL
    AND NOT EXISTS (
        SELECT 1 FROM river_job j
        WHERE j.id = ANY(b.task_ids) AND j.state NOT IN ('completed', 'cancelled', 'discarded')
    )
RETURNING b.then_request;

-- name: BatchThenSetTask :exec
UPDATE batches SET then_task_id = @task_id::bigint WHERE id = @id;

-- name: BatchThenSetError :exec
UPDATE batches SET then_error = @error::text WHERE id = @id;
