-- The attempt outcome 'completed_unsaved': the attempt's work completed and
-- its row was written, but its process died before River saved the task's
-- completion (and result), so the rescue made the task available and it ran
-- again. The rescue (ProcessRescueLost in internal/store/queries/processes.sql)
-- turns the attempt's 'completed' row into this instead of adding a 'lost'
-- row for the same attempt, so that every attempt has one row and
-- duplicate executions can be counted:
-- SELECT count(*) FROM task_attempts WHERE outcome = 'completed_unsaved'.
--
-- The constraint is replaced NOT VALID (a brief lock, no scan) and then
-- validated in a statement of its own, which scans the table without
-- blocking the attempt writes of running processes: workers wait for their
-- attempt rows, so a table lock held for a whole scan would stall them. Each
-- statement commits on its own; run again after a failure, both are
-- harmless.

-- +goose NO TRANSACTION
-- +goose Up

ALTER TABLE task_attempts
    DROP CONSTRAINT task_attempts_outcome_check,
    ADD CONSTRAINT task_attempts_outcome_check CHECK (outcome IN (
        'completed', 'completed_unsaved', 'failed', 'timeout', 'panic', 'cancelled', 'snoozed', 'interrupted', 'lost'
    )) NOT VALID;

ALTER TABLE task_attempts VALIDATE CONSTRAINT task_attempts_outcome_check;

-- +goose Down

-- Before this outcome existed, the rescue recorded such an attempt as 'lost'
-- (next to its 'completed' row). The rows keep their error text, which says
-- that the work had completed.
UPDATE task_attempts SET outcome = 'lost' WHERE outcome = 'completed_unsaved';

ALTER TABLE task_attempts
    DROP CONSTRAINT task_attempts_outcome_check,
    ADD CONSTRAINT task_attempts_outcome_check CHECK (outcome IN (
        'completed', 'failed', 'timeout', 'panic', 'cancelled', 'snoozed', 'interrupted', 'lost'
    )) NOT VALID;

ALTER TABLE task_attempts VALIDATE CONSTRAINT task_attempts_outcome_check;
