-- notifyq schema, version 5: unique tasks and periodic schedules.
--
-- Unique tasks. A task may carry a unique_key: while a task of the same queue and key is
-- live (pending or in_progress), another one is not added. A partial unique index holds the
-- rule, so it needs no lock of notifyq's own, holds for every client, and plain SQL skips a
-- duplicate with
--
--     INSERT INTO notifyq.tasks (kind, unique_key) VALUES ('report', 'report:42')
--     ON CONFLICT DO NOTHING;
--
-- (or ON CONFLICT (queue, unique_key) WHERE status IN ('pending', 'in_progress') AND
-- unique_key IS NOT NULL DO NOTHING, which needs SELECT on those columns: not for the
-- producer role), also row by row inside a multi-row insert. Concurrent
-- inserts of one key wait for each other inside the index and end with one row and no error.
-- A task that ends leaves the index (it is partial), so its key is free again at once.
--
-- Not offered: "unique for a while after it ends". A partial index cannot name the clock
-- (its predicate must be immutable), and a side table of recently ended keys checked by a
-- trigger races with the transaction that ends the task (the inserter's snapshot does not
-- see the end yet while the index already lets it through). An exclusion constraint over a
-- time range would be race-free, but needs the btree_gist extension, a GiST index over
-- every keyed task until it is pruned, a write of the range on every task end, and it
-- cannot be named by ON CONFLICT (...). For "at most one per period", put the period in the
-- key (unique_key = 'digest:2026-11-30T14'): race-free with the index alone.
ALTER TABLE notifyq.tasks
    ADD COLUMN unique_key text,
    -- Which schedule and tick created the task (NULL for every other task); task_history
    -- shows them on the task's 'queued' line.
    ADD COLUMN schedule_name text,
    ADD COLUMN schedule_tick timestamptz,
    ADD CONSTRAINT tasks_unique_key_valid
        CHECK (unique_key IS NULL OR (unique_key <> '' AND length(unique_key) <= 512));

CREATE UNIQUE INDEX tasks_unique_live_idx ON notifyq.tasks (queue, unique_key)
    WHERE status IN ('pending', 'in_progress') AND unique_key IS NOT NULL;

-- Retry (error/cancelled -> pending) is the one notifyq transition that can make an ended
-- keyed task live again; while another live task holds its key it is refused ('duplicate')
-- instead of raising unique_violation at the caller.
CREATE OR REPLACE FUNCTION notifyq.retry(task_id bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    t notifyq.tasks%ROWTYPE;
BEGIN
    SELECT * INTO t FROM notifyq.tasks WHERE id = retry.task_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    ELSIF t.status IN ('error', 'cancelled') THEN
        BEGIN
            UPDATE notifyq.tasks
               SET status = 'pending', attempts = 0, run_at = now(), result = NULL,
                   cancel_requested_at = NULL, started_at = NULL, finished_at = NULL,
                   updated_at = now()
             WHERE id = t.id;
        EXCEPTION WHEN unique_violation THEN
            RETURN 'duplicate';
        END;
        INSERT INTO notifyq.task_events (task_id, event, attempt)
            VALUES (t.id, 'requeued', 0);
        RETURN 'requeued';
    END IF;
    RETURN t.status;
END;
$$;

-- Periodic schedules. Each row enqueues a task of `kind` at every tick of `cron` (in time
-- zone `tz`) or of `every` (multiples of the interval counted from the Unix epoch). No
-- process leads: every notifyq process computes the next tick (in Python, with a cron
-- library) and fires a due one with notifyq.fire_schedule, a compare-and-set on
-- next_run_at, so that each tick is enqueued once however many processes race for it.
CREATE TABLE notifyq.schedules (
    name           text        PRIMARY KEY,
    cron           text,
    every          interval,
    kind           text        NOT NULL,
    payload        jsonb       NOT NULL DEFAULT '{}',
    queue          text        NOT NULL DEFAULT 'default',
    priority       integer     NOT NULL DEFAULT 0,
    tz             text        NOT NULL DEFAULT 'UTC',
    -- After downtime: 'coalesce' enqueues one task for all the missed ticks; 'all' enqueues
    -- one per missed tick, the latest catch_up_limit of them.
    catch_up       text        NOT NULL DEFAULT 'coalesce',
    catch_up_limit integer     NOT NULL DEFAULT 100,
    paused         boolean     NOT NULL DEFAULT false,
    -- The tick to fire next; NULL until a process computed it (a row added from SQL).
    next_run_at    timestamptz,
    -- The tick fired last.
    last_run_at    timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT schedules_name_valid CHECK (name <> '' AND length(name) <= 128),
    CONSTRAINT schedules_timing_valid CHECK ((cron IS NULL) <> (every IS NULL)),
    CONSTRAINT schedules_every_valid
        CHECK (every IS NULL OR (every >= interval '1 second'
                                 AND every = date_trunc('second', every))),
    CONSTRAINT schedules_kind_valid CHECK (kind <> '' AND length(kind) <= 128),
    CONSTRAINT schedules_queue_valid CHECK (queue <> '' AND length(queue) <= 128),
    CONSTRAINT schedules_catch_up_valid CHECK (catch_up IN ('coalesce', 'all')),
    CONSTRAINT schedules_catch_up_limit_valid CHECK (catch_up_limit BETWEEN 1 AND 10000)
);

COMMENT ON TABLE notifyq.schedules IS
    'notifyq periodic schedules: one task per tick of cron or every; see the README';

-- Fire the tick `tick` of schedule `schedule_name`, whose stored next_run_at the caller
-- read as `due`, and move next_run_at to `next_run`; in one statement, so that of many
-- processes racing for one tick exactly one advances the row (the others' UPDATE waits for
-- the row lock, then finds next_run_at moved and changes nothing) and only that one
-- inserts the task. The task's unique_key 'schedule:<name>:<tick in UTC>' also stops a
-- second task for a tick whose first is still live. Returns whether this call advanced the
-- schedule and the new task's id (NULL: not fired, or the tick's task already live).
CREATE FUNCTION notifyq.fire_schedule(
    schedule_name text, due timestamptz, tick timestamptz, next_run timestamptz)
