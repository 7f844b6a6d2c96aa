-- The statements only `notifyq bench` runs, each under a `-- name:` header (the same
-- format as notifyq/queries.sql, read by notifyq.sql.load). They run in scratch databases
-- only. notifyq/bench/common.py loads them as `common.queries`.

-- name: server_facts
-- What a benchmark report names about the server.
SELECT current_setting('server_version') AS server_version,
       current_setting('fsync') AS fsync,
       current_setting('synchronous_commit') AS synchronous_commit;

-- name: insert_probe
-- `bench latency`: one probe task, payload $1.
INSERT INTO notifyq.tasks (kind, payload) VALUES ('bench_probe', $1) RETURNING id;

-- name: enqueue_noops
-- $1 pending noop tasks in one statement (`bench drain`, `rss`, `scale`, and the pending
-- rows of `bench backlog`).
INSERT INTO notifyq.tasks (kind) SELECT 'noop' FROM generate_series(1, $1::int);

-- name: enqueue_noops_unique
-- `bench drain --unique`: $1 pending noop tasks, each with a unique_key of its own (so the
-- partial unique index is written on insert and left on every task's end).
INSERT INTO notifyq.tasks (kind, unique_key)
SELECT 'noop', 'bench:' || g FROM generate_series(1, $1::int) AS g;

-- name: enqueue_sleeps
-- `bench scale --sleep`: $1 sleep tasks of $2 seconds each, in one statement.
INSERT INTO notifyq.tasks (kind, payload)
SELECT 'sleep', to_jsonb($2::float8) FROM generate_series(1, $1::int);

-- name: analyze
-- Fresh planner statistics after a bulk insert.
ANALYZE notifyq.tasks;

-- name: count_done
-- How many tasks are done.
SELECT count(*) FROM notifyq.tasks WHERE status = 'done';

-- name: count_running
-- How many tasks are in_progress.
SELECT count(*) FROM notifyq.tasks WHERE status = 'in_progress';

-- name: count_workers
-- How many processes have registered themselves in the worker registry.
SELECT count(*) FROM notifyq.workers;

-- name: unfinished
-- Whether any task is pending or in_progress (one probe of each partial index).
SELECT EXISTS (SELECT 1 FROM notifyq.tasks WHERE status = 'pending')
    OR EXISTS (SELECT 1 FROM notifyq.tasks WHERE status = 'in_progress');

-- name: exactly_once
-- `bench scale`: tasks, tasks without a 'done' event, tasks with more than one.
SELECT count(*) AS tasks,
       count(*) FILTER (WHERE n = 0) AS missing,
       count(*) FILTER (WHERE n > 1) AS twice
  FROM (SELECT t.id, count(e.id) AS n
          FROM notifyq.tasks t
          LEFT JOIN notifyq.task_events e ON e.task_id = t.id AND e.event = 'done'
         GROUP BY t.id) AS per_task;

-- name: done_by_worker
-- `bench scale`: 'done' events by worker process, largest first.
SELECT worker, count(*) AS done
  FROM notifyq.task_events
 WHERE event = 'done'
 GROUP BY worker
 ORDER BY done DESC;

-- name: plain_table
-- `bench insert`: a table like notifyq.tasks (columns, defaults, constraints, indexes)
-- without its triggers, to compare producers' insert rates against.
CREATE TABLE notifyq.bench_plain_tasks (LIKE notifyq.tasks INCLUDING ALL);

-- name: insert_task
-- `bench insert`: one producer's single-row insert into notifyq.tasks.
INSERT INTO notifyq.tasks (kind, payload) VALUES ('noop', $1::jsonb);

-- name: insert_task_unique
-- `bench insert --unique`: the same insert with a unique_key of its own (client and
-- sequence number from the payload) and ON CONFLICT DO NOTHING.
INSERT INTO notifyq.tasks (kind, payload, unique_key)
VALUES ('noop', $1::jsonb, ($1::jsonb ->> 'client') || ':' || ($1::jsonb ->> 'n'))
ON CONFLICT DO NOTHING;

-- name: insert_task_duplicate
-- `bench insert --unique`: every producer inserts the same key: after the first, each
-- insert is a skipped duplicate.
INSERT INTO notifyq.tasks (kind, payload, unique_key)
VALUES ('noop', $1::jsonb, 'bench:duplicate')
ON CONFLICT DO NOTHING;

-- name: insert_plain
-- `bench insert`: the same insert into the table without triggers.
INSERT INTO notifyq.bench_plain_tasks (kind, payload) VALUES ('noop', $1::jsonb);

-- name: occupy
-- `bench insert`: $1 long `sleep` tasks of $2 seconds that keep every worker busy.
INSERT INTO notifyq.tasks (kind, payload, priority)
SELECT 'sleep', to_jsonb($2::float8), 100 FROM generate_series(1, $1::int);

-- name: triggers_off
-- `bench backlog`: bulk-load without the triggers (scratch database only).
ALTER TABLE notifyq.tasks DISABLE TRIGGER USER;

-- name: triggers_on
-- `bench backlog`: the triggers back on after the bulk load.
ALTER TABLE notifyq.tasks ENABLE TRIGGER USER;

-- name: fill_finished
-- `bench backlog`: $1 finished rows, as a long-running queue accumulates them.
INSERT INTO notifyq.tasks (kind, status, attempts, result, created_at, updated_at,
                           started_at, finished_at)
SELECT 'noop', 'done', 1, 'null', now(), now(), now(), now()
  FROM generate_series(1, $1::int);

-- name: vacuum
-- `bench backlog`: settle visibility and statistics after the bulk load.
VACUUM ANALYZE notifyq.tasks;

-- name: past_event_partitions
-- `bench scale-table`: the statements that create the history's day partitions of the last
-- 9 days (the fill spreads rows over the last 8; the partition job makes today's and the
-- next ones). The benchmark runs each.
SELECT format('CREATE TABLE IF NOT EXISTS notifyq.%I PARTITION OF notifyq.task_events '
              'FOR VALUES FROM (%L) TO (%L)', 'task_events_p' || to_char(day, 'YYYYMMDD'),
              day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC') AS ddl
  FROM (SELECT (now() AT TIME ZONE 'UTC')::date - d AS day
          FROM generate_series(1, 9) AS d) AS days;

-- name: fill_ended_spread
-- `bench scale-table`: ended tasks $1+1 .. $1+$2 of $3, finished evenly over the last $4
-- days, in id order as a real queue's are (the last one now).
INSERT INTO notifyq.tasks (kind, status, attempts, result, created_at, updated_at,
                           started_at, finished_at)
SELECT 'noop', 'done', 1, 'null', t, t, t, t
  FROM (SELECT now() - ($4::float8 * ($3 - g) / $3::float8) * interval '1 day' AS t
          FROM generate_series($1::bigint + 1, $1::bigint + $2::bigint) AS g) AS s;

-- name: fill_history_spread
-- `bench scale-table`, `bench migrate-history`: history rows $1+1 .. $1+$2 of $3, evenly
-- over the last $4 days, the newest with the highest task ids (as a real history's).
INSERT INTO notifyq.task_events (task_id, event, attempt, worker, at)
SELECT g, CASE WHEN g % 2 = 0 THEN 'started' ELSE 'done' END, 1, 'bench',
       now() - ($4::float8 * ($3 - g) / $3::float8) * interval '1 day'
  FROM generate_series($1::bigint + 1, $1::bigint + $2::bigint) AS g;

-- name: vacuum_events
-- Settle visibility and statistics of the history after a bulk load.
VACUUM ANALYZE notifyq.task_events;

-- name: count_events
-- How many history rows there are.
SELECT count(*) FROM notifyq.task_events;

-- name: insert_event
-- `bench migrate-history`: one event insert, as an outcome write makes (and a claim did
-- before migration 0010).
INSERT INTO notifyq.task_events (task_id, event) VALUES (0, 'started');

-- name: table_sizes
-- `bench scale-table`: sizes of the tasks table and of the history (all its partitions).
SELECT name, (sum(pg_table_size(relid)) / 1048576.0)::float8 AS table_mb,
       (sum(pg_indexes_size(relid)) / 1048576.0)::float8 AS indexes_mb
  FROM (SELECT 'tasks' AS name, 'notifyq.tasks'::regclass AS relid
        UNION ALL
        SELECT 'task_events', inhrelid::regclass FROM pg_inherits
         WHERE inhparent = to_regclass('notifyq.task_events')) AS s
 GROUP BY name ORDER BY name;

-- name: harsh_enqueue
-- `bench harsh`: $1 tasks of kind $2 with payload $3 in one statement; their ids (the
-- ledger's list).
INSERT INTO notifyq.tasks (kind, payload, max_attempts)
SELECT $2, $3::jsonb, 1000 FROM generate_series(1, $1::int)
RETURNING id;

-- name: harsh_recovered
-- `bench harsh`: 'recovered' events (a lost worker's task given back) of the task ids $1.
SELECT count(*) FROM notifyq.task_events WHERE event = 'recovered' AND task_id = ANY($1::bigint[]);

-- name: harsh_now
-- `bench harsh`: the server's clock (every figure is read against it).
SELECT clock_timestamp();

-- name: harsh_ledger
-- `bench harsh`: of the task ids $1, how many have no 'done' event, and how many more
-- than one.
SELECT count(*) AS tasks,
       count(*) FILTER (WHERE n = 0) AS lost,
       count(*) FILTER (WHERE n > 1) AS twice
  FROM (SELECT i.id, count(e.task_id) AS n
          FROM unnest($1::bigint[]) AS i(id)
          LEFT JOIN notifyq.task_events e ON e.task_id = i.id AND e.event = 'done'
         GROUP BY i.id) AS per_task;

-- name: harsh_missing
-- `bench harsh` / `bench failover`: of the task ids $1 (inserts the database acknowledged),
-- how many have no row at all (an asynchronous replica promoted before it had them), and
-- how many ran more than once (attempts > 1: a lease lost, an outcome write lost).
SELECT count(*) FILTER (WHERE t.id IS NULL) AS missing,
       count(*) FILTER (WHERE t.attempts > 1) AS ran_again
  FROM unnest($1::bigint[]) AS i(id)
  LEFT JOIN notifyq.tasks t ON t.id = i.id;

-- name: harsh_done_count
-- `bench harsh`: how many of the task ids $1 are done.
SELECT count(*) FROM notifyq.tasks WHERE id = ANY($1::bigint[]) AND status = 'done';

-- name: harsh_rate
-- `bench harsh`: 'done' events per tenth of a second since $1 (tenth 0 starts at $1).
SELECT floor(extract(epoch FROM at - $1::timestamptz) * 10)::int AS tenth, count(*)::int AS n
  FROM notifyq.task_events
 WHERE event = 'done' AND at >= $1::timestamptz
 GROUP BY 1 ORDER BY 1;

-- name: harsh_pickup
-- `bench harsh`: pickup latency (the first attempt's start minus created_at) in ms of the
-- tasks created from $1 to $2 that started: p50, p95. An attempt's start is its outcome
-- row's started_at, or the task's started_at while it runs (see task_history).
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY ms) AS p95_ms
  FROM (SELECT extract(epoch FROM least(min(e.started_at), t.started_at)
                                  - t.created_at)::float8 * 1000 AS ms
          FROM notifyq.tasks t LEFT JOIN notifyq.task_events e ON e.task_id = t.id
         WHERE t.created_at >= $1::timestamptz AND t.created_at < $2::timestamptz
           AND t.started_at IS NOT NULL
         GROUP BY t.id, t.created_at, t.started_at) AS s;

-- name: harsh_dead_tuples
-- `bench harsh`: dead rows of notifyq.tasks as the statistics see them.
SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'notifyq.tasks'::regclass;

-- name: harsh_xid
-- `bench harsh idle-in-transaction`: take a transaction id (the session then holds the
-- xmin horizon until it ends).
SELECT txid_current();

-- name: harsh_scan
-- `bench harsh repeatable-read`: a reader's scan of the whole tasks table (in a
-- REPEATABLE READ transaction).
SELECT count(*), sum(attempts) FROM notifyq.tasks;

-- name: harsh_terminate
-- `bench harsh terminate | connections`: end every client backend of this database but the
-- harness's own (application_name notifyq-harsh); how many.
SELECT count(pg_terminate_backend(pid))::int
  FROM pg_stat_activity
 WHERE datname = current_database() AND backend_type = 'client backend'
   AND pid <> pg_backend_pid() AND application_name <> 'notifyq-harsh';

-- name: soak_table
-- `bench soak`: notifyq.tasks as the statistics see it (live and dead rows, autovacuum
-- runs), its size with indexes in MB, and the pending backlog.
SELECT s.n_live_tup AS live_rows,
       s.n_dead_tup AS dead_rows,
       s.autovacuum_count AS autovacuums,
       round(pg_total_relation_size('notifyq.tasks') / 1048576.0, 1)::float8 AS tasks_mb,
       (SELECT count(*) FROM notifyq.tasks WHERE status = 'pending') AS pending
  FROM pg_stat_user_tables s
 WHERE s.relid = 'notifyq.tasks'::regclass;

-- name: soak_latency
-- `bench soak`: of the task ids $1, the pickup (the first attempt's start minus
-- created_at, as harsh_pickup) and end-to-end ('done' minus created_at) latencies in ms:
-- p50, p95, p99.
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY pickup) AS pickup_p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY pickup) AS pickup_p95_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY pickup) AS pickup_p99_ms,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY done) AS done_p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY done) AS done_p95_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY done) AS done_p99_ms
  FROM (SELECT extract(epoch FROM least(min(e.started_at), t.started_at)
                                  - t.created_at)::float8 * 1000 AS pickup,
               extract(epoch FROM max(e.at) FILTER (WHERE e.event = 'done')
                                  - t.created_at)::float8 * 1000 AS done
          FROM notifyq.tasks t JOIN notifyq.task_events e ON e.task_id = t.id
         WHERE t.id = ANY($1::bigint[])
         GROUP BY t.id, t.created_at, t.started_at) AS per_task;

