-- TaskFinishedAmong returns which of ids are in a final state or gone
-- (deleted by retention): what waiting requests wait for.
-- name: TaskFinishedAmong :many
SELECT i.id::bigint
FROM unnest(@ids::bigint[]) AS i (id)
LEFT JOIN river_job j ON j.id = i.id
WHERE j.id IS NULL OR j.state IN ('completed', 'cancelled', 'discarded');

-- TaskNotifyFinished announces tasks that reached a final state to the
-- waiting requests of every process: payload, a comma-separated list of
-- task IDs.
-- name: TaskNotifyFinished :exec
SELECT pg_notify(concat(current_schema(), '.taskd_finished'), @payload::text);
