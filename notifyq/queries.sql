-- Every SQL statement notifyq runs, each under a `-- name:` header. Code looks them up by
-- name (`sql.queries["claim"]`); values always travel as bind parameters. The benchmarks'
-- own statements live in notifyq/bench/bench.sql.
-- Sections follow the store modules that run the statements.

-- ======================================================================================
-- engine — store/engine.py: the claim, the outcome writes, leases, the registry, the probe
-- ======================================================================================

-- name: claim
-- Claim up to $2 due pending rows of the queues $1 and the kinds $5 for owner $3, with a
-- lease of $4 s: only kinds the process can start now (a row of another kind stays
-- pending for a process that can). One statement over tasks_claim_idx; SKIP LOCKED lets
-- many processes claim at once.
-- Its commit does not wait for the WAL flush (`quick`): a claim lost in a server crash
-- only leaves its rows pending, to be claimed again, which at-least-once allows; outcome
-- writes stay durable. This takes the flush (~1-3 ms) out of every task's pickup.
WITH quick AS MATERIALIZED (
    SELECT set_config('synchronous_commit', 'off', true)
), picked AS (
    SELECT id
      FROM notifyq.tasks, quick
     WHERE status = 'pending' AND run_at <= now() AND queue = ANY($1::text[])
       AND kind = ANY($5::text[])
       -- A start deadline (migration 0017) is read from the row the scan fetches anyway.
       AND (expires_at IS NULL OR expires_at > now())
     ORDER BY priority DESC, run_at, id
     LIMIT $2
       FOR UPDATE OF tasks SKIP LOCKED
), claimed AS (
    UPDATE notifyq.tasks t
       SET status = 'in_progress', attempts = t.attempts + 1, claim_token = t.claim_token + 1,
           locked_by = $3, locked_until = now() + make_interval(secs => $4::float8),
           started_at = now(), updated_at = now()
     -- = ANY(ARRAY(...)), not a join: a join may be planned as a scan of the whole table.
     WHERE t.id = ANY (ARRAY(SELECT id FROM picked))
    -- Nothing here can fail for one row and take the batch with it: the payload comes
    -- back as text (decoded per row by the claimer), no timestamp is returned (the driver
    -- cannot decode every value PostgreSQL accepts), and an infinite run_at has lag 0.
    RETURNING t.id, t.queue, t.kind, t.payload::text AS payload_json, t.priority, t.attempts,
              t.max_attempts, t.meta::text AS meta_json, t.claim_token,
              extract(epoch FROM t.timeout)::float8 AS timeout_s,
              CASE WHEN isfinite(t.run_at)
                   THEN extract(epoch FROM now() - t.run_at)::float8 ELSE 0 END AS lag_s,
              t.run_at
)
SELECT id, queue, kind, payload_json, priority, attempts, max_attempts, timeout_s, lag_s,
       meta_json, claim_token
  FROM claimed ORDER BY priority DESC, run_at, id;

-- name: claim_limited
-- Claim up to $2 due pending rows of the limited queues $1 (in that order) and the kinds
-- $5 (as `claim`: a row of another kind stays pending) for owner $3, with a lease of $4 s,
-- within each queue's limits (migrations 0006, 0011). Rows with id NULL
-- name a queue that a limit held back and for how long (held_s; Infinity: until a slot
-- frees or its limits change). Unlimited queues never come here: they keep `claim`.
SELECT * FROM notifyq.claim_limited($1::text[], $2, $3, $4::float8, $5::text[]);

-- name: limited_queues
-- The queues that have a limit (a process claims those with claim_limited).
SELECT q.name FROM notifyq.queues q WHERE notifyq.queue_is_limited(q) ORDER BY q.name;

-- name: slots_freed
-- Outcomes ended tasks of the limited queues $1: wake the processes waiting for a slot.
SELECT notifyq.slots_freed($1::text[]);

-- name: next_due
-- Seconds until the earliest pending row of the queues $1 and the kinds $2 (those the
-- claim takes) is due (negative: overdue; NULL: none pending, or only rows parked at
-- run_at 'infinity'). One index scan per queue on tasks_due_idx, which passes over rows
-- of other kinds. '-infinity' is overdue (-1), never subtracted (PostgreSQL 15 refuses).
SELECT CASE WHEN min(first.run_at) = '-infinity' THEN -1::float8
            WHEN isfinite(min(first.run_at))
                THEN extract(epoch FROM min(first.run_at) - clock_timestamp())::float8
       END
  FROM unnest($1::text[]) AS q(name),
       LATERAL (SELECT run_at FROM notifyq.tasks
                 WHERE status = 'pending' AND queue = q.name AND kind = ANY($2::text[])
                   AND (expires_at IS NULL OR expires_at > now())
                 ORDER BY run_at LIMIT 1) AS first;

