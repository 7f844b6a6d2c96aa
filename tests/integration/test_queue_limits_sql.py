"""Queue limits in SQL (migration 0006): notifyq.claim_limited against a real PostgreSQL.

Concurrent claimers run on separate pooled connections, as separate processes would. Each
limit is checked twice: while the claimers run (sampled) and afterwards, recomputed from
the rows' started_at/finished_at.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from typing import Any

import pytest
import trio

from notifyq import db, errors, listen, sql

LEASE_S = 30.0
# held_s of a queue that waits for a slot or a change of its limits.
WAIT_FOR_SLOT = math.inf


async def add_tasks(
    database: db.Database, queue: str, n: int, *, key: str | None = None, priority: int = 0
) -> list[int]:
    rows = await database.fetch(
        "INSERT INTO notifyq.tasks (queue, kind, priority, concurrency_key) "
        "SELECT $1, 'noop', $3, $4 FROM generate_series(1, $2::int) RETURNING id",
        queue,
        n,
        priority,
        key,
    )
    return [r["id"] for r in rows]


async def claim(
    database: db.Database, queues: list[str], want: int, worker: str = "w"
) -> tuple[list[Any], dict[str, float]]:
    rows = await database.fetch(sql.queries["claim_limited"], queues, want, worker, LEASE_S, None)
    tasks = [r for r in rows if r["id"] is not None]
    held = {r["queue"]: r["held_s"] for r in rows if r["id"] is None}
    return tasks, held


async def finish(database: db.Database, rows: list[Any], worker: str = "w") -> None:
    if rows:
        n = len(rows)
        await database.fetch(
            sql.queries["finish"],
            worker,
            [r["id"] for r in rows],
            [r["attempts"] for r in rows],
            ["done"] * n,
            ["null"] * n,
            [None] * n,
            [0.0] * n,
            [r["claim_token"] for r in rows],
            [None] * n,
        )


def max_overlap(intervals: list[tuple[dt.datetime, dt.datetime]]) -> int:
    """Most intervals [start, end) open at one instant."""
    # At equal times an end comes before a start: the intervals are half-open.
    points = sorted(
        [(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda p: (p[0], p[1])
    )
    best = now = 0
    for _, step in points:
        now += step
        best = max(best, now)
    return best


async def drain(
    database: db.Database, queue: str, claimers: int, *, want: int, hold_s: float, seed: int
) -> int:
    """Claim and finish every task of ``queue`` with ``claimers`` concurrent connections;
    return the most in_progress rows of the queue a sampler saw meanwhile."""
    rng = random.Random(seed)
    seen = 0
    done = trio.Event()

    async def claimer(worker: str) -> None:
        while not done.is_set():
            rows, _ = await claim(database, [queue], want, worker=worker)
            if not rows:
                await trio.sleep(0.002)
                continue
            await trio.sleep(rng.uniform(0, hold_s))
            await finish(database, rows, worker=worker)

    async def sampler() -> None:
        nonlocal seen
        while not done.is_set():
            n = await database.fetchval(
                "SELECT count(*) FROM notifyq.tasks WHERE queue = $1 AND status = 'in_progress'",
                queue,
            )
            seen = max(seen, n)
            left = await database.fetchval(
                "SELECT count(*) FROM notifyq.tasks WHERE queue = $1 AND status <> 'done'", queue
            )
            if left == 0:
                done.set()
            await trio.sleep(0.002)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sampler)
            for i in range(claimers):
                nursery.start_soon(claimer, f"w{i}")
    return seen


@pytest.fixture
async def pool(database_url: str) -> Any:
    async with db.open_database(database_url, min_size=10, max_size=10) as database:
        yield database


async def test_concurrent_claimers_never_exceed_the_concurrency(pool: db.Database) -> None:
    await pool.execute("INSERT INTO notifyq.queues (name, concurrency) VALUES ('api', 3)")
    await add_tasks(pool, "api", 60)
    seen = await drain(pool, "api", claimers=8, want=2, hold_s=0.01, seed=1)
    rows = await pool.fetch("SELECT started_at, finished_at FROM notifyq.tasks")
    assert seen <= 3
    assert max_overlap([(r["started_at"], r["finished_at"]) for r in rows]) == 3


async def test_per_key_limit_holds_across_claimers(pool: db.Database) -> None:
    await pool.execute("INSERT INTO notifyq.queues (name, per_key_concurrency) VALUES ('mail', 1)")
    for key in "abcde":
        await add_tasks(pool, "mail", 8, key=key)
    await drain(pool, "mail", claimers=6, want=3, hold_s=0.01, seed=2)
    rows = await pool.fetch("SELECT concurrency_key, started_at, finished_at FROM notifyq.tasks")
    assert {r["concurrency_key"] for r in rows} == set("abcde")
    for key in "abcde":
        spans = [(r["started_at"], r["finished_at"]) for r in rows if r["concurrency_key"] == key]
        assert max_overlap(spans) == 1, key


async def test_rate_holds_in_every_window_and_says_when_the_next_token_is_due(
    pool: db.Database,
) -> None:
    period = dt.timedelta(milliseconds=400)
    await pool.execute(
        "INSERT INTO notifyq.queues (name, rate_count, rate_period) VALUES ('hooks', 10, $1)",
        period,
    )
    await add_tasks(pool, "hooks", 45)
    helds: list[float] = []

    async def claimer(i: int) -> None:
        while True:
            rows, held = await claim(pool, ["hooks"], 3, worker=f"w{i}")
            await finish(pool, rows, worker=f"w{i}")
            if "hooks" in held:
                helds.append(held["hooks"])
            if not rows:
                left = await pool.fetchval(
                    "SELECT count(*) FROM notifyq.tasks WHERE status = 'pending'"
                )
                if left == 0:
                    return
                if "hooks" in held:
                    # Sleep until the token is due, as a process does: no polling.
                    await trio.sleep(held["hooks"])
                else:
                    await trio.sleep(0.002)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for i in range(4):
                nursery.start_soon(claimer, i)
    starts = sorted(
        r["started_at"] for r in await pool.fetch("SELECT started_at FROM notifyq.tasks")
    )
    assert len(starts) == 45
    busiest = max(sum(1 for t in starts if s <= t < s + period) for s in starts)
    assert busiest <= 10
    assert helds and WAIT_FOR_SLOT not in helds
    # The log in the row keeps only the last window's claims.
    log = await pool.fetchrow("SELECT rate_log_at, rate_log_n FROM notifyq.queues")
    assert log is not None and sum(log["rate_log_n"]) <= 10


async def test_claims_follow_priority_and_skip_keys_at_their_limit(database: db.Database) -> None:
    await database.execute(
        "INSERT INTO notifyq.queues (name, per_key_concurrency) VALUES ('mail', 1)"
    )
    a = await add_tasks(database, "mail", 3, key="a", priority=5)
    b = await add_tasks(database, "mail", 2, key="b", priority=1)
    free = await add_tasks(database, "mail", 2, priority=0)
    rows, held = await claim(database, ["mail"], 10)
    assert [r["id"] for r in rows] == [a[0], b[0], *free]
    assert held == {"mail": WAIT_FOR_SLOT}
    # a[1] stays pending (in priority order) until a[0] ends.
    assert (await claim(database, ["mail"], 10))[0] == []
    await finish(database, [r for r in rows if r["id"] == a[0]])
    rows2, _ = await claim(database, ["mail"], 10)
    assert [r["id"] for r in rows2] == [a[1]]


async def test_paused_claims_nothing_and_resuming_notifies_at_once(database: db.Database) -> None:
    await database.execute("INSERT INTO notifyq.queues (name, paused) VALUES ('q', true)")
    ids = await add_tasks(database, "q", 3)
    rows, held = await claim(database, ["q"], 10)
    assert rows == [] and held == {"q": WAIT_FOR_SLOT}
    async with listen.open_listener(database.loop, database.dsn, ["notifyq_queues"]) as listener:
        await database.execute("UPDATE notifyq.queues SET paused = false WHERE name = 'q'")
        with trio.fail_after(5):
            note = await listener.__anext__()
        assert note.payload == "q"
    rows, held = await claim(database, ["q"], 10)
    assert sorted(r["id"] for r in rows) == ids and held == {}


async def test_claims_write_the_rate_log_without_notifying(database: db.Database) -> None:
    await database.execute(
        "INSERT INTO notifyq.queues (name, rate_count, rate_period) VALUES ('r', 5, '1 h')"
    )
    await add_tasks(database, "r", 3)
    async with listen.open_listener(database.loop, database.dsn, ["notifyq_queues"]) as listener:
        rows, held = await claim(database, ["r"], 10)
        assert len(rows) == 3 and held == {}
        await database.execute("SELECT pg_notify('notifyq_queues', 'sentinel')")
        with trio.fail_after(5):
            note = await listener.__anext__()
        assert note.payload == "sentinel"  # the claim's write to the row sent nothing
    await add_tasks(database, "r", 5)
    rows, held = await claim(database, ["r"], 10)
    assert len(rows) == 2 and set(held) == {"r"}
    # The next token is due when the first claim leaves the window, an hour after it.
    assert 3500 < held["r"] <= 3600


async def test_a_lowered_limit_keeps_running_tasks_and_holds_new_claims(
    database: db.Database,
) -> None:
    await database.execute("INSERT INTO notifyq.queues (name, concurrency) VALUES ('c', 3)")
    await add_tasks(database, "c", 6)
    rows, held = await claim(database, ["c"], 10)
    assert len(rows) == 3 and held == {"c": WAIT_FOR_SLOT}
    await database.execute("UPDATE notifyq.queues SET concurrency = 1")
    assert (
        await database.fetchval("SELECT count(*) FROM notifyq.tasks WHERE status = 'in_progress'")
        == 3
    )
    await finish(database, rows[:2])
    assert (await claim(database, ["c"], 10))[0] == []  # 1 running = the new limit
    await finish(database, rows[2:])
    assert len((await claim(database, ["c"], 10))[0]) == 1


async def test_recovered_leases_give_their_slots_back(database: db.Database) -> None:
    await database.execute("INSERT INTO notifyq.queues (name, concurrency) VALUES ('c', 2)")
    await add_tasks(database, "c", 4)
    rows = await database.fetch(sql.queries["claim_limited"], ["c"], 10, "dead", 0.001, None)
    assert len([r for r in rows if r["id"]]) == 2
    await trio.sleep(0.01)
    recovered = await database.fetch(sql.queries["recover_expired"], 100)
    assert len(recovered) == 2
    again, _ = await claim(database, ["c"], 10)
    assert len(again) == 2


async def test_unlimited_queues_claim_as_before(database: db.Database) -> None:
    await database.execute(
        "INSERT INTO notifyq.queues (name) VALUES ('plain');"
        "INSERT INTO notifyq.queues (name, concurrency) VALUES ('lim', 1)"
    )
    assert [r["name"] for r in await database.fetch(sql.queries["limited_queues"])] == ["lim"]
    ids = await add_tasks(database, "plain", 3) + await add_tasks(database, "other", 2)
    rows, held = await claim(database, ["plain", "other"], 10)
    assert sorted(r["id"] for r in rows) == ids and held == {}


async def test_the_claim_plan_of_unlimited_queues_is_unchanged(database: db.Database) -> None:
    """`claim` never reads notifyq.queues: its plan is the same with limits on other queues."""
    await database.execute(
        "INSERT INTO notifyq.tasks (kind, status, finished_at) "
        "SELECT 'noop', 'done', now() FROM generate_series(1, 20000)"
    )
    await add_tasks(database, "default", 50)
    await database.execute("ANALYZE notifyq.tasks")

    def shape(node: dict[str, Any]) -> Any:
        return (
            node["Node Type"],
            node.get("Relation Name"),
            node.get("Index Name"),
            [shape(child) for child in node.get("Plans", [])],
        )

    async def plan() -> Any:
        async def explain(conn: db.Connection) -> Any:
            async with conn.transaction():
                text = await conn.fetchval(
                    "EXPLAIN (FORMAT JSON) " + sql.queries["claim"],
                    ["default"],
                    10,
                    "w",
                    30.0,
                    ["noop"],
                )
            return shape(text[0]["Plan"])

        return await database.run(explain)

    before = await plan()
    await database.execute(
        "INSERT INTO notifyq.queues (name, concurrency, rate_count, rate_period, paused) "
        "VALUES ('other', 1, 10, '1 s', true)"
    )
    await database.execute("ANALYZE notifyq.queues")
    after = await plan()
    assert after == before
    assert "tasks_claim_idx" in str(after) and "queues" not in str(after)
    assert "queues" not in sql.queries["claim"]


async def test_outcomes_of_limited_queues_wake_the_waiters(database: db.Database) -> None:
    await database.execute("INSERT INTO notifyq.queues (name, concurrency) VALUES ('lim', 1)")
    await database.fetchval(sql.queries["go_idle"], "w", ["lim", "free"])
    async with listen.open_listener(database.loop, database.dsn, ["notifyq"]) as listener:
        await database.execute(sql.queries["slots_freed"], ["free"])  # not limited: nothing
        await database.execute("SELECT pg_notify('notifyq', 'sentinel')")
        with trio.fail_after(5):
            assert (await listener.__anext__()).payload == "sentinel"
        await database.execute(sql.queries["slots_freed"], ["lim"])
        with trio.fail_after(5):
            assert (await listener.__anext__()).payload == "lim"
    # Woken once: the waiters row is gone until the process waits again.
    assert await database.fetchval("SELECT count(*) FROM notifyq.waiters") == 0


async def test_bad_limits_are_refused_with_named_constraints(database: db.Database) -> None:
    cases = {
        "INSERT INTO notifyq.queues (name, concurrency) VALUES ('q', 0)": "queues_concurrency_valid",
        "INSERT INTO notifyq.queues (name, rate_count) VALUES ('q', 5)": "queues_rate_valid",
        "INSERT INTO notifyq.queues (name, rate_count, rate_period) VALUES ('q', 5, '0 s')": "queues_rate_valid",
        "INSERT INTO notifyq.queues (name, per_key_concurrency) VALUES ('q', -1)": "queues_per_key_concurrency_valid",
        "INSERT INTO notifyq.queues (name) VALUES ('')": "queues_name_valid",
        "INSERT INTO notifyq.tasks (concurrency_key) VALUES ('')": "tasks_concurrency_key_valid",
    }
    for statement, constraint in cases.items():
        with pytest.raises(errors.QueryError, match=constraint):
            await database.execute(statement)


async def test_the_worker_role_may_use_notifyq_queues(database: db.Database) -> None:
    worker = [
        r[0]
        for r in await database.fetch("SELECT notifyq.grant_worker('pg_monitor'::regrole, false)")
    ]
    assert any("notifyq.queues" in s and "UPDATE" in s for s in worker)


async def test_the_producer_role_may_set_a_concurrency_key(database: db.Database) -> None:
    producer = [
        r[0]
        for r in await database.fetch("SELECT notifyq.grant_producer('pg_monitor'::regrole, false)")
    ]
    assert any("concurrency_key" in s and "GRANT INSERT" in s for s in producer)
