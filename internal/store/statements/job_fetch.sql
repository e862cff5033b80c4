-- JobFetch (store.JobFetch), not run through sqlc, which does not know the
-- ctid column.
--
-- River's JobGetAvailable, the producer's fetch: the same jobs locked and
-- changed in the same way, but the locked rows are found again by their
-- ctid (a TID scan) rather than by a join on id (a primary-key look-up of
-- every job fetched). The rows are locked, so their ctid cannot change
-- before the UPDATE; a row whose newer version the lock found (updated and
-- committed since the statement's snapshot) is not visible at that ctid to
-- the UPDATE, which then leaves it, locked until the commit and available
-- for the next fetch, where River's statement would fetch it now.
WITH locked_jobs AS (
    SELECT ctid
    FROM river_job
    WHERE state = 'available'
        AND queue = $1::text
        AND ($2::text[] IS NULL OR kind = ANY($2::text[]))
        AND scheduled_at <= coalesce($3::timestamptz, now())
    ORDER BY
        priority ASC,
        scheduled_at ASC,
        id ASC
    LIMIT $4::integer
    FOR UPDATE
    SKIP LOCKED
)
UPDATE river_job
SET
    state = 'running',
    attempt = river_job.attempt + 1,
    attempted_at = coalesce($3::timestamptz, now()),
    attempted_by = array_append(
        CASE WHEN array_length(river_job.attempted_by, 1) >= $5::int
        -- +2 instead of +1 because PostgreSQL's arrays start at 1 (River's).
        THEN river_job.attempted_by[array_length(river_job.attempted_by, 1) + 2 - $5:]
        ELSE river_job.attempted_by
        END,
        $6::text
    )
WHERE river_job.ctid = ANY(ARRAY(SELECT ctid FROM locked_jobs))
    AND river_job.state = 'available'
RETURNING
    river_job.id, river_job.state, river_job.attempt, river_job.max_attempts, river_job.attempted_at,
    river_job.created_at, river_job.finalized_at, river_job.scheduled_at, river_job.priority, river_job.args,
    river_job.attempted_by, river_job.errors, river_job.kind, river_job.metadata, river_job.queue,
    river_job.tags, river_job.unique_key, river_job.unique_states;