-- name: finish
-- Record the outcomes of attempts owned by $1, in one statement ($9: each failed attempt's
-- traceback, for its history row: migration 0019; NULL for the others). Fenced: a row is
-- written only while it is still in_progress, owned by $1, under the claim token $8 that
-- its attempt's claim took (migration 0011: it never repeats for a task, not even after a
-- retry resets attempts), so a run that lost its lease can never overwrite a newer
-- attempt's outcome.
-- Outcomes (store.Verdict, also the history's event names): done, failed (ends 'error'),
-- cancelled, retried (pending again after delay_s), released (pending again, the attempt
-- not counted: shutdown), snoozed (pending again after delay_s, the attempt not counted,
-- snoozes + 1; beyond max_snoozes it ends 'error', event failed: migration 0017). A retry,
-- release or snooze of a task whose cancel was requested ends it cancelled instead.
-- Workflows (migration 0014): the members of batches that end are counted, one update per
-- batch; a task that has dependents releases or cancels them through its row's trigger, in
-- this same transaction (a task nobody depends on runs no trigger for it).
WITH outcome AS (
    SELECT *
      FROM unnest($2::bigint[], $3::int[], $4::text[], $5::text[], $6::text[], $7::float8[],
                  $8::bigint[], $9::text[])
           AS o(id, attempt, outcome, result, error, delay_s, token, traceback)
     -- Rows are locked in id order, as every statement that locks several tasks does (a
     -- producer adding a dependent locks its parents so: migration 0014).
     ORDER BY o.id
), written AS (
    UPDATE notifyq.tasks t
       SET status = CASE
                WHEN o.outcome IN ('retried', 'released', 'snoozed')
                     AND t.cancel_requested_at IS NOT NULL
                    THEN 'cancelled'
                WHEN o.outcome = 'snoozed' AND t.snoozes >= t.max_snoozes THEN 'error'
                WHEN o.outcome IN ('retried', 'released', 'snoozed') THEN 'pending'
                WHEN o.outcome = 'failed' THEN 'error'
                ELSE o.outcome END,
           -- A released or snoozed attempt is not counted (a snooze over the limit is).
           attempts = CASE WHEN o.outcome = 'released'
                             OR (o.outcome = 'snoozed' AND t.snoozes < t.max_snoozes)
                           THEN t.attempts - 1 ELSE t.attempts END,
           snoozes = CASE WHEN o.outcome = 'snoozed' AND t.snoozes < t.max_snoozes
                          THEN t.snoozes + 1 ELSE t.snoozes END,
           result = o.result::jsonb,
           error = CASE WHEN o.outcome = 'snoozed' AND t.snoozes >= t.max_snoozes
                            AND t.cancel_requested_at IS NULL
                        THEN format('snoozed %s times, the task''s limit (max_snoozes)', t.snoozes)
                        WHEN o.outcome IN ('done', 'released', 'snoozed') THEN t.error
                        ELSE o.error END,
           run_at = CASE WHEN o.outcome IN ('retried', 'snoozed')
                         THEN now() + make_interval(secs => o.delay_s) ELSE t.run_at END,
           locked_by = NULL, locked_until = NULL,
           finished_at = CASE
                WHEN o.outcome IN ('retried', 'released') AND t.cancel_requested_at IS NULL
                    THEN NULL
                WHEN o.outcome = 'snoozed' AND t.cancel_requested_at IS NULL
                     AND t.snoozes < t.max_snoozes
                    THEN NULL
                ELSE now() END,
           updated_at = now()
      FROM outcome o
     -- locked_by = $1 implies status = 'in_progress' (CHECK tasks_lease_matches_status).
     -- Not spelling the status out keeps the planner on tasks_pkey, one probe per
     -- outcome: with it, a generic plan may scan tasks_lease_idx and rescan the unnest
     -- per row (measured: 720 ms instead of 60 ms for 1,000 outcomes).
     WHERE t.id = o.id AND t.locked_by = $1 AND t.claim_token = o.token
       AND t.attempts = o.attempt
    RETURNING t.id, t.claim_token, t.status, o.attempt, o.outcome,
              CASE WHEN o.outcome = 'snoozed' AND t.status = 'error' THEN t.error
                   ELSE o.error END AS error,
              o.traceback, t.started_at, t.batch_id
), events AS (
    -- A snooze over the task's limit is its failure (status error).
    INSERT INTO notifyq.task_events (task_id, event, attempt, worker, error, traceback,
                                     started_at)
    SELECT id, CASE WHEN status = 'cancelled' THEN 'cancelled'
                    WHEN status = 'error' THEN 'failed' ELSE outcome END,
           attempt, $1, error, traceback, started_at
      FROM written
), batch_ends AS (
    -- Members of batches that ended (migration 0014): one update per batch and statement.
    -- Nothing to do (no member among the rows) costs a pass over the written rows.
    UPDATE notifyq.batches b
       SET done = b.done + e.done, failed = b.failed + e.failed,
           completed_at = CASE WHEN b.sealed AND b.done + e.done + b.failed + e.failed = b.total
                               THEN now() END
      FROM (SELECT w.batch_id, count(*) FILTER (WHERE w.status = 'done')::int AS done,
                   count(*) FILTER (WHERE w.status <> 'done')::int AS failed
              FROM written w
             WHERE w.batch_id IS NOT NULL AND w.status IN ('done', 'error', 'cancelled')
             GROUP BY w.batch_id) AS e
     WHERE b.id = e.batch_id AND b.completed_at IS NULL
       -- Locked in id order first (an InitPlan): two statements ending members of the same
       -- batches never hold them crosswise.
       AND b.id = ANY (ARRAY(SELECT l.id FROM notifyq.batches l
                              WHERE l.id IN (SELECT w.batch_id FROM written w)
                              ORDER BY l.id FOR NO KEY UPDATE))
)
SELECT id, claim_token, status FROM written;

-- name: finish_and_claim
-- `finish` and `claim` in one statement: the writer records the outcomes of owner $1
-- ($2..$9, as `finish`) and claims up to $11 due rows of the queues $10 and the kinds $13
-- with a lease of $12 s for the workers those outcomes free, in one round trip and one
-- commit (durable, as
-- `finish` is). Rows are never more in_progress than workers, and the next claim no
-- longer waits for the last outcome's round trip. The CTEs are those of `finish` and
-- `claim` (tests/integration/test_store.py keeps them the same). Returns the written rows
-- (id, status; claim_order NULL), then the claimed rows (status NULL), claim_order 1, 2, ...
WITH outcome AS (
    SELECT *
      FROM unnest($2::bigint[], $3::int[], $4::text[], $5::text[], $6::text[], $7::float8[],
                  $8::bigint[], $9::text[])
           AS o(id, attempt, outcome, result, error, delay_s, token, traceback)
     -- Rows are locked in id order, as every statement that locks several tasks does (a
     -- producer adding a dependent locks its parents so: migration 0014).
     ORDER BY o.id
), written AS (
    UPDATE notifyq.tasks t
       SET status = CASE
                WHEN o.outcome IN ('retried', 'released', 'snoozed')
                     AND t.cancel_requested_at IS NOT NULL
                    THEN 'cancelled'
                WHEN o.outcome = 'snoozed' AND t.snoozes >= t.max_snoozes THEN 'error'
                WHEN o.outcome IN ('retried', 'released', 'snoozed') THEN 'pending'
                WHEN o.outcome = 'failed' THEN 'error'
                ELSE o.outcome END,
           -- A released or snoozed attempt is not counted (a snooze over the limit is).
           attempts = CASE WHEN o.outcome = 'released'
                             OR (o.outcome = 'snoozed' AND t.snoozes < t.max_snoozes)
                           THEN t.attempts - 1 ELSE t.attempts END,
           snoozes = CASE WHEN o.outcome = 'snoozed' AND t.snoozes < t.max_snoozes
                          THEN t.snoozes + 1 ELSE t.snoozes END,
           result = o.result::jsonb,
           error = CASE WHEN o.outcome = 'snoozed' AND t.snoozes >= t.max_snoozes
                            AND t.cancel_requested_at IS NULL
                        THEN format('snoozed %s times, the task''s limit (max_snoozes)', t.snoozes)
                        WHEN o.outcome IN ('done', 'released', 'snoozed') THEN t.error
                        ELSE o.error END,
           run_at = CASE WHEN o.outcome IN ('retried', 'snoozed')
                         THEN now() + make_interval(secs => o.delay_s) ELSE t.run_at END,
           locked_by = NULL, locked_until = NULL,
           finished_at = CASE
                WHEN o.outcome IN ('retried', 'released') AND t.cancel_requested_at IS NULL
                    THEN NULL
                WHEN o.outcome = 'snoozed' AND t.cancel_requested_at IS NULL
                     AND t.snoozes < t.max_snoozes
                    THEN NULL
                ELSE now() END,
           updated_at = now()
      FROM outcome o
     WHERE t.id = o.id AND t.locked_by = $1 AND t.claim_token = o.token
       AND t.attempts = o.attempt
    RETURNING t.id, t.claim_token, t.status, o.attempt, o.outcome,
              CASE WHEN o.outcome = 'snoozed' AND t.status = 'error' THEN t.error
                   ELSE o.error END AS error,
              o.traceback, t.started_at, t.batch_id
), events AS (
    -- A snooze over the task's limit is its failure (status error).
    INSERT INTO notifyq.task_events (task_id, event, attempt, worker, error, traceback,
                                     started_at)
    SELECT id, CASE WHEN status = 'cancelled' THEN 'cancelled'
                    WHEN status = 'error' THEN 'failed' ELSE outcome END,
           attempt, $1, error, traceback, started_at
      FROM written
), batch_ends AS (
    -- Members of batches that ended (migration 0014): one update per batch and statement.
    -- Nothing to do (no member among the rows) costs a pass over the written rows.
    UPDATE notifyq.batches b
       SET done = b.done + e.done, failed = b.failed + e.failed,
           completed_at = CASE WHEN b.sealed AND b.done + e.done + b.failed + e.failed = b.total
                               THEN now() END
      FROM (SELECT w.batch_id, count(*) FILTER (WHERE w.status = 'done')::int AS done,
                   count(*) FILTER (WHERE w.status <> 'done')::int AS failed
              FROM written w
             WHERE w.batch_id IS NOT NULL AND w.status IN ('done', 'error', 'cancelled')
             GROUP BY w.batch_id) AS e
     WHERE b.id = e.batch_id AND b.completed_at IS NULL
       -- Locked in id order first (an InitPlan): two statements ending members of the same
       -- batches never hold them crosswise.
       AND b.id = ANY (ARRAY(SELECT l.id FROM notifyq.batches l
                              WHERE l.id IN (SELECT w.batch_id FROM written w)
                              ORDER BY l.id FOR NO KEY UPDATE))
), picked AS (
    SELECT id
      FROM notifyq.tasks
     WHERE status = 'pending' AND run_at <= now() AND queue = ANY($10::text[])
       AND kind = ANY($13::text[])
       -- A start deadline (migration 0017) is read from the row the scan fetches anyway.
       AND (expires_at IS NULL OR expires_at > now())
     ORDER BY priority DESC, run_at, id
     LIMIT $11
       FOR UPDATE OF tasks SKIP LOCKED
), claimed AS (
    UPDATE notifyq.tasks t
       SET status = 'in_progress', attempts = t.attempts + 1, claim_token = t.claim_token + 1,
           locked_by = $1, locked_until = now() + make_interval(secs => $12::float8),
           started_at = now(), updated_at = now()
     WHERE t.id = ANY (ARRAY(SELECT id FROM picked))
    RETURNING t.id, t.queue, t.kind, t.payload::text AS payload_json, t.priority, t.attempts,
              t.max_attempts, t.meta::text AS meta_json, t.claim_token,
              extract(epoch FROM t.timeout)::float8 AS timeout_s,
              CASE WHEN isfinite(t.run_at)
                   THEN extract(epoch FROM now() - t.run_at)::float8 ELSE 0 END AS lag_s,
              t.run_at
)
SELECT id, status, NULL AS queue, NULL AS kind, NULL AS payload_json, NULL::int AS priority,
       NULL::int AS attempts, NULL::int AS max_attempts, NULL::float8 AS timeout_s,
       NULL::float8 AS lag_s, NULL AS meta_json, claim_token, NULL::bigint AS claim_order
  FROM written
UNION ALL
SELECT id, NULL, queue, kind, payload_json, priority, attempts, max_attempts, timeout_s, lag_s,
       meta_json, claim_token, row_number() OVER (ORDER BY priority DESC, run_at, id)
  FROM claimed;

-- name: extend_leases
-- The batched heartbeat: extend by $2 s the leases of $1's running attempts, tasks $3
-- under claim tokens $4 (fenced as `finish` is). Returns the attempts still owned (one
-- missing has lost its lease), whether a cancel was requested, for a process that
-- missed the notifyq_cancel notification (NO_LISTEN), and whether the lease was extended.
-- It never waits for a row lock, so it can never be part of a deadlock: a row that
-- another transaction holds (the outcome writer ending it, the reaper, a cancel) is
-- skipped, reported owned as this statement's snapshot shows it but not extended; the
-- process keeps its old deadline for it and tries again at the next beat.
WITH owned AS (
    SELECT t.id, t.claim_token, t.cancel_requested_at IS NOT NULL AS cancel_requested
      FROM unnest($3::bigint[], $4::bigint[]) AS a(id, token)
      JOIN notifyq.tasks t ON t.id = a.id AND t.claim_token = a.token
     WHERE t.locked_by = $1
), locked AS (
    -- The same rows, locked in id order; a row that changed since the snapshot is checked
    -- again (owner and token) before it is locked.
    SELECT t.id
      FROM unnest($3::bigint[], $4::bigint[]) AS a(id, token)
      JOIN notifyq.tasks t ON t.id = a.id AND t.claim_token = a.token
     WHERE t.locked_by = $1
     ORDER BY t.id
       FOR UPDATE OF t SKIP LOCKED
), extended AS (
    UPDATE notifyq.tasks t
       SET locked_until = now() + make_interval(secs => $2::float8)
     WHERE t.id = ANY (ARRAY(SELECT id FROM locked))
)
SELECT id, claim_token, cancel_requested, id IN (SELECT id FROM locked) AS extended
  FROM owned;

-- name: register_worker
-- Insert or refresh this process in the worker registry (with the kinds $8 it runs).
INSERT INTO notifyq.workers AS w (id, host, pid, queues, concurrency, in_flight, version, kinds)
VALUES ($1, $2, $3, $4::text[], $5, $6, $7, $8::text[])
ON CONFLICT (id) DO UPDATE SET in_flight = excluded.in_flight, last_seen = now();

-- name: unregister_worker
-- Remove this process from the registry (and from the waiters) at clean shutdown.
WITH waiter AS (
    DELETE FROM notifyq.waiters WHERE worker_id = $1
)
DELETE FROM notifyq.workers WHERE id = $1;

-- name: go_idle
-- Record process $1 as waiting for rows of the queues $2 (see migration 0002). True when
-- no producer was between its trigger and its commit; claim once more either way.
SELECT notifyq.go_idle($1, $2::text[]);

-- name: probe
-- The listener's round-trip probe: a notification on channel $1, which only this
-- process listens to, sent on the listening connection itself.
SELECT pg_notify($1, 'probe');

-- ======================================================================================
-- upkeep — store/upkeep.py: maintenance turns, the reaper, the pruner, history partitions
-- ======================================================================================

-- name: take_maintenance_turn
-- At most one process in the fleet gets the turn for job $1 every $2 seconds.
UPDATE notifyq.maintenance
   SET last_run = now()
 WHERE name = $1 AND last_run < now() - make_interval(secs => $2::float8)
RETURNING name;

-- name: recover_expired
-- The reaper: rows whose lease expired go back to pending (event 'recovered'), or end
-- 'error' when their attempts are used up (so a task that kills its worker every time
-- cannot loop forever), or 'cancelled' when a cancel was requested. At most $1 rows.
-- A row whose owner is not in the worker registry is lost too, whatever its lease says
-- (a row written in_progress by hand with locked_until 'infinity'): a process registers
-- before it claims, and leaves the registry only after its last outcome is written.
WITH expired AS (
    SELECT id, locked_by
      FROM notifyq.tasks
     WHERE status = 'in_progress'
       AND (locked_until < now() OR NOT isfinite(locked_until)
            OR NOT EXISTS (SELECT 1 FROM notifyq.workers w WHERE w.id = tasks.locked_by))
     ORDER BY locked_until
     LIMIT $1
       FOR UPDATE SKIP LOCKED
), recovered AS (
    UPDATE notifyq.tasks t
       SET status = CASE WHEN t.cancel_requested_at IS NOT NULL THEN 'cancelled'
                         WHEN t.attempts >= t.max_attempts THEN 'error'
                         ELSE 'pending' END,
           error = CASE WHEN t.cancel_requested_at IS NOT NULL THEN t.error
                        WHEN t.attempts >= t.max_attempts
                            THEN format('worker lost; %s attempts', t.attempts)
                        ELSE format('worker lost (lease of %s expired)', e.locked_by) END,
           finished_at = CASE WHEN t.cancel_requested_at IS NOT NULL
                                OR t.attempts >= t.max_attempts THEN now() END,
           locked_by = NULL, locked_until = NULL, updated_at = now()
      FROM expired e
     WHERE t.id = e.id
    RETURNING t.id, t.queue, t.status, t.attempts, t.error, e.locked_by AS lost_worker,
              t.started_at, t.batch_id
), events AS (
    INSERT INTO notifyq.task_events (task_id, event, attempt, worker, error, started_at)
    SELECT id,
           CASE status WHEN 'pending' THEN 'recovered' WHEN 'error' THEN 'failed'
                       ELSE 'cancelled' END,
           attempts, lost_worker, error, started_at
      FROM recovered
), batch_ends AS (
    -- Members of batches that ended, as in `finish`.
    UPDATE notifyq.batches b
       SET done = b.done + e.done, failed = b.failed + e.failed,
           completed_at = CASE WHEN b.sealed AND b.done + e.done + b.failed + e.failed = b.total
                               THEN now() END
      FROM (SELECT r.batch_id, 0 AS done, count(*)::int AS failed
              FROM recovered r
             WHERE r.batch_id IS NOT NULL AND r.status IN ('error', 'cancelled')
             GROUP BY r.batch_id) AS e
     WHERE b.id = e.batch_id AND b.completed_at IS NULL
)
SELECT id, queue, status, lost_worker FROM recovered;

-- name: expire_tasks
-- End up to $1 tasks past their start deadline (migration 0017), pending or waiting, as
-- cancelled: error 'expired: not started by <expires_at in UTC>', history `expired`; their
-- dependents and batches follow through the row triggers, as for a cancel. Over
-- tasks_expiry_idx (live rows with a deadline only: nothing to read when no queue uses
-- deadlines). SKIP LOCKED: processes sweeping at once never end a row twice, and a row a
-- claim holds is the claim's (the claim itself never takes a row past its deadline).
-- Returns the ended tasks' ids and queues.
WITH due AS (
    SELECT id
      FROM notifyq.tasks
     WHERE expires_at <= now() AND expires_at IS NOT NULL
       AND status IN ('pending', 'waiting')
     ORDER BY expires_at
     LIMIT $1
       FOR UPDATE SKIP LOCKED
), ended AS (
    UPDATE notifyq.tasks t
       SET status = 'cancelled', waiting_on = 0, finished_at = now(), updated_at = now(),
           error = 'expired: not started by '
                   || to_char(t.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
      FROM due
     WHERE t.id = due.id
    RETURNING t.id, t.queue, t.attempts, t.error
), events AS (
    INSERT INTO notifyq.task_events (task_id, event, attempt, error)
    SELECT id, 'expired', attempts, error FROM ended
)
SELECT id, queue FROM ended;

-- name: forget_stale_workers
-- Drop registry rows of processes that stopped heart-beating $1 seconds ago.
DELETE FROM notifyq.workers
 WHERE last_seen < now() - make_interval(secs => $1::float8)
RETURNING id;

-- name: prune
-- Delete up to $2 tasks that ended more than $1 seconds ago. Their history goes with the
-- day partitions it lives in (prune_history), not row by row.
WITH doomed AS (
    SELECT id
      FROM notifyq.tasks
     WHERE finished_at < now() - make_interval(secs => $1::float8)
       AND status IN ('done', 'error', 'cancelled')
     ORDER BY finished_at
     LIMIT $2
       FOR UPDATE SKIP LOCKED
)
DELETE FROM notifyq.tasks t USING doomed d WHERE t.id = d.id
RETURNING t.id;

-- name: prune_history
-- Drop the history partitions whose every event is older than $1 seconds (migrations 0007,
-- 0011); returns each one due and whether it was dropped (false: the history was in use,
-- and retention never waits for it).
SELECT partition, dropped
  FROM notifyq.prune_event_partitions(make_interval(secs => $1::float8));

-- name: ensure_event_partitions
-- Create the history's day partitions from today to $1 days ahead that are missing;
-- returns their names.
SELECT notifyq.ensure_event_partitions($1) AS created;

-- name: attach_legacy_events
-- Attach the history rows from before migration 0007, if still detached: 'attached' or NULL.
SELECT notifyq.attach_legacy_events();

-- ======================================================================================
-- tasks — store/tasks.py: the client's and the CLI's tasks: add, get, history, cancel, retry
-- ======================================================================================

-- name: enqueue
-- Add one checked task (notifyq.spec): the JSON of payload $3 and meta $9 as text; run_at is
-- $5 (NULL: now) plus $6 seconds; $10 its concurrency_key; $11 its parents (depends_on, as
-- the text of a bigint[], NULL: none), $12 its on_parent_failure; its start deadline
-- expires_at is $13, else now() plus $14 seconds (both NULL: none).
INSERT INTO notifyq.tasks (queue, kind, payload, priority, run_at, max_attempts, timeout,
                           meta, concurrency_key, depends_on, on_parent_failure, expires_at)
VALUES ($1, $2, $3::text::jsonb, $4,
        coalesce($5::timestamptz, now()) + make_interval(secs => $6::float8),
        $7, make_interval(secs => $8::float8), $9::text::jsonb, $10, $11::text::bigint[],
        $12::text, coalesce($13::timestamptz, now() + make_interval(secs => $14::float8)))
RETURNING *;

-- name: enqueue_unique
-- Add one task with unique_key $10 (concurrency_key $11, expires_at $12 or in $13 s; the
-- rest as in `enqueue`) unless a
-- live task of queue $1 holds that key; returns
-- the new task (added true) or the live one (added false). No row: the live one ended or
-- committed after this statement's snapshot; the caller runs it again.
WITH added AS (
    INSERT INTO notifyq.tasks (queue, kind, payload, priority, run_at, max_attempts, timeout,
                               meta, unique_key, concurrency_key, expires_at)
    VALUES ($1, $2, $3::text::jsonb, $4,
            coalesce($5::timestamptz, now()) + make_interval(secs => $6::float8),
            $7, make_interval(secs => $8::float8), $9::text::jsonb, $10, $11,
            coalesce($12::timestamptz, now() + make_interval(secs => $13::float8)))
    ON CONFLICT (queue, unique_key)
        WHERE status IN ('pending', 'in_progress') AND unique_key IS NOT NULL
        DO NOTHING
    RETURNING *
)
SELECT true AS added, * FROM added
UNION ALL
SELECT false, t.*
  FROM notifyq.tasks t
 WHERE NOT EXISTS (SELECT 1 FROM added)
   AND t.queue = $1 AND t.unique_key = $10 AND t.status IN ('pending', 'in_progress');

-- name: enqueue_upsert
-- Add one task with unique_key $10 through notifyq.enqueue_unique (migration 0017): a live
-- holder of the key is kept, replaced (debounce) or updated (throttle) as $12 says; the
-- rest as in `enqueue` (concurrency_key $11, expires_at $13 or in $14 s). Returns the id
-- and what happened (added, replaced, updated, kept).
SELECT id, change
  FROM notifyq.enqueue_unique(
       $1, $2, $3::text::jsonb, $10, $12, $4,
       coalesce($5::timestamptz, now()) + make_interval(secs => $6::float8), $7,
       make_interval(secs => $8::float8), $9::text::jsonb, $11,
       coalesce($13::timestamptz, now() + make_interval(secs => $14::float8)));

-- name: seed
-- Add $1 demo tasks in one statement (one notification).
INSERT INTO notifyq.tasks (kind, payload)
SELECT 'demo', to_jsonb(format('demo task %s', g))
  FROM generate_series(1, $1::int) AS g
RETURNING id;

-- name: get_task
-- One task by id.
SELECT * FROM notifyq.tasks WHERE id = $1;

-- name: task_history
-- A task's events, oldest first. Two kinds are not stored but derived, each with id 0:
-- 'queued' (it would cost every producer an extra row) is the task's created_at, listed
-- first; its detail names the schedule and tick that created the task, if one did.
-- 'started' (migration 0010) is the start of an attempt: that of an ended attempt is its
-- outcome row's started_at, listed just before that row; that of the attempt running now
-- is the task's own started_at, listed last. An attempt that has a stored 'started' row
-- (written before 0010, or by a process of an older version; its `at` falls within the
-- attempt) gets no derived one. A 'released' or 'cancelled' event of a dependent names, in
-- its detail, the parent task or the batch that released or cancelled it (migration 0014),
-- also as parent_id / batch_id; a 'released' with neither is an attempt its worker gave
-- back (shutdown, a lost lease), which the detail says. `actor` (migration 0018) says who
-- caused a stored event (NULL: the engine); `traceback` is that of a failed attempt
-- (migration 0019: the handler's, bounded; NULL for every other event).
SELECT id, task_id, at, event, attempt, worker, error, detail, parent_id, batch_id, actor,
       traceback
  FROM (
    SELECT 0::bigint AS id, t.id AS task_id, t.created_at AS at, 'queued' AS event,
           0 AS attempt, NULL::text AS worker, NULL::text AS error,
           CASE WHEN t.schedule_name IS NOT NULL
                THEN format('schedule %s, tick %s', t.schedule_name,
                            to_char(t.schedule_tick AT TIME ZONE 'UTC',
                                    'YYYY-MM-DD"T"HH24:MI:SS"Z"')) END AS detail,
           NULL::bigint AS parent_id, NULL::bigint AS batch_id,
           NULL::text AS actor, NULL::text AS traceback,
           0::bigint AS place, 0 AS within
      FROM notifyq.tasks t
     WHERE t.id = $1
    UNION ALL
    SELECT e.id, e.task_id, e.at, e.event, e.attempt, e.worker, e.error,
           CASE WHEN e.parent_id IS NOT NULL THEN format('parent task %s', e.parent_id)
                WHEN e.batch_id IS NOT NULL THEN format('batch %s', e.batch_id)
                WHEN e.event = 'released'
                     THEN 'given back by its worker; the attempt is not counted' END,
           e.parent_id, e.batch_id, e.actor, e.traceback, e.id, 1
      FROM notifyq.task_events e
     WHERE e.task_id = $1
    UNION ALL
    SELECT 0, e.task_id, e.started_at, 'started', e.attempt, e.worker, NULL, NULL, NULL, NULL,
           NULL, NULL, e.id, 0
      FROM notifyq.task_events e
     WHERE e.task_id = $1 AND e.started_at IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM notifyq.task_events s
                        WHERE s.task_id = $1 AND s.event = 'started'
                          AND s.attempt = e.attempt AND s.at BETWEEN e.started_at AND e.at)
    UNION ALL
    SELECT 0, t.id, t.started_at, 'started', t.attempts, t.locked_by, NULL, NULL, NULL, NULL,
           NULL, NULL, 9223372036854775807, 0
      FROM notifyq.tasks t
     WHERE t.id = $1 AND t.status = 'in_progress' AND t.started_at IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM notifyq.task_events s
                        WHERE s.task_id = $1 AND s.event = 'started'
                          AND s.attempt = t.attempts AND s.at >= t.started_at)
  ) history
 ORDER BY place, within;

-- name: cancel
-- Cancel a task through the SQL function (see the migration).
SELECT notifyq.cancel($1);

-- name: retry
-- Put an ended task back to pending through the SQL function.
SELECT notifyq.retry($1);

-- ======================================================================================
-- reads — store/reads.py: what the status page, the HTTP API and the CLI read
-- ======================================================================================

-- name: counts
-- Row counts by queue and status.
SELECT queue, status, count(*) AS n
  FROM notifyq.tasks
 GROUP BY queue, status
 ORDER BY queue, status;

-- name: replica_lag
-- Seconds the server of READ_DATABASE_URL is behind its primary: 0 when it is not a standby
-- or has replayed all it received (an idle primary sends nothing to replay, so the age of
-- the last replayed commit is not lag then), else the age of the last replayed commit.
SELECT CASE
         WHEN NOT pg_is_in_recovery() THEN 0.0
         WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0.0
         ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0.0)
       END::float8 AS lag_s;

