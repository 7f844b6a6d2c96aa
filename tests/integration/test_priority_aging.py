"""Priority aging: a queue's waiting tasks gain priority, so a stream of higher-priority
work cannot starve them; in the claim's order, over the claim index, no rewrite of rows."""

from __future__ import annotations

from notifyq import db, limits, store


async def _claim_one(database: db.Database, queue: str) -> int:
    got = await store.claim_with_limits(
        database,
        limited=[queue],
        limited_limit=1,
        unlimited=[queue] if queue == "plain" else [],
        kinds=["noop"],
        limit=1,
        owner="w",
        lease_s=30,
    )
    if got.rows:
        return got.rows[0].id
    (row,) = await store.claim(
        database, queues=[queue], kinds=["noop"], limit=1, owner="w", lease_s=30
    )
    return row.id


async def _old_low_and_new_high(database: db.Database, queue: str) -> int:
    # A low-priority task due for a minute, behind ten urgent ones due now.
    old = await database.fetchval(
        "INSERT INTO notifyq.tasks (queue, kind, priority, run_at)"
        " VALUES ($1, 'noop', 0, now() - interval '60 seconds') RETURNING id",
        queue,
    )
    await database.execute(
        "INSERT INTO notifyq.tasks (queue, kind, priority)"
        " SELECT $1, 'noop', 20 FROM generate_series(1, 10)",
        queue,
    )
    return int(old)


async def test_a_waiting_low_priority_task_is_not_starved(database: db.Database) -> None:
    # One priority step per 2 s waited: 60 s of waiting makes 0 into 30, above 20.
    await store.set_queue_limits(database, limits.change("aging", age_priority_after=2))
    old = await _old_low_and_new_high(database, "aging")
    assert await _claim_one(database, "aging") == old
    # Without aging, the urgent stream goes first.
    old_plain = await _old_low_and_new_high(database, "plain")
    assert await _claim_one(database, "plain") != old_plain
    queues = {q.name: q for q in await store.list_queues(database)}
    assert queues["aging"].age_priority_after_s == 2.0


async def test_aging_keeps_priority_among_tasks_that_waited_alike(database: db.Database) -> None:
    await store.set_queue_limits(database, limits.change("aging", age_priority_after=3600))
    await _old_low_and_new_high(database, "aging")
    first = await _claim_one(database, "aging")
    row = await database.fetchrow("SELECT priority FROM notifyq.tasks WHERE id = $1", first)
    assert row is not None and row["priority"] == 20


async def test_the_aged_claim_reads_the_claim_index(database: db.Database) -> None:
    body = await database.fetchval(
        "SELECT prosrc FROM pg_proc WHERE proname = 'aged_pick'"
        " AND pronamespace = 'notifyq'::regnamespace"
    )
    for n, name in enumerate(("p_queue", "p_want", "p_at", "p_kinds", "p_age_s"), 1):
        body = body.replace(name, f"${n}")
    await database.execute(
        "INSERT INTO notifyq.tasks (queue, kind, priority, run_at)"
        " SELECT 'aging', 'noop', g % 5, now() - g * interval '1 s'"
        "   FROM generate_series(1, 5000) g"
    )
    await database.execute("ANALYZE notifyq.tasks")
    plan = await database.fetch(
        "EXPLAIN "
        + body.strip()
        .rstrip(";")
        .replace("$1", "'aging'")
        .replace("$2", "10")
        .replace("$3", "now()")
        .replace("$4", "ARRAY['noop']")
        .replace("$5", "60")
    )
    text = "\n".join(r[0] for r in plan)
    assert "tasks_claim_idx" in text, text
    assert "Seq Scan on tasks" not in text, text
