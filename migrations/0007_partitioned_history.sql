-- notifyq schema, version 7: the history (notifyq.task_events) is partitioned by day, so
-- that retention drops whole partitions instead of deleting rows (docs/operations.md,
-- "Big tables").
--
-- - One partition per UTC day, named task_events_pYYYYMMDD, created ahead by the notifyq
--   processes themselves (notifyq.ensure_event_partitions, one process per turn through
--   notifyq.maintenance 'partitions'); no extension, no cron.
-- - task_events_default catches rows for which no day exists yet (a fleet that was down
--   for days); the next turn moves them into their day.
-- - Retention (RETENTION, `notifyq prune`) drops the days older than the cut-off
--   (notifyq.drop_event_partitions): no DELETE, no dead rows, no vacuum.
--
-- Upgrading a big table: every existing row is kept without a long exclusive lock. The old
-- table is renamed to task_events_legacy (an instant catalog change under a lock held for
-- milliseconds) and given a NOT VALID check `at < <now>`; the new partitioned table
-- starts empty, so producers and workers carry on at once. A small legacy table (up to
-- 100,000 rows) is attached as the partition "everything before <now>" right here; a
-- bigger one by the first notifyq process to take the 'partitions' turn
-- (notifyq.attach_legacy_events): it validates the check under a lock that lets everything
-- go on, then attaches it in milliseconds. Until then the old rows are in the legacy table
-- but not in `notifyq history`. Measured in docs/operations.md.
--
-- Ids keep counting from where the old table stopped. PostgreSQL before 17 has no identity
-- columns on partitioned tables: ids come from a sequence through a SECURITY DEFINER
-- function, so that roles that may insert events need no privilege on the sequence.

LOCK TABLE notifyq.task_events IN ACCESS EXCLUSIVE MODE;

ALTER TABLE notifyq.task_events RENAME TO task_events_legacy;
ALTER INDEX notifyq.task_events_pkey RENAME TO task_events_legacy_pkey;
ALTER INDEX notifyq.task_events_task_idx RENAME TO task_events_legacy_task_idx;

DO $$
DECLARE
    next_id bigint;
    nn text;
BEGIN
    -- PostgreSQL 18 names NOT NULL constraints after the table: leave those names free.
    FOR nn IN SELECT conname FROM pg_constraint
               WHERE conrelid = to_regclass('notifyq.task_events_legacy') AND contype = 'n' LOOP
        EXECUTE format('ALTER TABLE notifyq.task_events_legacy RENAME CONSTRAINT %I TO %I',
                       nn, replace(nn, 'task_events_', 'task_events_legacy_'));
    END LOOP;
    SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END
      INTO next_id FROM notifyq.task_events_id_seq;
    ALTER TABLE notifyq.task_events_legacy ALTER COLUMN id DROP IDENTITY;  -- and its sequence
    EXECUTE format('CREATE SEQUENCE notifyq.task_events_id_seq START %s', next_id);
END;
$$;

CREATE FUNCTION notifyq.next_event_id() RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT nextval('notifyq.task_events_id_seq') $$;

-- History. No foreign key to tasks (a lookup on every event insert); no primary key (a
-- unique index of a partitioned table must hold the partition key, and nothing looks an
-- event up by id).
CREATE TABLE notifyq.task_events (
    id       bigint      NOT NULL DEFAULT notifyq.next_event_id(),
    task_id  bigint      NOT NULL,
    at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    event    text        NOT NULL,
    attempt  integer     NOT NULL DEFAULT 0,
    worker   text,
    error    text,
    CONSTRAINT task_events_event_valid CHECK (event IN (
        'queued', 'started', 'done', 'failed', 'retried', 'recovered',
        'released', 'cancelled', 'requeued'))
) PARTITION BY RANGE (at);
ALTER SEQUENCE notifyq.task_events_id_seq OWNED BY notifyq.task_events.id;
CREATE INDEX task_events_task_idx ON notifyq.task_events (task_id, id);
CREATE TABLE notifyq.task_events_default PARTITION OF notifyq.task_events DEFAULT;