-- name: batch_gauges
-- Batches not complete yet (live), and their members: done, failed and not ended yet. A scan
-- of notifyq.batches (one narrow row per batch), read at most once a second by /metrics.
SELECT count(*)::int AS live,
       coalesce(sum(done), 0)::int AS done,
       coalesce(sum(failed), 0)::int AS failed,
       coalesce(sum(total - done - failed), 0)::int AS remaining
  FROM notifyq.batches
 WHERE completed_at IS NULL;

-- name: due_backlog
-- For autoscalers, per queue with due work: the due pending tasks (status pending, run_at
-- passed: what the claims would take now, paused queues included) and the age in seconds
-- of the oldest of them (from its run_at; from created_at for a run_at of -infinity). An
-- index-only scan of tasks_due_idx (queue, run_at) over the pending rows; the -infinity
-- rows are one range probe of it. A queue without due work has no row.
WITH due AS (
    SELECT queue, count(*) AS due, min(run_at) FILTER (WHERE run_at > '-infinity') AS oldest
      FROM notifyq.tasks
     WHERE status = 'pending' AND run_at <= now()
     GROUP BY queue
), front AS (
    SELECT queue, min(created_at) AS oldest
      FROM notifyq.tasks
     WHERE status = 'pending' AND run_at = '-infinity'
     GROUP BY queue
)
SELECT d.queue, d.due,
       greatest(extract(epoch FROM now() - least(d.oldest, f.oldest)), 0)::float8 AS oldest_s
  FROM due d LEFT JOIN front f USING (queue)
 ORDER BY d.queue;

