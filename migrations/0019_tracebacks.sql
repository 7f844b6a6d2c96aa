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

-- The operator console's filters (GET /tasks, /tasks/count, bulk actions; notifyq tasks)
-- on a big table: only the indexes `notifyq bench console` showed a need for at 10 million
-- ended and 100,000 pending tasks (docs/performance.md, "The operator console"). The
-- newest rows of a busy table are its pending ones, so a filter on ended tasks that walks
-- the primary key newest first reads past all of them before its first match:
--
-- - tasks_kind_id_idx: a kind, newest first, and its count (a rare kind's page: 1,958 ms
--   to 1.4 ms; its count: 3,930 ms to 0.6 ms);
-- - tasks_status_id_idx: a status, and its capped count (an index-only scan);
-- - tasks_ended_id_idx: ended tasks newest first (finished_after: 490 ms to 0.8 ms), the
--   pending rows left out.
--
-- Each costs every insert and every status change one more index entry (measured there).
-- CREATE INDEX blocks writes to notifyq.tasks while it builds (about 30 s per index per 10
-- million rows on a small machine): on a big table create them beforehand, without
-- blocking, under these names (`CREATE INDEX CONCURRENTLY tasks_kind_id_idx ON
-- notifyq.tasks (kind, id)`, ...), and this migration finds them and goes on.
CREATE INDEX IF NOT EXISTS tasks_kind_id_idx ON notifyq.tasks (kind, id);
CREATE INDEX IF NOT EXISTS tasks_status_id_idx ON notifyq.tasks (status, id);
CREATE INDEX IF NOT EXISTS tasks_ended_id_idx ON notifyq.tasks (id) WHERE finished_at IS NOT NULL;