-- name: backend_pid
-- The pid of this connection's server process (to find the server's processes: cpu.py).
SELECT pg_backend_pid();

-- name: floor_table
-- `bench floor`: the minimal SKIP LOCKED queue, three columns and a partial index over the
-- pending rows (as small as a queue that claims in id order can be).
CREATE TABLE bench_floor (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    status text NOT NULL DEFAULT 'pending',
    payload jsonb
);
CREATE INDEX bench_floor_pending_idx ON bench_floor (id) WHERE status = 'pending';

-- name: floor_fill
-- `bench floor`: $1 pending rows of the minimal queue.
INSERT INTO bench_floor (payload) SELECT '{}' FROM generate_series(1, $1::int);

-- name: floor_claim
-- `bench floor`: claim up to $1 pending rows of the minimal queue.
UPDATE bench_floor SET status = 'running'
 WHERE id = ANY (ARRAY(SELECT id FROM bench_floor WHERE status = 'pending'
                        ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED))
RETURNING id, payload;

-- name: floor_done
-- `bench floor`: mark the claimed rows $1 done, in one statement.
UPDATE bench_floor SET status = 'done' WHERE id = ANY ($1::bigint[]);

-- name: floor_count_done
-- `bench floor`: how many rows of the minimal queue are done.
SELECT count(*) FROM bench_floor WHERE status = 'done';

