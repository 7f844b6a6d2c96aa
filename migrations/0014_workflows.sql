-- notifyq schema, version 14: workflows in SQL. A task may wait for other tasks (its
-- parents, tasks.depends_on) and for a batch of tasks (tasks.after_batch); it is `waiting`
-- until they all ended, then `pending` in the transaction that ends the last of them.
--
-- Dependencies. tasks.depends_on holds the parents' ids: only existing, earlier tasks (id
-- below the new task's: no cycle can be built). The insert of a dependent (a BEFORE INSERT
-- row trigger, run only for rows with parents: its WHEN is checked in C) locks its parents
-- FOR SHARE in id order, counts those not ended yet into tasks.waiting_on and sets their
-- has_dependents. A parent's end (an AFTER UPDATE row trigger whose WHEN asks for
-- has_dependents, so a task nobody depends on runs no function and no lookup) finds its
-- waiting dependents over a GIN index that holds waiting rows only, and takes one off each
-- one's counter; at zero the dependent is pending. Invariant, for every waiting task:
-- waiting_on = the parents not ended + 1 while its batch is not complete. A retry of a
-- parent (ended -> pending) adds one back to its waiting dependents.
--
-- The race between a dependent's insert and its parent's end is closed by the parent's
-- row: the insert holds it FOR SHARE until it commits, the end is an UPDATE of it. If the
-- end comes first, the insert waits for it and reads the parent ended (READ COMMITTED reads
-- the newest version of a row it locked): not counted. If the insert comes first, the end
-- waits for it; the end's trigger runs its lookups after that commit, sees the dependent
-- and takes its count off. Either way the count is taken exactly once
-- (tests/integration/test_workflows_race.py interleaves every step).
--
-- A parent's failure. tasks.on_parent_failure, per task: 'cancel' (the default) ends a
-- dependent of a parent that ended error or cancelled as cancelled, error 'parent task N
-- ended error' (or cancelled), and so on down its own dependents; 'run' lets it run once
-- all its parents ended, whatever their outcome. A dependent inserted after such a parent
-- ended is cancelled at insert. The row trigger of an ended parent only queues it (in a
-- transaction-local setting); a statement-level trigger then releases the dependents of
-- all the statement's parents at once, locking them in id order, and runs the cascade as a
-- loop over generations: a chain of any length never nests triggers more than a few deep.
--
-- Locks are taken in id order wherever one statement takes several (a dependent's parents,
-- the dependents of a statement's parents, the batches of an outcome statement), so that
-- notifyq's own statements never hold rows crosswise. A client transaction that adds
-- several dependents in several statements locks each statement's parents in turn; two such
-- transactions naming the same parents in opposite orders can deadlock (40P01): PostgreSQL
-- rolls one back whole, and it is safe to run again. Adding a workflow in one statement, or
-- parents before children, avoids it.
--
-- Batches (fan-in at scale). notifyq.batches counts its members (tasks.batch_id) as they
-- are added (per INSERT statement) and as they end. The outcome statements (finish,
-- finish_and_claim, recover_expired in notifyq/queries.sql) count the members they end
-- with one update of the batch row per statement; any other end of a member (cancel, a
-- cascade, a retry) is counted by a row trigger. A task inserted with after_batch = B is
-- the batch's callback (one per batch): its insert seals the batch (no member may be added
-- after it), and the end of the last member releases it (or cancels it when a member
-- failed and its policy is 'cancel').
--
-- History: events 'waiting' (at insert), 'released' (parent_id: the parent whose end
-- released it; batch_id: the batch whose completion did) and 'cancelled' (parent_id or
-- batch_id: the failed parent or batch).
--
-- Cost. The new columns have no default or a constant one (catalog changes, no rewrite).
-- The CHECK constraints are added NOT VALID (no scan under the ACCESS EXCLUSIVE lock); the
-- rows already there hold them (every new column is NULL or its default, and the status
-- list only grows). The two new indexes are partial and tiny, but their build reads the
-- table once while writes wait. The claim, the heartbeat and the reaper read nothing new.

-- The lock of the partition jobs (migration 0007): a job running now is waited for first.
SELECT pg_advisory_xact_lock(1852798818);

