-- notifyq schema, version 12: schedules that no producer can hold up, and rows that every
-- process can read.
--
-- A tick is fired once because the schedules row says so, not because of a key a producer
-- could take. Before this version a tick's task carried the unique key
-- 'schedule:<name>:<tick>': a producer that inserted the next ticks' keys and kept its
-- transaction open made fire_schedule wait in every process (a unique index check waits for
-- the other inserter), and once it committed those ticks were skipped as duplicates. Now the
-- task carries no unique key, the row is locked with SKIP LOCKED (a locked row is some other
-- caller's; the processes try it again at their next pass), and a tick at or before the
-- row's last_run_at is never enqueued again.
--
-- Checks. Most rows a process cannot read are refused here: a time zone name over 128
-- characters, a cron expression over 256, an interval over 36500 days, a next_run_at or
-- last_run_at outside [1970, 9000) (BC, ±infinity). What a check cannot see (a zone that
-- names a folder of the zone database, 'Europe') the processes skip with a
-- `schedule.skipped` line.
--
-- Rows already stored that break them: next_run_at and last_run_at out of range are cleared
-- (NULL: the next tick is computed from now; the schedule counts as never fired). A
-- definition that breaks them is kept as it is, so that the operator sees it, and paused;
-- its check stays NOT VALID until no such row is left (`notifyq schedule add` with a good
-- definition, or `remove`). A database without such rows gets every check validated.

UPDATE notifyq.schedules
   SET next_run_at = NULL
 WHERE NOT (next_run_at >= timestamptz '1970-01-01 00:00:00+00'
            AND next_run_at < timestamptz '9000-01-01 00:00:00+00');

UPDATE notifyq.schedules
   SET last_run_at = NULL
 WHERE NOT (last_run_at >= timestamptz '1970-01-01 00:00:00+00'
            AND last_run_at < timestamptz '9000-01-01 00:00:00+00');

UPDATE notifyq.schedules
   SET paused = true, updated_at = now()
 WHERE NOT paused
   AND (length(tz) NOT BETWEEN 1 AND 128
        OR length(cron) NOT BETWEEN 1 AND 256
        OR every > interval '36500 days');

ALTER TABLE notifyq.schedules
    ADD CONSTRAINT schedules_tz_valid CHECK (length(tz) BETWEEN 1 AND 128) NOT VALID,
    ADD CONSTRAINT schedules_cron_length_valid
        CHECK (cron IS NULL OR length(cron) BETWEEN 1 AND 256) NOT VALID,
    ADD CONSTRAINT schedules_every_max_valid
        CHECK (every IS NULL OR every <= interval '36500 days') NOT VALID,
    ADD CONSTRAINT schedules_next_run_at_valid
        CHECK (next_run_at >= timestamptz '1970-01-01 00:00:00+00'
               AND next_run_at < timestamptz '9000-01-01 00:00:00+00') NOT VALID,
    ADD CONSTRAINT schedules_last_run_at_valid
        CHECK (last_run_at >= timestamptz '1970-01-01 00:00:00+00'
               AND last_run_at < timestamptz '9000-01-01 00:00:00+00') NOT VALID;

ALTER TABLE notifyq.schedules VALIDATE CONSTRAINT schedules_next_run_at_valid;
ALTER TABLE notifyq.schedules VALIDATE CONSTRAINT schedules_last_run_at_valid;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM notifyq.schedules WHERE length(tz) NOT BETWEEN 1 AND 128) THEN
        ALTER TABLE notifyq.schedules VALIDATE CONSTRAINT schedules_tz_valid;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM notifyq.schedules WHERE length(cron) NOT BETWEEN 1 AND 256) THEN
        ALTER TABLE notifyq.schedules VALIDATE CONSTRAINT schedules_cron_length_valid;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM notifyq.schedules WHERE every > interval '36500 days') THEN
        ALTER TABLE notifyq.schedules VALIDATE CONSTRAINT schedules_every_max_valid;
    END IF;
END;
$$;

-- Fire one tick (kept for processes of the previous version during an upgrade; this
-- version fires through fire_schedules below). Same contract as in migration 0005, without
-- the unique key and without waiting: a row another transaction holds is not fired now.
CREATE OR REPLACE FUNCTION notifyq.fire_schedule(
    schedule_name text, due timestamptz, tick timestamptz, next_run timestamptz)
RETURNS TABLE (fired boolean, task_id bigint)
LANGUAGE sql VOLATILE AS $$
    WITH claimed AS (
        SELECT s.name
          FROM notifyq.schedules s
         WHERE s.name = fire_schedule.schedule_name
           AND s.next_run_at = fire_schedule.due
           AND NOT s.paused
           AND (s.last_run_at IS NULL OR s.last_run_at < fire_schedule.tick)
           FOR UPDATE SKIP LOCKED
    ), advanced AS (
        UPDATE notifyq.schedules s
           SET next_run_at = fire_schedule.next_run, last_run_at = fire_schedule.tick,
               updated_at = now()
          FROM claimed c
         WHERE s.name = c.name
        RETURNING s.name, s.kind, s.payload, s.queue, s.priority
    ), added AS (
        INSERT INTO notifyq.tasks (queue, kind, payload, priority, schedule_name, schedule_tick)
        SELECT a.queue, a.kind, a.payload, a.priority, a.name, fire_schedule.tick
          FROM advanced a
        RETURNING id
    )
    SELECT EXISTS (SELECT 1 FROM advanced), (SELECT id FROM added);