INSERT INTO notifyq.maintenance (name) VALUES ('partitions');

-- The upper bound of the legacy partition (NULL when there is none): its check constraint.
CREATE FUNCTION notifyq.legacy_events_bound() RETURNS timestamptz
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT (regexp_match(pg_get_constraintdef(c.oid), '''([^'']+)'''))[1]::timestamptz
      FROM pg_constraint c
     WHERE c.conrelid = to_regclass('notifyq.task_events_legacy')
       AND c.conname = 'task_events_legacy_before'
$$;

-- Attach the rows from before version 7 as the partition (MINVALUE .. bound), if they are
-- not attached yet. The scan (VALIDATE) takes SHARE UPDATE EXCLUSIVE on the legacy table
-- only: inserts into notifyq.task_events and reads of it go on. The ATTACH then needs no
-- scan (the valid check proves the bound) and holds its locks for milliseconds.
-- Returns 'attached', or NULL when there was nothing to do.
CREATE FUNCTION notifyq.attach_legacy_events() RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    bound timestamptz;
BEGIN
    PERFORM pg_advisory_xact_lock(1852798818);  -- one partition job at a time ("nqwb")
    bound := notifyq.legacy_events_bound();
    IF bound IS NULL OR EXISTS (SELECT 1 FROM pg_inherits
                                 WHERE inhrelid = to_regclass('notifyq.task_events_legacy')) THEN
        RETURN NULL;
    END IF;
    ALTER TABLE notifyq.task_events_legacy VALIDATE CONSTRAINT task_events_legacy_before;
    EXECUTE format('ALTER TABLE notifyq.task_events ATTACH PARTITION notifyq.task_events_legacy '
                   'FOR VALUES FROM (MINVALUE) TO (%L)', bound);
    RETURN 'attached';
END;
$$;

-- Create the day partitions from today to `days_ahead` days ahead (UTC) that do not exist
-- yet; returns their names. Each is created apart and attached, after moving in any rows of
-- its day that the default partition caught meanwhile (a fleet that was down). Inserts
-- into notifyq.task_events wait for it (milliseconds; at most 2 s for the lock, else the
-- turn fails and is tried again). The first day after the legacy rows starts at their bound.
CREATE FUNCTION notifyq.ensure_event_partitions(days_ahead integer) RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    floor_at timestamptz := notifyq.legacy_events_bound();
    day date;
    lo timestamptz;
    hi timestamptz;
    part text;