-- name: workers
-- The worker registry; a process whose last heartbeat is older than $1 seconds is 'gone'
-- (it ended without leaving, e.g. killed, and its row waits for the reaper).
SELECT *,
       CASE WHEN last_seen < now() - make_interval(secs => $1::float8)
            THEN 'gone' ELSE 'alive' END AS state
  FROM notifyq.workers
 ORDER BY started_at;

-- name: connection_limits
-- The server's connection slots, and those only superusers (and, from PostgreSQL 16, roles
-- with pg_use_reserved_connections) may take.
SELECT current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int
       + coalesce(current_setting('reserved_connections', true)::int, 0) AS reserved;

-- name: unserved
-- Pending tasks that no process in the registry can run, by queue and kind: none serves
-- the queue, or none of those that do has a handler for the kind (kinds NULL: a process
-- older than migration 0013, which claims every kind).
SELECT t.queue, t.kind, count(*)::bigint AS n
  FROM notifyq.tasks t
 WHERE t.status = 'pending'
   AND NOT EXISTS (SELECT 1 FROM notifyq.workers w
                    WHERE t.queue = ANY(w.queues)
                      AND (w.kinds IS NULL OR t.kind = ANY(w.kinds)))
 GROUP BY t.queue, t.kind
 ORDER BY t.queue, t.kind;

