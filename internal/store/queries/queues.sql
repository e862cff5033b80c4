-- QueueStats counts each queue's unfinished tasks by state, and the age of
-- its oldest task ready to run. Only unfinished states are read, through
-- River's (state, queue, priority, scheduled_at, id) index, so millions of
-- finished rows cost nothing (TestQueueStatsPlan).
-- name: QueueStats :many
SELECT
    j.queue,
    j.state::text AS state,
    count(*)::bigint AS tasks,
    -- -1: none ready
    coalesce(extract(epoch FROM now() - min(j.scheduled_at) FILTER (WHERE j.state = 'available' AND j.scheduled_at <= now())), -1)::double precision AS oldest_available_secs
FROM river_job j
WHERE j.state IN ('available', 'running', 'retryable', 'scheduled', 'pending')
GROUP BY j.queue, j.state
ORDER BY j.queue, j.state;

-- QueuePauseUnworked pauses a queue River keeps no row for, because no
-- process works it (nor has in River's retention, a day), when it holds
-- unfinished tasks: an external kind's queue needs no workers, and its
-- claims skip paused queues. A name without unfinished tasks stays
-- unknown, so that a typo does not create a queue.
-- name: QueuePauseUnworked :execrows
INSERT INTO river_queue (name, created_at, metadata, paused_at, updated_at)
SELECT @name::text, now(), '{}', now(), now()
WHERE EXISTS (
    SELECT 1 FROM river_job
    WHERE state IN ('available', 'running', 'retryable', 'scheduled', 'pending') AND queue = @name::text
)
ON CONFLICT (name) DO UPDATE SET paused_at = coalesce(river_queue.paused_at, now()), updated_at = now();

-- QueuePausedKeep keeps paused queues' rows: River's queue cleaner deletes
-- a row nothing updated for a day (River's producers update their queues'
-- rows), and with it the pause of a queue no process works, which would
-- then start again when a worker of it came back.
-- name: QueuePausedKeep :execrows
UPDATE river_queue SET updated_at = now()
WHERE paused_at IS NOT NULL AND updated_at < now() - interval '1 hour';
