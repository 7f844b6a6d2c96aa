-- `notifyq bench console`: the statements that build a big table for the operator console's
-- filters (notifyq/bench/console.py). Every value is a function of the row's number g, so
-- that two builds of the same size hold the same rows and the probes below find them.

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

-- name: prepare
-- Settle visibility and statistics after the bulk load (as autovacuum would, later).
VACUUM ANALYZE notifyq.tasks;
