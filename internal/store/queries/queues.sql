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