-- name: list_tasks
-- Tasks newest first, filtered by status $1, queue $2, kind $3 (NULL: any), with ids below
-- $4 (NULL: from the newest); at most $5. Keyset pagination over the primary key.
-- A payload or result whose JSON text is longer than $6 characters comes as NULL with its
-- first $6 characters in payload_preview / result_preview: cut here, so that a big value
-- never leaves the database (the page's lists run the same shape; get_task has it whole).
-- The text is made once per listed row (OFFSET 0 keeps the planner from repeating it).
SELECT t.id, t.queue, t.kind, t.priority, t.status, t.attempts, t.max_attempts, t.run_at,
       t.timeout, t.locked_by, t.locked_until, t.cancel_requested_at, t.error, t.created_at,
       t.updated_at, t.started_at, t.finished_at, t.depends_on, t.on_parent_failure,
       t.waiting_on, t.batch_id, t.after_batch,
       CASE WHEN length(p.text) <= $6 THEN t.payload END AS payload,
       CASE WHEN length(p.text) > $6 THEN left(p.text, $6) END AS payload_preview,
       CASE WHEN length(r.text) <= $6 THEN t.result END AS result,
       CASE WHEN length(r.text) > $6 THEN left(r.text, $6) END AS result_preview
  FROM (SELECT * FROM notifyq.tasks
         WHERE ($1::text IS NULL OR status = $1)
           AND ($2::text IS NULL OR queue = $2)
           AND ($3::text IS NULL OR kind = $3)
           AND ($4::bigint IS NULL OR id < $4)
         ORDER BY id DESC
         LIMIT $5) AS t
 CROSS JOIN LATERAL (SELECT t.payload::text OFFSET 0) AS p(text)
 CROSS JOIN LATERAL (SELECT t.result::text OFFSET 0) AS r(text)
 ORDER BY t.id DESC;

-- name: batch_progress
-- GET /batches/{id}, `notifyq batches show`: a batch's counts and its callback's status.
SELECT b.id, b.total, b.done, b.failed, b.remaining, b.sealed, b.callback_id,
       t.status AS callback_status, b.created_at, b.completed_at
  FROM notifyq.batch_progress b
  LEFT JOIN notifyq.tasks t ON t.id = b.callback_id
 WHERE b.id = $1;

-- name: running_tasks
-- The $1 longest-running tasks (the status page's "running" table), over tasks_lease_idx,
-- with payloads and results over $2 characters cut to previews (see list_tasks).
SELECT t.id, t.queue, t.kind, t.priority, t.status, t.attempts, t.max_attempts, t.run_at,
       t.timeout, t.locked_by, t.locked_until, t.cancel_requested_at, t.error, t.created_at,
       t.updated_at, t.started_at, t.finished_at,
       CASE WHEN length(p.text) <= $2 THEN t.payload END AS payload,
       CASE WHEN length(p.text) > $2 THEN left(p.text, $2) END AS payload_preview,
       CASE WHEN length(r.text) <= $2 THEN t.result END AS result,
       CASE WHEN length(r.text) > $2 THEN left(r.text, $2) END AS result_preview
  FROM (SELECT * FROM notifyq.tasks
         WHERE status = 'in_progress'
         ORDER BY started_at
         LIMIT $1) AS t
 CROSS JOIN LATERAL (SELECT t.payload::text OFFSET 0) AS p(text)
 CROSS JOIN LATERAL (SELECT t.result::text OFFSET 0) AS r(text)
 ORDER BY t.started_at, t.id;

-- name: recent_failures
-- The $1 tasks that most recently ended in 'error', newest first (over tasks_finished_idx),
-- with payloads and results over $2 characters cut to previews (see list_tasks).
SELECT t.id, t.queue, t.kind, t.priority, t.status, t.attempts, t.max_attempts, t.run_at,
       t.timeout, t.locked_by, t.locked_until, t.cancel_requested_at, t.error, t.created_at,
       t.updated_at, t.started_at, t.finished_at,
       CASE WHEN length(p.text) <= $2 THEN t.payload END AS payload,
       CASE WHEN length(p.text) > $2 THEN left(p.text, $2) END AS payload_preview,
       CASE WHEN length(r.text) <= $2 THEN t.result END AS result,
       CASE WHEN length(r.text) > $2 THEN left(r.text, $2) END AS result_preview
  FROM (SELECT * FROM notifyq.tasks
         WHERE status = 'error' AND finished_at IS NOT NULL
         ORDER BY finished_at DESC
         LIMIT $1) AS t
 CROSS JOIN LATERAL (SELECT t.payload::text OFFSET 0) AS p(text)
 CROSS JOIN LATERAL (SELECT t.result::text OFFSET 0) AS r(text)
 ORDER BY t.finished_at DESC, t.id DESC;

-- name: confirm_events
-- What the table says about the ids that notifications named, for the /events feed (any
-- database role can NOTIFY, so a notification is only a hint): of the ids $1 (said to have
-- ended), those that ended within the last $3 seconds, with their real status; of the ids
-- $2 (said to have a cancel requested), those whose cancel was requested within the last
-- $3 seconds. One probe of tasks_pkey per id.
SELECT id, status, queue, kind,
       id = ANY($1::bigint[]) AND status IN ('done', 'error', 'cancelled')
           AND finished_at > now() - make_interval(secs => $3::float8) AS ended,
       id = ANY($2::bigint[])
           AND cancel_requested_at > now() - make_interval(secs => $3::float8)
           AS cancel_requested
  FROM notifyq.tasks
 WHERE id = ANY($1::bigint[] || $2::bigint[]);

-- name: pickup_sample
-- Pickup latency (claim time minus run_at) in ms over at most $2 tasks that ended in the
-- last $1 seconds: a bounded sample read over tasks_finished_idx.
SELECT count(*)::int AS n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY lag_ms) AS p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY lag_ms) AS p95_ms
  FROM (SELECT extract(epoch FROM started_at - run_at)::float8 * 1000 AS lag_ms
          FROM notifyq.tasks
         WHERE finished_at > now() - make_interval(secs => $1::float8)
           AND started_at IS NOT NULL AND isfinite(run_at)
         ORDER BY finished_at DESC
         LIMIT $2) AS recent;

-- name: ping
-- The database answers.
SELECT 1;

-- name: host_alive
-- `notifyq health`: processes on host $1 that heart-beat within the last $2 seconds.
SELECT count(*) FROM notifyq.workers
 WHERE host = $1 AND last_seen > now() - make_interval(secs => $2::float8);

-- name: ended_per_minute
-- Tasks that ended from $1 to $2 (unix seconds), by minute and final status: the status
-- page's throughput series, read over tasks_finished_idx once per sampling round.
SELECT extract(epoch FROM date_trunc('minute', finished_at))::bigint AS minute,
       status, count(*)::int AS n
  FROM notifyq.tasks
 WHERE finished_at >= to_timestamp($1::float8) AND finished_at < to_timestamp($2::float8)
   AND status IN ('done', 'error', 'cancelled')
 GROUP BY 1, 2;

-- name: ended_last_minute
-- Tasks that ended in the last 60 seconds (over tasks_finished_idx).
SELECT count(*)::int FROM notifyq.tasks WHERE finished_at > now() - interval '60 seconds';

-- name: task_parents
-- The parents of task $1 in its depends_on order (a parent named twice, once): id, status,
-- result, error (task.parents() of a handler; the task page). One probe of tasks_pkey per
-- parent; a task without parents returns no row.
SELECT p.id, p.status, p.result, p.error
  FROM notifyq.tasks t
 CROSS JOIN LATERAL (SELECT d.id, min(d.n) AS n
                       FROM unnest(t.depends_on) WITH ORDINALITY AS d(id, n)
                      GROUP BY d.id) AS d
  JOIN notifyq.tasks p ON p.id = d.id
 WHERE t.id = $1
 ORDER BY d.n;

-- name: task_parents_brief
-- The first $2 parents of task $1 in its depends_on order: id, kind and status (the task's
-- page and GET /tasks/{id}; their results stay here).
SELECT p.id, p.kind, p.status
  FROM notifyq.tasks t
 CROSS JOIN LATERAL (SELECT d.id, min(d.n) AS n
                       FROM unnest(t.depends_on) WITH ORDINALITY AS d(id, n)
                      GROUP BY d.id
                      ORDER BY min(d.n)
                      LIMIT $2) AS d
  JOIN notifyq.tasks p ON p.id = d.id
 WHERE t.id = $1
 ORDER BY d.n;

-- name: task_batch
-- The batch whose callback task $1 is (tasks.after_batch), with its progress; no row when
-- it is no batch's callback.
SELECT b.id, b.total, b.done, b.failed, b.remaining, b.sealed, b.callback_id, b.created_at,
       b.completed_at
  FROM notifyq.tasks t
  JOIN notifyq.batch_progress b ON b.id = t.after_batch
 WHERE t.id = $1;

-- name: batch_members
-- A page of batch $1's members in id order (the group's order): ids above $2, at most $3,
-- over tasks_batch_idx (task.batch_results() reads its batch page by page).
SELECT id, status, result, error
  FROM notifyq.tasks
 WHERE batch_id = $1 AND id > $2
 ORDER BY batch_id, id
 LIMIT $3;

-- name: task_children
-- The tasks that wait or waited for task $1, by id, at most $2: its dependents (depends_on
-- holds it) and, for a batch member, its batch's callback. Bounded: those still waiting
-- come from the GIN index over waiting rows wherever they are; the others are looked for
-- among the $3 tasks added after it (no index lists ended dependents), which is where a
-- workflow added in one go puts them. A task nobody depends on (has_dependents false)
-- costs one probe of tasks_pkey.
WITH t AS (
    SELECT id, has_dependents, batch_id FROM notifyq.tasks WHERE id = $1
)
SELECT c.id, c.status, c.kind, 'depends_on' AS via
  FROM t
  JOIN notifyq.tasks c ON c.depends_on @> ARRAY[t.id] AND c.status = 'waiting'
 WHERE t.has_dependents
UNION
SELECT c.id, c.status, c.kind, 'depends_on'
  FROM t
 CROSS JOIN LATERAL (SELECT n.id, n.status, n.kind, n.depends_on
                       FROM notifyq.tasks n
                      WHERE n.id > t.id
                      ORDER BY n.id
                      LIMIT $3) AS c
 WHERE t.has_dependents AND c.depends_on @> ARRAY[t.id]
UNION
SELECT c.id, c.status, c.kind, 'after_batch'
  FROM t
  JOIN notifyq.batches b ON b.id = t.batch_id
  JOIN notifyq.tasks c ON c.id = b.callback_id
 ORDER BY id
 LIMIT $2;