-- name: floor_analyze
-- `bench floor`: fresh planner statistics after a fill.
ANALYZE bench_floor;

-- name: enqueue_chord
-- `bench drain --chord`: a batch of $1 pending noop members and its noop callback, added
-- in one statement (the callback's insert seals the batch); the batch's id.
WITH b AS (INSERT INTO notifyq.batches DEFAULT VALUES RETURNING id),
     added AS (
         INSERT INTO notifyq.tasks (kind, batch_id, after_batch)
         SELECT 'noop', b.id, NULL FROM b, generate_series(1, $1::int)
         UNION ALL
         SELECT 'noop', NULL, b.id FROM b
         RETURNING 1)
SELECT b.id FROM b WHERE (SELECT count(*) FROM added) > 0;

-- name: chord_outcome
-- `bench drain --chord`: batch $1's counts, its callback's status, how many attempts of
-- the callback ended (outcome rows of the history: each has its start) and how many ended
-- done, and the seconds from the last member's end to
-- the callback's start and to its end (the server's clock).
SELECT b.total, b.done, b.failed, c.status AS callback_status,
       (SELECT count(*) FROM notifyq.task_events e
         WHERE e.task_id = c.id AND e.started_at IS NOT NULL)::int AS callback_runs,
       (SELECT count(*) FROM notifyq.task_events e
         WHERE e.task_id = c.id AND e.event = 'done')::int AS callback_done,
       extract(epoch FROM c.started_at - m.last_end)::float8 AS start_after_s,
       extract(epoch FROM c.finished_at - m.last_end)::float8 AS end_after_s
  FROM notifyq.batches b
  JOIN notifyq.tasks c ON c.id = b.callback_id
 CROSS JOIN LATERAL (SELECT max(t.finished_at) AS last_end FROM notifyq.tasks t
                      WHERE t.batch_id = b.id) AS m
 WHERE b.id = $1;