RETURNS TABLE (fired boolean, task_id bigint)
LANGUAGE sql VOLATILE AS $$
    WITH advanced AS (
        UPDATE notifyq.schedules s
           SET next_run_at = fire_schedule.next_run, last_run_at = fire_schedule.tick,
               updated_at = now()
         WHERE s.name = fire_schedule.schedule_name
           AND s.next_run_at = fire_schedule.due
           AND NOT s.paused
        RETURNING s.name, s.kind, s.payload, s.queue, s.priority
    ), added AS (
        INSERT INTO notifyq.tasks (queue, kind, payload, priority, unique_key,
                                   schedule_name, schedule_tick)
        SELECT a.queue, a.kind, a.payload, a.priority,
               format('schedule:%s:%s', a.name,
                      to_char(fire_schedule.tick AT TIME ZONE 'UTC',
                              'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
               a.name, fire_schedule.tick
          FROM advanced a
        ON CONFLICT DO NOTHING
        RETURNING id
    )
    SELECT EXISTS (SELECT 1 FROM advanced), (SELECT id FROM added);
$$;

-- Processes sleep until the next due tick; a change of the schedules wakes them
-- (channel notifyq_schedules, payload the schedule's name or '' for a bulk change). A
-- firing (it moves last_run_at) does not notify: the processes that lost the race find the
-- row moved when they try it and read it again.
CREATE FUNCTION notifyq.schedules_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_LEVEL = 'ROW' THEN
        PERFORM pg_notify('notifyq_schedules', NEW.name);
    ELSE
        PERFORM pg_notify('notifyq_schedules', '');
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER schedules_added_or_removed
    AFTER INSERT OR DELETE OR TRUNCATE ON notifyq.schedules
    FOR EACH STATEMENT EXECUTE FUNCTION notifyq.schedules_changed();

CREATE TRIGGER schedules_changed
    AFTER UPDATE ON notifyq.schedules
    FOR EACH ROW
    WHEN (OLD.last_run_at IS NOT DISTINCT FROM NEW.last_run_at
          AND OLD.* IS DISTINCT FROM NEW.*)
    EXECUTE FUNCTION notifyq.schedules_changed();

-- Roles (migration 0003): a producer may set a task's unique_key; a worker manages
-- schedules. Functions of their own, which `notifyq roles` runs after grant_producer and
-- grant_worker, so that a later migration that replaces those two keeps these grants.
CREATE FUNCTION notifyq.grant_producer_unique(grantee regrole, apply boolean DEFAULT true)
RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    stmt text;
BEGIN
    FOREACH stmt IN ARRAY ARRAY[
        format('GRANT INSERT (unique_key) ON notifyq.tasks TO %s', grantee)
    ] LOOP
        IF apply THEN
            EXECUTE stmt;
        END IF;
        RETURN NEXT stmt;
    END LOOP;
END;
$$;

CREATE FUNCTION notifyq.grant_worker_schedules(grantee regrole, apply boolean DEFAULT true)
RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    stmt text;
BEGIN
    FOREACH stmt IN ARRAY ARRAY[
        format('GRANT SELECT, INSERT, UPDATE, DELETE ON notifyq.schedules TO %s', grantee)
    ] LOOP
        IF apply THEN
            EXECUTE stmt;
        END IF;
        RETURN NEXT stmt;
    END LOOP;
END;
$$;

REVOKE EXECUTE ON FUNCTION notifyq.grant_producer_unique(regrole, boolean) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION notifyq.grant_worker_schedules(regrole, boolean) FROM PUBLIC;
