-- notifyq schema, version 17: snooze and start deadlines.
--
-- Snooze. A handler that returns or raises notifyq.Snooze(delay) puts its task back to
-- pending at now + delay without spending an attempt (the outcome statements' `snoozed`
-- verdict). tasks.snoozes counts a task's snoozes; tasks.max_snoozes (per task, default
-- 100) bounds them: a snooze beyond it ends the task error, "snoozed N times, the task's
-- limit (max_snoozes)", so a task cannot snooze forever.
--
-- Start deadlines. tasks.expires_at (NULL: none): a task not started by then never starts.
-- The claims skip a pending row past it; the maintenance sweep (`expire_tasks`) ends such
-- rows, pending or waiting, as cancelled with error 'expired: not started by <time>' and the
-- history event `expired`. A running task is not affected. tasks_expiry_idx holds only the
-- live rows with a deadline, so the sweep costs nothing on queues that use none.
--
-- Safe on a live database: the new columns have constant defaults (no rewrite), the new
-- checks are NOT VALID (old rows hold the defaults, which pass), and the claim of a row
-- without a deadline reads one more column of the row it already fetches.

ALTER TABLE notifyq.tasks
    ADD COLUMN snoozes     integer NOT NULL DEFAULT 0,
    ADD COLUMN max_snoozes integer NOT NULL DEFAULT 100,
    ADD COLUMN expires_at  timestamptz;
ALTER TABLE notifyq.tasks ADD CONSTRAINT tasks_snoozes_valid
    CHECK (snoozes >= 0 AND max_snoozes BETWEEN 0 AND 1000000) NOT VALID;
ALTER TABLE notifyq.tasks ADD CONSTRAINT tasks_expires_at_in_range
    CHECK (expires_at IS NULL OR isfinite(expires_at)) NOT VALID;

COMMENT ON COLUMN notifyq.tasks.snoozes IS
    'how many times a handler snoozed the task (notifyq.Snooze); attempts do not count them';
COMMENT ON COLUMN notifyq.tasks.max_snoozes IS
    'snoozes allowed; one more ends the task error';
COMMENT ON COLUMN notifyq.tasks.expires_at IS
    'start deadline: never started after it; the sweep ends it cancelled (event expired)';

CREATE INDEX tasks_expiry_idx ON notifyq.tasks (expires_at)
    WHERE expires_at IS NOT NULL AND status IN ('pending', 'waiting');

ALTER TABLE notifyq.task_events DROP CONSTRAINT task_events_event_valid;
ALTER TABLE notifyq.task_events ADD CONSTRAINT task_events_event_valid CHECK (event IN (
    'queued', 'started', 'done', 'failed', 'retried', 'recovered',
    'released', 'cancelled', 'requeued', 'waiting', 'snoozed', 'expired')) NOT VALID;

DO $$
BEGIN
    IF to_regclass('notifyq.task_events_legacy') IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM pg_inherits
                        WHERE inhrelid = to_regclass('notifyq.task_events_legacy')) THEN
        ALTER TABLE notifyq.task_events_legacy DROP CONSTRAINT task_events_event_valid;
        ALTER TABLE notifyq.task_events_legacy ADD CONSTRAINT task_events_event_valid
            CHECK (event IN ('queued', 'started', 'done', 'failed', 'retried', 'recovered',
                             'released', 'cancelled', 'requeued', 'waiting', 'snoozed',
                             'expired')) NOT VALID;
    END IF;
END
$$;

-- Fair queues. notifyq.queues.fair: a fair queue is claimed by claim_limited (it counts as
-- limited), which takes its due rows round-robin over their concurrency_keys, within
-- priority: the n-th due row of every key comes before the (n+1)-th of any key of the same
-- priority, and the keys take turns from the one after the queue's fair_cursor (the last
-- key served; tasks without a key are one lane, key ''). So tenant B's ten new tasks start
-- within the next claims however long tenant A's backlog is. The keys with pending rows are
-- found by a skip scan over tasks_fair_idx (one probe per key, whatever the backlog), and
-- each key's first rows by one probe of it. The index holds pending rows with a key only:
-- a queue whose tasks have no key pays nothing, and the plain claim is unchanged.
ALTER TABLE notifyq.queues
    ADD COLUMN fair        boolean NOT NULL DEFAULT false,
    ADD COLUMN fair_cursor text;

COMMENT ON COLUMN notifyq.queues.fair IS
    'claims take due rows round-robin over concurrency_key, within priority';
