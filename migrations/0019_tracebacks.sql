-- notifyq schema, version 19: each failed attempt keeps its traceback in the history.
--
-- Until now a failed attempt left only `Type: message` (task_events.error, tasks.error).
-- task_events.traceback holds the Python traceback of the exception a handler raised, in
-- the history row of that attempt's outcome ('retried', 'failed', or 'cancelled' when a
-- cancel was asked meanwhile), written by the same batched `finish` statement as the
-- outcome. It is bounded by the process (16 KiB of UTF-8: the head and the tail, the cut
-- marked in between), so a deep recursion cannot bloat the history. NULL for every other
-- event: a success, a time limit, a cancel, a lease the reaper took back, a row written by
-- a process of an earlier version. Retention drops it with its day's partition.
--
-- ADD COLUMN without a default is a catalog change: no partition is rewritten, and the
-- ACCESS EXCLUSIVE lock it takes on the history is held for milliseconds. The day
-- partitions created later copy the parent's columns (ensure_event_partitions: LIKE), and
-- the default partition and attached days get it from the parent. Privileges: table-wide
-- (the worker role reads and writes the history, a producer has none on it), so the new
-- column needs no grant of its own (tests/acceptance/test_roles.py).

-- The lock of the partition jobs (migration 0007): a job running now (a big legacy
-- table's VALIDATE scan) is waited for first, not deadlocked with.
SELECT pg_advisory_xact_lock(1852798818);

ALTER TABLE notifyq.task_events ADD COLUMN traceback text;

COMMENT ON COLUMN notifyq.task_events.traceback IS
    'the traceback of the exception that failed this attempt (bounded: head and tail)';

-- A history too big for migration 0007 to attach at once waits as task_events_legacy until
-- the service attaches it; ATTACH PARTITION wants the parent's columns, so it gets the
-- column too (an attached one got it from the parent just above).
DO $$
BEGIN
    IF to_regclass('notifyq.task_events_legacy') IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM pg_inherits
                        WHERE inhrelid = to_regclass('notifyq.task_events_legacy')) THEN
        ALTER TABLE notifyq.task_events_legacy ADD COLUMN traceback text;
    END IF;
END
$$;
