-- notifyq schema, version 10: an attempt's 'started' event is derived, not stored.
--
-- Every attempt wrote two history rows: 'started' when it was claimed and its outcome when
-- it ended. The claim now writes none: an outcome row (done, failed, retried, released,
-- cancelled, recovered) carries its attempt's start in `started_at`, and the attempt that
-- runs now has it on the task row (tasks.started_at), as 'queued' already comes from
-- tasks.created_at. `task_history` lists both as 'started' events, as before. Half the
-- history rows per task; and a claim inserts nothing but its rows' new versions, which
-- takes an insert into the partitioned history out of every task's pickup.
--
-- Except in notifyq.claim_limited, the claim of queues with limits: it is a function in
-- the database, which processes of the previous version call too. Replaced here, it would
-- stop storing 'started' for their claims while their outcome rows carry no start, and
-- those attempts would have no start in the history. It keeps its insert until a later
-- migration, once no process older than this one can run.
--
-- Rows written before this migration keep their stored 'started' events (their outcome
-- rows have started_at NULL, so nothing is derived twice). A process of the previous
-- version still running during the upgrade keeps storing 'started' rows; the history read
-- derives a start only for an attempt that has none stored. One gap remains while both
-- versions run: an attempt of a new process that an old process's reaper recovers gets a
-- 'recovered' row without a start, and its history shows no 'started' for that attempt.
--
-- ADD COLUMN without a default is a catalog change: no partition is rewritten, and the
-- ACCESS EXCLUSIVE lock it takes on the history is held for milliseconds.

-- The lock of the partition jobs (migration 0007): a job running now (a big legacy
-- table's VALIDATE scan) is waited for first, not deadlocked with.
SELECT pg_advisory_xact_lock(1852798818);

ALTER TABLE notifyq.task_events ADD COLUMN started_at timestamptz;

-- A history too big for migration 0007 to attach at once waits as task_events_legacy until
-- the service attaches it; ATTACH PARTITION wants the parent's columns, so it gets the
-- column too (an attached one got it from the parent just above).
DO $$
BEGIN
    IF to_regclass('notifyq.task_events_legacy') IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM pg_inherits
                        WHERE inhrelid = to_regclass('notifyq.task_events_legacy')) THEN
        ALTER TABLE notifyq.task_events_legacy ADD COLUMN started_at timestamptz;
    END IF;
END
$$;
