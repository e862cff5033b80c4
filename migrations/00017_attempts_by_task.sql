-- task_attempts is keyed by (task_id, id) and has no foreign key to
-- river_job any more; a trigger on river_job deletes a task's attempts
-- with it, as the foreign key's ON DELETE CASCADE did.
--
-- Why: every finished attempt writes one row, and writing it was the
-- largest cost taskd added per task (0.79× end to end with it against
-- without it, docs/PERFORMANCE.md, "Round 2 results"). Its
-- foreign key checked each row with SELECT … FOR KEY SHARE on the job's
-- row, which writes a lock into that row right before River's completion
-- rewrites it; and the row had two indexes, the primary key (id) and
-- (task_id, id), where every query finds attempts by task. Both changes
-- together measured 1.10× and 1.08× end to end (scenario 1, two runs of 5
-- alternating pairs).
--
-- What keeps attempts of deleted tasks out without the foreign key: an
-- attempt is written while its process still runs its task, and River
-- deletes no running job (JobDelete refuses it, the cleaner takes
-- finalized jobs only); the writes for which that may not hold (a retried
-- write, an attempt the watchdog cancelled, any write while the heartbeat
-- is too old) insert only attempts of tasks that exist, locking their
-- job rows as the foreign key's check did (AttemptInsertChecked in
-- internal/store/queries/tasks.sql).
--
-- The trigger deletes the attempts of a DELETE's jobs in one statement (a
-- statement trigger with a transition table), so River's cleaner, which
-- deletes up to 10,000 jobs at once, pays one statement per batch rather
-- than one per job; = ANY (ARRAY(…)) keeps that statement on the primary
-- key, as the cascade's per-row deletes were. It names task_attempts in
-- river_job's own schema, whatever the deleting session's search_path.
-- TRUNCATE river_job (possible only with CASCADE, because of the other
-- tables that reference it) empties task_attempts too.
--
-- Statement by statement, outside a transaction: the key's index is built
-- CONCURRENTLY, so that migrating a busy table does not block the writes of
-- attempts. The steps that lock tables (the foreign key's drop locks
-- river_job too, briefly) give up after 2 s instead of queueing every
-- statement on the tables behind a long reader: attempt writes give up
-- after 5 s (attemptWriteFor), so a longer wait could cost attempt rows.
-- The migration then fails and can be run again. Running it again after
-- any failure is harmless: each step checks whether it was done or is
-- harmless to repeat, and an invalid index left by a failed CONCURRENTLY
-- build is dropped before it is built again. (A run again after the
-- primary key was swapped builds the new key's index once more and swaps
-- again: correct, but a full index build.)

-- +goose NO TRANSACTION
-- +goose Up

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION taskd_delete_attempts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DELETE FROM %I.task_attempts WHERE task_id = ANY (ARRAY(SELECT id FROM deleted_jobs))', TG_TABLE_SCHEMA);
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

-- The triggers are in place before the foreign key goes, so no delete in
-- between leaves attempts behind.
-- +goose StatementBegin
DO $$
BEGIN
    SET LOCAL lock_timeout = '2s';
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'river_job'::regclass AND tgname = 'taskd_delete_attempts') THEN
        CREATE TRIGGER taskd_delete_attempts AFTER DELETE ON river_job
            REFERENCING OLD TABLE AS deleted_jobs
            FOR EACH STATEMENT EXECUTE FUNCTION taskd_delete_attempts();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'river_job'::regclass AND tgname = 'taskd_truncate_attempts') THEN
        CREATE TRIGGER taskd_truncate_attempts AFTER TRUNCATE ON river_job
            FOR EACH STATEMENT EXECUTE FUNCTION taskd_truncate_attempts();
    END IF;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
DO $$
BEGIN
    SET LOCAL lock_timeout = '2s';
    ALTER TABLE task_attempts DROP CONSTRAINT IF EXISTS task_attempts_task_id_fkey;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
DO $$
BEGIN
    SET LOCAL lock_timeout = '2s';
    IF EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = to_regclass('task_attempts_task_id_id_key') AND NOT indisvalid) THEN
        DROP INDEX task_attempts_task_id_id_key;
    END IF;
END
$$;
-- +goose StatementEnd

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS task_attempts_task_id_id_key ON task_attempts (task_id, id);

-- The new index becomes the primary key (and is renamed task_attempts_pkey);
-- the old primary key's index on id goes with its constraint.
-- +goose StatementBegin
DO $$
BEGIN
    SET LOCAL lock_timeout = '2s';
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

-- +goose StatementBegin
DO $$
BEGIN
    SET LOCAL lock_timeout = '2s';
    IF EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = to_regclass('task_attempts_task_id_idx') AND NOT indisvalid) THEN
        DROP INDEX task_attempts_task_id_idx;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = to_regclass('task_attempts_id_key') AND NOT indisvalid) THEN
        DROP INDEX task_attempts_id_key;
    END IF;
END
$$;
-- +goose StatementEnd

CREATE INDEX CONCURRENTLY IF NOT EXISTS task_attempts_task_id_idx ON task_attempts (task_id, id);

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS task_attempts_id_key ON task_attempts (id);

-- +goose StatementBegin
DO $$
BEGIN
    SET LOCAL lock_timeout = '2s';
    IF to_regclass('task_attempts_id_key') IS NOT NULL THEN
        ALTER TABLE task_attempts
            DROP CONSTRAINT task_attempts_pkey,
            ADD CONSTRAINT task_attempts_pkey PRIMARY KEY USING INDEX task_attempts_id_key;
    END IF;
END
$$;
-- +goose StatementEnd

-- The foreign key comes back NOT VALID (new rows are checked from then
-- on), attempts whose task is gone are deleted, and then the old rows are
-- validated without blocking writes, as in 00010.
-- +goose StatementBegin
DO $$
BEGIN
    SET LOCAL lock_timeout = '2s';
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'task_attempts_task_id_fkey' AND conrelid = 'task_attempts'::regclass) THEN
        ALTER TABLE task_attempts ADD CONSTRAINT task_attempts_task_id_fkey
            FOREIGN KEY (task_id) REFERENCES river_job (id) ON DELETE CASCADE NOT VALID;
    END IF;
END
$$;
-- +goose StatementEnd

DELETE FROM task_attempts a WHERE NOT EXISTS (SELECT 1 FROM river_job j WHERE j.id = a.task_id);

ALTER TABLE task_attempts VALIDATE CONSTRAINT task_attempts_task_id_fkey;

-- +goose StatementBegin
DO $$
BEGIN
    SET LOCAL lock_timeout = '2s';
    DROP TRIGGER IF EXISTS taskd_truncate_attempts ON river_job;
    DROP TRIGGER IF EXISTS taskd_delete_attempts ON river_job;
END
$$;
-- +goose StatementEnd

DROP FUNCTION IF EXISTS taskd_truncate_attempts();

DROP FUNCTION IF EXISTS taskd_delete_attempts();