-- name: members_left
-- `bench drain --chord`: whether any task that is no callback is pending or in_progress.
SELECT EXISTS (SELECT 1 FROM notifyq.tasks WHERE status = 'pending' AND after_batch IS NULL)
    OR EXISTS (SELECT 1 FROM notifyq.tasks WHERE status = 'in_progress' AND after_batch IS NULL);

-- name: callback_ended
-- `bench drain --chord`: whether the callback of batch $1 has ended.
SELECT status IN ('done', 'error', 'cancelled') FROM notifyq.tasks WHERE after_batch = $1;

-- name: enqueue_tenant
-- `bench fairness`: $1 pending noop tasks of tenant $2 (their concurrency_key).
INSERT INTO notifyq.tasks (kind, concurrency_key)
SELECT 'noop', $2::text FROM generate_series(1, $1::int);

-- name: enqueue_tenants
-- `bench fairness`: $1 pending noop tasks spread over $2 tenants (keys t0, t1, ...).
INSERT INTO notifyq.tasks (kind, concurrency_key)
SELECT 'noop', 't' || (g % $2::int) FROM generate_series(1, $1::int) AS g;

-- name: tenant_waits
-- `bench fairness`: seconds from insert to start of tenant $1's started tasks, ascending.
SELECT extract(epoch FROM started_at - created_at)::float8 AS wait_s
  FROM notifyq.tasks
 WHERE concurrency_key = $1::text AND started_at IS NOT NULL
 ORDER BY 1;