ALTER TABLE notifyq.tasks
    ADD COLUMN depends_on        bigint[],
    ADD COLUMN on_parent_failure text    NOT NULL DEFAULT 'cancel',
    ADD COLUMN waiting_on        integer NOT NULL DEFAULT 0,
    ADD COLUMN has_dependents    boolean NOT NULL DEFAULT false,
    ADD COLUMN batch_id          bigint,
    ADD COLUMN after_batch       bigint;

COMMENT ON COLUMN notifyq.tasks.depends_on IS
    'ids of earlier tasks this one waits for (status waiting until they all ended)';
COMMENT ON COLUMN notifyq.tasks.on_parent_failure IS
    'cancel: cancelled when a parent ends error or cancelled; run: runs anyway';
COMMENT ON COLUMN notifyq.tasks.waiting_on IS
    'while waiting: parents not ended yet (+1 while its after_batch is not complete)';
COMMENT ON COLUMN notifyq.tasks.has_dependents IS
    'some task was inserted with this one in depends_on (its end looks them up)';
COMMENT ON COLUMN notifyq.tasks.batch_id IS 'the batch this task is a member of';
COMMENT ON COLUMN notifyq.tasks.after_batch IS 'the batch this task is the callback of';

ALTER TABLE notifyq.tasks DROP CONSTRAINT tasks_status_valid;
ALTER TABLE notifyq.tasks
    ADD CONSTRAINT tasks_status_valid
        CHECK (status IN ('waiting', 'pending', 'in_progress', 'done', 'error', 'cancelled'))
        NOT VALID,
    ADD CONSTRAINT tasks_on_parent_failure_valid
        CHECK (on_parent_failure IN ('cancel', 'run')) NOT VALID,
    -- A waiting task always waits for something (never `waiting` with nothing to end).
    ADD CONSTRAINT tasks_waiting_on_valid
        CHECK (waiting_on >= 0 AND (status <> 'waiting' OR waiting_on > 0)) NOT VALID,
    ADD CONSTRAINT tasks_depends_on_valid
        CHECK (array_ndims(depends_on) = 1 AND array_position(depends_on, NULL) IS NULL)
        NOT VALID,
    -- A waiting task is not live for its unique key (the index's predicate), and its
    -- release must never fail on a duplicate: a task with parents has no unique key.
    ADD CONSTRAINT tasks_unique_key_without_parents
        CHECK (unique_key IS NULL OR (depends_on IS NULL AND after_batch IS NULL)) NOT VALID,
    ADD CONSTRAINT tasks_batch_not_own_callback
        CHECK (batch_id <> after_batch) NOT VALID;

-- The dependents a parent's end looks up: waiting rows only (a row leaves the index when
-- it is released), so a parent's lookup never reads the finished dependents of the past.
-- fastupdate off: every parent's end probes it, and a probe would scan the whole pending
-- list of recent inserts (measured: 2 ms with 50,000 waiting rows added, instead of 0.05).
CREATE INDEX tasks_waiting_parents_idx ON notifyq.tasks USING gin (depends_on)
    WITH (fastupdate = off) WHERE status = 'waiting';
-- A batch's members in order (a callback reads its members' results).
CREATE INDEX tasks_batch_idx ON notifyq.tasks (batch_id, id) WHERE batch_id IS NOT NULL;

CREATE TABLE notifyq.batches (
    id           bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    total        integer     NOT NULL DEFAULT 0,      -- members added
    done         integer     NOT NULL DEFAULT 0,      -- members that ended done
    failed       integer     NOT NULL DEFAULT 0,      -- members that ended error or cancelled
    sealed       boolean     NOT NULL DEFAULT false,  -- its callback was added: no more members
    callback_id  bigint,                              -- the task with after_batch = id
    created_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,                         -- sealed and every member ended
    CONSTRAINT batches_counts_valid
        CHECK (done >= 0 AND failed >= 0 AND done + failed <= total),
    CONSTRAINT batches_completed_valid
        CHECK (completed_at IS NULL OR (sealed AND done + failed = total))
);

COMMENT ON TABLE notifyq.batches IS
    'notifyq batches: members (tasks.batch_id) counted as they end; see the README';

-- Progress of every batch, from SQL.
CREATE VIEW notifyq.batch_progress AS
SELECT b.id, b.total, b.done, b.failed, b.total - b.done - b.failed AS remaining,
       b.sealed, b.callback_id, b.created_at, b.completed_at
  FROM notifyq.batches b;

