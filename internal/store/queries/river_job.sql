-- name: JobCompleteMany :many
-- River's JobSetStateIfRunningMany for a batch of completions only (every
-- one to completed, with no attempt, error or scheduled_at of its own): the
-- same rows changed in the same way, without the CASEs for the other states
-- and without River's second look-up of every job by id for the rows it
-- did not update (its UNION ALL); the caller reads those few itself
-- (JobGetByIDMany). As in River's statement, a completion's metadata is
-- merged even into a job that no longer runs.
WITH job_input AS (
    SELECT
        unnest(@id::bigint[]) AS id,
        unnest(@finalized_at::timestamptz[]) AS finalized_at,
        unnest(@metadata_do_merge::boolean[]) AS metadata_do_merge,
        unnest(@metadata_updates::jsonb[]) AS metadata_updates
)
UPDATE river_job
SET
    finalized_at = CASE WHEN river_job.state = 'running' THEN job_input.finalized_at ELSE river_job.finalized_at END,
    metadata = CASE WHEN job_input.metadata_do_merge THEN river_job.metadata || job_input.metadata_updates ELSE river_job.metadata END,
    state = CASE WHEN river_job.state = 'running' THEN 'completed'::river_job_state ELSE river_job.state END
FROM job_input
WHERE river_job.id = job_input.id
    AND (river_job.state = 'running' OR job_input.metadata_do_merge)
RETURNING river_job.*;

-- name: JobGetByIDMany :many
-- River's statement of the same name, for JobCompleteMany's caller.
SELECT *
FROM river_job
WHERE id = ANY(@id::bigint[])
ORDER BY id;
