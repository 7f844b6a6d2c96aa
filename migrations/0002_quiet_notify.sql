-- notifyq schema, version 2: producers pay for NOTIFY only while some process waits.
--
-- NOTIFY serialises the commits of every notifying transaction in the database, so a
-- trigger that notifies on each INSERT caps the insert rate of the whole database. Here a
-- process that runs out of work records itself in notifyq.waiters; an insert notifies only
-- while such a row exists, and removes the rows it wakes (each waiting process is woken
-- once, then records itself again when it runs out again). The race between "went idle"
-- and "row committed" is closed with advisory lock 1852798817 (0x6E717761, "nqwa"):
--
--   producer (trigger)                    process going idle (notifyq.go_idle)
--   lock_shared(K)  -- held to commit     try_lock(K) exclusive; upsert its waiters row
--   read waiters (fresh snapshot)         commit; then claim once more
--   notify if any
--
-- If go_idle got the lock, every producer that took the shared lock before it had
-- committed (so the claim after go_idle sees its rows), and every later one reads the
-- waiters row (so it notifies). If go_idle did not get the lock (a producer was between
-- its trigger and its commit), the process claims again after a short pause and retries;
-- see docs/performance.md. Producers in REPEATABLE READ or SERIALIZABLE transactions read
-- an older snapshot, so for them the trigger always notifies.
--
-- History: the 'queued' event is no longer written per row (one extra heap and two index
-- inserts on every producer's INSERT); task_history derives it from tasks.created_at.

CREATE TABLE notifyq.waiters (
    worker_id text        PRIMARY KEY,
    queues    text[]      NOT NULL,
    since     timestamptz NOT NULL DEFAULT now()
);

-- Called by the triggers with the queues that got claimable rows: notify the processes
-- waiting for them (if any) and forget that they wait.
CREATE FUNCTION notifyq.wake_waiters(woken_queues text[]) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF woken_queues IS NULL OR cardinality(woken_queues) = 0 THEN
        RETURN;
    END IF;
    -- Held until this transaction ends; go_idle's exclusive try-lock fails meanwhile.
    PERFORM pg_advisory_xact_lock_shared(1852798817);
    IF current_setting('transaction_isolation') = 'read committed' THEN
        -- Read committed: this statement takes a fresh snapshot, after the lock.
        IF NOT EXISTS (SELECT 1 FROM notifyq.waiters w WHERE w.queues && woken_queues) THEN
            RETURN;
        END IF;
        -- Each waiting process is woken once. A row locked by a concurrent producer is
        -- skipped (that producer removes it), but this one notifies all the same: the
        -- other may still roll back.
        DELETE FROM notifyq.waiters w
         USING (SELECT worker_id FROM notifyq.waiters
                 WHERE queues && woken_queues
                   FOR UPDATE SKIP LOCKED) AS s
         WHERE w.worker_id = s.worker_id;
    END IF;
    PERFORM pg_notify('notifyq', q) FROM unnest(woken_queues) AS q;
END;
$$;

-- A process ran out of work: record it as waiting for `queues`. Returns whether it got the
-- exclusive lock, i.e. whether no producer was between its trigger and its commit; the
-- caller claims once more after this commits, and retries later when it returns false.
-- Nothing here needs to survive a server crash (a restarted process registers again), so
-- the commit does not wait for the WAL flush.
CREATE FUNCTION notifyq.go_idle(worker_id text, queues text[]) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    locked boolean;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    locked := pg_try_advisory_xact_lock(1852798817);
    INSERT INTO notifyq.waiters AS w (worker_id, queues)
    VALUES (go_idle.worker_id, go_idle.queues)
    ON CONFLICT ON CONSTRAINT waiters_pkey
        DO UPDATE SET queues = excluded.queues, since = now();
    RETURN locked;
END;
$$;

-- The producers' path. While nobody waits (workers busy) it costs a shared advisory lock
-- and one probe of an empty table; the rest runs only while some process waits.
CREATE OR REPLACE FUNCTION notifyq.tasks_after_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(1852798817);  -- as in wake_waiters (re-entrant)
    IF current_setting('transaction_isolation') = 'read committed'
       AND NOT EXISTS (SELECT 1 FROM notifyq.waiters) THEN
        RETURN NULL;
    END IF;
    PERFORM notifyq.wake_waiters(
        ARRAY(SELECT DISTINCT queue FROM new_rows WHERE status = 'pending'));
    RETURN NULL;
END;
$$;

-- Updates: row-level triggers whose WHEN conditions are checked in C, so that the
-- statements notifyq runs most (claims, heartbeats) run no trigger function at all. (The
-- statement-level trigger joined its transition tables on every claim and heartbeat; with
-- no statistics on them the join could go quadratic: a 13,680-lease heartbeat took 15 s.)
DROP TRIGGER tasks_after_update ON notifyq.tasks;
DROP FUNCTION notifyq.tasks_after_update();

-- Rows that became claimable, or whose due time moved: wake the processes waiting for the
-- queue. The first row of a statement removes the waiters it wakes, so the rest of a bulk
-- release find nobody waiting and send nothing.
CREATE FUNCTION notifyq.task_became_claimable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM notifyq.wake_waiters(ARRAY[NEW.queue]);
    RETURN NULL;
END;
$$;

CREATE TRIGGER tasks_became_claimable
    AFTER UPDATE ON notifyq.tasks
    FOR EACH ROW
    WHEN (NEW.status = 'pending'
          AND (OLD.status <> 'pending' OR OLD.run_at <> NEW.run_at OR OLD.queue <> NEW.queue))
    EXECUTE FUNCTION notifyq.task_became_claimable();

-- Rows that ended: tell anyone waiting for an outcome.
CREATE FUNCTION notifyq.task_ended() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('notifyq_done', json_build_object(
        'id', NEW.id, 'status', NEW.status, 'queue', NEW.queue, 'kind', NEW.kind)::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER tasks_ended
    AFTER UPDATE ON notifyq.tasks
    FOR EACH ROW
    WHEN (NEW.status IN ('done', 'error', 'cancelled') AND OLD.status <> NEW.status)
    EXECUTE FUNCTION notifyq.task_ended();

-- 'queued' is now derived from tasks.created_at (see task_history).
DELETE FROM notifyq.task_events WHERE event = 'queued';
