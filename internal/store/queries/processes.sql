-- name: ProcessRegister :exec
INSERT INTO taskd_processes (client_id, hostname, pid)
VALUES (@client_id, @hostname, @pid)
ON CONFLICT (client_id) DO UPDATE SET heartbeat_at = greatest(taskd_processes.heartbeat_at, now());

-- ProcessHeartbeat marks process @client_id alive. Beats overlap (up to
-- jobs.HeartbeatsInFlight at once), and an older one may commit after a
-- newer one: greatest keeps that from moving heartbeat_at backwards.
-- name: ProcessHeartbeat :execrows
UPDATE taskd_processes SET heartbeat_at = greatest(heartbeat_at, now()) WHERE client_id = @client_id;

-- name: ProcessDelete :exec
DELETE FROM taskd_processes WHERE client_id = @client_id;

-- name: ProcessDeleteStale :execrows
DELETE FROM taskd_processes
WHERE heartbeat_at < now() - make_interval(secs => @older_than_secs::double precision);

-- ProcessRescueLost makes the running jobs of processes whose heartbeat went
-- stale available again (or discarded when out of attempts, cancelled when a
-- cancellation was asked for), records the attempt each was running, and
-- wakes the producers of their queues. Any process may run it at any time:
-- SKIP LOCKED keeps two rescuers apart, and a job whose owner heartbeats is
-- never touched, however long it runs; nor is a task leased to an external
-- worker.
--
-- Each attempt gets one row. The attempt middleware writes an attempt's row
-- before River can save the job's new state, so a row for the job's current
-- attempt (its number as store.AttemptNumber computes it, and started_at =
-- attempted_at, which the middleware copies from the job) means that the
-- work had finished and only River's state change died with the process. A
-- 'completed' row then becomes 'completed_unsaved': the task runs again
-- although its work was done, and counting these rows counts duplicate
-- executions. A row with another outcome stays as it is (the task would have
-- run again, or been given up, anyway), and the error River records repeats
-- it. Only an attempt without a row was cut off while working: it gets a
-- 'lost' row.
-- name: ProcessRescueLost :many
WITH lost AS (
    SELECT
        j.id,
        j.attempted_at,
        -- store.AttemptNumber(len(errors), attempt), as the middleware
        -- numbered the attempt.
        greatest(coalesce(cardinality(j.errors), 0) + 1, j.attempt) AS attempt_number,
        coalesce(j.attempted_by[cardinality(j.attempted_by)], 'unknown') AS worker,
        -- A cancellation asked for while the task ran wins, as in River's
        -- own rescuer.
        CASE
            WHEN j.metadata ? 'cancel_attempted_at' THEN 'cancelled'
            WHEN j.attempt >= j.max_attempts THEN 'discarded'
            ELSE 'available'
        END AS new_state
    FROM river_job j
    WHERE j.state = 'running'
        AND j.attempted_at < now() - make_interval(secs => @stale_secs::double precision)
        -- A task held by an external worker is not a process's: its lease
        -- decides (LeaseExpire).
        AND NOT EXISTS (SELECT 1 FROM task_leases l WHERE l.task_id = j.id)
        AND NOT EXISTS (
            SELECT 1 FROM taskd_processes p
            WHERE p.client_id = j.attempted_by[cardinality(j.attempted_by)]
                AND p.heartbeat_at >= now() - make_interval(secs => @stale_secs::double precision)
        )
    ORDER BY j.id
    LIMIT @max::int
    FOR UPDATE SKIP LOCKED
),
recorded AS (
    SELECT DISTINCT ON (l.id)
        l.id,
        a.id AS attempt_id,
        a.outcome,
        a.error,
        'the work completed but process ' || l.worker || ' died before its completion (and result) was saved, ' || CASE l.new_state
            WHEN 'available' THEN 'so the task runs again'
            WHEN 'discarded' THEN 'and the task had no attempts left and was discarded'
            ELSE 'and the task, whose cancellation was asked for, was cancelled'
        END AS unsaved_error
    FROM lost l
    JOIN task_attempts a ON a.task_id = l.id AND a.attempt = l.attempt_number AND a.started_at = l.attempted_at
    ORDER BY l.id, a.id
),
rescued AS (
    UPDATE river_job j
    SET
        state = l.new_state::river_job_state,
        finalized_at = CASE WHEN l.new_state <> 'available' THEN now() END,
        scheduled_at = CASE WHEN l.new_state = 'available' THEN now() ELSE j.scheduled_at END,
        errors = array_append(j.errors, jsonb_build_object(
            'at', now(),
            'attempt', j.attempt,
            'error', CASE
                WHEN rec.outcome IS NULL THEN 'lost: process ' || l.worker || ' stopped heartbeating while running this attempt'
                WHEN rec.outcome = 'completed' THEN 'completed_unsaved: ' || rec.unsaved_error
                ELSE rec.outcome || coalesce(': ' || rec.error, '') || ' (process ' || l.worker || ' died before River saved this outcome)'
            END,
            'trace', ''
        ))
    FROM lost l
    LEFT JOIN recorded rec ON rec.id = l.id
    WHERE j.id = l.id
    RETURNING j.id, j.queue, l.new_state, l.attempted_at, l.attempt_number, l.worker, rec.attempt_id, rec.outcome, rec.unsaved_error
),
unsaved AS (
    UPDATE task_attempts a
    SET outcome = 'completed_unsaved', error = r.unsaved_error
    FROM rescued r
    WHERE a.task_id = r.id AND a.id = r.attempt_id AND a.outcome = 'completed'
),
attempts AS (
    INSERT INTO task_attempts (task_id, attempt, worker, started_at, finished_at, outcome, error, duration_ms)
    SELECT
        r.id, r.attempt_number, r.worker, coalesce(r.attempted_at, now()), now(), 'lost',
        'process ' || r.worker || ' stopped heartbeating while running this attempt',
        extract(epoch FROM now() - coalesce(r.attempted_at, now())) * 1000
    FROM rescued r
    WHERE r.attempt_id IS NULL
),
notified AS (
    SELECT pg_notify(concat(current_schema(), '.river_insert'), json_build_object('queue', q.queue)::text)
    FROM (SELECT DISTINCT queue FROM rescued) q
)
SELECT
    r.id,
    (CASE
        WHEN r.attempt_id IS NULL THEN 'lost'
        WHEN r.outcome = 'completed' THEN 'completed_unsaved'
        ELSE r.outcome
    END)::text AS outcome,
    r.new_state::text AS new_state,
    (SELECT count(*) FROM notified) AS notified
