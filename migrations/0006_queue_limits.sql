-- notifyq schema, version 6: fleet-wide limits per queue, enforced inside the claim.
--
-- notifyq.queues holds a queue's limits: `concurrency` (at most N of its tasks in_progress
-- across the fleet), `rate_count` per `rate_period` (at most R claims in any window of that
-- length), `per_key_concurrency` (at most N in_progress tasks with one `concurrency_key`)
-- and `paused`. A queue without a row, or whose row sets no limit, is claimed by the
-- `claim` statement exactly as before (a process knows which of its queues are limited and
-- claims those with notifyq.claim_limited).
--
-- Race-free: claim_limited locks the queue's row (FOR UPDATE) and, under that lock, counts
-- the queue's in_progress rows in the tasks table itself. Concurrent claimers of one
-- limited queue therefore run one after the other, and each sees what the previous one
-- claimed. Nothing is counted apart from the rows, so nothing can drift: a slot is free
-- again as soon as its row leaves in_progress (an outcome, a release, the reaper).
-- The rate is a sliding log of the claims in the last `rate_period` (time, count), kept in
-- the row; times come from clock_timestamp() taken under the lock, so they increase in
-- lock order, and then no window of `rate_period` can hold more than `rate_count` claims.

CREATE TABLE notifyq.queues (
    name                text        PRIMARY KEY,
    concurrency         integer,
    rate_count          integer,
    rate_period         interval,
    per_key_concurrency integer,
    paused              boolean     NOT NULL DEFAULT false,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- The rate's sliding log: claim times (ascending) and how many rows each claimed. Only
    -- claims within the last rate_period are kept, at most 64 entries (older entries are
    -- merged into their successor, which can only make the limit stricter).
    rate_log_at         timestamptz[] NOT NULL DEFAULT '{}',
    rate_log_n          integer[]     NOT NULL DEFAULT '{}',
    CONSTRAINT queues_name_valid CHECK (name <> '' AND length(name) <= 128),
    CONSTRAINT queues_concurrency_valid CHECK (concurrency BETWEEN 1 AND 1000000),
    CONSTRAINT queues_per_key_concurrency_valid CHECK (per_key_concurrency BETWEEN 1 AND 1000000),
    CONSTRAINT queues_rate_valid CHECK (
        (rate_count IS NULL) = (rate_period IS NULL)
        AND rate_count BETWEEN 1 AND 1000000
        AND rate_period > interval '0' AND rate_period <= interval '1000 days')
);

COMMENT ON TABLE notifyq.queues IS
    'notifyq per-queue limits (concurrency, rate, per-key concurrency, paused); see the README';

-- The key a per-key limit counts by (a customer id, say). NULL: the task counts only
-- against the queue's own limits. Adding a nullable column rewrites nothing; the check is
-- NOT VALID so that the migration does not scan the table (every existing row is NULL).
ALTER TABLE notifyq.tasks ADD COLUMN concurrency_key text;
ALTER TABLE notifyq.tasks ADD CONSTRAINT tasks_concurrency_key_valid
    CHECK (concurrency_key <> '' AND length(concurrency_key) <= 256) NOT VALID;

-- Whether a queue row sets any limit (paused counts as one).
CREATE FUNCTION notifyq.queue_is_limited(q notifyq.queues) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT q.paused OR q.concurrency IS NOT NULL OR q.rate_count IS NOT NULL
           OR q.per_key_concurrency IS NOT NULL
$$;

-- Claim up to `want` due pending rows of `queues` (in that order: the caller rotates it),
-- obeying each queue's limits. Returns the claimed rows with the columns of the `claim`
-- statement, and for each queue that a limit held back one extra row with `id` NULL,
-- `queue` set and `held_s`: 'Infinity' when it waits for a slot (an outcome or the
-- reaper frees one; a notification says so) or for a change of its row (resume, a raised
-- limit); else the seconds until its next rate token is due.
CREATE FUNCTION notifyq.claim_limited(queues text[], want integer, worker text, lease_s float8)
RETURNS TABLE (id bigint, queue text, kind text, payload_json text, priority integer,
               attempts integer, max_attempts integer, timeout_s float8, lag_s float8,
               meta_json text, held_s float8)
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
    FOREACH v_queue IN ARRAY queues LOOP
        EXIT WHEN want <= 0;
        -- The lock that serialises the claimers of one limited queue across the fleet.
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
                          t.meta::text AS meta_json, t.run_at
            ), started AS (
                INSERT INTO notifyq.task_events (task_id, event, attempt, worker)
                SELECT c.id, 'started', c.attempts, worker FROM claimed c
            )
            SELECT c.id, c.queue, c.kind, c.payload_json, c.priority, c.attempts,
                   c.max_attempts, c.timeout_s, c.lag_s, c.meta_json, NULL::float8
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
                             AND t.run_at <= v_now) THEN
            -- Due rows left behind: their keys are at the limit.
            v_held := 'infinity';
        END IF;
        IF v_held IS NOT NULL THEN
            RETURN QUERY SELECT NULL::bigint, v_queue, NULL::text, NULL::text, NULL::integer,
                                NULL::integer, NULL::integer, NULL::float8, NULL::float8,
                                NULL::text,
                                CASE WHEN v_held = 'infinity' THEN 'Infinity'::float8
                                     ELSE greatest(0, extract(epoch FROM
                                                   v_held - clock_timestamp()))::float8 END;
        END IF;
    END LOOP;
