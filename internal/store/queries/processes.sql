-- name: ProcessRegister :exec
INSERT INTO taskd_processes (client_id, hostname, pid)
VALUES (@client_id, @hostname, @pid)
ON CONFLICT (client_id) DO UPDATE SET heartbeat_at = now();

-- name: ProcessHeartbeat :execrows
UPDATE taskd_processes SET heartbeat_at = now() WHERE client_id = @client_id;

-- name: ProcessDelete :exec
DELETE FROM taskd_processes WHERE client_id = @client_id;

-- name: ProcessDeleteStale :execrows
DELETE FROM taskd_processes
WHERE heartbeat_at < now() - make_interval(secs => @older_than_secs::double precision);

-- ProcessRescueLost makes the running jobs of processes whose heartbeat went
-- stale available again (or discarded when out of attempts), records a
-- 'lost' attempt for each, and wakes the producers of their queues. Any
-- process may run it at any time: SKIP LOCKED keeps two rescuers apart, and
-- a job whose owner heartbeats is never touched, however long it runs.
-- name: ProcessRescueLost :many
WITH lost AS (
    SELECT j.id
    FROM river_job j
    WHERE j.state = 'running'
        AND j.attempted_at < now() - make_interval(secs => @stale_secs::double precision)
        AND NOT EXISTS (
            SELECT 1 FROM taskd_processes p
            WHERE p.client_id = j.attempted_by[cardinality(j.attempted_by)]
                AND p.heartbeat_at >= now() - make_interval(secs => @stale_secs::double precision)
        )
    ORDER BY j.id
    LIMIT @max::int
    FOR UPDATE SKIP LOCKED
),
rescued AS (
    UPDATE river_job j
    SET
        -- A cancellation asked for while the task ran wins, as in River's
        -- own rescuer.
        state = CASE
            WHEN j.metadata ? 'cancel_attempted_at' THEN 'cancelled'
            WHEN j.attempt >= j.max_attempts THEN 'discarded'
            ELSE 'available'
        END::river_job_state,
        finalized_at = CASE
            WHEN j.metadata ? 'cancel_attempted_at' OR j.attempt >= j.max_attempts THEN now()
        END,
        scheduled_at = CASE
            WHEN j.metadata ? 'cancel_attempted_at' OR j.attempt >= j.max_attempts THEN j.scheduled_at
            ELSE now()
        END,
        errors = array_append(j.errors, jsonb_build_object(
            'at', now(),
            'attempt', j.attempt,
            'error', 'lost: process ' || coalesce(j.attempted_by[cardinality(j.attempted_by)], 'unknown') || ' stopped heartbeating while running this attempt',
            'trace', ''
        ))
    FROM lost
    WHERE j.id = lost.id
    RETURNING j.id, j.queue, j.attempt, j.attempted_at, j.attempted_by[cardinality(j.attempted_by)] AS worker
),
attempts AS (
    INSERT INTO task_attempts (task_id, attempt, worker, started_at, finished_at, outcome, error, duration_ms)
    SELECT
        r.id, r.attempt, coalesce(r.worker, 'unknown'), coalesce(r.attempted_at, now()), now(), 'lost',
        'process ' || coalesce(r.worker, 'unknown') || ' stopped heartbeating while running this attempt',
        extract(epoch FROM now() - coalesce(r.attempted_at, now())) * 1000
    FROM rescued r
),
notified AS (
    SELECT pg_notify(concat(current_schema(), '.river_insert'), json_build_object('queue', q.queue)::text)
    FROM (SELECT DISTINCT queue FROM rescued) q
)
SELECT r.id, (SELECT count(*) FROM notified) AS notified
FROM rescued r;
