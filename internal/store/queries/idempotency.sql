-- name: IdempotencyKeyInsert :execrows
INSERT INTO idempotency_keys (key, request_hash, task_id, batch_id)
VALUES (@key, @request_hash, sqlc.narg('task_id'), sqlc.narg('batch_id'))
ON CONFLICT (key) DO NOTHING;

-- name: IdempotencyKeyGet :one
SELECT key, request_hash, task_id, batch_id FROM idempotency_keys WHERE key = @key;

-- name: IdempotencyKeyInsertTasks :many
-- The keys of tasks inserted together, in key order, so that transactions
-- inserting overlapping keys wait for each other's in one order and cannot
-- deadlock. A key already taken, or repeated among them (its first in
-- order wins), is skipped; the tasks whose keys were stored are returned.
INSERT INTO idempotency_keys (key, request_hash, task_id)
SELECT (@keys::text[])[i], (@request_hashes::bytea[])[i], (@task_ids::bigint[])[i]
FROM generate_subscripts(@keys::text[], 1) AS i
ORDER BY 1, i
ON CONFLICT (key) DO NOTHING
RETURNING task_id::bigint;
