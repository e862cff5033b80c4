-- name: IdempotencyKeyInsert :execrows
INSERT INTO idempotency_keys (key, request_hash, task_id, batch_id)
VALUES (@key, @request_hash, sqlc.narg('task_id'), sqlc.narg('batch_id'))
ON CONFLICT (key) DO NOTHING;

-- name: IdempotencyKeyGet :one
SELECT key, request_hash, task_id, batch_id FROM idempotency_keys WHERE key = @key;
