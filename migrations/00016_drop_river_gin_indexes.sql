-- River's GIN indexes on river_job.args and river_job.metadata serve only
-- queries that look jobs up by what their args or metadata contain (@>,
-- ?, ?|, ?&), such as river.JobListParams.Metadata. None of taskd's
-- queries, none of River's own (fetch, completer, rescuer, cleaner,
-- scheduler, inserts) and none of the River UI's (v0.22.0, mounted at
-- /riverui) is one: each finds its jobs by id, state, queue or kind, and
-- reads args and metadata of the rows found. Every index costs each insert
-- and each of River's updates of a job (none is a HOT update: state is
-- indexed), and a GIN index an entry per key of the document; see
-- docs/PERFORMANCE-indexes.md for who uses which index on river_job and
-- what the drop costs. TestRiverJobIndexPlans (internal/store) fails when
-- a query taskd, River or the River UI runs loses the index it is served by.
--
-- Unmeasured: the effect on throughput is still to be measured on a quiet
-- machine (docs/PERFORMANCE-indexes.md, "To measure").
--
-- River's migrator is unaffected: it keeps its versions in river_migration
-- and does not look at indexes. River's reindexer would look for the two
-- every day: jobs.Client leaves them out of its list
-- (ReindexerIndexNames). Dropped and rebuilt CONCURRENTLY, so that
-- migrating a busy table does not block inserts; each statement commits on
-- its own, and after a failure running the migration again is harmless
-- (an invalid index left by a failed rebuild must be dropped by hand
-- before the Down is run again).

-- +goose NO TRANSACTION
-- +goose Up

DROP INDEX CONCURRENTLY IF EXISTS river_job_args_index;
DROP INDEX CONCURRENTLY IF EXISTS river_job_metadata_index;

-- +goose Down

CREATE INDEX CONCURRENTLY IF NOT EXISTS river_job_metadata_index ON river_job USING GIN (metadata);
CREATE INDEX CONCURRENTLY IF NOT EXISTS river_job_args_index ON river_job USING GIN (args);
