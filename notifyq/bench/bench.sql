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
