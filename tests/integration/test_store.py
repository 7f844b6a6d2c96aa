"""The store's vocabulary is the schema's: statuses, verdicts and event names agree."""

from __future__ import annotations

import re

from notifyq import db, sql, store


async def check_values(database: db.Database, constraint: str) -> set[str]:
    definition = await database.fetchval(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = $1", constraint
    )
    assert definition is not None, constraint
    return set(re.findall(r"'([a-z_]+)'::text", definition))


async def test_status_is_the_tasks_check_constraint(database: db.Database) -> None:
    assert await check_values(database, "tasks_status_valid") == {s.value for s in store.Status}


async def test_every_verdict_is_a_history_event(database: db.Database) -> None:
    events = await check_values(database, "task_events_event_valid")
    assert {v.value for v in store.Verdict} <= events


def test_the_finish_statement_speaks_the_verdicts() -> None:
    # Each verdict the writer sends is one the statement handles by name (or passes on as
    # the event: done, cancelled), and no outcome name of another vocabulary is left in it.
    finish = sql.queries["finish"]
    named = set(re.findall(r"o\.outcome (?:=|IN) \(?'([a-z_]+)'(?:, '([a-z_]+)')?", finish))
    mentioned = {name for pair in named for name in pair if name}
    assert mentioned == {"retried", "released", "snoozed", "failed", "done"}
    assert "'retry'" not in finish and "'release'" not in finish


def _ctes(statement: str) -> dict[str, str]:
    """The named CTEs of a statement, comments and spacing removed, parameters kept."""
    text = " ".join(re.sub(r"--[^\n]*", "", statement).split())
    ctes: dict[str, str] = {}
    for match in re.finditer(r"(\w+) AS (?:MATERIALIZED )?\(", text):
        depth, start = 1, match.end()
        end = start
        while depth:
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            end += 1
        ctes.setdefault(match.group(1), text[start : end - 1].strip())
    return ctes


def test_finish_and_claim_is_finish_then_claim() -> None:
    """The writer's combined statement does what `finish` and `claim` do, CTE for CTE."""
    both = _ctes(sql.queries["finish_and_claim"])
    finish = _ctes(sql.queries["finish"])
    for name in ("outcome", "written", "events", "batch_ends"):
        assert both[name] == finish[name], name
    claim = _ctes(sql.queries["claim"])
    # Renumbered: the claim's queues $1, limit $2, owner $3, lease $4, kinds $5 are $10,
    # $11, $1, $12, $13.
    renumber = {"$1": "$10", "$2": "$11", "$3": "$1", "$4": "$12", "$5": "$13"}
    for name in ("picked", "claimed"):
        expected = re.sub(r"\$\d+", lambda m: renumber[m.group(0)], claim[name])
        expected = expected.replace("FROM notifyq.tasks, quick", "FROM notifyq.tasks")
        assert both[name] == expected, name


async def test_finish_and_claim_writes_fenced_and_claims_in_order(database: db.Database) -> None:
    ids = [
        await database.fetchval(
            "INSERT INTO notifyq.tasks (kind, priority) VALUES ('noop', $1) RETURNING id", p
        )
        for p in (0, 5, 1, 9)
    ]
    [mine, other] = await store.claim(
        database, queues=["default"], kinds=["noop"], limit=2, owner="me", lease_s=30
    )
    assert [mine.id, other.id] == [ids[3], ids[1]]
    exchange = await store.finish_and_claim(
        database,
        owner="me",
        outcomes=[
            store.Outcome(mine.id, 1, store.Verdict.DONE, result_json="1", token=mine.token),
            # Not its claim token (a stale run's): fenced.
            store.Outcome(other.id, 1, store.Verdict.DONE, token=other.token + 1),
        ],
        queues=["default"],
        kinds=["noop"],
        limit=5,
        lease_s=30,
    )
    assert exchange.written == {(mine.id, mine.token): "done"}
    assert [c.id for c in exchange.claimed] == [ids[2], ids[0]]  # priority order
    rows = await database.fetch("SELECT id, status, locked_by FROM notifyq.tasks ORDER BY id")
    assert [(r["status"], r["locked_by"]) for r in rows] == [
        ("in_progress", "me"),
        ("in_progress", "me"),
        ("in_progress", "me"),
        ("done", None),
    ]
    # One stored row: the outcome, with its attempt's start; the claims store none.
    events = await database.fetch(
        "SELECT task_id, event, started_at FROM notifyq.task_events WHERE event <> 'queued'"
    )
    assert [(e["task_id"], e["event"]) for e in events] == [(mine.id, "done")]
    assert events[0]["started_at"] is not None