END;
$$;

-- An outcome ended tasks of `queues`: wake the processes waiting for a slot of those that
-- have a concurrency limit (through notifyq.waiters, as an insert does; nobody waiting:
-- nothing sent). Rows that go back to pending notify through their own trigger already.
CREATE FUNCTION notifyq.slots_freed(queues text[]) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM notifyq.wake_waiters(ARRAY(
        SELECT q.name FROM notifyq.queues q
         WHERE q.name = ANY (slots_freed.queues)
           AND (q.concurrency IS NOT NULL OR q.per_key_concurrency IS NOT NULL)));
END;
$$;

-- A queue's limits changed: tell every process at once (they keep the set of limited
-- queues in memory and claim again: a resume or a raised limit takes effect now). Not on
-- the claims' own writes to the rate log.
CREATE FUNCTION notifyq.queue_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('notifyq_queues',
                      CASE WHEN TG_OP = 'DELETE' THEN OLD.name ELSE NEW.name END);
    RETURN NULL;
END;
$$;

CREATE TRIGGER queues_changed
    AFTER INSERT OR DELETE ON notifyq.queues
    FOR EACH ROW EXECUTE FUNCTION notifyq.queue_changed();

CREATE TRIGGER queues_limits_changed
    AFTER UPDATE ON notifyq.queues
    FOR EACH ROW
    WHEN (OLD.concurrency IS DISTINCT FROM NEW.concurrency
          OR OLD.rate_count IS DISTINCT FROM NEW.rate_count
          OR OLD.rate_period IS DISTINCT FROM NEW.rate_period
          OR OLD.per_key_concurrency IS DISTINCT FROM NEW.per_key_concurrency
          OR OLD.paused IS DISTINCT FROM NEW.paused
          OR OLD.name IS DISTINCT FROM NEW.name)
    EXECUTE FUNCTION notifyq.queue_changed();

-- Roles (migration 0003): a producer may set a task's concurrency_key; a worker reads and
-- writes notifyq.queues (the claim locks and updates its row; `App.queue` declarations and
-- `notifyq queue set` write it). Both functions grant what exists among the columns and
-- tables of every version, so that later migrations need not restate them.
CREATE OR REPLACE FUNCTION notifyq.grant_producer(grantee regrole, apply boolean DEFAULT true)
RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    stmt text;
    cols text;
BEGIN
    -- What a task is, never its state or its lease: those of these columns that exist.
    SELECT string_agg(quote_ident(c.name), ', ' ORDER BY c.n) INTO cols
      FROM unnest(ARRAY['queue', 'kind', 'payload', 'priority', 'run_at', 'max_attempts',
                        'timeout', 'meta', 'unique_key', 'concurrency_key'])
           WITH ORDINALITY AS c(name, n)
      JOIN pg_attribute a ON a.attname = c.name
     WHERE a.attrelid = 'notifyq.tasks'::regclass AND NOT a.attisdropped;
    FOREACH stmt IN ARRAY ARRAY[
        format('GRANT USAGE ON SCHEMA notifyq TO %s', grantee),
        format('GRANT INSERT (%s) ON notifyq.tasks TO %s', cols, grantee),
        -- RETURNING id of a producer's INSERT (migration 0008 grants it too).
        format('GRANT SELECT (id) ON notifyq.tasks TO %s', grantee)
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
     WHERE c.relnamespace = 'notifyq'::regnamespace AND c.relkind IN ('r', 'p')
       AND c.relname IN ('tasks', 'task_events', 'workers', 'waiters', 'queues', 'schedules');
    FOREACH stmt IN ARRAY ARRAY[
        format('GRANT USAGE ON SCHEMA notifyq TO %s', grantee),
        format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %s', tables, grantee),
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

REVOKE EXECUTE ON FUNCTION notifyq.grant_producer(regrole, boolean) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION notifyq.grant_worker(regrole, boolean) FROM PUBLIC;
