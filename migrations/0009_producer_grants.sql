-- notifyq schema, version 9: the producer's grants name every column a producer may set.
--
-- Migrations 0006 (queue limits) and 0008 (task meta) were written side by side, and each
-- replaced grant_producer: applied in order, 0008's fixed column list dropped 0006's
-- concurrency_key, so `notifyq roles --producer` did not let a producer set it. This
-- version lists the columns a producer may set and grants those that exist, so a later
-- column is one entry here. A producer still never sets a task's state or lease.
CREATE OR REPLACE FUNCTION notifyq.grant_producer(grantee regrole, apply boolean DEFAULT true)
RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    stmt text;
    cols text;
BEGIN
    SELECT string_agg(quote_ident(c.name), ', ' ORDER BY c.n) INTO cols
      FROM unnest(ARRAY['queue', 'kind', 'payload', 'priority', 'run_at', 'max_attempts',
                        'timeout', 'meta', 'unique_key', 'concurrency_key'])
           WITH ORDINALITY AS c(name, n)
      JOIN pg_attribute a ON a.attname = c.name
     WHERE a.attrelid = 'notifyq.tasks'::regclass AND NOT a.attisdropped;
    FOREACH stmt IN ARRAY ARRAY[
        format('GRANT USAGE ON SCHEMA notifyq TO %s', grantee),
        format('GRANT INSERT (%s) ON notifyq.tasks TO %s', cols, grantee),
        -- RETURNING id of a producer's INSERT (notifyq.enqueue reads it back).
        format('GRANT SELECT (id) ON notifyq.tasks TO %s', grantee)
    ] LOOP
        IF apply THEN
            EXECUTE stmt;
        END IF;
        RETURN NEXT stmt;
    END LOOP;
END;
$$;
