-- LeaseClaim claims up to max available tasks of the given kinds (and
-- queues, when given) for an external worker: each becomes a running River
-- job with a new attempt and a lease with a fresh token. SKIP LOCKED keeps
-- concurrent claims (and River's own fetches, which never take these kinds)
-- from getting the same task. Each task's lease is claim_lease_secs when
-- the claim asks for one, else the task's own timeout (its metadata's
-- "timeout", a Go duration, which PostgreSQL reads as an interval), else
-- lease_secs[i], the lease of kinds[i].
-- name: LeaseClaim :many
-- Each kind is read in the order of river_job_available_kind_idx
-- (migration 00011), so that a claim reads about max rows per kind however
-- long the backlog; the rows a kind's scan locked beyond the claim's max
-- are released when the statement ends.
WITH picked AS (
    SELECT c.id
    FROM unnest(sqlc.arg('kinds')::text[]) AS k (kind)
    CROSS JOIN LATERAL (
        SELECT j.id, j.priority, j.scheduled_at
        FROM river_job j
        WHERE j.state = 'available'
            AND j.kind = k.kind
            AND (sqlc.narg('queues')::text[] IS NULL OR j.queue = ANY(sqlc.narg('queues')::text[]))
            AND j.scheduled_at <= now()
            -- River's pause reaches its own producers only.
            AND NOT EXISTS (SELECT 1 FROM river_queue rq WHERE rq.name = j.queue AND rq.paused_at IS NOT NULL)
        ORDER BY j.priority, j.scheduled_at, j.id
        LIMIT sqlc.arg('max')::int
        FOR UPDATE SKIP LOCKED
    ) c
    ORDER BY c.priority, c.scheduled_at, c.id
    LIMIT sqlc.arg('max')::int
),
claimed AS (
    UPDATE river_job j
    SET
        state = 'running',
        attempt = j.attempt + 1,
        attempted_at = now(),
        attempted_by = array_append(j.attempted_by, sqlc.arg('worker')::text)
    FROM picked p
    WHERE j.id = p.id
    RETURNING j.id, j.kind, j.queue, j.args, j.attempt, j.max_attempts, j.errors, j.attempted_at, j.metadata, j.priority, j.scheduled_at
),
leased AS (
    INSERT INTO task_leases (task_id, token, worker, attempt, started_at, lease_secs, expires_at)
    SELECT
        c.id,
        gen_random_uuid(),
        sqlc.arg('worker')::text,
        -- store.AttemptNumber(len(errors), attempt)
        greatest(coalesce(cardinality(c.errors), 0) + 1, c.attempt),
        c.attempted_at,
        ls.secs,
        now() + make_interval(secs => ls.secs)
    FROM claimed c
    CROSS JOIN LATERAL (SELECT coalesce(
        sqlc.narg('claim_lease_secs')::double precision,
        extract(epoch FROM (c.metadata ->> 'timeout')::interval)::double precision,
        (sqlc.arg('lease_secs')::double precision[])[array_position(sqlc.arg('kinds')::text[], c.kind)]
    ) AS secs) ls
    -- A row left behind by a task that left 'running' some other way
    -- (River's backstop rescuer) is replaced.
    ON CONFLICT (task_id) DO UPDATE SET
        token = excluded.token, worker = excluded.worker, attempt = excluded.attempt,
        started_at = excluded.started_at, lease_secs = excluded.lease_secs, expires_at = excluded.expires_at
    RETURNING task_id, token, attempt, expires_at
)
SELECT
    c.id, c.kind, c.queue, c.args, l.attempt, c.max_attempts,
    -- 0: not in a batch (batch IDs start at 1)
    coalesce((c.metadata ->> 'batch_id')::bigint, 0)::bigint AS batch_id,
    -- 0: not a batch's callback
    coalesce((c.metadata ->> 'after_batch')::bigint, 0)::bigint AS after_batch,
    coalesce(c.metadata ->> 'schedule', '')::text AS schedule, -- '': not scheduled
    l.token, l.expires_at
FROM claimed c
JOIN leased l ON l.task_id = c.id
ORDER BY c.priority, c.scheduled_at, c.id;

-- LeaseClaimableKinds says which of kinds have a task ready to claim: the
-- one periodic re-check that covers a lost or throttled insert
-- notification for all of a process's waiting claims at once.
-- name: LeaseClaimableKinds :many
SELECT k.kind::text
FROM unnest(@kinds::text[]) AS k (kind)
WHERE EXISTS (
    SELECT 1 FROM river_job j
    WHERE j.state = 'available' AND j.kind = k.kind AND j.scheduled_at <= now()
        AND NOT EXISTS (SELECT 1 FROM river_queue rq WHERE rq.name = j.queue AND rq.paused_at IS NOT NULL)
);

-- LeaseLock locks a leased task and its lease if token is its current,
-- unexpired lease, for a failure whose next state the retry policy decides
-- (the task's own, else its kind's).
-- name: LeaseLock :one
SELECT
    l.worker, l.attempt AS attempt_number, l.started_at,
    j.attempt, j.max_attempts, j.queue, j.kind,
    coalesce(cardinality(j.errors), 0)::int AS error_count,
    -- The task's own retry policy (jobs.OwnPolicy).
    jsonb_strip_nulls(jsonb_build_object('backoff', j.metadata -> 'backoff', 'timeout', j.metadata -> 'timeout')) AS policy,
    (j.metadata ? 'cancel_attempted_at')::boolean AS cancel_requested
FROM task_leases l
JOIN river_job j ON j.id = l.task_id
WHERE l.task_id = @id AND l.token = @token AND l.expires_at > now() AND j.state = 'running'
FOR UPDATE OF l, j;

-- LeaseFail ends a locked lease (LeaseLock) with a failed attempt: the task
-- becomes available wait_secs from now (retryable when that is further away
-- than River's scheduler interval), or is finalized as discarded or
-- cancelled. An interrupted attempt (a worker shutting down, a claim whose
-- answer never reached its worker) is given back as River gives back the
-- jobs of a stopping client: its attempt is not counted and no error is
-- recorded.
-- name: LeaseFail :exec
WITH lease AS (
    DELETE FROM task_leases tl WHERE tl.task_id = @id
    RETURNING tl.task_id, tl.worker, tl.attempt, tl.started_at
),
failed AS (
    UPDATE river_job j
    SET
        state = CAST(@state::text AS river_job_state),
        -- The database's clock, as the claim that compares it uses.
        scheduled_at = coalesce(now() + make_interval(secs => sqlc.narg('wait_secs')::double precision), j.scheduled_at),
        finalized_at = CASE WHEN @state::text IN ('discarded', 'cancelled') THEN now() END,
        attempt = CASE WHEN @interrupted::boolean THEN greatest(j.attempt - 1, 0) ELSE j.attempt END,
        errors = CASE WHEN @interrupted::boolean THEN j.errors ELSE array_append(j.errors, jsonb_build_object(
            'at', now(), 'attempt', j.attempt, 'error', @error::text, 'trace', '')) END
    FROM lease l
    WHERE j.id = l.task_id
)
INSERT INTO task_attempts (task_id, attempt, worker, started_at, finished_at, outcome, error, duration_ms)
SELECT l.task_id, l.attempt, l.worker, l.started_at, now(), @outcome::text, @error::text,
    extract(epoch FROM now() - l.started_at) * 1000
FROM lease l;

-- LeaseHeartbeat extends a current, unexpired lease by extend_secs from
-- now, but never past max_life_secs after its attempt started (River's
-- backstop rescuer takes running jobs beyond that), and says whether a
-- cancellation was asked for.
-- name: LeaseHeartbeat :one
UPDATE task_leases l
SET expires_at = least(
    now() + make_interval(secs => coalesce(sqlc.narg('extend_secs')::double precision, l.lease_secs)),
    l.started_at + make_interval(secs => @max_life_secs::double precision))
FROM river_job j
WHERE l.task_id = @id AND l.token = @token AND l.expires_at > now()
    AND j.id = l.task_id AND j.state = 'running'
RETURNING l.expires_at, (j.metadata ? 'cancel_attempted_at')::boolean AS cancel_requested;

-- LeaseState explains why a lease was refused: the task's state, and
-- whether it is leased now and until when.
-- name: LeaseState :one
SELECT j.state::text AS state, j.kind, l.token AS current_token, l.expires_at,
    coalesce(l.expires_at > now(), false)::boolean AS leased
FROM river_job j
LEFT JOIN task_leases l ON l.task_id = j.id
WHERE j.id = @id;

-- LeaseExpire ends leases that ran out: the task's attempt is recorded as a
-- timeout, and the task is available again at once (or discarded when out
-- of attempts, cancelled when a cancellation was asked for), and the
-- waiting claims of its queue are woken. Every process runs it every
-- second; SKIP LOCKED keeps them, and a worker finishing at the same
-- moment, apart.
-- name: LeaseExpire :many
WITH expired AS (
    SELECT l.task_id, l.worker, l.attempt, l.started_at
    FROM task_leases l
    WHERE l.expires_at <= now()
    ORDER BY l.expires_at
    LIMIT @max::int
    FOR UPDATE SKIP LOCKED
),
gone AS (
    DELETE FROM task_leases l USING expired e WHERE l.task_id = e.task_id
),
requeued AS (
    UPDATE river_job j
    SET
        state = (CASE
            WHEN j.metadata ? 'cancel_attempted_at' THEN 'cancelled'
            WHEN j.attempt >= j.max_attempts THEN 'discarded'
            ELSE 'available'
        END)::river_job_state,
        finalized_at = CASE
            WHEN j.metadata ? 'cancel_attempted_at' OR j.attempt >= j.max_attempts THEN now()
        END,
        scheduled_at = CASE
            WHEN j.metadata ? 'cancel_attempted_at' OR j.attempt >= j.max_attempts THEN j.scheduled_at
            ELSE now()
        END,
        errors = array_append(j.errors, jsonb_build_object(
            'at', now(), 'attempt', j.attempt,
            'error', 'lease expired: worker ' || e.worker || ' did not complete, fail or heartbeat the task in time',
            'trace', ''))
    FROM expired e
    WHERE j.id = e.task_id AND j.state = 'running'
    RETURNING j.id, j.queue, j.state::text AS state
),
attempts AS (
    INSERT INTO task_attempts (task_id, attempt, worker, started_at, finished_at, outcome, error, duration_ms)
    SELECT e.task_id, e.attempt, e.worker, e.started_at, now(), 'timeout', 'lease expired',
        extract(epoch FROM now() - e.started_at) * 1000
    FROM expired e
    JOIN requeued r ON r.id = e.task_id
),
notified AS (
    SELECT pg_notify(concat(current_schema(), '.river_insert'), json_build_object('queue', q.queue)::text)
    FROM (SELECT DISTINCT queue FROM requeued WHERE state = 'available') q
)
SELECT r.id, r.state, (SELECT count(*) FROM notified) AS notified
FROM requeued r;

-- name: NotifyQueues :exec
SELECT pg_notify(concat(current_schema(), '.river_insert'), json_build_object('queue', q)::text)
FROM unnest(@queues::text[]) AS q;

-- LeaseCompleteMany is LeaseComplete for many tasks at once, each with its
-- token and result (JSON text): one statement and one commit for a group
-- of completions that arrived together. Leases are locked in task order,
-- so that two groups never wait for each other crosswise. It returns the
-- tasks it completed; the others' leases did not hold.
-- name: LeaseCompleteMany :many
WITH input AS (
    SELECT
        unnest(@ids::bigint[]) AS id,
        unnest(@tokens::uuid[]) AS token,
        unnest(@results::text[]) AS result
),
locked AS (
    SELECT l.task_id
    FROM task_leases l
    JOIN input i ON i.id = l.task_id AND i.token = l.token
    WHERE l.expires_at > now()
    ORDER BY l.task_id
    FOR UPDATE OF l
),
lease AS (
    DELETE FROM task_leases l
    USING locked k, river_job j
    WHERE l.task_id = k.task_id AND j.id = l.task_id AND j.state = 'running'
    RETURNING l.task_id, l.worker, l.attempt, l.started_at
),
done AS (
    UPDATE river_job j
    SET
        state = 'completed',
        finalized_at = now(),
        metadata = j.metadata || jsonb_build_object('output', i.result::jsonb)
    FROM lease l
    JOIN input i ON i.id = l.task_id
    WHERE j.id = l.task_id
    RETURNING j.id
),
attempt AS (
    INSERT INTO task_attempts (task_id, attempt, worker, started_at, finished_at, outcome, duration_ms)
    SELECT l.task_id, l.attempt, l.worker, l.started_at, now(), 'completed',
        extract(epoch FROM now() - l.started_at) * 1000
    FROM lease l
)
SELECT id FROM done;