-- name: live_batches
-- The batches not complete yet, newest first, at most $1, with their progress (the status
-- page's "Batches" table): a walk down batches_pkey from the newest, which is where live
-- batches are.
SELECT id, total, done, failed, remaining, sealed, callback_id, created_at, completed_at
  FROM notifyq.batch_progress
 WHERE completed_at IS NULL
 ORDER BY id DESC
 LIMIT $1;

-- name: sample_timeout
-- Bounds the first sampling round (an hour of history) on a very busy database: a
-- statement timeout for the rest of this transaction.
SELECT set_config('statement_timeout', '5s', true);

-- ======================================================================================
-- roles — store/roles.py: the privileges `notifyq roles` grants
-- ======================================================================================

-- name: grant_producer
-- `notifyq roles`: grant role $1 the producer's privileges (run them when $2); returns
-- the statements.
SELECT notifyq.grant_producer($1::text::regrole, $2) AS statement;

-- name: grant_worker
-- `notifyq roles`: grant role $1 the worker's privileges (run them when $2); returns the
-- statements.
SELECT notifyq.grant_worker($1::text::regrole, $2) AS statement;

-- name: grant_producer_unique
-- `notifyq roles`: a producer may also set unique_key (migration 0005).
SELECT notifyq.grant_producer_unique($1::text::regrole, $2) AS statement;

-- name: grant_worker_schedules
-- `notifyq roles`: a worker also manages notifyq.schedules (migration 0005).
SELECT notifyq.grant_worker_schedules($1::text::regrole, $2) AS statement;

-- name: grant_operator
-- `notifyq roles --operator`: read every table, run the console's actions (migration 0018).
SELECT notifyq.grant_operator($1::text::regrole, $2) AS statement;

-- name: grant_worker_functions
-- `notifyq roles`: a worker may call the functions it runs; nobody else may (0011).
SELECT notifyq.grant_worker_functions($1::text::regrole, $2) AS statement;

-- ======================================================================================
-- fleet — store/fleet.py: queue limits and schedules
-- ======================================================================================

-- name: queue_list
-- Every queue with limits or tasks, by name: its limits and how many of its tasks are
-- pending and in_progress. A page: names after $1 (NULL: from the first), at most $2 (NULL:
-- all).
SELECT *
  FROM (SELECT coalesce(q.name, c.queue) AS name, q.concurrency, q.rate_count,
               extract(epoch FROM q.rate_period)::float8 AS rate_period_s,
               q.per_key_concurrency, coalesce(q.paused, false) AS paused,
               coalesce(q.fair, false) AS fair,
               extract(epoch FROM q.age_priority_after)::float8 AS age_priority_after_s,
               q.updated_at,
               coalesce(c.pending, 0)::int AS pending,
               coalesce(c.in_progress, 0)::int AS in_progress
          FROM notifyq.queues q
          FULL JOIN (SELECT t.queue,
                            count(*) FILTER (WHERE t.status = 'pending') AS pending,
                            count(*) FILTER (WHERE t.status = 'in_progress') AS in_progress
                       FROM notifyq.tasks t
                      WHERE t.status IN ('pending', 'in_progress')
                      GROUP BY t.queue) AS c ON c.queue = q.name) AS listed
 WHERE $1::text IS NULL OR name > $1::text
 ORDER BY name
 LIMIT $2::int;

-- name: queue_set
-- Set the limits of queue $1: $2 concurrency, $3 rate count per $4 s, $5 per-key
-- concurrency, $6 paused, $8 fair, $9 age_priority_after in seconds (migration 0017).
-- Each of them is applied when its flag
-- in $7 (names of the fields to set) says so; the others keep their value (NULL: no limit).
INSERT INTO notifyq.queues AS q (name, concurrency, rate_count, rate_period,
                                 per_key_concurrency, paused, fair, age_priority_after)
VALUES ($1, $2, $3, make_interval(secs => $4::float8), $5, coalesce($6, false),
        coalesce($8, false), make_interval(secs => $9::float8))
ON CONFLICT (name) DO UPDATE SET
    concurrency = CASE WHEN 'concurrency' = ANY($7::text[])
                       THEN excluded.concurrency ELSE q.concurrency END,
    rate_count = CASE WHEN 'rate' = ANY($7::text[])
                      THEN excluded.rate_count ELSE q.rate_count END,
    rate_period = CASE WHEN 'rate' = ANY($7::text[])
                       THEN excluded.rate_period ELSE q.rate_period END,
    per_key_concurrency = CASE WHEN 'per_key_concurrency' = ANY($7::text[])
                               THEN excluded.per_key_concurrency ELSE q.per_key_concurrency END,
    paused = CASE WHEN 'paused' = ANY($7::text[]) THEN excluded.paused ELSE q.paused END,
    fair = CASE WHEN 'fair' = ANY($7::text[]) THEN excluded.fair ELSE q.fair END,
    age_priority_after = CASE WHEN 'age_priority_after' = ANY($7::text[])
                              THEN excluded.age_priority_after ELSE q.age_priority_after END,
    updated_at = now()
RETURNING q.name, q.concurrency, q.rate_count,
          extract(epoch FROM q.rate_period)::float8 AS rate_period_s,
          q.per_key_concurrency, q.paused, q.fair, q.updated_at;

-- name: queue_clear
-- Remove every limit of queue $1 (its row); true when it had one.
DELETE FROM notifyq.queues WHERE name = $1 RETURNING name;

-- name: list_schedules
-- Schedules by name after $1 (NULL: from the first), at most $2: keyset pagination over the
-- primary key. A payload whose JSON text is longer than $3 characters comes as NULL with its
-- first $3 characters in payload_preview (as list_tasks cuts tasks'); a next_run_at or
-- last_run_at no process can read (outside [1970, 9000): a row from before migration 0012's
-- checks) comes as NULL.
SELECT s.name, s.cron, extract(epoch FROM s.every)::float8 AS every_s, s.kind,
       CASE WHEN length(p.text) <= $3 THEN s.payload END AS payload,
       CASE WHEN length(p.text) > $3 THEN left(p.text, $3) END AS payload_preview,
       s.queue, s.priority, s.tz, s.catch_up, s.catch_up_limit, s.paused,
       CASE WHEN s.next_run_at >= timestamptz '1970-01-01 00:00:00+00'
             AND s.next_run_at < timestamptz '9000-01-01 00:00:00+00'
            THEN s.next_run_at END AS next_run_at,
       CASE WHEN s.last_run_at >= timestamptz '1970-01-01 00:00:00+00'
             AND s.last_run_at < timestamptz '9000-01-01 00:00:00+00'
            THEN s.last_run_at END AS last_run_at,
       s.created_at, s.updated_at
  FROM (SELECT * FROM notifyq.schedules
         WHERE $1::text IS NULL OR name > $1
         ORDER BY name
         LIMIT $2) AS s
 CROSS JOIN LATERAL (SELECT s.payload::text OFFSET 0) AS p(text)
 ORDER BY s.name;

-- name: get_schedule
-- Schedule $1 as list_schedules shows it (payload cut past $2 characters); no row: none such.
SELECT s.name, s.cron, extract(epoch FROM s.every)::float8 AS every_s, s.kind,
       CASE WHEN length(p.text) <= $2 THEN s.payload END AS payload,
       CASE WHEN length(p.text) > $2 THEN left(p.text, $2) END AS payload_preview,
       s.queue, s.priority, s.tz, s.catch_up, s.catch_up_limit, s.paused,
       CASE WHEN s.next_run_at >= timestamptz '1970-01-01 00:00:00+00'
             AND s.next_run_at < timestamptz '9000-01-01 00:00:00+00'
            THEN s.next_run_at END AS next_run_at,
       CASE WHEN s.last_run_at >= timestamptz '1970-01-01 00:00:00+00'
             AND s.last_run_at < timestamptz '9000-01-01 00:00:00+00'
            THEN s.last_run_at END AS last_run_at,
       s.created_at, s.updated_at
  FROM notifyq.schedules s
 CROSS JOIN LATERAL (SELECT s.payload::text OFFSET 0) AS p(text)
 WHERE s.name = $1;

-- name: schedules_clock
-- The database's clock, and the earliest next_run_at after it of the active schedules of
-- queues $1 and kinds $2 (NULL: none): a scheduler sleeps until then.
SELECT clock_timestamp() AS db_now,
       (SELECT min(next_run_at) FROM notifyq.schedules
         WHERE queue = ANY($1::text[]) AND kind = ANY($2::text[]) AND NOT paused
           AND next_run_at > clock_timestamp()
           AND next_run_at < timestamptz '9000-01-01 00:00:00+00') AS next_due;

-- name: due_schedules
-- The active schedules of queues $1 that are due by the database's clock or have no next
-- run yet, without their payloads (fire_schedules takes them from the row); `readable` is
-- false for a next_run_at or last_run_at outside [1970, 9000) (read as NULL), which a
-- process skips.
SELECT s.name, s.cron, extract(epoch FROM s.every)::float8 AS every_s, s.kind, s.queue, s.tz,
       s.catch_up, s.catch_up_limit, r.readable,
       CASE WHEN r.readable THEN s.next_run_at END AS next_run_at
  FROM notifyq.schedules s
 CROSS JOIN LATERAL (
        SELECT (s.next_run_at IS NULL
                OR (s.next_run_at >= timestamptz '1970-01-01 00:00:00+00'
                    AND s.next_run_at < timestamptz '9000-01-01 00:00:00+00'))
           AND (s.last_run_at IS NULL
                OR (s.last_run_at >= timestamptz '1970-01-01 00:00:00+00'
                    AND s.last_run_at < timestamptz '9000-01-01 00:00:00+00'))) AS r(readable)
 WHERE s.queue = ANY($1::text[]) AND NOT s.paused
   AND (s.next_run_at IS NULL OR s.next_run_at <= clock_timestamp() OR NOT r.readable)
 ORDER BY s.name;

-- name: db_now
-- The database's clock (a new schedule's first tick is the first after it).
SELECT clock_timestamp();

-- name: schedule_first_run
-- Set the first tick $2 of schedule $1 if no process set one yet; returns the tick in
-- force (NULL: the schedule is gone).
WITH chosen AS (
    UPDATE notifyq.schedules SET next_run_at = $2
     WHERE name = $1 AND next_run_at IS NULL
    RETURNING next_run_at
)
SELECT next_run_at FROM chosen
UNION ALL
SELECT next_run_at FROM notifyq.schedules WHERE name = $1 AND NOT EXISTS (SELECT 1 FROM chosen);

-- name: fire_schedules
-- Fire due schedules in one statement (see migration 0012): schedules $1 read as due at $2,
-- their latest ticks $3, next runs $4, and every tick to enqueue as the pairs ($5, $6).
-- Returns the schedules this call fired, with the tasks added and the last one's id.
SELECT name, tasks, last_task_id FROM notifyq.fire_schedules($1, $2, $3, $4, $5, $6);

-- name: upsert_schedule
-- Add schedule $1 or replace its definition. $11 is its first tick, used when it is new or
-- its timing (cron $2, every $3 s, tz $8) changed; otherwise the tick in force stays. An
-- unchanged definition writes nothing (and wakes nobody). Returns 'added', 'replaced' or
-- nothing (unchanged). Pausing is kept.
INSERT INTO notifyq.schedules AS s (name, cron, every, kind, payload, queue, priority, tz,
                                    catch_up, catch_up_limit, next_run_at)
VALUES ($1, $2, make_interval(secs => $3::float8), $4, $5::jsonb, $6, $7, $8, $9, $10, $11)
ON CONFLICT (name) DO UPDATE
   SET cron = excluded.cron, every = excluded.every, kind = excluded.kind,
       payload = excluded.payload, queue = excluded.queue, priority = excluded.priority,
       tz = excluded.tz, catch_up = excluded.catch_up, catch_up_limit = excluded.catch_up_limit,
       next_run_at = CASE
            WHEN (s.cron, s.every, s.tz) IS NOT DISTINCT FROM
                 (excluded.cron, excluded.every, excluded.tz) AND s.next_run_at IS NOT NULL
                THEN s.next_run_at
            ELSE excluded.next_run_at END,
       updated_at = now()
 WHERE (s.cron, s.every, s.kind, s.payload, s.queue, s.priority, s.tz, s.catch_up,
        s.catch_up_limit)
       IS DISTINCT FROM
       (excluded.cron, excluded.every, excluded.kind, excluded.payload, excluded.queue,
        excluded.priority, excluded.tz, excluded.catch_up, excluded.catch_up_limit)
RETURNING CASE WHEN xmax = 0 THEN 'added' ELSE 'replaced' END AS change;

-- name: pause_schedule
-- Pause ($2 true) or resume schedule $1. Resuming starts from the next tick after now
-- (next_run_at NULL: the next process to look computes it), so the ticks that came due
-- while paused are not caught up. NULL: no such schedule.
UPDATE notifyq.schedules
   SET paused = $2, updated_at = now(),
       next_run_at = CASE WHEN $2 OR NOT paused THEN next_run_at END
 WHERE name = $1
RETURNING name;

-- name: remove_schedule
-- Delete schedule $1; NULL when there is none such (its tasks stay).
DELETE FROM notifyq.schedules WHERE name = $1 RETURNING name;

-- ======================================================================================
-- producers — producers/: on the caller's own connection, any driver (no store)
-- ======================================================================================

-- name: produce
-- notifyq.enqueue on the caller's own connection, in its transaction. Values travel as
-- text and numbers (JSON as text), so the caller's driver needs no type codec. run_at is
-- $5 (NULL: now) plus $6 seconds; $9 is the task's meta or NULL; $10 its unique_key, $11
-- its concurrency_key, $12 its parents (depends_on as the text of a bigint[]; NULL: none),
-- $13 its on_parent_failure, $14 its expires_at, else now() plus $15 seconds (NULL: no
-- deadline). No row: a live task of the queue holds the unique key (the
-- plain ON CONFLICT needs no SELECT privilege, which a producer role does not have).
INSERT INTO notifyq.tasks (queue, kind, payload, priority, run_at, max_attempts, timeout, meta,
                           unique_key, concurrency_key, depends_on, on_parent_failure,
                           expires_at)
VALUES ($1::text, $2::text, $3::text::jsonb, $4::int,
        coalesce($5::timestamptz, now()) + make_interval(secs => $6::float8),
        $7::int, make_interval(secs => $8::float8), $9::text::jsonb, $10::text, $11::text,
        $12::text::bigint[], $13::text,
        coalesce($14::timestamptz, now() + make_interval(secs => $15::float8)))
ON CONFLICT DO NOTHING
RETURNING id;

-- name: produce_upsert
-- notifyq.enqueue with on_conflict replace or update: `enqueue_upsert` with the types
-- spelled for any driver (values as text and numbers). Returns the task's id.
SELECT id
  FROM notifyq.enqueue_unique(
       $1::text, $2::text, $3::text::jsonb, $10::text, $12::text, $4::int,
       coalesce($5::timestamptz, now()) + make_interval(secs => $6::float8), $7::int,
       make_interval(secs => $8::float8), $9::text::jsonb, $11::text,
       coalesce($13::timestamptz, now() + make_interval(secs => $14::float8)));

-- name: produce_many
-- notifyq.enqueue_many: any number of tasks without a unique key in one statement, one
-- array per column (the values of `produce`, row by row, but the unique key); the ids come
-- back in the order given. Each task's parents travel as the text of a bigint[] (an array
-- of arrays must be rectangular; these are not).
INSERT INTO notifyq.tasks (queue, kind, payload, priority, run_at, max_attempts, timeout, meta,
                           concurrency_key, depends_on, on_parent_failure, expires_at)
