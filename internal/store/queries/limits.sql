-- Queries of cluster-wide limits (internal/limits). A round of decisions
-- runs in one transaction: it takes the advisory lock of every group
-- (limit and key) it touches, in one global order so that two rounds never
-- wait for each other crosswise, then reads and changes the groups' rows.

-- LimitSlotGroups returns the groups of the slots that releases name, so
-- that the round can lock them before it deletes anything.
-- name: LimitSlotGroups :many
WITH r AS (SELECT unnest(@task_ids::bigint[]) AS task_id, unnest(@tokens::bigint[]) AS token)
SELECT DISTINCT s.limit_name, s.key
FROM task_slots s
JOIN r ON r.task_id = s.task_id AND r.token = s.token;

-- LimitLock takes the transaction's advisory locks of groups (each
-- "limit name, unit separator, key") and returns the database's clock, which every
-- process's rate windows use. The two-key form keeps these locks apart from
-- River's. Volatile functions run after the sort, so the locks are taken
-- in hash order.
-- name: LimitLock :one
SELECT now()::timestamptz AS now, (
    SELECT count(*) FROM (
        SELECT pg_advisory_xact_lock(1952543595, h.h)
        FROM (SELECT DISTINCT hashtext(g) AS h FROM unnest(@groups::text[]) AS g ORDER BY 1) h
    ) l
)::bigint AS locked;

-- name: LimitRelease :exec
WITH r AS (SELECT unnest(@task_ids::bigint[]) AS task_id, unnest(@tokens::bigint[]) AS token)
DELETE FROM task_slots s
USING r
WHERE s.task_id = r.task_id AND s.token = r.token;

-- LimitHeld returns, for groups, what holds their slots: one row per
-- single-task slot (task_id, n 1) that holds (its task runs or is
-- available, or it was handed to a waiting task in the last reserve_secs);
-- one row (task_id 0) with the slots that the other processes alive
-- (heartbeat within alive_secs) hold; and one row (task_id -1) with the
-- number of tasks waiting.
-- name: LimitHeld :many
WITH g AS (SELECT unnest(@limit_names::text[]) AS limit_name, unnest(@keys::text[]) AS key)
SELECT s.limit_name, s.key, s.task_id, 1::bigint AS n
FROM task_slots s
JOIN g ON g.limit_name = s.limit_name AND g.key = s.key
JOIN river_job j ON j.id = s.task_id
WHERE (s.token <> 0 AND j.state IN ('running', 'available'))
    OR (s.token = 0 AND j.state IN ('running', 'scheduled', 'available')
        AND s.acquired_at > now() - make_interval(secs => @reserve_secs::double precision))
UNION ALL
SELECT h.limit_name, h.key, 0::bigint, sum(h.held)::bigint
FROM task_limit_holds h
JOIN g ON g.limit_name = h.limit_name AND g.key = h.key
JOIN taskd_processes p ON p.client_id = h.client_id
WHERE h.client_id <> @client_id::text AND h.held > 0
    AND p.heartbeat_at > now() - make_interval(secs => @alive_secs::double precision)
GROUP BY h.limit_name, h.key
UNION ALL
SELECT w.limit_name, w.key, -1::bigint, count(*)::bigint
FROM task_limit_waits w
JOIN g ON g.limit_name = w.limit_name AND g.key = w.key
GROUP BY w.limit_name, w.key;

-- LimitSaveHolds stores this process's counts of held slots.
-- name: LimitSaveHolds :exec
INSERT INTO task_limit_holds (limit_name, key, client_id, held)
SELECT unnest(@limit_names::text[]), unnest(@keys::text[]), @client_id::text, unnest(@held::int[])
ON CONFLICT (limit_name, key, client_id) DO UPDATE SET held = excluded.held;

-- LimitDropHolds removes a stopping process's counts.
-- name: LimitDropHolds :exec
DELETE FROM task_limit_holds WHERE client_id = @client_id::text;

-- name: LimitRates :many
WITH g AS (SELECT unnest(@limit_names::text[]) AS limit_name, unnest(@keys::text[]) AS key)
SELECT w.limit_name, w.key, w.window_start, w.started
FROM task_rate_windows w
JOIN g ON g.limit_name = w.limit_name AND g.key = w.key;

-- LimitWaiters returns, per group, up to free[i] of its oldest waiting
-- tasks that hold no slot of it yet, but those in skip: those a freed slot
-- is handed to. A waiting task River is still putting back (running) gets
-- its slot too; it is woken once it is back (LimitWakeReady).
-- name: LimitWaiters :many
WITH g AS (SELECT unnest(@limit_names::text[]) AS limit_name, unnest(@keys::text[]) AS key, unnest(@free::int[]) AS free)
SELECT g.limit_name::text AS limit_name, g.key::text AS key, w.task_id
FROM g
CROSS JOIN LATERAL (
    SELECT w.task_id
    FROM task_limit_waits w
    JOIN river_job j ON j.id = w.task_id
    WHERE w.limit_name = g.limit_name AND w.key = g.key
        AND j.state IN ('running', 'scheduled', 'available')
        AND NOT (w.task_id = ANY(@skip::bigint[]))
        AND NOT EXISTS (
            SELECT 1 FROM task_slots s
            WHERE s.limit_name = w.limit_name AND s.key = w.key AND s.task_id = w.task_id
                AND (s.token <> 0 OR s.acquired_at > now() - make_interval(secs => @reserve_secs::double precision))
        )
    ORDER BY w.since, w.task_id
    LIMIT g.free
) w;