async def _outcome(database: db.Database, task_id: int, attempt: int, verdict: str) -> None:
    token = await database.fetchval("SELECT claim_token FROM notifyq.tasks WHERE id = $1", task_id)
    await database.fetch(
        sql.queries["finish"],
        "me",
        [task_id],
        [attempt],
        [verdict],
        ["null"],
        [None],
        [0.0],
        [token],
        [None],
    )


async def _events(database: db.Database, task_id: int) -> list[tuple[str, int]]:
    return [(r.event, r.attempt) for r in await store.task_history(database, task_id)]


async def test_history_derives_each_attempts_start(database: db.Database) -> None:
    """No 'started' row is stored (migration 0010): the history derives one per attempt,
    from its outcome row or, while it runs, from the task row; an attempt that has a stored
    one (an older process wrote it) gets no second."""
    task_id = await database.fetchval(
        "INSERT INTO notifyq.tasks (kind) VALUES ('noop') RETURNING id"
    )
    await store.claim(database, queues=["default"], kinds=["noop"], limit=1, owner="me", lease_s=30)
    assert await _events(database, task_id) == [("queued", 0), ("started", 1)]
    [started] = [r for r in await store.task_history(database, task_id) if r.event == "started"]
    started_at = await database.fetchval(
        "SELECT started_at FROM notifyq.tasks WHERE id = $1", task_id
    )
    assert (started.at, started.worker, started.id) == (started_at, "me", 0)
    await _outcome(database, task_id, 1, "released")  # shutdown: attempt 1 again next time
    await store.claim(database, queues=["default"], kinds=["noop"], limit=1, owner="me", lease_s=30)
    await _outcome(database, task_id, 1, "retried")
    await store.claim(database, queues=["default"], kinds=["noop"], limit=1, owner="me", lease_s=30)
    await _outcome(database, task_id, 2, "done")
    assert await _events(database, task_id) == [
        ("queued", 0),
        ("started", 1),
        ("released", 1),
        ("started", 1),
        ("retried", 1),
        ("started", 2),
        ("done", 2),
    ]
    assert (
        await database.fetchval(
            "SELECT count(*) FROM notifyq.task_events WHERE task_id = $1", task_id
        )
        == 3
    )

    # A process of the previous version stores its claim's 'started' row.
    old = await database.fetchval("INSERT INTO notifyq.tasks (kind) VALUES ('noop') RETURNING id")
    await store.claim(database, queues=["default"], kinds=["noop"], limit=1, owner="me", lease_s=30)
    await database.execute(
        "INSERT INTO notifyq.task_events (task_id, event, attempt, worker) "
        "VALUES ($1, 'started', 1, 'me')",
        old,
    )
    assert await _events(database, old) == [("queued", 0), ("started", 1)]
    await _outcome(database, old, 1, "done")
    assert await _events(database, old) == [("queued", 0), ("started", 1), ("done", 1)]


async def test_a_limited_queues_claim_still_stores_its_start_once(database: db.Database) -> None:
    """claim_limited (a function that processes of the previous version call too) keeps
    its stored 'started' row; the outcome's start then derives no second one."""
    await database.execute("INSERT INTO notifyq.queues (name, concurrency) VALUES ('lim', 5)")
    task_id = await database.fetchval(
        "INSERT INTO notifyq.tasks (queue, kind) VALUES ('lim', 'noop') RETURNING id"
    )
    # As the previous version calls it: without kinds (every kind).
    claimed = await database.fetch(
        "SELECT * FROM notifyq.claim_limited($1::text[], $2, $3, $4::float8)",
        ["lim"],
        1,
        "me",
        30.0,
    )
    assert [r["id"] for r in claimed] == [task_id]
    assert await _events(database, task_id) == [("queued", 0), ("started", 1)]
    await _outcome(database, task_id, 1, "done")
    assert await _events(database, task_id) == [("queued", 0), ("started", 1), ("done", 1)]
    stored = await database.fetch(
        "SELECT event, started_at IS NOT NULL AS has_start FROM notifyq.task_events "
        "WHERE task_id = $1 ORDER BY id",
        task_id,
    )
    assert [(r["event"], r["has_start"]) for r in stored] == [("started", False), ("done", True)]


async def test_a_task_row_has_the_tables_columns(database: db.Database) -> None:
    columns = await database.fetch(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'notifyq.tasks'::regclass"
        " AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
    )
    assert tuple(r["attname"] for r in columns) == store.TASK_COLUMNS
