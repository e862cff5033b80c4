-- task_attempts is keyed by (task_id, id) and has no foreign key to
-- river_job any more; a trigger on river_job deletes a task's attempts
-- with it, as the foreign key's ON DELETE CASCADE did.
--
-- Why: every finished attempt writes one row, and the row cost more than
-- the rest of taskd's work per task (docs/PERFORMANCE.md, "Round 2"). Its
-- foreign key checked each row with SELECT … FOR KEY SHARE on the job's
-- row, which writes a lock into that row right before River's completion
-- rewrites it; and the row had two indexes, the primary key (id) and
-- (task_id, id), where every query finds attempts by task. Both changes
-- together measured 1.10× end to end (scenario 1, 5 alternating pairs).
--
-- What keeps attempts of deleted tasks out without the foreign key: an
-- attempt is written while its task is running, and River deletes no
-- running job (JobDelete refuses it, the cleaner takes finalized jobs
-- only); the writes that can come late (a retried write, an attempt of a
-- process whose heartbeat was lost, whose task may have been rescued, run
-- and deleted since) insert only attempts of tasks that exist
-- (AttemptInsertMany in internal/store/queries/tasks.sql).
--
-- The trigger finds attempts by the deleted tasks' ids in one statement
-- per DELETE (a statement trigger with a transition table), so River's
-- cleaner, which deletes up to 10,000 jobs at once, pays one join rather
-- than one trigger call per job. It names task_attempts in river_job's own
-- schema, whatever the deleting session's search_path. TRUNCATE river_job
-- (possible only with CASCADE, because of idempotency_keys) empties
-- task_attempts too.
--
-- Built CONCURRENTLY so that migrating a busy table does not block the
-- writes of attempts; each statement commits on its own, and after a
-- failure running the migration again is harmless.

-- +goose NO TRANSACTION
-- +goose Up

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION taskd_delete_attempts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DELETE FROM %I.task_attempts a USING deleted_jobs d WHERE a.task_id = d.id', TG_TABLE_SCHEMA);
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION taskd_truncate_attempts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('TRUNCATE %I.task_attempts', TG_TABLE_SCHEMA);
    RETURN NULL;
END
$$;
-- +goose StatementEnd

DROP TRIGGER IF EXISTS taskd_delete_attempts ON river_job;

CREATE TRIGGER taskd_delete_attempts AFTER DELETE ON river_job
    REFERENCING OLD TABLE AS deleted_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION taskd_delete_attempts();

DROP TRIGGER IF EXISTS taskd_truncate_attempts ON river_job;

CREATE TRIGGER taskd_truncate_attempts AFTER TRUNCATE ON river_job
    FOR EACH STATEMENT EXECUTE FUNCTION taskd_truncate_attempts();

-- The triggers are in place before the foreign key goes, so no delete in
-- between leaves attempts behind.
ALTER TABLE task_attempts DROP CONSTRAINT IF EXISTS task_attempts_task_id_fkey;

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS task_attempts_task_id_id_key ON task_attempts (task_id, id);

-- The new index becomes the primary key (and is renamed task_attempts_pkey);
-- the old primary key's index on id goes with its constraint.
-- +goose StatementBegin
DO $$
BEGIN
    IF to_regclass('task_attempts_task_id_id_key') IS NOT NULL THEN
        ALTER TABLE task_attempts
            DROP CONSTRAINT task_attempts_pkey,
            ADD CONSTRAINT task_attempts_pkey PRIMARY KEY USING INDEX task_attempts_task_id_id_key;
    END IF;
END
$$;
-- +goose StatementEnd

DROP INDEX CONCURRENTLY IF EXISTS task_attempts_task_id_idx;

-- +goose Down

CREATE INDEX CONCURRENTLY IF NOT EXISTS task_attempts_task_id_idx ON task_attempts (task_id, id);

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS task_attempts_id_key ON task_attempts (id);

-- +goose StatementBegin
DO $$
BEGIN
    IF to_regclass('task_attempts_id_key') IS NOT NULL THEN
        ALTER TABLE task_attempts
            DROP CONSTRAINT task_attempts_pkey,
            ADD CONSTRAINT task_attempts_pkey PRIMARY KEY USING INDEX task_attempts_id_key;
    END IF;
END
$$;
-- +goose StatementEnd

-- Attempts whose task is gone would fail the foreign key's validation.
-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'task_attempts_task_id_fkey' AND conrelid = 'task_attempts'::regclass) THEN
        DELETE FROM task_attempts a WHERE NOT EXISTS (SELECT 1 FROM river_job j WHERE j.id = a.task_id);
        ALTER TABLE task_attempts ADD CONSTRAINT task_attempts_task_id_fkey
            FOREIGN KEY (task_id) REFERENCES river_job (id) ON DELETE CASCADE;
    END IF;
END
$$;
-- +goose StatementEnd

DROP TRIGGER IF EXISTS taskd_truncate_attempts ON river_job;

DROP TRIGGER IF EXISTS taskd_delete_attempts ON river_job;

DROP FUNCTION IF EXISTS taskd_truncate_attempts();

DROP FUNCTION IF EXISTS taskd_delete_attempts();
