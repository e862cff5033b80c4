-- Schedules: the periodic tasks of the configuration file (schedules:).
-- The file says what each schedule is; this table only remembers, per
-- schedule name, the latest tick that was enqueued, so that each tick is
-- enqueued once across the whole cluster. The process that enqueues a tick
-- moves last_tick to it with
--
--   UPDATE ... SET last_tick = @tick WHERE name = @name AND last_tick < @tick
--
-- and inserts the task in the same transaction only when a row was
-- updated; two processes that both believe they lead (River's leadership
-- is a lease) are thereby kept from enqueuing one tick twice. A schedule
-- removed from the file keeps its row, which is harmless and lets it go on
-- from where it was if it comes back. last_task_id has no foreign key:
-- finished tasks are deleted after their retention period.

-- +goose Up
CREATE TABLE taskd_schedules (
    name text PRIMARY KEY,
    -- The latest tick enqueued (or, for a schedule seen for the first time,
    -- the latest tick before it was, which is not run).
    last_tick timestamptz,
    last_task_id bigint,
    last_enqueued_at timestamptz
);

-- +goose Down
DROP TABLE taskd_schedules;