COMMENT ON COLUMN notifyq.queues.fair_cursor IS
    'the key a fair claim served last: the next claim starts after it';

CREATE INDEX tasks_fair_idx ON notifyq.tasks (queue, concurrency_key, priority DESC, run_at, id)
    WHERE status = 'pending' AND concurrency_key IS NOT NULL;

-- Priority aging. notifyq.queues.age_priority_after: in such a queue a due task's effective
-- priority is its priority plus one per age_priority_after it has been due (run_at), so a
-- steady stream of higher-priority work cannot starve it; nothing rewrites the rows. The
-- queue counts as limited (claim_limited, aged_pick). Not combined with a per-key limit
-- (that queue keeps the plain order) nor with fair (fair wins).
ALTER TABLE notifyq.queues ADD COLUMN age_priority_after interval;
ALTER TABLE notifyq.queues ADD CONSTRAINT queues_age_priority_after_valid
    CHECK (age_priority_after > interval '0' AND age_priority_after <= interval '1000 days');

COMMENT ON COLUMN notifyq.queues.age_priority_after IS
    'a due task gains one priority per this long waited (NULL: no aging)';

-- Up to `p_want` due pending rows of queue `p_queue` in aged order: priority plus whole
-- `p_age_s` periods since run_at, then run_at, id. Within one priority the longest-waiting
-- rows come first in tasks_claim_idx's order, so the first p_want rows of each priority
-- hold the answer: one index range per priority (found by a skip scan), whatever the
-- backlog. Ids only; claim_limited locks them.
CREATE FUNCTION notifyq.aged_pick(p_queue text, p_want integer, p_at timestamptz,
                                  p_kinds text[], p_age_s float8)
RETURNS bigint[]
LANGUAGE sql STABLE AS $$
WITH RECURSIVE levels AS (
    (SELECT t.priority AS p FROM notifyq.tasks t
      WHERE t.status = 'pending' AND t.queue = p_queue
      ORDER BY t.priority DESC, t.run_at, t.id LIMIT 1)
    UNION ALL
    SELECT (SELECT t.priority FROM notifyq.tasks t
             WHERE t.status = 'pending' AND t.queue = p_queue AND t.priority < levels.p
             ORDER BY t.priority DESC, t.run_at, t.id LIMIT 1)
      FROM levels WHERE levels.p IS NOT NULL
), candidates AS (
    SELECT c.id, c.run_at,
           c.priority + CASE WHEN isfinite(c.run_at)
                             THEN floor(extract(epoch FROM p_at - c.run_at) / p_age_s)
                             ELSE 0 END AS effective
      FROM levels
      CROSS JOIN LATERAL (
          SELECT t.id, t.priority, t.run_at FROM notifyq.tasks t
           WHERE t.status = 'pending' AND t.queue = p_queue AND t.priority = levels.p
             AND t.run_at <= p_at AND (p_kinds IS NULL OR t.kind = ANY (p_kinds))
             AND (t.expires_at IS NULL OR t.expires_at > p_at)
           ORDER BY t.priority DESC, t.run_at, t.id
           LIMIT p_want) c
     WHERE levels.p IS NOT NULL
)
SELECT array_agg(a.id ORDER BY a.n)
  FROM (SELECT c.id, row_number() OVER (ORDER BY c.effective DESC, c.run_at, c.id) AS n
          FROM candidates c) a
 WHERE a.n <= p_want;
$$;

CREATE OR REPLACE FUNCTION notifyq.queue_is_limited(q notifyq.queues) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT q.paused OR q.concurrency IS NOT NULL OR q.rate_count IS NOT NULL
           OR q.per_key_concurrency IS NOT NULL OR q.fair OR q.age_priority_after IS NOT NULL
$$;

DROP TRIGGER queues_limits_changed ON notifyq.queues;
CREATE TRIGGER queues_limits_changed
    AFTER UPDATE ON notifyq.queues
    FOR EACH ROW
    WHEN (OLD.concurrency IS DISTINCT FROM NEW.concurrency
          OR OLD.rate_count IS DISTINCT FROM NEW.rate_count
          OR OLD.rate_period IS DISTINCT FROM NEW.rate_period
          OR OLD.per_key_concurrency IS DISTINCT FROM NEW.per_key_concurrency
          OR OLD.paused IS DISTINCT FROM NEW.paused
          OR OLD.fair IS DISTINCT FROM NEW.fair
          OR OLD.age_priority_after IS DISTINCT FROM NEW.age_priority_after
          OR OLD.name IS DISTINCT FROM NEW.name)
    EXECUTE FUNCTION notifyq.queue_changed();