SELECT t.queue, t.kind, t.payload::jsonb, t.priority,
       coalesce(t.run_at, now()) + make_interval(secs => t.delay_s),
       t.max_attempts, make_interval(secs => t.timeout_s), t.meta::jsonb, t.concurrency_key,
       t.depends_on::bigint[], t.on_parent_failure,
       coalesce(t.expires_at, now() + make_interval(secs => t.expires_in_s))
  FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::timestamptz[],
              $6::float8[], $7::int[], $8::float8[], $9::text[], $10::text[], $11::text[],
              $12::text[], $13::timestamptz[], $14::float8[])
       WITH ORDINALITY
       AS t(queue, kind, payload, priority, run_at, delay_s, max_attempts, timeout_s, meta,
            concurrency_key, depends_on, on_parent_failure, expires_at, expires_in_s, n)
 ORDER BY t.n
RETURNING id;

-- name: workflow_step
-- notifyq.chain/group/chord: the tasks of one step, a CTE of the workflow's one statement
-- (producers/workflows.py names step_after and step_batch after the step and numbers each
-- step's $n after the previous step's). The arrays of `produce_many` and $13: the row is
-- the chord's callback (after_batch) rather than a member. A member waits for what the
-- step comes after (step_after.ids: the previous step's tasks, in chain order) and then
-- its own parents; rows are added in the order given, so ids ascend in member order.
INSERT INTO notifyq.tasks (queue, kind, payload, priority, run_at, max_attempts, timeout, meta,
                           concurrency_key, depends_on, on_parent_failure, batch_id,
                           after_batch, expires_at)
SELECT t.queue, t.kind, t.payload::jsonb, t.priority,
       coalesce(t.run_at, now()) + make_interval(secs => t.delay_s),
       t.max_attempts, make_interval(secs => t.timeout_s), t.meta::jsonb, t.concurrency_key,
       nullif(CASE WHEN NOT t.callback THEN step_after.ids END || t.depends_on::bigint[],
              '{}'),
       t.on_parent_failure,
       CASE WHEN NOT t.callback THEN step_batch.id END,
       CASE WHEN t.callback THEN step_batch.id END,
       coalesce(t.expires_at, now() + make_interval(secs => t.expires_in_s))
  FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::timestamptz[],
              $6::float8[], $7::int[], $8::float8[], $9::text[], $10::text[], $11::text[],
              $12::text[], $13::boolean[], $14::timestamptz[], $15::float8[])
       WITH ORDINALITY
       AS t(queue, kind, payload, priority, run_at, delay_s, max_attempts, timeout_s, meta,
            concurrency_key, depends_on, on_parent_failure, callback, expires_at,
            expires_in_s, n),
       step_after, step_batch
 ORDER BY t.n
RETURNING id;

-- name: workflow_after_nothing
-- A workflow's first step waits for nothing but its tasks' own parents.
SELECT NULL::bigint[] AS ids;

-- name: workflow_after_step
-- A step after a task or a group waits for each of them (ids ascending: member order).
SELECT ARRAY(SELECT id FROM step_previous ORDER BY id) AS ids;

-- name: workflow_after_callback
-- A step after a chord waits for its callback, the chord step's last (greatest) id.
SELECT ARRAY[(SELECT max(id) FROM step_previous)] AS ids;

-- name: workflow_batch
-- A chord's batch: a new, empty one (its members are counted as the step adds them; the
-- callback's insert, in the same statement, seals it).
INSERT INTO notifyq.batches DEFAULT VALUES RETURNING id;

-- name: workflow_no_batch
-- A task's or a group's step has no batch.
SELECT NULL::bigint AS id;

-- name: workflow_ids
-- What a workflow's statement returns, per step in order: its ids ascending and its batch.
SELECT ARRAY(SELECT id FROM step_tasks ORDER BY id) AS ids, (SELECT id FROM step_batch) AS batch

-- name: produce_outcome
-- notifyq.wait: where a task stands (the result as JSON text, for any driver).
SELECT id, status, result::text AS result, error, attempts
  FROM notifyq.tasks WHERE id = $1::bigint;

-- name: produce_outcomes
-- notifyq.wait_workflow: where a workflow's tasks stand, in id order.
SELECT id, status, result::text AS result, error, attempts
  FROM notifyq.tasks WHERE id = ANY ($1::bigint[]) ORDER BY id;

-- name: produce_batches
-- notifyq.wait_workflow: the progress of a workflow's batches (its chords), in id order.
SELECT id, total, done, failed, remaining
  FROM notifyq.batch_progress WHERE id = ANY ($1::bigint[]) ORDER BY id;

-- name: listen_done
-- notifyq.wait: hear of tasks that end (a hint; the row says what happened).
LISTEN notifyq_done;

-- name: unlisten_done
-- notifyq.wait: leave the caller's connection as it was (when it was not listening before).
UNLISTEN notifyq_done;

-- name: listening_done
-- notifyq.wait: whether the caller's connection listens to notifyq_done already (then it
-- keeps that LISTEN after the wait).
SELECT 'notifyq_done' = ANY (ARRAY(SELECT pg_listening_channels()));

-- ======================================================================================
-- migrations — migrations.py: `notifyq migrate`
-- ======================================================================================

-- name: migrate_lock
-- Serialise `notifyq migrate` runs: a session-level advisory lock on key $1.
SELECT pg_advisory_lock($1);

-- name: migrate_unlock
-- Release the lock taken by migrate_lock.
SELECT pg_advisory_unlock($1);