$$;

-- Fire due schedules in one statement: schedule names[i], read as due at dues[i], fires its
-- ticks (the pairs tick_names[j], ticks[j]; several for a catch-up) and moves to
-- next_runs[i] with last_run_at = lasts[i] (its latest tick). A schedule whose next_run_at
-- moved, that is paused, or whose row another transaction holds (SKIP LOCKED: never a
-- wait) is left alone and absent from the result; a tick at or before the row's last_run_at
-- gets no task. Returns, per schedule fired, the tasks added and the id of the last one.
CREATE FUNCTION notifyq.fire_schedules(
    names text[], dues timestamptz[], lasts timestamptz[], next_runs timestamptz[],
    tick_names text[], ticks timestamptz[])
RETURNS TABLE (name text, tasks integer, last_task_id bigint)
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    WITH wanted AS (
        SELECT w.name, w.due, w.last_tick, w.next_run
          FROM unnest(fire_schedules.names, fire_schedules.dues, fire_schedules.lasts,
                      fire_schedules.next_runs) AS w(name, due, last_tick, next_run)
    ), claimed AS (
        SELECT s.name, s.last_run_at AS previous, w.last_tick, w.next_run
          FROM notifyq.schedules s
          JOIN wanted w ON w.name = s.name
         WHERE s.next_run_at = w.due
           AND NOT s.paused
         ORDER BY s.name
           FOR UPDATE OF s SKIP LOCKED
    ), advanced AS (
        UPDATE notifyq.schedules s
           SET next_run_at = c.next_run,
               last_run_at = greatest(c.previous, c.last_tick),
               updated_at = now()
          FROM claimed c
         WHERE s.name = c.name
        RETURNING s.name, s.kind, s.payload, s.queue, s.priority, c.previous
    ), added AS (
        INSERT INTO notifyq.tasks (queue, kind, payload, priority, schedule_name, schedule_tick)
        SELECT a.queue, a.kind, a.payload, a.priority, a.name, t.tick
          FROM advanced a
          JOIN unnest(fire_schedules.tick_names, fire_schedules.ticks) AS t(name, tick)
            ON t.name = a.name
         WHERE a.previous IS NULL OR t.tick > a.previous
         ORDER BY a.name, t.tick
        RETURNING id, schedule_name
    )
    SELECT a.name, count(d.id)::integer, max(d.id)
      FROM advanced a
      LEFT JOIN added d ON d.schedule_name = a.name
     GROUP BY a.name;
$$;

REVOKE EXECUTE ON FUNCTION notifyq.fire_schedules(
    text[], timestamptz[], timestamptz[], timestamptz[], text[], timestamptz[]) FROM PUBLIC;

-- `notifyq roles`: a worker, which manages schedules, also fires them.
CREATE OR REPLACE FUNCTION notifyq.grant_worker_schedules(grantee regrole, apply boolean DEFAULT true)
RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    stmt text;
BEGIN
    FOREACH stmt IN ARRAY ARRAY[
        format('GRANT SELECT, INSERT, UPDATE, DELETE ON notifyq.schedules TO %s', grantee),
        format('GRANT EXECUTE ON FUNCTION notifyq.fire_schedule('
               'text, timestamptz, timestamptz, timestamptz) TO %s', grantee),
        format('GRANT EXECUTE ON FUNCTION notifyq.fire_schedules(text[], timestamptz[], '
               'timestamptz[], timestamptz[], text[], timestamptz[]) TO %s', grantee)
    ] LOOP
        IF apply THEN
            EXECUTE stmt;
        END IF;
        RETURN NEXT stmt;
    END LOOP;
END;
$$;

-- Roles that already fire schedules (UPDATE on notifyq.schedules, from an earlier
-- `notifyq roles`) may call fire_schedules too, at once: a process of this version fires
-- through it, and a refusal would skip every tick until the operator re-ran `notifyq roles`.
DO $$
DECLARE
    grantee regrole;
BEGIN
    FOR grantee IN
        SELECT DISTINCT a.grantee::regrole
          FROM pg_class c, aclexplode(c.relacl) a
         WHERE c.oid = 'notifyq.schedules'::regclass AND a.privilege_type = 'UPDATE'
           AND a.grantee NOT IN (0, c.relowner)
    LOOP
        PERFORM notifyq.grant_worker_schedules(grantee);
    END LOOP;
END;
$$;
