-- A batch's ID is taken before its tasks are inserted, so that each task
-- carries it in its metadata (batch_id) from the start.
-- name: BatchNextID :one
SELECT nextval(pg_get_serial_sequence('batches', 'id'))::bigint AS id;

-- name: BatchInsert :one
INSERT INTO batches (id, task_ids) OVERRIDING SYSTEM VALUE VALUES (@id, @task_ids::bigint[])
RETURNING id, created_at;

-- name: BatchGetByID :one
SELECT id, task_ids, created_at FROM batches WHERE id = @id;

-- The store puts the rows back in submission order.
-- name: BatchTasks :many
SELECT j.id, j.state, (j.metadata -> 'output')::jsonb AS output, j.errors
FROM river_job j
WHERE j.id = ANY(@ids::bigint[]);

-- name: BatchDeleteEmpty :execrows
DELETE FROM batches
WHERE id IN (
    SELECT b.id FROM batches b
    WHERE b.created_at < now() - make_interval(secs => @min_age_secs::double precision)
        AND NOT EXISTS (SELECT 1 FROM river_job j WHERE j.id = ANY(b.task_ids))
    ORDER BY b.id
    LIMIT @max::int
);