-- Up to `want` due pending rows of fair queue `q`, in fair order (see above): ids only, not
-- locked (claim_limited locks them, skipping rows locked meanwhile). `per_key` (NULL: none)
-- caps each key's rows by what it runs already; `cursor` is the queue's fair_cursor. Each
-- key gives at most its share of the claim (want over the keys, rounded up), so the cost is
-- one probe per key whatever the backlog; a key's second high-priority row may so wait for
-- the next claim behind other keys' lower-priority first rows.
CREATE FUNCTION notifyq.fair_pick(q text, want integer, at timestamptz, kinds text[],
                                  per_key integer, cursor text)
RETURNS bigint[]
LANGUAGE sql STABLE AS $$
WITH RECURSIVE keys AS (
    (SELECT t.concurrency_key AS k FROM notifyq.tasks t
      WHERE t.status = 'pending' AND t.queue = q AND t.concurrency_key IS NOT NULL
      ORDER BY t.concurrency_key LIMIT 1)
    UNION ALL
    SELECT (SELECT t.concurrency_key FROM notifyq.tasks t
             WHERE t.status = 'pending' AND t.queue = q AND t.concurrency_key IS NOT NULL
               AND t.concurrency_key > keys.k
             ORDER BY t.concurrency_key LIMIT 1)
      FROM keys WHERE keys.k IS NOT NULL
), share AS (
    -- Each key's share of this claim: want over the keys (and the lane without a key).
    SELECT ceil(want::numeric / (count(*) FILTER (WHERE keys.k IS NOT NULL) + 1))::integer
               AS n
      FROM keys
), running AS (
    SELECT t.concurrency_key AS k, count(*)::integer AS n
      FROM notifyq.tasks t
     WHERE per_key IS NOT NULL AND t.status = 'in_progress' AND t.queue = q
       AND t.concurrency_key IS NOT NULL
     GROUP BY t.concurrency_key
), heads AS (
    SELECT h.id, h.priority, h.rn, keys.k
      FROM keys
      CROSS JOIN share
      LEFT JOIN running r ON r.k = keys.k
      CROSS JOIN LATERAL (
          SELECT d.id, d.priority,
                 row_number() OVER (ORDER BY d.priority DESC, d.run_at, d.id) AS rn
            FROM (SELECT t.id, t.priority, t.run_at
                    FROM notifyq.tasks t
                   WHERE t.status = 'pending' AND t.queue = q AND t.concurrency_key = keys.k
                     AND t.run_at <= at AND (kinds IS NULL OR t.kind = ANY (kinds))
                     AND (t.expires_at IS NULL OR t.expires_at > at)
                   ORDER BY t.priority DESC, t.run_at, t.id
                   LIMIT greatest(0, least(share.n, coalesce(per_key - r.n, per_key, want)))) d
      ) h
     WHERE keys.k IS NOT NULL
    UNION ALL
    SELECT d.id, d.priority, row_number() OVER (ORDER BY d.priority DESC, d.run_at, d.id),
           NULL
      -- The lane without a key: looked for among the first 1,000 due rows in claim order
      -- (no index holds the rows without a key: a bounded scan, whatever the backlog).
      FROM (SELECT f.id, f.priority, f.run_at
              FROM (SELECT t.id, t.priority, t.run_at, t.concurrency_key
                      FROM notifyq.tasks t
                     WHERE t.status = 'pending' AND t.queue = q AND t.run_at <= at
                       AND (kinds IS NULL OR t.kind = ANY (kinds))
                       AND (t.expires_at IS NULL OR t.expires_at > at)
                     ORDER BY t.priority DESC, t.run_at, t.id
                     LIMIT 1000) f
             WHERE f.concurrency_key IS NULL
             ORDER BY f.priority DESC, f.run_at, f.id
             LIMIT (SELECT share.n FROM share)) d
)
SELECT array_agg(p.id ORDER BY p.n)
  FROM (SELECT h.id,
               row_number() OVER (ORDER BY h.priority DESC, h.rn,
                                           coalesce(h.k, '') <= coalesce(cursor, ''),
                                           coalesce(h.k, '')) AS n
          FROM heads h) p
 WHERE p.n <= want;
$$;