-- name: migrate_bootstrap
-- The schema and the migrations ledger, before any numbered migration runs.
CREATE SCHEMA IF NOT EXISTS notifyq;
CREATE TABLE IF NOT EXISTS notifyq.schema_migrations (
    version    integer PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: migrations_ledger_exists
-- Whether the migrations ledger exists yet.
SELECT to_regclass('notifyq.schema_migrations') IS NOT NULL;

-- name: migrations_applied
-- Applied migrations with their checksums.
SELECT version, checksum FROM notifyq.schema_migrations;

-- name: migration_record
-- Record migration $1 ($2) with checksum $3 as applied.
INSERT INTO notifyq.schema_migrations (version, name, checksum) VALUES ($1, $2, $3);

-- ======================================================================================
-- testing — store/tasks.py for notifyq.testing
-- ======================================================================================

-- name: testing_busy
-- notifyq.testing: tasks of the queues $1 that are running, or pending, due now and of
-- the kinds $2 (those the app can run: a task of another kind is never claimed).
-- clock_timestamp(), not now(): a retry written just after this statement's transaction
-- began (run_at = that write's now()) is due, and must keep the queue busy.
SELECT count(*) FROM notifyq.tasks
 WHERE queue = ANY($1::text[])
   AND (status = 'in_progress'
        OR (status = 'pending' AND run_at <= clock_timestamp() AND kind = ANY($2::text[])));

-- ======================================================================================
-- console — store/console.py: the operator console's filters, counts, actions, triage
-- ======================================================================================

-- name: console_matching
-- The console's filter (notifyq/filters.py) over notifyq.tasks; NULL: any. $1 statuses,
-- $2 queues, $3 kinds, $4 priorities, $5 ids; created after $6 (a time) or $7 seconds
-- before now (the database's clock), created before $8 / $9, finished after $10 / $11,
-- finished before $12 / $13; $14 unique_key, $15 concurrency_key, $16 schedule name;
-- $17 a workflow: that task and its descendants (dependents through depends_on, a batch's
-- callback through its members), looked for among the 50,000 tasks added after it (as
-- task_children does: a workflow added in one go sits there); $18 a batch's members; $19 an
-- ILIKE pattern over error; $20 a failure group's fingerprint (migration 0018).
-- The other console statements read it as a derived table (store/console.py puts it where
-- they say `/* matching */`); the planner flattens it, so every key is a plain condition
-- on the table. They run with plan_cache_mode force_custom_plan (console_custom_plans):
-- each plan is made for the keys given, and the others' `IS NULL OR` fall away. One status,
-- queue or kind becomes an equality, which an ordered scan of (status, id) or (kind, id)
-- can serve newest first; `= ANY` of one element cannot (measured at 10M rows: 1.5 s
-- against 0.2 ms for the first page of `status=error`).
SELECT t.*
  FROM notifyq.tasks t
 WHERE ($1::text[] IS NULL
        OR cardinality($1::text[]) = 1 AND t.status = ($1::text[])[1]
        OR cardinality($1::text[]) > 1 AND t.status = ANY($1::text[]))
   AND ($2::text[] IS NULL
        OR cardinality($2::text[]) = 1 AND t.queue = ($2::text[])[1]
        OR cardinality($2::text[]) > 1 AND t.queue = ANY($2::text[]))
   AND ($3::text[] IS NULL
        OR cardinality($3::text[]) = 1 AND t.kind = ($3::text[])[1]
        OR cardinality($3::text[]) > 1 AND t.kind = ANY($3::text[]))
   AND ($4::int[] IS NULL OR t.priority = ANY($4::int[]))
   AND ($5::bigint[] IS NULL OR t.id = ANY($5::bigint[]))
   AND ($6::timestamptz IS NULL AND $7::float8 IS NULL
        OR t.created_at >= coalesce($6::timestamptz, now() - make_interval(secs => $7::float8)))
   AND ($8::timestamptz IS NULL AND $9::float8 IS NULL
        OR t.created_at < coalesce($8::timestamptz, now() - make_interval(secs => $9::float8)))
   AND ($10::timestamptz IS NULL AND $11::float8 IS NULL
        OR t.finished_at >= coalesce($10::timestamptz,
                                     now() - make_interval(secs => $11::float8)))
   AND ($12::timestamptz IS NULL AND $13::float8 IS NULL
        OR t.finished_at < coalesce($12::timestamptz,
                                    now() - make_interval(secs => $13::float8)))
   AND ($14::text IS NULL OR t.unique_key = $14::text)
   AND ($15::text IS NULL OR t.concurrency_key = $15::text)
   AND ($16::text IS NULL OR t.schedule_name = $16::text)
   AND ($17::bigint IS NULL OR t.id IN (
        WITH RECURSIVE near AS MATERIALIZED (
                 SELECT n.id, n.depends_on, n.after_batch
                   FROM notifyq.tasks n
                  WHERE n.id > $17::bigint
                  ORDER BY n.id
                  LIMIT 50000),
             edges (parent, child) AS MATERIALIZED (
                 SELECT p.parent, n.id FROM near n, unnest(n.depends_on) AS p(parent)
                 UNION ALL
                 SELECT m.id, c.id
                   FROM near c JOIN notifyq.tasks m ON m.batch_id = c.after_batch
                  WHERE c.after_batch IS NOT NULL),
             family (id) AS (
                 SELECT $17::bigint
                 UNION
                 SELECT e.child FROM edges e JOIN family f ON e.parent = f.id)
        SELECT family.id FROM family))
   AND ($18::bigint IS NULL OR t.batch_id = $18::bigint)
   AND ($19::text IS NULL OR t.error ILIKE $19::text)
   AND ($20::text IS NULL
        OR (t.error IS NOT NULL AND notifyq.error_fingerprint(t.kind, t.error) = $20::text));

-- name: console_custom_plans
-- The console's statements are planned for the keys each call gives (see console_matching).
SELECT set_config('plan_cache_mode', 'force_custom_plan', true);

-- name: console_list
-- GET /tasks, `notifyq tasks list`: matching tasks newest first, ids below $21 (NULL: from
-- the newest), at most $22; payloads and results over $23 characters cut as list_tasks
-- cuts them.
SELECT t.id, t.queue, t.kind, t.priority, t.status, t.attempts, t.max_attempts, t.run_at,
       t.timeout, t.locked_by, t.locked_until, t.cancel_requested_at, t.error, t.created_at,
       t.updated_at, t.started_at, t.finished_at, t.depends_on, t.on_parent_failure,
       t.waiting_on, t.batch_id, t.after_batch, t.unique_key, t.concurrency_key,
       t.schedule_name, t.schedule_tick, t.snoozes, t.expires_at,
       CASE WHEN length(p.text) <= $23 THEN t.payload END AS payload,
       CASE WHEN length(p.text) > $23 THEN left(p.text, $23) END AS payload_preview,
       CASE WHEN length(r.text) <= $23 THEN t.result END AS result,
       CASE WHEN length(r.text) > $23 THEN left(r.text, $23) END AS result_preview
  FROM (SELECT * FROM (/* matching */) AS m
         WHERE ($21::bigint IS NULL OR m.id < $21::bigint)
         ORDER BY m.id DESC
         LIMIT $22) AS t
 CROSS JOIN LATERAL (SELECT t.payload::text OFFSET 0) AS p(text)
 CROSS JOIN LATERAL (SELECT t.result::text OFFSET 0) AS r(text)
 ORDER BY t.id DESC;

-- name: console_count
-- GET /tasks/count: how many tasks match, counted up to $21 (a cap: n = $21 means "at
-- least"), and the highest matching id (bounds a bulk action to the tasks seen).
SELECT (SELECT count(*) FROM (SELECT 1 FROM (/* matching */) AS m LIMIT $21) AS c) AS n,
       (SELECT max(m.id) FROM (/* matching */) AS m) AS upto;

-- name: console_bulk
-- One batch of a bulk action: action $21 by actor $25 (priority $26) on the next $24
-- matching tasks, newest first, with ids at most $22 and below $23 (NULL: from $22). The
-- ids are chosen without a lock; console_act locks them SKIP LOCKED and checks each again
-- (its status still one of $1).
SELECT a.id, a.changed, a.answer
  FROM notifyq.console_act(
           $21::text,
           ARRAY(SELECT m.id FROM (/* matching */) AS m
                  WHERE m.id <= $22::bigint AND ($23::bigint IS NULL OR m.id < $23::bigint)
                  ORDER BY m.id DESC
                  LIMIT $24),
           $25::text, $1::text[], $26::integer) AS a;

-- name: console_act_ids
-- Action $1 by actor $3 on the tasks $2 (one task, or a batch's busy rows tried again),
-- priority $4, on those still in one of the statuses $5 (NULL: any).
SELECT id, changed, answer FROM notifyq.console_act($1, $2::bigint[], $3, $5::text[], $4);

-- name: console_failures
-- GET /failures, `notifyq tasks failures`: matching tasks with an error, grouped by kind
-- and the error's shape (migration 0018), biggest group first, at most $21 groups. Each
-- with its newest task (example_id). The fingerprint is notifyq.error_fingerprint's formula
-- over the shape computed once per row (the regular expressions are the cost; kind is never
-- NULL); test_console_api checks that a group's fingerprint filters its tasks.
SELECT s.fingerprint, s.kind,
       substring(s.shape FROM '^([A-Za-z_][A-Za-z0-9_.]*):') AS error_class,
       s.shape AS message, count(*) AS n,
       min(s.finished_at) AS first_seen, max(s.finished_at) AS last_seen,
       max(s.id) AS example_id
  FROM (SELECT e.*, left(md5(e.kind || chr(31) || e.shape), 16) AS fingerprint
          FROM (SELECT m.id, m.kind, m.finished_at, notifyq.error_shape(m.error) AS shape
                  FROM (/* matching */) AS m
                 WHERE m.error IS NOT NULL) AS e) AS s
 GROUP BY s.fingerprint, s.kind, s.shape
 ORDER BY n DESC, last_seen DESC NULLS LAST, s.fingerprint
 LIMIT $21;

-- name: console_run_schedule
-- One tick of schedule $1 now, by actor $2 (migration 0018): the task's id, or NULL.
SELECT notifyq.run_schedule($1, $2);

-- name: task_payload_text
-- GET /tasks/{id}/payload: the payload as JSON text (no row: no such task).
SELECT payload::text AS text FROM notifyq.tasks WHERE id = $1;

-- name: task_result_text
-- GET /tasks/{id}/result: the result as JSON text, NULL when there is none yet.
SELECT result::text AS text FROM notifyq.tasks WHERE id = $1;
