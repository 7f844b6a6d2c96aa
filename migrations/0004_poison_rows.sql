-- notifyq schema, version 4: no row a producer can write takes the workers down, and no
-- producer's open transaction stalls a process going idle.
--
-- 1. Values the claim cannot compute with or the driver cannot decode are refused at
--    insert by constraints with clear names. Rows already in the table that break them are
--    ended 'error' first, saying why, so that the constraints validate.
--    - attempts near the int limit: the claim's `attempts + 1` overflowed and failed the
--      whole batch;
--    - run_at and created_at outside the years 1..9999 (say '4000-01-01 BC'): the driver
--      cannot decode them. 'infinity' ("parked forever") and '-infinity' stay allowed: the
--      statements treat them explicitly (see queries.sql).
-- 2. go_idle no longer waits for a producer's row lock. A producer whose trigger removed a
--    process's waiters row holds that row locked until it commits; the upsert here waited
--    for it with no limit, so one open producer transaction stopped the process from
--    claiming anyone's committed rows. Now the wait is bounded (lock_timeout) and go_idle
--    answers false, as when a producer holds the advisory lock: the process claims again
--    after a short pause and retries.

UPDATE notifyq.tasks
   SET status = 'error',
       error = 'refused by migration 0004: attempts out of range (0..1000000)',
       attempts = 1000000, locked_by = NULL, locked_until = NULL,
       finished_at = coalesce(finished_at, now()), updated_at = now()
 WHERE attempts > 1000000;

UPDATE notifyq.tasks
   SET status = CASE WHEN status IN ('pending', 'in_progress') THEN 'error' ELSE status END,
       error = CASE WHEN status IN ('pending', 'in_progress')
                    THEN 'refused by migration 0004: run_at or created_at outside the years 1..9999'
                    ELSE error END,
       run_at = CASE WHEN isfinite(run_at) AND (run_at < '0001-01-01 00:00:00+00'
                                                 OR run_at >= '10000-01-01 00:00:00+00')
                     THEN now() ELSE run_at END,
       created_at = CASE WHEN created_at < '0001-01-01 00:00:00+00'
                              OR created_at >= '10000-01-01 00:00:00+00'
                         THEN now() ELSE created_at END,
       locked_by = CASE WHEN status = 'in_progress' THEN NULL ELSE locked_by END,
       locked_until = CASE WHEN status = 'in_progress' THEN NULL ELSE locked_until END,
       finished_at = CASE WHEN status IN ('pending', 'in_progress') THEN now() ELSE finished_at END,
       updated_at = now()
 WHERE (isfinite(run_at) AND (run_at < '0001-01-01 00:00:00+00'
                              OR run_at >= '10000-01-01 00:00:00+00'))
    OR created_at < '0001-01-01 00:00:00+00' OR created_at >= '10000-01-01 00:00:00+00'
    OR NOT isfinite(created_at);

-- NOT VALID, then VALIDATE: adding takes a brief exclusive lock; validating scans the table
-- under a lock that lets inserts and updates go on.
ALTER TABLE notifyq.tasks
    ADD CONSTRAINT tasks_attempts_in_range CHECK (attempts <= 1000000) NOT VALID,
    ADD CONSTRAINT tasks_run_at_in_range CHECK (
        NOT isfinite(run_at)
        OR (run_at >= '0001-01-01 00:00:00+00' AND run_at < '10000-01-01 00:00:00+00')) NOT VALID,
    ADD CONSTRAINT tasks_created_at_in_range CHECK (
        created_at >= '0001-01-01 00:00:00+00' AND created_at < '10000-01-01 00:00:00+00') NOT VALID;
ALTER TABLE notifyq.tasks VALIDATE CONSTRAINT tasks_attempts_in_range;
ALTER TABLE notifyq.tasks VALIDATE CONSTRAINT tasks_run_at_in_range;
ALTER TABLE notifyq.tasks VALIDATE CONSTRAINT tasks_created_at_in_range;

CREATE OR REPLACE FUNCTION notifyq.go_idle(worker_id text, queues text[]) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    locked boolean;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    locked := pg_try_advisory_xact_lock(1852798817);
    -- A producer that removed our row holds it locked until it commits: do not wait.
    PERFORM set_config('lock_timeout', '20ms', true);
    BEGIN
        INSERT INTO notifyq.waiters AS w (worker_id, queues)
        VALUES (go_idle.worker_id, go_idle.queues)
        ON CONFLICT ON CONSTRAINT waiters_pkey
            DO UPDATE SET queues = excluded.queues, since = now();
    EXCEPTION WHEN lock_not_available THEN
        RETURN false;  -- that producer notifies when it commits; claim again meanwhile
    END;
    RETURN locked;
END;
$$;
