-- Migration 0015: a batch member that ends at its own insert (cancelled, because a parent
-- of it failed already) is counted as ended by that insert. It passes through no outcome
-- statement, so before this its batch never completed and the callback waited forever.
-- tasks_after_insert is replaced; nothing else changes.

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
        -- A member may end at its insert (cancelled: its parent failed already); it
        -- passes through no outcome statement, so it is counted as ended here.
        WITH added AS (
            SELECT n.batch_id, count(*)::integer AS n,
                   (count(*) FILTER (WHERE n.status = 'done'))::integer AS done,
                   (count(*) FILTER (WHERE n.status IN ('error', 'cancelled')))::integer
                       AS failed
              FROM new_rows n WHERE n.batch_id IS NOT NULL GROUP BY n.batch_id
        ), counted AS (
            UPDATE notifyq.batches b
               SET total = b.total + a.n, done = b.done + a.done, failed = b.failed + a.failed
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