-- History: the new event, and what caused a release or a cancellation.
ALTER TABLE notifyq.task_events
    ADD COLUMN parent_id bigint,
    ADD COLUMN batch_id  bigint;
ALTER TABLE notifyq.task_events DROP CONSTRAINT task_events_event_valid;
ALTER TABLE notifyq.task_events ADD CONSTRAINT task_events_event_valid CHECK (event IN (
    'queued', 'started', 'done', 'failed', 'retried', 'recovered',
    'released', 'cancelled', 'requeued', 'waiting')) NOT VALID;

-- A history too big for migration 0007 to attach at once waits as task_events_legacy:
-- ATTACH PARTITION wants the parent's columns and checks, so it gets them too.
DO $$
BEGIN
    IF to_regclass('notifyq.task_events_legacy') IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM pg_inherits
                        WHERE inhrelid = to_regclass('notifyq.task_events_legacy')) THEN
        ALTER TABLE notifyq.task_events_legacy
            ADD COLUMN parent_id bigint,
            ADD COLUMN batch_id  bigint;
        ALTER TABLE notifyq.task_events_legacy DROP CONSTRAINT task_events_event_valid;
        ALTER TABLE notifyq.task_events_legacy ADD CONSTRAINT task_events_event_valid
            CHECK (event IN ('queued', 'started', 'done', 'failed', 'retried', 'recovered',
                             'released', 'cancelled', 'requeued', 'waiting')) NOT VALID;
    END IF;
END
$$;

-- The parents of task `task_id` (and the batch `batch` whose callback it is):
-- validated, locked FOR SHARE in id order (and the batch row FOR UPDATE), marked
-- has_dependents. Returns how many it still waits for (`open`) and the first failed one (a
-- parent that ended error or cancelled; the batch, complete with failed members). At an
-- insert (`adding`) the batch is not read here: the task counts it as open and the
-- statement's trigger (tasks_after_insert) seals the batch once the statement's members are
-- counted, releasing the task at once if the batch is complete.
CREATE FUNCTION notifyq.lock_parents(task_id bigint, parents bigint[], batch bigint,
                                     adding boolean,
                                     OUT open integer, OUT failed_parent bigint,
                                     OUT failed_status text, OUT failed_batch bigint)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    wanted bigint[];
    found_n integer;
    missing bigint;
    b notifyq.batches%ROWTYPE;
BEGIN
    open := 0;
    IF parents IS NOT NULL THEN
        IF array_position(parents, NULL) IS NOT NULL THEN
            RAISE EXCEPTION 'depends_on of task % holds NULL', task_id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'tasks_depends_on_valid';
        END IF;
        wanted := ARRAY(SELECT DISTINCT p FROM unnest(parents) AS p ORDER BY p);
        IF wanted[cardinality(wanted)] >= task_id THEN
            RAISE EXCEPTION 'depends_on of task % names task %, which is not an earlier task',
                            task_id, wanted[cardinality(wanted)]
                USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'tasks_depends_on_valid';
        END IF;
        -- First the flag (once per parent: it never goes back), then the lock that holds
        -- the parents' ends back until this transaction commits. Both in id order.
        UPDATE notifyq.tasks t SET has_dependents = true
         WHERE t.id = ANY (wanted) AND NOT t.has_dependents;
        SELECT count(*),
               count(*) FILTER (WHERE s.status NOT IN ('done', 'error', 'cancelled')),
               min(s.id) FILTER (WHERE s.status IN ('error', 'cancelled'))
          INTO found_n, open, failed_parent
          FROM (SELECT t.id, t.status FROM notifyq.tasks t
                 WHERE t.id = ANY (wanted) ORDER BY t.id FOR SHARE) AS s;
        IF found_n < cardinality(wanted) THEN
            SELECT min(p) INTO missing FROM unnest(wanted) AS p
             WHERE NOT EXISTS (SELECT 1 FROM notifyq.tasks t WHERE t.id = p);
            RAISE EXCEPTION 'depends_on of task % names task %, which does not exist',
                            task_id, missing
                USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'tasks_depends_on_valid';
        END IF;
        IF failed_parent IS NOT NULL THEN
            SELECT t.status INTO failed_status FROM notifyq.tasks t WHERE t.id = failed_parent;
        END IF;
    END IF;
    IF batch IS NOT NULL AND adding THEN
        open := open + 1;
    ELSIF batch IS NOT NULL THEN
        SELECT * INTO b FROM notifyq.batches WHERE id = batch FOR UPDATE;
        IF b.completed_at IS NULL THEN
            open := open + 1;
        ELSIF b.failed > 0 THEN
            failed_batch := batch;
        END IF;
    END IF;