-- name: tenant_done
-- `bench fairness`: how many of tenant $1's tasks are done.
SELECT count(*) FROM notifyq.tasks WHERE concurrency_key = $1::text AND status = 'done';

-- ---- `notifyq bench console` (notifyq/bench/console.py): a big table for the console's
-- filters. Every value is a function of the row's number g, so that two builds of the
-- same size hold the same rows and `probes` finds them.

-- name: fill_ended
-- Ended tasks $1+1 .. $1+$2 of $3, in id order as a real queue's are: created over the last
-- 30 days (the last one now), ended a few seconds after. 90 % done, 7 % error, 3 %
-- cancelled; six queues and twenty kinds, both skewed; a few priorities; unique keys,
-- concurrency keys and schedule ticks on some; errors from ten templates with numbers in
-- them (so that the failure groups have something to fold); a batch of 100 members every
-- 1,000 tasks, and a workflow (a root and a chain of five dependents) every 10,000.
INSERT INTO notifyq.tasks (queue, kind, payload, priority, status, attempts, result, error,
                           created_at, updated_at, started_at, finished_at, run_at,
                           unique_key, concurrency_key, schedule_name, schedule_tick,
                           batch_id, depends_on, claim_token)
SELECT (ARRAY['default', 'default', 'default', 'default', 'default', 'mail', 'mail',
              'images', 'reports', 'rare'])[1 + (g * 7919) % 10],
       CASE WHEN g % 100000 = 7 THEN 'kind_rare'
            ELSE 'kind_' || lpad(floor(((g * 104729) % 1000) ^ 2 / 50000)::int::text, 2, '0')
       END,
       jsonb_build_object('n', g, 'user', 'user-' || (g % 50000)),
       CASE WHEN g % 20 = 0 THEN 10 WHEN g % 20 = 1 THEN -10 ELSE 0 END,
       s.status,
       CASE WHEN s.status = 'error' THEN 3 ELSE 1 END,
       CASE WHEN s.status = 'done' THEN 'null'::jsonb END,
       CASE WHEN s.status = 'cancelled' THEN 'cancelled'
            WHEN s.status = 'error' THEN
                (ARRAY['TimeoutError: request to https://api.example.com/v1/items/' || g
                           || ' timed out after 30 s',
                       'ValueError: invalid literal for int() with base 10: ''' || g || '''',
                       'KeyError: ''user_' || (g % 5000) || '''',
                       'ConnectionError: connection to 10.0.' || (g % 250) || '.' || (g % 7)
                           || ':5432 refused',
                       'PermissionError: [Errno 13] Permission denied: ''/data/' || g || '.csv''',
                       'RuntimeError: quota exceeded for tenant ' || (g % 1000),
                       'ZeroDivisionError: division by zero',
                       'HTTPError: 503 Service Unavailable for url https://mail.example.com/send',
                       'ImageError: cannot identify image file ''/tmp/upload-'
                           || md5(g::text) || '.png''',
                       'AssertionError: checksum mismatch in batch ' || (g % 97)
                      ])[1 + (g * 31) % 10]
       END,
       s.t - interval '2 s', s.t, s.t - interval '1 s', s.t, s.t - interval '2 s',
       CASE WHEN g % 10 = 3 AND g % 10000 NOT BETWEEN 9001 AND 9005 THEN 'order-' || g END,
       CASE WHEN g % 5 = 2 THEN 'tenant-' || (g % 1000) END,
       CASE WHEN g % 40 = 5 THEN 'nightly-report' WHEN g % 40 = 6 THEN 'hourly-sync' END,
       CASE WHEN g % 40 IN (5, 6) THEN date_trunc('hour', s.t) END,
       CASE WHEN g % 1000 < 100 THEN g / 1000 + 1 END,
       CASE WHEN g % 10000 BETWEEN 9001 AND 9005 THEN ARRAY[g - 1] END,
       1
  FROM (SELECT g,
               now() - (30.0 * ($3 - g) / $3::float8) * interval '1 day' AS t,
               CASE WHEN (g * 13) % 100 < 90 THEN 'done'
                    WHEN (g * 13) % 100 < 97 THEN 'error' ELSE 'cancelled' END AS status
          FROM generate_series($1::bigint + 1, $1::bigint + $2::bigint) AS g) AS s;

