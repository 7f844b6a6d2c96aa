-- notifyq schema, version 11: fences that never repeat, locks taken in one order, and
-- functions that only the roles that need them may call.
--
-- 1. The claim token. An attempt's writes were fenced by (locked_by, attempts); `retry`
--    resets attempts to 0, so when the same process claimed a retried task again the pair
--    repeated, and a stale run's late result landed as the new attempt's outcome. Every
--    claim now adds one to tasks.claim_token, which nothing else changes: (id, claim_token)
--    names one attempt for ever. Outcomes and heartbeats name it (queries.sql). Adding a
--    NOT NULL column with a constant default is a catalog change: no row is rewritten.
-- 2. claim_limited locks the rows of all the queues it was given at once, ordered by
--    name, before it claims from them in the caller's (rotating) order. Each claimer used
--    to lock them one by one in its own order, and two processes serving the same limited
--    queues in opposite orders deadlocked. It also claims only the kinds it is given, as
--    `claim` does (migration 0013's processes claim only kinds they have a handler for);
--    a caller that gives none (NULL, processes of earlier versions) takes every kind.
-- 3. Retention never makes the engine wait. Dropping a day needs an ACCESS EXCLUSIVE lock
--    on notifyq.task_events; behind a long reader that request waited (up to 2 s) and
--    every outcome write queued behind it. notifyq.prune_event_partitions asks for the
--    lock with NOWAIT only, a few times, and leaves the day for the next turn if it never
--    got it: a request that never waits holds no one up. (DETACH PARTITION CONCURRENTLY,
--    PostgreSQL 14+, would not help: it is refused while a default partition exists.)
-- 4. Privileges on functions. PostgreSQL lets PUBLIC execute every new function; the
--    partition jobs run as the schema's owner (SECURITY DEFINER), so any role, a producer
--    included, could drop the whole history or create hundreds of partitions under a
--    lock. Now no function is PUBLIC's: `notifyq roles --worker` grants the worker the
--    ones it calls (grant_worker_functions), the producer none (its insert trigger runs
--    without an EXECUTE check). Roles that already have the worker's grants get them here,
--    so that running processes keep working before `notifyq roles` is run again.

ALTER TABLE notifyq.tasks ADD COLUMN claim_token bigint NOT NULL DEFAULT 0;

COMMENT ON COLUMN notifyq.tasks.claim_token IS
    'how many times the task was claimed; names the attempt running now (the fence)';

-- Claim up to `want` due pending rows of `queues` (migration 0006) and of `kinds` (NULL:
-- every kind); as there, with the lock order and claim_token of this version.
DROP FUNCTION notifyq.claim_limited(text[], integer, text, float8);

CREATE FUNCTION notifyq.claim_limited(queues text[], want integer, worker text, lease_s float8,
                                      kinds text[] DEFAULT NULL)
RETURNS TABLE (id bigint, queue text, kind text, payload_json text, priority integer,
               attempts integer, max_attempts integer, timeout_s float8, lag_s float8,
               meta_json text, claim_token bigint, held_s float8)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_queue     text;
    v_cfg       notifyq.queues%ROWTYPE;
    v_limited   boolean;
    v_now       timestamptz;
    v_at        timestamptz;
    v_allowed   integer;
    v_taken     integer;
    v_n         integer;
    v_running   integer;
    v_per_key   integer;
    v_picked    bigint[];
    v_log_at    timestamptz[];
    v_log_n     integer[];
    v_used      integer;
    v_held      timestamptz;
BEGIN
    -- As in `claim`: a claim lost in a server crash only leaves its rows pending.
    PERFORM set_config('synchronous_commit', 'off', true);
    -- The rows of every queue asked for, locked at once in one order (by name) however the
    -- caller rotated them: claimers of the same queues in other orders wait here, and can
    -- never hold one row while waiting for another (they deadlocked).
    PERFORM 1 FROM notifyq.queues q WHERE q.name = ANY (queues) ORDER BY q.name FOR UPDATE;
    FOREACH v_queue IN ARRAY queues LOOP
        EXIT WHEN want <= 0;
        -- The lock that serialises the claimers of one limited queue across the fleet,
        -- taken above (and here for a row added since then).
        SELECT * INTO v_cfg FROM notifyq.queues q WHERE q.name = v_queue FOR UPDATE;
        v_limited := FOUND AND notifyq.queue_is_limited(v_cfg);
        v_allowed := want;
        v_taken := 0;
        v_per_key := NULL;
        v_used := 0;
        v_running := 0;
        IF v_limited THEN
            v_per_key := v_cfg.per_key_concurrency;
            IF v_cfg.paused THEN
                v_allowed := 0;
            END IF;
            IF v_cfg.concurrency IS NOT NULL AND v_allowed > 0 THEN
                -- Read after the lock: a fresh snapshot that sees every earlier claim.
                SELECT count(*) INTO v_running
                  FROM notifyq.tasks t
                 WHERE t.status = 'in_progress' AND t.queue = v_queue;
                v_allowed := least(v_allowed, v_cfg.concurrency - v_running);
            END IF;
        END IF;
        v_now := clock_timestamp();
        v_at := v_now;
        IF v_limited THEN
            IF v_cfg.rate_count IS NOT NULL THEN
                SELECT coalesce(array_agg(e.at ORDER BY e.at), '{}'),
                       coalesce(array_agg(e.n ORDER BY e.at), '{}'),
                       coalesce(sum(e.n), 0)
                  INTO v_log_at, v_log_n, v_used
                  FROM unnest(v_cfg.rate_log_at, v_cfg.rate_log_n) AS e(at, n)
                 WHERE e.at > v_now - v_cfg.rate_period;
                v_allowed := least(v_allowed, v_cfg.rate_count - v_used);
            END IF;
        END IF;
        -- Rounds: each takes the first due rows in claim order, skipping keys at their
        -- limit; a row of a key that fills up within the round waits for the next round
        -- (which skips that key). Without a per-key limit one round takes all it can.
        WHILE v_taken < v_allowed LOOP
            WITH full_keys AS (
                SELECT t.concurrency_key AS k
                  FROM notifyq.tasks t
                 WHERE v_per_key IS NOT NULL
                   AND t.status = 'in_progress' AND t.queue = v_queue
                   AND t.concurrency_key IS NOT NULL
                 GROUP BY t.concurrency_key
                HAVING count(*) >= v_per_key
            ), candidates AS (
                SELECT t.id, t.concurrency_key AS k, t.priority, t.run_at
                  FROM notifyq.tasks t
                 WHERE t.status = 'pending' AND t.run_at <= v_now AND t.queue = v_queue
                   AND (kinds IS NULL OR t.kind = ANY (kinds))
                   AND (t.concurrency_key IS NULL
                        OR t.concurrency_key NOT IN (SELECT f.k FROM full_keys f))
                 ORDER BY t.priority DESC, t.run_at, t.id
                 LIMIT v_allowed - v_taken
                   FOR UPDATE OF t SKIP LOCKED
            ), ranked AS (
                SELECT c.id, c.k,
                       row_number() OVER (PARTITION BY c.k
                                          ORDER BY c.priority DESC, c.run_at, c.id) AS rn
                  FROM candidates c
            ), running AS (
                SELECT t.concurrency_key AS k, count(*) AS n
                  FROM notifyq.tasks t
                 WHERE v_per_key IS NOT NULL
                   AND t.status = 'in_progress' AND t.queue = v_queue
                   AND t.concurrency_key IS NOT NULL
                 GROUP BY t.concurrency_key
            )
            SELECT array_agg(r.id) INTO v_picked
              FROM ranked r LEFT JOIN running u ON u.k = r.k
             WHERE v_per_key IS NULL OR r.k IS NULL OR r.rn + coalesce(u.n, 0) <= v_per_key;
            -- Every key in `candidates` is below its limit, so its first row is picked:
            -- nothing picked means no due row is left.
            EXIT WHEN v_picked IS NULL;
            -- The rows' started_at (and the rate log's time), taken under the lock and after
            -- the counts: claim times increase in lock order, and a task that a count saw
            -- ended has its finished_at before it. So started_at/finished_at intervals never
            -- overlap more than a limit allows, and no rate_period window holds more than
            -- rate_count claims (the tests recompute both from the rows).
            v_at := clock_timestamp();
            RETURN QUERY
            WITH claimed AS (
                UPDATE notifyq.tasks t
                   SET status = 'in_progress', attempts = t.attempts + 1, locked_by = worker,
                       claim_token = t.claim_token + 1,
                       locked_until = v_at + make_interval(secs => lease_s),
                       started_at = v_at, updated_at = v_at
                 WHERE t.id = ANY (v_picked) AND t.status = 'pending'
                -- As in `claim`: the payload as text, no timestamps, an infinite run_at has
                -- lag 0. meta is migration 0008's column (resolved when this runs).
                RETURNING t.id, t.queue, t.kind, t.payload::text AS payload_json, t.priority,
                          t.attempts, t.max_attempts,
                          extract(epoch FROM t.timeout)::float8 AS timeout_s,
                          CASE WHEN isfinite(t.run_at)
                               THEN extract(epoch FROM v_at - t.run_at)::float8
                               ELSE 0 END AS lag_s,
                          t.meta::text AS meta_json, t.claim_token, t.run_at
            ), started AS (
                INSERT INTO notifyq.task_events (task_id, event, attempt, worker)
                SELECT c.id, 'started', c.attempts, worker FROM claimed c
            )
            SELECT c.id, c.queue, c.kind, c.payload_json, c.priority, c.attempts,
                   c.max_attempts, c.timeout_s, c.lag_s, c.meta_json, c.claim_token,
                   NULL::float8
              FROM claimed c
             ORDER BY c.priority DESC, c.run_at, c.id;
            GET DIAGNOSTICS v_n = ROW_COUNT;
            v_taken := v_taken + v_n;
            EXIT WHEN v_per_key IS NULL OR v_n = 0;
        END LOOP;
        want := want - v_taken;
        CONTINUE WHEN NOT v_limited;
        v_held := NULL;
        IF v_cfg.rate_count IS NOT NULL THEN
            IF v_taken > 0 THEN
                v_log_at := v_log_at || v_at;
                v_log_n := v_log_n || v_taken;
                IF cardinality(v_log_at) > 64 THEN
                    -- Merge the oldest entry into the next: it then leaves the window later,
                    -- which can only hold claims back, never let more through.
                    v_log_n[2] := v_log_n[2] + v_log_n[1];
                    v_log_at := v_log_at[2:];
                    v_log_n := v_log_n[2:];
                END IF;
            END IF;
            -- Written even without a claim: it drops the entries that left the window.
            UPDATE notifyq.queues q SET rate_log_at = v_log_at, rate_log_n = v_log_n
             WHERE q.name = v_queue
               AND (q.rate_log_at IS DISTINCT FROM v_log_at OR q.rate_log_n IS DISTINCT FROM v_log_n);
            IF v_used + v_taken >= v_cfg.rate_count THEN
                v_held := v_log_at[1] + v_cfg.rate_period;
            END IF;
        END IF;
        IF v_cfg.paused THEN
            v_held := 'infinity';
        ELSIF v_cfg.concurrency IS NOT NULL AND v_running + v_taken >= v_cfg.concurrency THEN
            -- Every slot taken: wait for an outcome (slots_freed) rather than a token.
            v_held := 'infinity';
        ELSIF v_per_key IS NOT NULL AND v_held IS NULL AND v_taken < v_allowed
              AND EXISTS (SELECT 1 FROM notifyq.tasks t
                           WHERE t.status = 'pending' AND t.queue = v_queue
                             AND t.run_at <= v_now
                             AND (kinds IS NULL OR t.kind = ANY (kinds))) THEN
            -- Due rows left behind: their keys are at the limit.
            v_held := 'infinity';
        END IF;
        IF v_held IS NOT NULL THEN
            RETURN QUERY SELECT NULL::bigint, v_queue, NULL::text, NULL::text, NULL::integer,
                                NULL::integer, NULL::integer, NULL::float8, NULL::float8,
                                NULL::text, NULL::bigint,
                                CASE WHEN v_held = 'infinity' THEN 'Infinity'::float8
                                     ELSE greatest(0, extract(epoch FROM
                                                   v_held - clock_timestamp()))::float8 END;
        END IF;
    END LOOP;
