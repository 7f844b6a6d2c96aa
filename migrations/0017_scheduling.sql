-- notifyq schema, version 17: snooze and start deadlines.
--
-- Snooze. A handler that returns or raises notifyq.Snooze(delay) puts its task back to
-- pending at now + delay without spending an attempt (the outcome statements' `snoozed`
-- verdict). tasks.snoozes counts a task's snoozes; tasks.max_snoozes (per task, default
-- 100) bounds them: a snooze beyond it ends the task error, "snoozed N times, the task's
-- limit (max_snoozes)", so a task cannot snooze forever.
--
-- Start deadlines. tasks.expires_at (NULL: none): a task not started by then never starts.
-- The claims skip a pending row past it; the maintenance sweep (`expire_tasks`) ends such
-- rows, pending or waiting, as cancelled with error 'expired: not started by <time>' and the
-- history event `expired`. A running task is not affected. tasks_expiry_idx holds only the
-- live rows with a deadline, so the sweep costs nothing on queues that use none.
--
-- Safe on a live database: the new columns have constant defaults (no rewrite), the new
-- checks are NOT VALID (old rows hold the defaults, which pass), and the claim of a row
-- without a deadline reads one more column of the row it already fetches.

ALTER TABLE notifyq.tasks
    ADD COLUMN snoozes     integer NOT NULL DEFAULT 0,
    ADD COLUMN max_snoozes integer NOT NULL DEFAULT 100,
    ADD COLUMN expires_at  timestamptz;
ALTER TABLE notifyq.tasks ADD CONSTRAINT tasks_snoozes_valid
    CHECK (snoozes >= 0 AND max_snoozes BETWEEN 0 AND 1000000) NOT VALID;
ALTER TABLE notifyq.tasks ADD CONSTRAINT tasks_expires_at_in_range
    CHECK (expires_at IS NULL OR isfinite(expires_at)) NOT VALID;

COMMENT ON COLUMN notifyq.tasks.snoozes IS
    'how many times a handler snoozed the task (notifyq.Snooze); attempts do not count them';
COMMENT ON COLUMN notifyq.tasks.max_snoozes IS
    'snoozes allowed; one more ends the task error';
COMMENT ON COLUMN notifyq.tasks.expires_at IS
    'start deadline: never started after it; the sweep ends it cancelled (event expired)';

CREATE INDEX tasks_expiry_idx ON notifyq.tasks (expires_at)
    WHERE expires_at IS NOT NULL AND status IN ('pending', 'waiting');

ALTER TABLE notifyq.task_events DROP CONSTRAINT task_events_event_valid;
ALTER TABLE notifyq.task_events ADD CONSTRAINT task_events_event_valid CHECK (event IN (
    'queued', 'started', 'done', 'failed', 'retried', 'recovered',
    'released', 'cancelled', 'requeued', 'waiting', 'snoozed', 'expired')) NOT VALID;

DO $$
BEGIN
    IF to_regclass('notifyq.task_events_legacy') IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM pg_inherits
                        WHERE inhrelid = to_regclass('notifyq.task_events_legacy')) THEN
        ALTER TABLE notifyq.task_events_legacy DROP CONSTRAINT task_events_event_valid;
        ALTER TABLE notifyq.task_events_legacy ADD CONSTRAINT task_events_event_valid
            CHECK (event IN ('queued', 'started', 'done', 'failed', 'retried', 'recovered',
                             'released', 'cancelled', 'requeued', 'waiting', 'snoozed',
                             'expired')) NOT VALID;
    END IF;
END
$$;