END;
$$;

-- Before INSERT of a task with parents or a batch (per row, only then: the trigger's WHEN).
-- A task inserted pending (or waiting) is waiting while some parent has not ended, pending
-- when all ended (or when its policy is 'run'), cancelled when one failed and its policy is
-- 'cancel'. A task inserted with another status (an import of finished work) keeps it.
-- A callback counts its batch as open; the statement's trigger releases it if it is not.
CREATE FUNCTION notifyq.task_before_insert_dependent() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s record;
BEGIN
    IF cardinality(NEW.depends_on) = 0 THEN
        NEW.depends_on := NULL;
    END IF;
    s := notifyq.lock_parents(NEW.id, NEW.depends_on, NEW.after_batch, true);
    IF NEW.status NOT IN ('pending', 'waiting') THEN
        NEW.waiting_on := 0;
        RETURN NEW;
    END IF;
    IF (s.failed_parent IS NOT NULL OR s.failed_batch IS NOT NULL)
       AND NEW.on_parent_failure = 'cancel' THEN
        NEW.status := 'cancelled';
        NEW.waiting_on := 0;
        NEW.finished_at := now();
        NEW.error := CASE WHEN s.failed_parent IS NOT NULL
                          THEN format('parent task %s ended %s', s.failed_parent, s.failed_status)
                          ELSE format('batch %s ended with failed members', s.failed_batch) END;
    ELSIF s.open > 0 THEN
        NEW.status := 'waiting';
        NEW.waiting_on := s.open;
    ELSE
        NEW.status := 'pending';
        NEW.waiting_on := 0;
    END IF;
    RETURN NEW;
END;
$$;

-- After INSERT of a task with parents or a batch that did not start pending: its history
-- ('waiting', or 'cancelled' naming the failed parent or batch), and notifyq_done for one
-- that ended at insert.
CREATE FUNCTION notifyq.task_after_insert_dependent() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    parent bigint;
BEGIN
    IF NEW.status = 'waiting' THEN
        INSERT INTO notifyq.task_events (task_id, event, attempt) VALUES (NEW.id, 'waiting', 0);
    ELSE
        SELECT min(t.id) INTO parent FROM notifyq.tasks t
         WHERE t.id = ANY (NEW.depends_on) AND t.status IN ('error', 'cancelled');
        INSERT INTO notifyq.task_events (task_id, event, attempt, error, parent_id, batch_id)
        VALUES (NEW.id, 'cancelled', 0, NEW.error, parent,
                CASE WHEN parent IS NULL THEN NEW.after_batch END);
        PERFORM pg_notify('notifyq_done', json_build_object(
            'id', NEW.id, 'status', NEW.status, 'queue', NEW.queue, 'kind', NEW.kind)::text);
    END IF;
    RETURN NULL;
END;
$$;

-- The waiting dependents of the ended tasks `ended` (their current rows are read: a task
-- that is not ended any more counts for nothing): each takes one off its counter per
-- ended parent; at zero it is pending ('released', naming the parent); one with a failed
-- parent and policy 'cancel' is cancelled ('cancelled', naming it). The dependents it
-- cancelled that have dependents of their own queue themselves (their row trigger) for the
-- caller's next round.
CREATE FUNCTION notifyq.release_dependents(ended bigint[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    WITH parent AS (
        SELECT t.id, t.status FROM notifyq.tasks t
         WHERE t.id = ANY (ended) AND t.status IN ('done', 'error', 'cancelled')
    ), hit AS (
        -- One GIN probe per parent (the index holds waiting rows only).
        SELECT c.id, count(*)::integer AS n, max(p.id) AS by_parent,
               min(p.id) FILTER (WHERE p.status <> 'done') AS failed_parent
          FROM parent p
          JOIN notifyq.tasks c ON c.depends_on @> ARRAY[p.id] AND c.status = 'waiting'
         GROUP BY c.id
    ), locked AS (
        -- In id order, as every statement of notifyq that locks several tasks: two outcome
        -- statements whose parents share dependents never hold them crosswise.
        SELECT c.id FROM notifyq.tasks c
         WHERE c.id IN (SELECT h.id FROM hit h)
         ORDER BY c.id
           FOR NO KEY UPDATE
    ), changed AS (
        UPDATE notifyq.tasks c
           SET status = CASE WHEN h.failed_parent IS NOT NULL AND c.on_parent_failure = 'cancel'
                                 THEN 'cancelled'
                             WHEN c.waiting_on - h.n <= 0 THEN 'pending'
                             ELSE 'waiting' END,
               waiting_on = CASE WHEN h.failed_parent IS NOT NULL
                                      AND c.on_parent_failure = 'cancel' THEN 0
                                 ELSE greatest(c.waiting_on - h.n, 0) END,
               error = CASE WHEN h.failed_parent IS NOT NULL AND c.on_parent_failure = 'cancel'
                            THEN format('parent task %s ended %s', h.failed_parent,
                                        (SELECT p.status FROM parent p
                                          WHERE p.id = h.failed_parent))
                            ELSE c.error END,
               finished_at = CASE WHEN h.failed_parent IS NOT NULL
                                       AND c.on_parent_failure = 'cancel' THEN now()
                                  ELSE c.finished_at END,
               updated_at = now()
          FROM hit h JOIN locked l ON l.id = h.id
         WHERE c.id = h.id AND c.status = 'waiting'
        RETURNING c.id, c.status, c.error, c.attempts, c.has_dependents, h.by_parent,
                  h.failed_parent
    )
    INSERT INTO notifyq.task_events (task_id, event, attempt, error, parent_id)
    SELECT id, CASE WHEN status = 'cancelled' THEN 'cancelled' ELSE 'released' END,
           attempts, CASE WHEN status = 'cancelled' THEN error END,
           CASE WHEN status = 'cancelled' THEN failed_parent ELSE by_parent END
      FROM changed
     WHERE status <> 'waiting';
END;
$$;

-- After UPDATE of a task that has dependents, when it ended or stopped being ended (per
-- row, only then: the trigger's WHEN; a task nobody depends on never gets here).
-- Ended: queued (in the transaction-local setting notifyq.ended_parents) for the statement's
-- end, where tasks_release_dependents takes the whole statement's parents at once, in id
-- order. Back to pending (a retry): its waiting dependents wait for it again.
CREATE FUNCTION notifyq.task_parent_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.status IN ('done', 'error', 'cancelled') THEN
        PERFORM set_config('notifyq.ended_parents',
                           concat_ws(',', nullif(current_setting('notifyq.ended_parents', true),
                                                 ''), NEW.id), true);
    ELSE
        UPDATE notifyq.tasks c SET waiting_on = c.waiting_on + 1
         WHERE c.depends_on @> ARRAY[NEW.id] AND c.status = 'waiting';
    END IF;
    RETURN NULL;
END;
$$;

-- After UPDATE on tasks (per statement): release or cancel the dependents of the parents
-- the statement ended (queued by task_parent_changed; usually none: one setting read).
-- Rounds, one generation each: the dependents a round cancels queue themselves, and the
-- next round takes them. A statement run inside a round (those of release_dependents, a
-- batch callback it cancels) leaves its queue to the round's loop, so that a chain of any
-- length never nests triggers deeper than a few levels (a trigger nested per generation
-- would exceed max_stack_depth after a few hundred).
CREATE FUNCTION notifyq.tasks_release_dependents() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    queued text := current_setting('notifyq.ended_parents', true);
BEGIN
    IF queued IS NULL OR queued = ''
       OR current_setting('notifyq.releasing', true) = 'on' THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('notifyq.releasing', 'on', true);
    WHILE queued IS NOT NULL AND queued <> '' LOOP
        PERFORM set_config('notifyq.ended_parents', '', true);
        PERFORM notifyq.release_dependents(
            ARRAY(SELECT DISTINCT p FROM unnest(string_to_array(queued, ',')::bigint[]) AS p
                   ORDER BY p));
        queued := current_setting('notifyq.ended_parents', true);
    END LOOP;
    PERFORM set_config('notifyq.releasing', 'off', true);
    RETURN NULL;
END;
$$;

-- Batches.

-- Count ended members into their batches: `batch_ids` with the members of each that ended
-- done (`dones`) and error or cancelled (`faileds`); negative counts take members back (a
-- retry). One update per batch; a batch that completes releases its callback (its trigger).
-- A complete batch is not counted any more.
CREATE FUNCTION notifyq.count_batch_ends(batch_ids bigint[], dones integer[], faileds integer[])
RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    UPDATE notifyq.batches b
       SET done = b.done + e.done, failed = b.failed + e.failed,
           completed_at = CASE WHEN b.sealed AND b.done + e.done + b.failed + e.failed = b.total
                               THEN now() END
      FROM unnest(batch_ids, dones, faileds) AS e(id, done, failed)
     WHERE b.id = e.id AND b.completed_at IS NULL;
$$;

-- After UPDATE of a batch member that ended or stopped being ended other than from
-- in_progress (cancel of a pending member, a cascade, a retry); per row, only then (the
-- trigger's WHEN). An attempt's end (in_progress -> ended) is counted by the outcome
-- statement that writes it, once per batch and statement (queries.sql: finish,
-- finish_and_claim, recover_expired).
CREATE FUNCTION notifyq.task_member_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    sign integer := CASE WHEN NEW.status IN ('done', 'error', 'cancelled') THEN 1 ELSE -1 END;
    was text := CASE WHEN sign = 1 THEN NEW.status ELSE OLD.status END;
BEGIN
    PERFORM notifyq.count_batch_ends(ARRAY[NEW.batch_id],
                                     ARRAY[sign * (was = 'done')::integer],
                                     ARRAY[sign * (was <> 'done')::integer]);
    RETURN NULL;
END;
$$;

-- After UPDATE of a batch that completed: its callback takes one off its counter (pending
-- at zero, 'released' naming the batch), or is cancelled when a member failed and its
-- policy is 'cancel'. A callback that is not waiting (cancelled meanwhile) is left alone.
CREATE FUNCTION notifyq.batch_completed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    WITH changed AS (
        UPDATE notifyq.tasks c
           SET status = CASE WHEN NEW.failed > 0 AND c.on_parent_failure = 'cancel'
                                 THEN 'cancelled'
                             WHEN c.waiting_on <= 1 THEN 'pending'
                             ELSE 'waiting' END,
               waiting_on = CASE WHEN NEW.failed > 0 AND c.on_parent_failure = 'cancel' THEN 0
                                 ELSE greatest(c.waiting_on - 1, 0) END,
               error = CASE WHEN NEW.failed > 0 AND c.on_parent_failure = 'cancel'
                            THEN format('batch %s ended with %s failed members of %s',
                                        NEW.id, NEW.failed, NEW.total)
                            ELSE c.error END,
               finished_at = CASE WHEN NEW.failed > 0 AND c.on_parent_failure = 'cancel'
                                  THEN now() ELSE c.finished_at END,
               updated_at = now()
         WHERE c.id = NEW.callback_id AND c.status = 'waiting'
        RETURNING c.id, c.status, c.error, c.attempts
    )
    INSERT INTO notifyq.task_events (task_id, event, attempt, error, batch_id)
    SELECT id, CASE WHEN status = 'cancelled' THEN 'cancelled' ELSE 'released' END, attempts,
           CASE WHEN status = 'cancelled' THEN error END, NEW.id
      FROM changed
     WHERE status <> 'waiting';
    RETURN NULL;
END;
$$;

-- After INSERT on tasks (per statement): as in migration 0002; and batches. Members added
-- are counted, one update per batch and statement; then each callback added seals its batch
-- (after the statement's members: a chord added in one statement is counted whole), and a
-- batch complete already releases its callback at once (the batch's trigger). A batch that
-- does not exist, is sealed, or has a callback already is refused. A statement without
-- members or callbacks pays one pass over its rows.
CREATE OR REPLACE FUNCTION notifyq.tasks_after_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    members boolean;
    callbacks boolean;
    refused bigint;
    r record;
BEGIN
    SELECT bool_or(n.batch_id IS NOT NULL), bool_or(n.after_batch IS NOT NULL)
      INTO members, callbacks
      FROM new_rows n;
    IF members THEN
        WITH added AS (
            SELECT n.batch_id, count(*)::integer AS n
              FROM new_rows n WHERE n.batch_id IS NOT NULL GROUP BY n.batch_id
        ), counted AS (
            UPDATE notifyq.batches b SET total = b.total + a.n
              FROM added a
             WHERE b.id = a.batch_id AND NOT b.sealed
            RETURNING b.id
        )
        SELECT min(a.batch_id) INTO refused
          FROM added a WHERE a.batch_id NOT IN (SELECT c.id FROM counted c);
        IF refused IS NOT NULL THEN
            RAISE EXCEPTION 'batch_id names batch %, which does not exist or is sealed (its '
                            'callback was added)', refused
                USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'tasks_batch_id_valid';
        END IF;
    END IF;
    IF callbacks THEN
        FOR r IN SELECT n.id, n.after_batch FROM new_rows n
                  WHERE n.after_batch IS NOT NULL ORDER BY n.after_batch, n.id LOOP
            UPDATE notifyq.batches b
               SET sealed = true, callback_id = r.id,
                   completed_at = CASE WHEN b.done + b.failed = b.total THEN now() END
             WHERE b.id = r.after_batch AND b.callback_id IS NULL;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'after_batch of task % names batch %, which does not exist or '
                                'has a callback already', r.id, r.after_batch
                    USING ERRCODE = 'foreign_key_violation',
                          CONSTRAINT = 'tasks_after_batch_valid';
            END IF;
        END LOOP;
    END IF;
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

-- Cancel a task. Pending or waiting: cancelled at once (its dependents follow, through the
-- triggers). Running: the owning process is told through notifyq_cancel and records
-- 'cancelled' itself; the request is kept on the row so that a task whose worker died is
-- cancelled by the reaper instead of run again.
-- Returns the status after the call ('cancelling' for a running task), NULL if no such task.
CREATE OR REPLACE FUNCTION notifyq.cancel(task_id bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    t notifyq.tasks%ROWTYPE;
BEGIN
    SELECT * INTO t FROM notifyq.tasks WHERE id = cancel.task_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    ELSIF t.status IN ('pending', 'waiting') THEN
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

-- Put an ended task ('error' or 'cancelled') back with a fresh attempt budget. A task with
-- parents (or a batch) is checked again as at its insert: 'waiting' while some have not
-- ended, refused with 'parent_failed' (nothing changes) while one has failed and its
-- policy is 'cancel' (retry that parent first), else pending. Its waiting dependents wait
-- for it again (the triggers). Returns 'requeued' (pending), 'waiting', 'parent_failed',
-- 'duplicate' when another live task holds its unique_key, else the task's unchanged
-- status; NULL if no such task.
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

CREATE TRIGGER tasks_before_insert_dependent
    BEFORE INSERT ON notifyq.tasks
    FOR EACH ROW
    WHEN (NEW.depends_on IS NOT NULL OR NEW.after_batch IS NOT NULL)
    EXECUTE FUNCTION notifyq.task_before_insert_dependent();

CREATE TRIGGER tasks_after_insert_dependent
    AFTER INSERT ON notifyq.tasks
    FOR EACH ROW
    WHEN ((NEW.depends_on IS NOT NULL OR NEW.after_batch IS NOT NULL)
          AND NEW.status IN ('waiting', 'cancelled'))
    EXECUTE FUNCTION notifyq.task_after_insert_dependent();

CREATE TRIGGER tasks_parent_changed
    AFTER UPDATE ON notifyq.tasks
    FOR EACH ROW
    WHEN (NEW.has_dependents AND OLD.status <> NEW.status
          AND (OLD.status IN ('done', 'error', 'cancelled'))
              <> (NEW.status IN ('done', 'error', 'cancelled')))
    EXECUTE FUNCTION notifyq.task_parent_changed();

CREATE TRIGGER tasks_release_dependents
    AFTER UPDATE ON notifyq.tasks
    FOR EACH STATEMENT EXECUTE FUNCTION notifyq.tasks_release_dependents();

CREATE TRIGGER tasks_member_changed
    AFTER UPDATE ON notifyq.tasks
    FOR EACH ROW
    WHEN (NEW.batch_id IS NOT NULL AND OLD.status <> NEW.status
          AND OLD.status <> 'in_progress'
          AND (OLD.status IN ('done', 'error', 'cancelled'))
              <> (NEW.status IN ('done', 'error', 'cancelled')))
    EXECUTE FUNCTION notifyq.task_member_changed();

CREATE TRIGGER batches_completed
    AFTER UPDATE ON notifyq.batches
    FOR EACH ROW
    WHEN (OLD.completed_at IS NULL AND NEW.completed_at IS NOT NULL)
    EXECUTE FUNCTION notifyq.batch_completed();

-- Grants. A producer may set the new columns and open batches; a worker reads and writes
-- batches (the outcome statements count members). No new function is PUBLIC's; the trigger
-- functions need no EXECUTE grant; retry (a worker's) calls lock_parents.
CREATE OR REPLACE FUNCTION notifyq.grant_producer(grantee regrole, apply boolean DEFAULT true)
RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    stmt text;
    cols text;
BEGIN
    SELECT string_agg(quote_ident(c.name), ', ' ORDER BY c.n) INTO cols
      FROM unnest(ARRAY['queue', 'kind', 'payload', 'priority', 'run_at', 'max_attempts',
                        'timeout', 'meta', 'unique_key', 'concurrency_key', 'depends_on',
                        'on_parent_failure', 'batch_id', 'after_batch'])
           WITH ORDINALITY AS c(name, n)
      JOIN pg_attribute a ON a.attname = c.name
     WHERE a.attrelid = 'notifyq.tasks'::regclass AND NOT a.attisdropped;
    FOREACH stmt IN ARRAY ARRAY[
        format('GRANT USAGE ON SCHEMA notifyq TO %s', grantee),
        format('GRANT INSERT (%s) ON notifyq.tasks TO %s', cols, grantee),
        -- RETURNING id of a producer's INSERT (notifyq.enqueue reads it back).
        format('GRANT SELECT (id) ON notifyq.tasks TO %s', grantee),
        -- INSERT INTO notifyq.batches DEFAULT VALUES RETURNING id: a new, empty batch.
        format('GRANT INSERT (created_at), SELECT (id) ON notifyq.batches TO %s', grantee)
    ] LOOP
        IF apply THEN
            EXECUTE stmt;
        END IF;
        RETURN NEXT stmt;
    END LOOP;
END;
$$;

CREATE OR REPLACE FUNCTION notifyq.grant_worker(grantee regrole, apply boolean DEFAULT true)
RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    stmt text;
    tables text;
BEGIN
    SELECT string_agg(format('notifyq.%I', c.relname), ', ' ORDER BY c.relname) INTO tables
      FROM pg_class c
     WHERE c.relnamespace = 'notifyq'::regnamespace AND c.relkind IN ('r', 'p', 'v')
       AND c.relname IN ('tasks', 'task_events', 'workers', 'waiters', 'queues', 'schedules',
                         'batches');
    FOREACH stmt IN ARRAY ARRAY[
        format('GRANT USAGE ON SCHEMA notifyq TO %s', grantee),
        format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %s', tables, grantee),
        format('GRANT SELECT ON notifyq.batch_progress TO %s', grantee),
        format('GRANT SELECT, UPDATE ON notifyq.maintenance TO %s', grantee),
        format('GRANT SELECT ON notifyq.schema_migrations TO %s', grantee)
    ] LOOP
        IF apply THEN
            EXECUTE stmt;
        END IF;
        RETURN NEXT stmt;
    END LOOP;
END;
$$;

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
               'notifyq.lock_parents(bigint, bigint[], bigint, boolean)',
               'notifyq.fire_schedule(text, timestamptz, timestamptz, timestamptz)',
               'notifyq.ensure_event_partitions(integer)',
               'notifyq.attach_legacy_events()',
               'notifyq.prune_event_partitions(interval)',
               'notifyq.drop_event_partitions(interval)'])
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

-- Roles that have the producer's or the worker's grants get this version's at once, so that
-- running processes and producers keep working before `notifyq roles` is run again.
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
        PERFORM notifyq.grant_worker(grantee);
        PERFORM notifyq.grant_worker_functions(grantee);
    END LOOP;
    FOR grantee IN
        SELECT DISTINCT a.grantee::regrole
          FROM pg_attribute t, aclexplode(t.attacl) a
         WHERE t.attrelid = 'notifyq.tasks'::regclass AND t.attname = 'kind'
           AND a.privilege_type = 'INSERT' AND a.grantee <> 0
    LOOP
        PERFORM notifyq.grant_producer(grantee);
    END LOOP;
END;
$$;