END;
$$;

-- Retention of the history: drop the partitions whose every row is older than
-- `older_than` (the legacy one too), and delete such rows from the default partition.
-- Returns each partition due and whether it was dropped. The lock on notifyq.task_events
-- is asked for with NOWAIT, up to 50 times 10 ms apart: it is taken only at a moment when
-- no one uses the history (a long reader keeps it), so no writer ever queues behind it.
-- Once it is not had, the remaining days are left for the next turn (dropped false).
CREATE FUNCTION notifyq.prune_event_partitions(older_than interval)
RETURNS TABLE (partition text, dropped boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cutoff timestamptz := now() - older_than;
    r record;
    busy boolean := false;
BEGIN
    PERFORM pg_advisory_xact_lock(1852798818);  -- one partition job at a time ("nqwb")
    -- First, while nothing is locked: a row-by-row delete may take a while.
    DELETE FROM notifyq.task_events_default WHERE at < cutoff;
    FOR r IN
        SELECT b.relname, b.upper_at
          FROM (SELECT c.relname,
                       (regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                     'TO \(''([^'']+)''\)'))[1]::timestamptz AS upper_at
                  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = 'notifyq.task_events'::regclass) AS b
         WHERE b.upper_at <= cutoff  -- NULL: the default partition
         ORDER BY b.upper_at
    LOOP
        partition := r.relname;
        dropped := false;
        FOR attempt IN 1..50 LOOP
            EXIT WHEN busy;
            BEGIN
                LOCK TABLE notifyq.task_events IN ACCESS EXCLUSIVE MODE NOWAIT;
                EXECUTE format('LOCK TABLE notifyq.%I IN ACCESS EXCLUSIVE MODE NOWAIT', r.relname);
                EXECUTE format('ALTER TABLE notifyq.task_events DETACH PARTITION notifyq.%I',
                               r.relname);
                EXECUTE format('DROP TABLE notifyq.%I', r.relname);
                dropped := true;
                EXIT;
            EXCEPTION WHEN lock_not_available THEN
                busy := attempt = 50;
                PERFORM pg_sleep(0.01);
            END;
        END LOOP;
        RETURN NEXT;
    END LOOP;
    -- Legacy rows not attached yet, all older than the cut-off: nobody reads them through
    -- notifyq.task_events.
    IF notifyq.legacy_events_bound() <= cutoff
       AND NOT EXISTS (SELECT 1 FROM pg_inherits
                        WHERE inhrelid = to_regclass('notifyq.task_events_legacy')) THEN
        partition := 'task_events_legacy';
        dropped := false;
        BEGIN
            LOCK TABLE notifyq.task_events_legacy IN ACCESS EXCLUSIVE MODE NOWAIT;
            DROP TABLE notifyq.task_events_legacy;
            dropped := true;
        EXCEPTION WHEN lock_not_available THEN
            dropped := false;  -- in use: the next turn
        END;
        RETURN NEXT;
    END IF;
END;
$$;

-- The previous version's name for it, which processes of that version still call.
CREATE OR REPLACE FUNCTION notifyq.drop_event_partitions(older_than interval)
RETURNS SETOF text
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    SELECT p.partition FROM notifyq.prune_event_partitions(older_than) AS p WHERE p.dropped
$$;

-- Grant role `grantee` EXECUTE on the functions `notifyq worker`/`serve` and the CLI call
-- (those that exist); returns the statements, run when `apply`. Called by `notifyq roles`
-- after grant_worker and grant_worker_schedules.
CREATE FUNCTION notifyq.grant_worker_functions(grantee regrole, apply boolean DEFAULT true)
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

-- No function of the schema is PUBLIC's (later migrations revoke their own new ones).
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA notifyq FROM PUBLIC;

-- Roles that have the worker's grants (UPDATE on notifyq.tasks) keep calling what they call.
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
