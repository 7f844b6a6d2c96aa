-- notifyq schema, version 8: a task's metadata, apart from its payload.
--
-- `meta` holds what travels with a task but is not the handler's input: today the
-- producer's trace context (`{"trace": {"traceparent": ...}}`, OpenTelemetry's W3C
-- format), written by notifyq.enqueue when the producer runs inside a span. Nullable and
-- without a default, so adding it rewrites nothing and costs plain INSERTs nothing.

ALTER TABLE notifyq.tasks ADD COLUMN meta jsonb;

COMMENT ON COLUMN notifyq.tasks.meta IS
    'what travels with a task besides its payload (trace context); NULL when none';

-- Producers may set it, and read back the id their INSERT ... RETURNING id gave them
-- (notifyq.enqueue does). Run `notifyq roles` again after this migration.
CREATE OR REPLACE FUNCTION notifyq.grant_producer(grantee regrole, apply boolean DEFAULT true)
RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    stmt text;
BEGIN
    FOREACH stmt IN ARRAY ARRAY[
        format('GRANT USAGE ON SCHEMA notifyq TO %s', grantee),
        -- Column privileges: a producer sets what a task is, never its state or its lease.
        format('GRANT INSERT (queue, kind, payload, priority, run_at, max_attempts, timeout, '
               'meta) ON notifyq.tasks TO %s', grantee),
        format('GRANT SELECT (id) ON notifyq.tasks TO %s', grantee)
    ] LOOP
        IF apply THEN
            EXECUTE stmt;
        END IF;
        RETURN NEXT stmt;
    END LOOP;
END;
$$;
