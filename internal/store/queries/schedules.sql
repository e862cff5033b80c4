-- ScheduleInsertMissing records schedules seen for the first time, each at
-- the tick given for it (its latest tick, not run), so that a new schedule
-- starts at its next tick rather than at once.
-- name: ScheduleInsertMissing :exec
INSERT INTO taskd_schedules (name, last_tick)
SELECT unnest(@names::text[]), unnest(@ticks::timestamptz[])
ON CONFLICT (name) DO NOTHING;

-- ScheduleTick takes tick for schedule name: one row when the tick is
-- later than the schedule's last, none when it was taken already (by this
-- process or another). The row stays locked until the transaction ends, so
-- a second taker waits, then finds the tick taken. A schedule without a row
-- (ScheduleInsertMissing gives each one; this is for a row deleted by
-- hand) gets one, so that it runs on rather than never.
-- name: ScheduleTick :execrows
INSERT INTO taskd_schedules AS s (name, last_tick)
VALUES (@name, @tick::timestamptz)
ON CONFLICT (name) DO UPDATE SET last_tick = excluded.last_tick
WHERE s.last_tick IS NULL OR s.last_tick < excluded.last_tick;

-- ScheduleSetTask records the task a tick enqueued, in the transaction that
-- took the tick.
-- name: ScheduleSetTask :exec
UPDATE taskd_schedules
SET last_task_id = @task_id::bigint, last_enqueued_at = now()
WHERE name = @name;

-- name: ScheduleList :many
SELECT name, last_tick, last_task_id, last_enqueued_at
FROM taskd_schedules
WHERE name = ANY(@names::text[]);