FROM rescued r;

-- ProcessRunningStale lists the running jobs that process @client_id was
-- handed at least @stale_secs ago, by the last attempt: the candidates of
-- its orphan rescue (jobs.Client.rescueOrphans), which keeps those it
-- works.
-- name: ProcessRunningStale :many
SELECT j.id
FROM river_job j
WHERE j.state = 'running'
    AND j.attempted_by[cardinality(j.attempted_by)] = @client_id::text
    AND j.attempted_at < now() - make_interval(secs => @stale_secs::double precision)
ORDER BY j.id
LIMIT @max::int;

-- ProcessRescueOrphans is ProcessRescueLost for the orphans of a live
-- process: running jobs (among @ids) whose last attempt is @client_id's,
-- which that process does not work. A fetch whose connection is lost after
-- the server committed it (a server restart, a terminated backend) leaves
-- such jobs: River's producer saw an error and never ran them, and the
-- heartbeat rescue leaves them alone because their owner is alive (so may
-- a completion River dropped as it stopped). Like a rescued
-- job, an orphan becomes available again (discarded when out of
-- attempts, cancelled when a cancellation was asked for), its attempt
-- keeping its row or getting a "lost" one. The caller passes only jobs it
-- does not work; the attempted_at and owner conditions make a job fetched
-- again since then safe. Each rescued job's River attempt and attempted_at
-- (which fetch it was) are returned, for the caller's completion guard.
-- name: ProcessRescueOrphans :many
WITH lost AS (
    SELECT
        j.id,
        j.attempt,
        j.attempted_at,
        -- store.AttemptNumber(len(errors), attempt), as the middleware
        -- numbered the attempt.
        greatest(coalesce(cardinality(j.errors), 0) + 1, j.attempt) AS attempt_number,
        coalesce(j.attempted_by[cardinality(j.attempted_by)], 'unknown') AS worker,
        -- A cancellation asked for while the task ran wins, as in River's
        -- own rescuer.
        CASE
            WHEN j.metadata ? 'cancel_attempted_at' THEN 'cancelled'
            WHEN j.attempt >= j.max_attempts THEN 'discarded'
            ELSE 'available'
        END AS new_state
    FROM river_job j
    WHERE j.id = ANY(@ids::bigint[])
        AND j.state = 'running'
        AND j.attempted_by[cardinality(j.attempted_by)] = @client_id::text
        AND j.attempted_at < now() - make_interval(secs => @stale_secs::double precision)
        AND NOT EXISTS (SELECT 1 FROM task_leases l WHERE l.task_id = j.id)
    ORDER BY j.id
    FOR UPDATE SKIP LOCKED
),
recorded AS (
    SELECT DISTINCT ON (l.id)
        l.id,
        a.id AS attempt_id,
        a.outcome,
        a.error,
        'the work completed but process ' || l.worker || ' lost track of it before its completion (and result) was saved, ' || CASE l.new_state
            WHEN 'available' THEN 'so the task runs again'
            WHEN 'discarded' THEN 'and the task had no attempts left and was discarded'
            ELSE 'and the task, whose cancellation was asked for, was cancelled'
        END AS unsaved_error
    FROM lost l
    JOIN task_attempts a ON a.task_id = l.id AND a.attempt = l.attempt_number AND a.started_at = l.attempted_at
    ORDER BY l.id, a.id
),
rescued AS (
    UPDATE river_job j
    SET
        state = l.new_state::river_job_state,
        finalized_at = CASE WHEN l.new_state <> 'available' THEN now() END,
        scheduled_at = CASE WHEN l.new_state = 'available' THEN now() ELSE j.scheduled_at END,
        errors = array_append(j.errors, jsonb_build_object(
            'at', now(),
            'attempt', j.attempt,
            'error', CASE
                WHEN rec.outcome IS NULL THEN 'lost: process ' || l.worker || ' never ran this attempt (the database connection was lost as it fetched the task)'
                WHEN rec.outcome = 'completed' THEN 'completed_unsaved: ' || rec.unsaved_error
                ELSE rec.outcome || coalesce(': ' || rec.error, '') || ' (process ' || l.worker || ' failed to save this outcome)'
            END,
            'trace', ''
        ))
    FROM lost l
    LEFT JOIN recorded rec ON rec.id = l.id
    WHERE j.id = l.id
    RETURNING j.id, j.queue, l.new_state, l.attempt AS river_attempt, l.attempted_at, l.attempt_number, l.worker, rec.attempt_id, rec.outcome, rec.unsaved_error
),
unsaved AS (
    UPDATE task_attempts a
    SET outcome = 'completed_unsaved', error = r.unsaved_error
    FROM rescued r
    WHERE a.task_id = r.id AND a.id = r.attempt_id AND a.outcome = 'completed'
),
attempts AS (
    INSERT INTO task_attempts (task_id, attempt, worker, started_at, finished_at, outcome, error, duration_ms)
    SELECT
        r.id, r.attempt_number, r.worker, coalesce(r.attempted_at, now()), now(), 'lost',
        'process ' || r.worker || ' never ran this attempt (the database connection was lost as it fetched the task)',
        extract(epoch FROM now() - coalesce(r.attempted_at, now())) * 1000
    FROM rescued r
    WHERE r.attempt_id IS NULL
),
notified AS (
    SELECT pg_notify(concat(current_schema(), '.river_insert'), json_build_object('queue', q.queue)::text)
    FROM (SELECT DISTINCT queue FROM rescued) q
)
SELECT
    r.id,
    (CASE
        WHEN r.attempt_id IS NULL THEN 'lost'
        WHEN r.outcome = 'completed' THEN 'completed_unsaved'
        ELSE r.outcome
    END)::text AS outcome,
    r.new_state::text AS new_state,
    r.river_attempt,
    r.attempted_at,
    (SELECT count(*) FROM notified) AS notified
FROM rescued r;