-- The claim of queues with limits (migration 0011's function): a row past its start
-- deadline is not a candidate; nothing else changes.
CREATE OR REPLACE FUNCTION notifyq.claim_limited(queues text[], want integer, worker text, lease_s float8,
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
            IF v_limited AND v_cfg.fair THEN
            -- A fair queue (migration 0017): the rows in fair order, locked now (a row
            -- locked meanwhile is skipped); one round takes all it can.
            SELECT array_agg(x.id ORDER BY x.ord) INTO v_picked
              FROM (SELECT t.id, p.ord
                      FROM unnest(notifyq.fair_pick(v_queue, v_allowed - v_taken, v_now, kinds,
                                                    v_per_key, v_cfg.fair_cursor))
                           WITH ORDINALITY AS p(id, ord)
                      JOIN notifyq.tasks t ON t.id = p.id
                     WHERE t.status = 'pending'
                       FOR UPDATE OF t SKIP LOCKED) x;
            ELSIF v_limited AND v_cfg.age_priority_after IS NOT NULL AND v_per_key IS NULL THEN
            -- Priority aging (migration 0017): the rows in aged order, locked now.
            SELECT array_agg(x.id ORDER BY x.ord) INTO v_picked
              FROM (SELECT t.id, p.ord
                      FROM unnest(notifyq.aged_pick(
                               v_queue, v_allowed - v_taken, v_now, kinds,
                               extract(epoch FROM v_cfg.age_priority_after)::float8))
                           WITH ORDINALITY AS p(id, ord)
                      JOIN notifyq.tasks t ON t.id = p.id
                     WHERE t.status = 'pending'
                       FOR UPDATE OF t SKIP LOCKED) x;
            ELSE
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
                   AND (t.expires_at IS NULL OR t.expires_at > v_now)
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
            END IF;
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
            IF v_limited AND v_cfg.fair THEN
                -- The next round (each key gave only its share) and the next claim start
                -- after the last key served.
                SELECT coalesce(t.concurrency_key, '') INTO v_cfg.fair_cursor
                  FROM notifyq.tasks t WHERE t.id = v_picked[cardinality(v_picked)];
                UPDATE notifyq.queues q SET fair_cursor = v_cfg.fair_cursor
                 WHERE q.name = v_queue;
                EXIT WHEN v_n = 0;
                CONTINUE;
            END IF;
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
                             AND (t.expires_at IS NULL OR t.expires_at > v_now)
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

-- Grants: a producer may set a task's snooze limit and start deadline.
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
                        'on_parent_failure', 'batch_id', 'after_batch',
                        'max_snoozes', 'expires_at'])
           WITH ORDINALITY AS c(name, n)
      JOIN pg_attribute a ON a.attname = c.name
     WHERE a.attrelid = 'notifyq.tasks'::regclass AND NOT a.attisdropped;
    FOREACH stmt IN ARRAY ARRAY[
        format('GRANT USAGE ON SCHEMA notifyq TO %s', grantee),
        format('GRANT INSERT (%s) ON notifyq.tasks TO %s', cols, grantee),
        -- RETURNING id of a producer's INSERT (notifyq.enqueue reads it back).
        format('GRANT SELECT (id) ON notifyq.tasks TO %s', grantee),
        -- INSERT INTO notifyq.batches DEFAULT VALUES RETURNING id: a new, empty batch.
        format('GRANT INSERT (created_at), SELECT (id) ON notifyq.batches TO %s', grantee),
        -- Debounce and throttle (migration 0017): the one way a producer changes a task.
        format('GRANT EXECUTE ON FUNCTION notifyq.enqueue_unique(text, text, jsonb, text, '
               'text, integer, timestamptz, integer, interval, jsonb, text, timestamptz) '
               'TO %s', grantee)
    ] LOOP
        IF apply THEN
            EXECUTE stmt;
        END IF;
        RETURN NEXT stmt;
    END LOOP;
