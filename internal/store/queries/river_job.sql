-- name: JobCompleteMany :many
-- River's JobSetStateIfRunningMany for a batch of completions only (every
-- one to completed, with no attempt, error or scheduled_at of its own): the
-- same rows changed in the same way, without the CASEs for the other states,
-- and without River's second look-up by id of every job of the batch (its
-- UNION ALL returns the rows it did not update): only the jobs the UPDATE
-- left, usually none, are looked up, in the same statement and so the same
-- snapshot as River's. As in River's statement, a completion's metadata is
-- merged even into a job that no longer runs.
WITH job_input AS (
    SELECT
        unnest(@id::bigint[]) AS id,
        unnest(@finalized_at::timestamptz[]) AS finalized_at,
        unnest(@metadata_do_merge::boolean[]) AS metadata_do_merge,
        unnest(@metadata_updates::jsonb[]) AS metadata_updates
),
updated AS (
    UPDATE river_job
    SET
        finalized_at = CASE WHEN river_job.state = 'running' THEN job_input.finalized_at ELSE river_job.finalized_at END,
        metadata = CASE WHEN job_input.metadata_do_merge THEN river_job.metadata || job_input.metadata_updates ELSE river_job.metadata END,
        state = CASE WHEN river_job.state = 'running' THEN 'completed'::river_job_state ELSE river_job.state END
    FROM job_input
    WHERE river_job.id = job_input.id
        AND (river_job.state = 'running' OR job_input.metadata_do_merge)
    RETURNING river_job.*
)
SELECT * FROM updated
UNION ALL
SELECT river_job.*
FROM river_job
WHERE river_job.id = ANY(ARRAY(SELECT id FROM job_input EXCEPT SELECT id FROM updated));

-- name: JobInsertMany :many
-- River's JobInsertFastMany for jobs without a unique key or an id of
-- their own (taskd's): the same rows, in the order given (River's insert
-- returns them so, and taskd's answers rely on it), without the ON
-- CONFLICT clause on River's unique index, which makes every row of
-- River's insert a speculative one.
WITH raw_job_data AS (
    SELECT
        unnest(@args::jsonb[]) AS args,
        unnest(@created_at::timestamptz[]) AS created_at,
        unnest(@kind::text[]) AS kind,
        unnest(@max_attempts::smallint[]) AS max_attempts,
        unnest(@metadata::jsonb[]) AS metadata,
        unnest(@priority::smallint[]) AS priority,
        unnest(@queue::text[]) AS queue,
        unnest(@scheduled_at::timestamptz[]) AS scheduled_at,
        unnest(@state::text[]) AS state,
        unnest(@tags::text[]) AS tags
)
INSERT INTO river_job (args, created_at, kind, max_attempts, metadata, priority, queue, scheduled_at, state, tags)
SELECT
    args,
    created_at,
    kind,
    max_attempts,
    metadata,
    priority,
    queue,
    scheduled_at,
    state::river_job_state,
    string_to_array(tags, ',')::varchar(255)[]
FROM raw_job_data
RETURNING river_job.*;
