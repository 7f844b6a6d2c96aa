-- notifyq schema, version 18: the operator console.
--
-- Who acted. task_events.actor names who caused an event: the HTTP API ('api', or the name
-- of the token it was given), the CLI ('cli'), plain SQL ('sql': notifyq.cancel and
-- notifyq.retry called by hand), or NULL for the engine's own events (claims, outcomes,
-- the reaper). It is read from the transaction's setting notifyq.actor, which the console
-- functions below set (set_config(..., true): for their own transaction only), so that the
-- events a trigger writes in the same transaction (a cancelled parent's dependents) name
-- the same actor. The engine never sets it.
--
-- New events: run_now (a pending task whose run_at was in the future made due now, or a
-- schedule's manual run) and priority_changed.
--
-- The console's actions. notifyq.console_act(action, ids, actor, statuses, priority) acts on
-- up to a batch of tasks in one short transaction: it locks them FOR UPDATE SKIP LOCKED, so
-- it never waits behind a claim, an outcome write or another bulk action (a row some other
-- transaction holds is answered 'busy' and left alone; the caller tries it again or counts
-- it skipped), and checks each row's state under its lock, so that
-- - a task is never retried while it runs: retry acts on error and cancelled rows only, by
--   calling notifyq.retry, whose checks (parents, unique_key) it keeps;
-- - a task never ends twice: cancel calls notifyq.cancel on the locked row; a running task
--   is asked to stop (the fenced outcome write of its worker ends it), never ended here;
-- - a row that left the asked statuses since the caller picked it (`statuses`, the filter's
--   status list) is skipped, not acted on.
-- Functions run as the schema's owner (SECURITY DEFINER, fixed search_path) so that an
-- operator role may act without UPDATE on the tables; lock_timeout bounds the one wait left
-- (a retried dependent's parents, FOR SHARE).
--
-- Failure groups. notifyq.error_shape(error) is the first line of an error with its numbers,
-- hex strings, uuids and quoted strings replaced; notifyq.error_fingerprint(kind, error) a
-- stable hash of the kind and that shape: GET /failures groups by it and every filter takes
-- it (fingerprint=).
--
-- Roles: notifyq.grant_operator (`notifyq roles --operator R`): read every table, run the
-- console functions; never change the schema or a row directly. A worker (whose process
-- serves the HTTP side) may run them too. Producers get nothing new.
--
-- Safe on a live database: the new column has no default for existing rows (no rewrite);
-- the default for new rows is set separately; the check is NOT VALID.

ALTER TABLE notifyq.task_events ADD COLUMN actor text;
ALTER TABLE notifyq.task_events
    ALTER COLUMN actor SET DEFAULT nullif(current_setting('notifyq.actor', true), '');
COMMENT ON COLUMN notifyq.task_events.actor IS
    'who caused the event: api (or an API token''s name), cli, sql; NULL: the engine';

ALTER TABLE notifyq.task_events DROP CONSTRAINT task_events_event_valid;
ALTER TABLE notifyq.task_events ADD CONSTRAINT task_events_event_valid CHECK (event IN (
    'queued', 'started', 'done', 'failed', 'retried', 'recovered',
    'released', 'cancelled', 'requeued', 'waiting', 'snoozed', 'expired',
    'run_now', 'priority_changed')) NOT VALID;

DO $$
BEGIN
    IF to_regclass('notifyq.task_events_legacy') IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM pg_inherits
                        WHERE inhrelid = to_regclass('notifyq.task_events_legacy')) THEN
        ALTER TABLE notifyq.task_events_legacy ADD COLUMN actor text;
        ALTER TABLE notifyq.task_events_legacy DROP CONSTRAINT task_events_event_valid;
        ALTER TABLE notifyq.task_events_legacy ADD CONSTRAINT task_events_event_valid
            CHECK (event IN ('queued', 'started', 'done', 'failed', 'retried', 'recovered',
                             'released', 'cancelled', 'requeued', 'waiting', 'snoozed',
                             'expired', 'run_now', 'priority_changed')) NOT VALID;
    END IF;
END
$$;

-- The actor of this transaction's actions: the one set, else 'sql' (a call by hand).
CREATE FUNCTION notifyq.acting(actor text) RETURNS text
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT set_config('notifyq.actor',
                      coalesce(nullif(actor, ''),
                               nullif(current_setting('notifyq.actor', true), ''), 'sql'),
                      true);
$$;

-- cancel and retry as in migration 0014; their events now name the actor ('sql' when called
-- by hand, or the console's when called through notifyq.console_act).
CREATE OR REPLACE FUNCTION notifyq.cancel(task_id bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    t notifyq.tasks%ROWTYPE;
BEGIN
    SELECT * INTO t FROM notifyq.tasks WHERE id = cancel.task_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    PERFORM notifyq.acting(NULL);
    IF t.status IN ('pending', 'waiting') THEN
        UPDATE notifyq.tasks
           SET status = 'cancelled', waiting_on = 0, finished_at = now(), updated_at = now()
         WHERE id = t.id;
        INSERT INTO notifyq.task_events (task_id, event, attempt)
            VALUES (t.id, 'cancelled', t.attempts);
        RETURN 'cancelled';
    ELSIF t.status = 'in_progress' THEN
        UPDATE notifyq.tasks
           SET cancel_requested_at = coalesce(cancel_requested_at, now()), updated_at = now()
         WHERE id = t.id;
        PERFORM pg_notify('notifyq_cancel', t.id::text);
        RETURN 'cancelling';
    END IF;
    RETURN t.status;
END;
$$;

CREATE OR REPLACE FUNCTION notifyq.retry(task_id bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    t notifyq.tasks%ROWTYPE;
    s record;
    next_status text := 'pending';
    open integer := 0;
BEGIN
    SELECT * INTO t FROM notifyq.tasks WHERE id = retry.task_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    ELSIF t.status IN ('error', 'cancelled') THEN
        PERFORM notifyq.acting(NULL);
        IF t.depends_on IS NOT NULL OR t.after_batch IS NOT NULL THEN
            s := notifyq.lock_parents(t.id, t.depends_on, t.after_batch, false);
            IF (s.failed_parent IS NOT NULL OR s.failed_batch IS NOT NULL)
               AND t.on_parent_failure = 'cancel' THEN
                RETURN 'parent_failed';
            END IF;
            open := s.open;
            IF open > 0 THEN
                next_status := 'waiting';
            END IF;
        END IF;
        BEGIN
            UPDATE notifyq.tasks
               SET status = next_status, waiting_on = open, attempts = 0, run_at = now(),
                   result = NULL, cancel_requested_at = NULL, started_at = NULL,
                   finished_at = NULL, updated_at = now()
             WHERE id = t.id;
        EXCEPTION WHEN unique_violation THEN
            RETURN 'duplicate';
        END;
        INSERT INTO notifyq.task_events (task_id, event, attempt)
            VALUES (t.id, 'requeued', 0);
        IF next_status = 'waiting' THEN
            INSERT INTO notifyq.task_events (task_id, event, attempt)
                VALUES (t.id, 'waiting', 0);
            RETURN 'waiting';
        END IF;
        RETURN 'requeued';
    END IF;
    RETURN t.status;
END;
$$;

-- Act on the tasks `ids` (a batch: the caller keeps it to about a thousand): 'cancel',
-- 'retry', 'run_now' (a pending task due later becomes due now) or 'priority' (of a
-- pending or waiting task, to `new_priority`). `statuses` (NULL: any): act only on rows
-- still in one of them. One row per id: changed, and the answer: what cancel or retry
-- answered, 'run_now', 'priority_changed', else why not: the row's status, 'unchanged',
-- 'busy' (another transaction holds the row: left alone) or 'missing'.
CREATE FUNCTION notifyq.console_act(action text, ids bigint[], actor text,
                                    statuses text[] DEFAULT NULL,
                                    new_priority integer DEFAULT NULL)
RETURNS TABLE (id bigint, changed boolean, answer text)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '2s'
AS $$
DECLARE
    t record;
    seen bigint[] := '{}';
    said text;
BEGIN
    IF action IS NULL OR action NOT IN ('cancel', 'retry', 'run_now', 'priority') THEN
        RAISE EXCEPTION 'unknown console action %', action USING ERRCODE = '22023';
    ELSIF action = 'priority' AND new_priority IS NULL THEN
        RAISE EXCEPTION 'the priority action needs a priority' USING ERRCODE = '22023';
    END IF;
    PERFORM notifyq.acting(actor);
    FOR t IN
        SELECT x.id, x.status, x.run_at, x.priority, x.attempts, x.cancel_requested_at
          FROM notifyq.tasks x
         WHERE x.id = ANY(console_act.ids)
         ORDER BY x.id DESC
           FOR UPDATE SKIP LOCKED
    LOOP
        seen := seen || t.id;
        IF statuses IS NOT NULL AND NOT (t.status = ANY(statuses)) THEN
            id := t.id; changed := false; answer := t.status;
        ELSIF action = 'cancel' THEN
            IF t.status = 'in_progress' AND t.cancel_requested_at IS NOT NULL THEN
                id := t.id; changed := false; answer := 'cancelling';  -- asked already
            ELSIF t.status IN ('pending', 'waiting', 'in_progress') THEN
                said := notifyq.cancel(t.id);
                id := t.id; changed := said IN ('cancelled', 'cancelling'); answer := said;
            ELSE
                id := t.id; changed := false; answer := t.status;  -- ended already
            END IF;
        ELSIF action = 'retry' THEN
            said := notifyq.retry(t.id);
            id := t.id; changed := said IN ('requeued', 'waiting'); answer := said;
        ELSIF action = 'run_now' THEN
            IF t.status = 'pending' AND t.run_at > now() THEN
                UPDATE notifyq.tasks x SET run_at = now(), updated_at = now() WHERE x.id = t.id;
                INSERT INTO notifyq.task_events (task_id, event, attempt)
                    VALUES (t.id, 'run_now', t.attempts);
                id := t.id; changed := true; answer := 'run_now';
            ELSE
                id := t.id; changed := false;
                answer := CASE WHEN t.status = 'pending' THEN 'unchanged' ELSE t.status END;
            END IF;
        ELSE  -- priority
            IF t.status IN ('pending', 'waiting') AND t.priority <> new_priority THEN
                UPDATE notifyq.tasks x SET priority = new_priority, updated_at = now()
                 WHERE x.id = t.id;
                INSERT INTO notifyq.task_events (task_id, event, attempt)
                    VALUES (t.id, 'priority_changed', t.attempts);
                id := t.id; changed := true; answer := 'priority_changed';
            ELSE
                id := t.id; changed := false;
                answer := CASE WHEN t.status IN ('pending', 'waiting') THEN 'unchanged'
                               ELSE t.status END;
            END IF;
        END IF;
        RETURN NEXT;
    END LOOP;
    RETURN QUERY
        SELECT u.id, false,
               CASE WHEN EXISTS (SELECT 1 FROM notifyq.tasks x WHERE x.id = u.id)
                    THEN 'busy' ELSE 'missing' END
          FROM unnest(console_act.ids) AS u(id)
         WHERE u.id IS NOT NULL AND NOT (u.id = ANY(seen));
END;
$$;

-- One tick of schedule `schedule_name` now (`notifyq schedule run`, POST
-- /schedules/{name}/run), paused or not: a task like the schedule's, its tick now; the
-- schedule's next_run_at and last_run_at stay as they are. Its history says who asked
-- (run_now). Returns the task's id, NULL when there is no such schedule.
CREATE FUNCTION notifyq.run_schedule(schedule_name text, actor text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    new_id bigint;
BEGIN
    PERFORM notifyq.acting(actor);
    INSERT INTO notifyq.tasks (queue, kind, payload, priority, schedule_name, schedule_tick)
    SELECT s.queue, s.kind, s.payload, s.priority, s.name, now()
      FROM notifyq.schedules s
     WHERE s.name = run_schedule.schedule_name
    RETURNING notifyq.tasks.id INTO new_id;
    IF new_id IS NOT NULL THEN
        INSERT INTO notifyq.task_events (task_id, event, attempt) VALUES (new_id, 'run_now', 0);
    END IF;
    RETURN new_id;
END;
$$;

-- The shape of an error: its first line (at most 300 characters) with uuids, hex strings,
-- numbers and quoted strings replaced, so that "timeout after 31 s on 'a.jpg'" and "timeout
-- after 30 s on 'b.jpg'" are one failure.
CREATE FUNCTION notifyq.error_shape(error text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT regexp_replace(regexp_replace(regexp_replace(regexp_replace(
               left(split_part(coalesce(error, ''), E'\n', 1), 300),
               '''[^'']*''|"[^"]*"', '<str>', 'g'),
               '[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}',
               '<uuid>', 'g'),
               '0[xX][0-9a-fA-F]+|\m[0-9a-fA-F]*[0-9][0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*\M'
               '|\m[0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*[0-9][0-9a-fA-F]*\M',
               '<hex>', 'g'),
               '[0-9]+', '<n>', 'g');
$$;

-- A failure group's id: the first 16 hex digits of md5(kind, error_shape(error)).
CREATE FUNCTION notifyq.error_fingerprint(kind text, error text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT left(md5(coalesce(kind, '') || chr(31) || notifyq.error_shape(error)), 16);
$$;

-- `notifyq roles --operator R`: read every table and view of the schema, run the console's
-- actions and the failure-group functions; no INSERT, UPDATE or DELETE of its own, no DDL.
CREATE FUNCTION notifyq.grant_operator(grantee regrole, apply boolean DEFAULT true)
RETURNS SETOF text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    stmt text;
BEGIN
    FOREACH stmt IN ARRAY ARRAY[
        format('GRANT USAGE ON SCHEMA notifyq TO %s', grantee),
        format('GRANT SELECT ON notifyq.tasks, notifyq.task_events, notifyq.workers, '
               'notifyq.queues, notifyq.schedules, notifyq.batches, notifyq.batch_progress, '
               'notifyq.schema_migrations TO %s', grantee),
        format('GRANT EXECUTE ON FUNCTION notifyq.console_act(text, bigint[], text, text[], '
               'integer), notifyq.run_schedule(text, text), notifyq.error_shape(text), '
               'notifyq.error_fingerprint(text, text) TO %s', grantee)
    ] LOOP
        IF apply THEN
            EXECUTE stmt;
        END IF;
        RETURN NEXT stmt;
    END LOOP;
END;
$$;

-- A worker's functions: 0017's, and the console's (its process serves the HTTP side).
CREATE OR REPLACE FUNCTION notifyq.grant_worker_functions(grantee regrole,
                                                          apply boolean DEFAULT true)
RETURNS SETOF text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    stmt text;
    functions text;
BEGIN
    SELECT string_agg(f.oid::regprocedure::text, ', ' ORDER BY f.n) INTO functions
      FROM unnest(ARRAY[
               'notifyq.claim_limited(text[], integer, text, float8, text[])',
               'notifyq.queue_is_limited(notifyq.queues)',
               'notifyq.go_idle(text, text[])',
               'notifyq.wake_waiters(text[])',
               'notifyq.slots_freed(text[])',
               'notifyq.next_event_id()',
               'notifyq.cancel(bigint)',
               'notifyq.retry(bigint)',
               'notifyq.acting(text)',
               'notifyq.lock_parents(bigint, bigint[], bigint, boolean)',
               'notifyq.fire_schedule(text, timestamptz, timestamptz, timestamptz)',
               'notifyq.ensure_event_partitions(integer)',
               'notifyq.attach_legacy_events()',
               'notifyq.prune_event_partitions(interval)',
               'notifyq.drop_event_partitions(interval)',
               'notifyq.fair_pick(text, integer, timestamptz, text[], integer, text)',
               'notifyq.aged_pick(text, integer, timestamptz, text[], float8)',
               'notifyq.enqueue_unique(text, text, jsonb, text, text, integer, timestamptz, '
               'integer, interval, jsonb, text, timestamptz)',
               'notifyq.console_act(text, bigint[], text, text[], integer)',
               'notifyq.run_schedule(text, text)',
               'notifyq.error_shape(text)',
               'notifyq.error_fingerprint(text, text)'])
           WITH ORDINALITY AS w(signature, n),
           LATERAL (SELECT to_regprocedure(w.signature) AS oid, w.n) AS f
     WHERE f.oid IS NOT NULL;
    FOREACH stmt IN ARRAY ARRAY[
        format('GRANT EXECUTE ON FUNCTION %s TO %s', functions, grantee)
    ] LOOP
        IF apply THEN
            EXECUTE stmt;
        END IF;
        RETURN NEXT stmt;
    END LOOP;
END;
$$;

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA notifyq FROM PUBLIC;

-- Roles that have the worker's grants get this version's functions at once (see 0017).
DO $$
DECLARE
    grantee regrole;
BEGIN
    FOR grantee IN
        SELECT DISTINCT a.grantee::regrole
          FROM pg_class c, aclexplode(c.relacl) a
         WHERE c.oid = 'notifyq.tasks'::regclass AND a.privilege_type = 'UPDATE'
           AND a.grantee NOT IN (0, c.relowner)
    LOOP
        PERFORM notifyq.grant_worker_functions(grantee);
    END LOOP;
END;
$$;