BEGIN
    PERFORM pg_advisory_xact_lock(1852798818);  -- one partition job at a time ("nqwb")
    FOR d IN 0..days_ahead LOOP
        day := (now() AT TIME ZONE 'UTC')::date + d;
        lo := day::timestamp AT TIME ZONE 'UTC';
        hi := (day + 1)::timestamp AT TIME ZONE 'UTC';
        part := 'task_events_p' || to_char(day, 'YYYYMMDD');
        CONTINUE WHEN to_regclass('notifyq.' || part) IS NOT NULL
                   OR (floor_at IS NOT NULL AND hi <= floor_at);
        lo := greatest(lo, floor_at);
        -- Rows of this day in the default partition move below, and no insert may be
        -- under way meanwhile: one that chose the default partition before the attach
        -- would fail its partition check after it (and with it a claim or an outcome
        -- write). So inserts wait for the few milliseconds this takes, once a day.
        PERFORM set_config('lock_timeout', '2s', true);
        LOCK TABLE notifyq.task_events IN SHARE ROW EXCLUSIVE MODE;
        EXECUTE format('CREATE TABLE notifyq.%I (LIKE notifyq.task_events '
                       'INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
        EXECUTE format('ALTER TABLE notifyq.%I ADD CONSTRAINT %I CHECK (at >= %L AND at < %L)',
                       part, part || '_range', lo, hi);
        EXECUTE format('WITH moved AS (DELETE FROM notifyq.task_events_default '
                       'WHERE at >= %L AND at < %L RETURNING *) '
                       'INSERT INTO notifyq.%I SELECT * FROM moved', lo, hi, part);
        EXECUTE format('ALTER TABLE notifyq.task_events ATTACH PARTITION notifyq.%I '
                       'FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
        RETURN NEXT part;
    END LOOP;
END;
$$;

-- Retention of the history: drop the partitions whose every row is older than
-- `older_than` (the legacy one too), and delete such rows from the default partition
-- (which holds rows only while day partitions were missing). Returns the dropped names.
-- Detaching takes an ACCESS EXCLUSIVE lock on notifyq.task_events for milliseconds; it
-- waits at most 2 s for it (a long transaction on the table), else that partition is
-- left for the next turn.
CREATE FUNCTION notifyq.drop_event_partitions(older_than interval) RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cutoff timestamptz := now() - older_than;
    r record;
BEGIN
    PERFORM pg_advisory_xact_lock(1852798818);
    PERFORM set_config('lock_timeout', '2s', true);
    FOR r IN
        SELECT c.relname,
               (regexp_match(pg_get_expr(c.relpartbound, c.oid),
                             'TO \(''([^'']+)''\)'))[1]::timestamptz AS upper_at
          FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'notifyq.task_events'::regclass
    LOOP
        CONTINUE WHEN r.upper_at IS NULL OR r.upper_at > cutoff;  -- NULL: the default
        BEGIN
            EXECUTE format('ALTER TABLE notifyq.task_events DETACH PARTITION notifyq.%I',
                           r.relname);
            EXECUTE format('DROP TABLE notifyq.%I', r.relname);
            RETURN NEXT r.relname;
        EXCEPTION WHEN lock_not_available THEN
            RAISE NOTICE 'notifyq: % not dropped: notifyq.task_events is busy', r.relname;
        END;
    END LOOP;
    -- Legacy rows not attached yet, all older than the cut-off.
    IF notifyq.legacy_events_bound() <= cutoff
       AND NOT EXISTS (SELECT 1 FROM pg_inherits
                        WHERE inhrelid = to_regclass('notifyq.task_events_legacy')) THEN
        DROP TABLE notifyq.task_events_legacy;
        RETURN NEXT 'task_events_legacy';
    END IF;
    DELETE FROM notifyq.task_events_default WHERE at < cutoff;
END;
$$;

-- The rows from before this version, and the privileges that were granted on the table.
DO $$
DECLARE
    g record;
    small boolean;
    bound timestamptz;
BEGIN
    FOR g IN
        SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END AS who,
               a.privilege_type
          FROM pg_class c, aclexplode(c.relacl) a
         WHERE c.oid = to_regclass('notifyq.task_events_legacy') AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT %s ON notifyq.task_events TO %s', g.privilege_type, g.who);
    END LOOP;

    IF NOT EXISTS (SELECT 1 FROM notifyq.task_events_legacy) THEN
        DROP TABLE notifyq.task_events_legacy;  -- a new installation
        RETURN;
    END IF;
    -- The bound: now, after every insert into the old table (this lock keeps them out). A
    -- small table is read whole, so that rows written by hand with a later `at` fit too.
    small := (SELECT count(*) FROM (SELECT 1 FROM notifyq.task_events_legacy LIMIT 100001) AS s)
             <= 100000;
    bound := clock_timestamp();
    IF small THEN
        bound := greatest(bound, (SELECT max(at) + interval '1 microsecond'
                                    FROM notifyq.task_events_legacy WHERE isfinite(at)));
    END IF;
    EXECUTE format('ALTER TABLE notifyq.task_events_legacy ADD CONSTRAINT '
                   'task_events_legacy_before CHECK (at < %L) NOT VALID', bound);
    IF small THEN
        PERFORM notifyq.attach_legacy_events();
    END IF;
END;
$$;
