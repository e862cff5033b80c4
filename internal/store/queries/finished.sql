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

-- TaskWaitMark marks the unfinished tasks among ids as waited for
-- ("taskd_waited" in their metadata), so that whichever process runs one
-- writes its final state as soon as it is done instead of when River's
-- completer gets to it (TaskFinishWaited), and returns which of ids are
-- final or gone already, as TaskFinishedAmong does. One statement per
-- waiting request; a task marked before is not written again.
-- name: TaskWaitMark :many
WITH i AS (SELECT unnest(@ids::bigint[]) AS id),
marked AS (
    UPDATE river_job j
    SET metadata = j.metadata || '{"taskd_waited": true}'::jsonb
    FROM i
    WHERE j.id = i.id
        AND j.state NOT IN ('completed', 'cancelled', 'discarded')
        AND NOT (j.metadata ? 'taskd_waited')
    RETURNING j.id, j.state
),
-- A task running already was fetched without the mark: its process hears
-- of it here (taskd_waited, up to 500 IDs a notification).
announced AS (
    SELECT pg_notify(concat(current_schema(), '.taskd_waited'), string_agg(m.id::text, ','))
    FROM (SELECT id, (row_number() OVER ()) / 500 AS part FROM marked WHERE state = 'running') m
    GROUP BY m.part
)
SELECT i.id::bigint
FROM i
LEFT JOIN river_job j ON j.id = i.id
WHERE (j.id IS NULL OR j.state IN ('completed', 'cancelled', 'discarded'))
    AND (SELECT count(*) FROM announced) >= 0;

-- TaskFinishWaited completes, now, tasks whose attempts just completed and
-- that some request waits for (TaskWaitMark; the process running them
-- passes only those it knows to be waited for), with their
-- outputs (JSON text, '' for none) and finish times, and announces them
-- (taskd_finished, as TaskNotifyFinished). River's batch completer writes a
-- lightly loaded process's states only every 250 ms; a waiter need not
-- wait for that. The completer's own write comes later and changes only
-- running jobs' states, so it merely merges its metadata (the same output)
-- into the row. Tasks no request waits for are left to River.
-- name: TaskFinishWaited :exec
WITH f AS (
    SELECT unnest(@ids::bigint[]) AS id, unnest(@outputs::text[]) AS output, unnest(@finished_at::timestamptz[]) AS finished_at,
        unnest(@attempted_at::timestamptz[]) AS attempted_at
),
done AS (
    UPDATE river_job j
    SET state = 'completed',
        finalized_at = f.finished_at,
        metadata = CASE WHEN f.output = '' THEN j.metadata ELSE j.metadata || jsonb_build_object('output', CAST(f.output AS jsonb)) END
    FROM f
    -- Only the fetch that ran the attempt (attempted_at, which the attempt
    -- middleware copies from the job): a process cut off from the database
    -- may write an attempt late, after another process rescued the task and
    -- runs it again.
    WHERE j.id = f.id AND j.state = 'running' AND j.metadata ? 'taskd_waited'
        AND j.attempted_at = f.attempted_at
    RETURNING j.id
)
SELECT pg_notify(concat(current_schema(), '.taskd_finished'), string_agg(id::text, ','))
FROM done
HAVING count(*) > 0;