END;
$$;
-- Debounce and throttle. Add a task with unique_key `key` to queue `queue`, choosing what a
-- live task of the queue holding the key becomes (`on_conflict`):
--   'keep'    nothing changes (a plain INSERT ... ON CONFLICT DO NOTHING does the same);
--   'replace' a pending holder takes the new payload, priority, attempts, timeout, meta,
--             concurrency_key and expires_at, and run_at = the new run_at (debounce: each
--             call pushes it back);
--   'update'  the same, but the holder keeps its run_at (throttle: it runs when first due,
--             with the newest values).
-- A holder that is in_progress already runs with what it was claimed with: under 'replace'
-- or 'update' it lets go of the key (its unique_key is cleared; its attempt, outcome and
-- retries are its own) and a new pending task with the key is added, so the newest values
-- always run once more after it. The holder is locked FOR UPDATE first: against a claim,
-- either the claim took it (and committed) before, and this adds a new task, or it is
-- changed before any claim can take it (a claim skips a locked row). It is never both
-- claimed with the old values and reported replaced (tests/integration/test_debounce.py).
-- Returns the task's id and what happened: 'added', 'replaced', 'updated' or 'kept'.
-- SECURITY DEFINER: a producer role (grant_producer) has INSERT only, not UPDATE.
CREATE FUNCTION notifyq.enqueue_unique(
    queue text, kind text, payload jsonb, key text, on_conflict text DEFAULT 'replace',
    priority integer DEFAULT 0, run_at timestamptz DEFAULT NULL, max_attempts integer DEFAULT 3,
    timeout interval DEFAULT NULL, meta jsonb DEFAULT NULL, concurrency_key text DEFAULT NULL,
    expires_at timestamptz DEFAULT NULL)
RETURNS TABLE (id bigint, change text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    held notifyq.tasks%ROWTYPE;
    new_id bigint;
    due timestamptz := coalesce(run_at, now());
BEGIN
    IF on_conflict IS NULL OR on_conflict NOT IN ('keep', 'replace', 'update') THEN
        RAISE EXCEPTION 'on_conflict must be keep, replace or update, not %', on_conflict
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF key IS NULL THEN
        RAISE EXCEPTION 'enqueue_unique needs a unique key' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    LOOP
        SELECT * INTO held FROM notifyq.tasks t
         WHERE t.queue = enqueue_unique.queue AND t.unique_key = key
           AND t.status IN ('pending', 'in_progress')
           FOR UPDATE;
        IF FOUND AND (on_conflict = 'keep') THEN
            RETURN QUERY SELECT held.id, 'kept'::text;
            RETURN;
        ELSIF FOUND AND held.status = 'pending' THEN
            UPDATE notifyq.tasks t
               SET kind = enqueue_unique.kind, payload = enqueue_unique.payload,
                   priority = enqueue_unique.priority, max_attempts = enqueue_unique.max_attempts,
                   timeout = enqueue_unique.timeout, meta = enqueue_unique.meta,
                   concurrency_key = enqueue_unique.concurrency_key,
                   expires_at = enqueue_unique.expires_at,
                   run_at = CASE WHEN on_conflict = 'replace' THEN due ELSE t.run_at END,
                   updated_at = now()
             WHERE t.id = held.id;
            RETURN QUERY SELECT held.id,
                                CASE WHEN on_conflict = 'replace' THEN 'replaced'
                                     ELSE 'updated' END;
            RETURN;
        ELSIF FOUND THEN
            -- Running: it keeps its values and lets go of the key; a new task follows it.
            UPDATE notifyq.tasks t SET unique_key = NULL, updated_at = now()
             WHERE t.id = held.id;
        END IF;
        BEGIN
            INSERT INTO notifyq.tasks AS t (queue, kind, payload, priority, run_at,
                                            max_attempts, timeout, meta, unique_key,
                                            concurrency_key, expires_at)
            VALUES (enqueue_unique.queue, enqueue_unique.kind, enqueue_unique.payload,
                    enqueue_unique.priority, due, enqueue_unique.max_attempts,
                    enqueue_unique.timeout, enqueue_unique.meta, key,
                    enqueue_unique.concurrency_key, enqueue_unique.expires_at)
            RETURNING t.id INTO new_id;
            RETURN QUERY SELECT new_id, 'added'::text;
            RETURN;
        EXCEPTION WHEN unique_violation THEN
            -- Another transaction added a holder since the lookup: look again.
            NULL;
        END;
    END LOOP;
END;
$$;

-- Grants: a worker calls fair_pick and aged_pick (through claim_limited) and enqueue_unique
-- (POST /tasks and the CLI with on_conflict).
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
               'notifyq.drop_event_partitions(interval)',
               'notifyq.fair_pick(text, integer, timestamptz, text[], integer, text)',
               'notifyq.aged_pick(text, integer, timestamptz, text[], float8)',
               'notifyq.enqueue_unique(text, text, jsonb, text, text, integer, timestamptz, '
               'integer, interval, jsonb, text, timestamptz)'])
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
