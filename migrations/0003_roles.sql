-- notifyq schema, version 3: least-privilege roles (see docs/operations.md).
--
-- A producer role may only INSERT tasks (and LISTEN, which needs no privilege); it cannot
-- read, change or delete any row. The worker role runs `notifyq worker`/`serve`. The roles
-- themselves are the DBA's (CREATE ROLE ... LOGIN PASSWORD ...); these functions grant them
-- what they need, and are run again after each migration (`notifyq roles`).
-- Version 2 is the performance work's migration; versions are applied in order.

-- The insert trigger writes the 'queued' events and sends the notification. It runs as the
-- schema's owner, so that a producer needs no privilege on task_events. The fixed
-- search_path keeps a caller's objects out of it (it names every table with its schema).
ALTER FUNCTION notifyq.tasks_after_insert() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- Grant role `grantee` what a producer needs; returns the statements, run when `apply`.
CREATE FUNCTION notifyq.grant_producer(grantee regrole, apply boolean DEFAULT true)
RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    stmt text;
BEGIN
    FOREACH stmt IN ARRAY ARRAY[
        format('GRANT USAGE ON SCHEMA notifyq TO %s', grantee),
        -- Column privileges: a producer sets what a task is, never its state or its lease.
        format('GRANT INSERT (queue, kind, payload, priority, run_at, max_attempts, timeout) '
               'ON notifyq.tasks TO %s', grantee)
    ] LOOP
        IF apply THEN
            EXECUTE stmt;
        END IF;
        RETURN NEXT stmt;
    END LOOP;
END;
$$;

-- Grant role `grantee` what `notifyq worker` / `serve` (and status, prune, cancel, retry)
-- need; returns the statements, run when `apply`. Not the right to migrate: that stays with
-- the schema's owner.
CREATE FUNCTION notifyq.grant_worker(grantee regrole, apply boolean DEFAULT true)
RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    stmt text;
BEGIN
    FOREACH stmt IN ARRAY ARRAY[
        format('GRANT USAGE ON SCHEMA notifyq TO %s', grantee),
        format('GRANT SELECT, INSERT, UPDATE, DELETE ON notifyq.tasks, notifyq.task_events, '
               'notifyq.workers, notifyq.waiters TO %s', grantee),
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

-- Only the owner (or a superuser) hands out privileges.
REVOKE EXECUTE ON FUNCTION notifyq.grant_producer(regrole, boolean) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION notifyq.grant_worker(regrole, boolean) FROM PUBLIC;