-- LimitDropReservations gives back the slots handed to tasks that were
-- refused all the same (by another limit or a rate).
-- name: LimitDropReservations :exec
DELETE FROM task_slots WHERE task_id = ANY(@task_ids::bigint[]) AND token = 0;

-- name: LimitGrant :exec
INSERT INTO task_slots (limit_name, key, task_id, token)
SELECT unnest(@limit_names::text[]), unnest(@keys::text[]), unnest(@task_ids::bigint[]), unnest(@tokens::bigint[])
ON CONFLICT (limit_name, key, task_id) DO UPDATE SET token = excluded.token, acquired_at = now();

-- name: LimitRateSave :exec
INSERT INTO task_rate_windows (limit_name, key, window_start, started)
SELECT unnest(@limit_names::text[]), unnest(@keys::text[]), unnest(@window_starts::timestamptz[]), unnest(@started::int[])
ON CONFLICT (limit_name, key) DO UPDATE SET window_start = excluded.window_start, started = excluded.started;

-- name: LimitUnwait :exec
DELETE FROM task_limit_waits WHERE task_id = ANY(@task_ids::bigint[]);

-- LimitWait queues tasks for groups; a task already waiting keeps its
-- place. Its place is when it became due (its scheduled_at as River
-- fetched it: its submission, its retry's time, the end of its rate
-- window), not when it first asked: tasks that arrive in that order
-- through different processes are fetched and ask in an order of their
-- processes' making, and the slot is to go to the one waiting longest.
-- name: LimitWait :exec
WITH w AS (SELECT unnest(@limit_names::text[]) AS limit_name, unnest(@keys::text[]) AS key, unnest(@task_ids::bigint[]) AS task_id)
INSERT INTO task_limit_waits (limit_name, key, task_id, since)
SELECT w.limit_name, w.key, w.task_id, least(coalesce(j.scheduled_at, now()), now())
FROM w LEFT JOIN river_job j ON j.id = w.task_id
ON CONFLICT DO NOTHING;

-- LimitPark puts tasks that may not start yet back without using an
-- attempt: River's fetch (or a claim) counted one, which is given back, and
-- an external kind's lease is dropped. park_states[i] is 'scheduled' (wait
-- for a handed slot, or until[i] at the latest) or 'available' (a rate
-- window: fetchable again at until[i]). Only tasks still running are
-- parked; River's completer then leaves them alone, since it changes only
-- running jobs.
-- name: LimitPark :many
WITH p AS (
    SELECT unnest(@task_ids::bigint[]) AS id, unnest(@park_states::text[]) AS park_state, unnest(@untils::timestamptz[]) AS until
),
parked AS (
    UPDATE river_job j
    SET state = CAST(p.park_state AS river_job_state),
        scheduled_at = p.until,
        attempt = greatest(j.attempt - 1, 0)
    FROM p
    WHERE j.id = p.id AND j.state = 'running'
    RETURNING j.id
),
unleased AS (
    DELETE FROM task_leases l USING parked WHERE l.task_id = parked.id
)
SELECT id FROM parked;

-- LimitWakeReady makes available now the waiting tasks that were handed
-- a slot of groups and now hold one of every group they wait for, once
-- they are back in the database (not running), and wakes the fetchers and
-- claims of their queues (River's insert channel).
-- name: LimitWakeReady :exec
WITH g AS (SELECT unnest(@limit_names::text[]) AS limit_name, unnest(@keys::text[]) AS key),
handed AS (
    SELECT DISTINCT s.task_id
    FROM task_slots s
    JOIN g ON g.limit_name = s.limit_name AND g.key = s.key
    WHERE s.token = 0
),
ready AS (
    SELECT h.task_id FROM handed h
    WHERE NOT EXISTS (
        SELECT 1 FROM task_limit_waits w
        WHERE w.task_id = h.task_id
            AND NOT EXISTS (
                SELECT 1 FROM task_slots s
                WHERE s.task_id = w.task_id AND s.limit_name = w.limit_name AND s.key = w.key AND s.token = 0
            )
    )
),
woken AS (
    UPDATE river_job j
    SET state = 'available', scheduled_at = now()
    FROM ready r
    WHERE j.id = r.task_id
        AND (j.state = 'scheduled' OR (j.state = 'available' AND j.scheduled_at > now()))
    RETURNING j.queue
)
SELECT pg_notify(concat(current_schema(), '.river_insert'), json_build_object('queue', q.queue)::text)
FROM (SELECT DISTINCT queue FROM woken) q;

-- LimitCleanup removes rows that no longer mean anything: slots and waits
-- of tasks that are finished or waiting for something else, and rate
-- windows long over. Each process runs it now and then.
-- name: LimitCleanup :exec
WITH slots AS (
    DELETE FROM task_slots s USING river_job j
    WHERE j.id = s.task_id AND j.state NOT IN ('running', 'available')
        AND s.acquired_at < now() - interval '1 minute'
    RETURNING 1
),
waits AS (
    DELETE FROM task_limit_waits w USING river_job j
    WHERE j.id = w.task_id AND j.state NOT IN ('scheduled', 'available', 'running')
    RETURNING 1
),
windows AS (
    DELETE FROM task_rate_windows WHERE window_start < now() - interval '2 hours'
    RETURNING 1
),
holds AS (
    DELETE FROM task_limit_holds h
    WHERE NOT EXISTS (SELECT 1 FROM taskd_processes p WHERE p.client_id = h.client_id)
    RETURNING 1
)
SELECT (SELECT count(*) FROM slots) + (SELECT count(*) FROM waits) + (SELECT count(*) FROM windows) + (SELECT count(*) FROM holds);