-- name: fill_batches
-- The batches the ended tasks are members of (fill_ended: batch g / 1000 + 1), complete.
INSERT INTO notifyq.batches (id, total, done, failed, sealed, completed_at)
SELECT b, 100, 90, 10, true, now()
  FROM generate_series(1, $1::bigint / 1000 + 1) AS b
ON CONFLICT (id) DO NOTHING;

-- name: fill_pending
-- $1 pending tasks after the ended ones (created in the last hour): 80 % due (run_at in the
-- last 10 minutes), 20 % later (within the next hour); the same queues and kinds.
INSERT INTO notifyq.tasks (queue, kind, payload, priority, status, created_at, updated_at,
                           run_at, concurrency_key)
SELECT (ARRAY['default', 'default', 'default', 'default', 'default', 'mail', 'mail',
              'images', 'reports', 'rare'])[1 + (g * 7919) % 10],
       CASE WHEN g % 100000 = 7 THEN 'kind_rare'
            ELSE 'kind_' || lpad(floor(((g * 104729) % 1000) ^ 2 / 50000)::int::text, 2, '0')
       END,
       jsonb_build_object('n', g),
       CASE WHEN g % 20 = 0 THEN 10 ELSE 0 END,
       'pending',
       now() - (g % 3600) * interval '1 s', now(),
       CASE WHEN g % 5 = 0 THEN now() + (g % 3600) * interval '1 s'
            ELSE now() - (g % 600) * interval '1 s' END,
       CASE WHEN g % 5 = 2 THEN 'tenant-' || (g % 1000) END
  FROM generate_series(1, $1::bigint) AS g;

-- name: sizes
-- How many ended and pending tasks the table holds (a kept database is reused when these
-- are what the run asks for).
SELECT count(*) FILTER (WHERE status IN ('done', 'error', 'cancelled')) AS ended,
       count(*) FILTER (WHERE status = 'pending') AS pending
  FROM notifyq.tasks;

-- name: probes
-- Values for the filters, read from the rows: a newest id, a workflow root, a batch, a
-- unique key, ids spread over the table, an hour of last week.
SELECT max(id) AS newest,
       (SELECT max(id) - 5 FROM notifyq.tasks WHERE depends_on IS NOT NULL) AS workflow,
       (SELECT max(batch_id) - 3 FROM notifyq.tasks) AS batch,
       (SELECT unique_key FROM notifyq.tasks WHERE unique_key IS NOT NULL
         ORDER BY id DESC LIMIT 1 OFFSET 1000) AS unique_key,
       (SELECT array_agg(i) FROM generate_series(1, max(id), greatest(max(id) / 20, 1)) AS i)
           AS ids,
       to_char(date_trunc('hour', now() - interval '7 days') AT TIME ZONE 'UTC',
               'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS week_ago
  FROM notifyq.tasks;
