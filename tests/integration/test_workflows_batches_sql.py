"""Batches in SQL (migration 0014): fan-in at scale. A batch row counts its members
(tasks.batch_id) as they are added and as they end; its callback (tasks.after_batch) waits
until every member ended, and is released (or cancelled) exactly once."""

from __future__ import annotations

import re
from typing import Any

import pytest
import trio

from notifyq import db, errors, sql
from tests import flows
from tests.flows import add, claim, finish, status

CHORD = """
WITH b AS (INSERT INTO notifyq.batches DEFAULT VALUES RETURNING id)
INSERT INTO notifyq.tasks (kind, batch_id, after_batch, on_parent_failure)
SELECT 'm', b.id, NULL, 'cancel' FROM b, generate_series(1, $1::int)
UNION ALL
SELECT 'cb', NULL, b.id, $2 FROM b
RETURNING id, batch_id, after_batch
"""


async def chord(database: db.Database, members: int, policy: str = "cancel") -> tuple[int, int]:
    """A batch of ``members`` and its callback, added in one statement: (batch, callback)."""
    rows = await database.fetch(CHORD, members, policy)
    [callback] = [r for r in rows if r["after_batch"] is not None]
    return int(callback["after_batch"]), int(callback["id"])


async def progress(database: db.Database, batch: int) -> tuple[int, int, int, int]:
    row = await database.fetchrow(
        "SELECT total, done, failed, remaining FROM notifyq.batch_progress WHERE id = $1", batch
    )
    assert row is not None
    return (row["total"], row["done"], row["failed"], row["remaining"])


async def batch_updates_while(database: db.Database, statement: Any) -> int:
    """Row updates of notifyq.batches made by ``statement(conn)`` in its transaction."""

    # The backend's pending counts (not flushed within a transaction): the difference
    # around the statement is the statement's.
    count = (
        "SELECT n_tup_upd FROM pg_stat_xact_user_tables"
        " WHERE schemaname = 'notifyq' AND relname = 'batches'"
    )

    async def run(conn: db.Connection) -> int:
        async with conn.transaction():
            before = await conn.fetchval(count)
            await statement(conn)
            return int(await conn.fetchval(count) - before)

    return await database.run(run)


async def test_a_chord_added_in_one_statement_is_counted_whole_and_released_once(
    database: db.Database,
) -> None:
    batch, callback = await chord(database, 50)
    assert await progress(database, batch) == (50, 0, 0, 50)
    assert await status(database, callback) == "waiting"
    assert await flows.events(database, callback) == [("waiting", None, None)]
    for _ in range(3):
        rows = await claim(database, kinds=["m"], want=20)

        async def end(conn: db.Connection, rows: list[Any] = rows) -> None:
            await conn.fetch(sql.queries["finish"], *flows.outcome_args("w", rows, "done"))

        # One update of the batch row per statement, however many members it ends.
        assert await batch_updates_while(database, end) == 1
    assert await progress(database, batch) == (50, 50, 0, 0)
    assert await status(database, callback) == "pending"
    assert await flows.events(database, callback) == [
        ("waiting", None, None),
        ("released", None, batch),
    ]
    history = await database.fetch(sql.queries["task_history"], callback)
    assert history[-1]["detail"] == f"batch {batch}"
    assert await flows.broken_invariants(database) == []


async def test_a_statement_without_members_updates_no_batch(database: db.Database) -> None:
    batch, _ = await chord(database, 2)
    await add(database, "plain")
    rows = await claim(database, kinds=["plain"])

    async def end(conn: db.Connection) -> None:
        await conn.fetch(sql.queries["finish"], *flows.outcome_args("w", rows, "done"))

    assert await batch_updates_while(database, end) == 0
    assert await progress(database, batch) == (2, 0, 0, 2)


async def test_an_empty_batch_releases_its_callback_at_once(database: db.Database) -> None:
    batch, callback = await chord(database, 0)
    assert await status(database, callback) == "pending"
    assert (await flows.events(database, callback))[-1] == ("released", None, batch)
    completed = await database.fetchval(
        "SELECT completed_at IS NOT NULL FROM notifyq.batches WHERE id = $1", batch
    )
    assert completed is True


@pytest.mark.parametrize(("policy", "expected"), [("cancel", "cancelled"), ("run", "pending")])
async def test_a_failed_member_cancels_the_callback_unless_it_runs_anyway(
    database: db.Database, policy: str, expected: str
) -> None:
    batch, callback = await chord(database, 3, policy)
    rows = await claim(database, kinds=["m"])
    await finish(database, rows[:1], "failed")
    assert await status(database, callback) == "waiting"
    await finish(database, rows[1:])
    assert await progress(database, batch) == (3, 2, 1, 0)
    assert await status(database, callback) == expected
    if expected == "cancelled":
        error = await database.fetchval("SELECT error FROM notifyq.tasks WHERE id = $1", callback)
        assert error == f"batch {batch} ended with 1 failed members of 3"
        assert (await flows.events(database, callback))[-1] == ("cancelled", None, batch)


async def test_members_after_the_callback_a_second_callback_and_unknown_batches_are_refused(
    database: db.Database,
) -> None:
    batch, _ = await chord(database, 1)
    cases = {
        "INSERT INTO notifyq.tasks (kind, batch_id) VALUES ('m', $1)": (
            f"batch_id names batch {batch}, which does not exist or is sealed (its callback"
            " was added)"
        ),
        "INSERT INTO notifyq.tasks (kind, after_batch) VALUES ('cb', $1)": (
            rf"after_batch of task \d+ names batch {batch}, which does not exist or has a"
            " callback already"
        ),
        "INSERT INTO notifyq.tasks (kind, batch_id) VALUES ('m', $1 + 100)": (
            f"batch_id names batch {batch + 100}, which does not exist or is sealed (its"
            " callback was added)"
        ),
    }
    for statement, message in cases.items():
        with pytest.raises(errors.QueryError) as refused:
            await database.execute(statement, batch)
        assert re.fullmatch(
            re.escape(message).replace(re.escape(r"\d+"), r"\d+"), str(refused.value)
        )
        assert refused.value.sqlstate == "23503"
    assert await progress(database, batch) == (1, 0, 0, 1)


async def test_cancel_retry_and_the_reaper_are_counted(database: db.Database) -> None:
    batch, callback = await chord(database, 3, "run")
    first, second, third = (
        r["id"]
        for r in await database.fetch(
            "SELECT id FROM notifyq.tasks WHERE batch_id = $1 ORDER BY id", batch
        )
    )
    assert await database.fetchval(sql.queries["cancel"], first) == "cancelled"
    assert await progress(database, batch) == (3, 0, 1, 2)
    assert await database.fetchval(sql.queries["retry"], first) == "requeued"
    assert await progress(database, batch) == (3, 0, 0, 3)
    # The reaper ends a member that ran out of attempts.
    await database.execute("UPDATE notifyq.tasks SET max_attempts = 1 WHERE id = $1", second)
    # A registered owner: the reaper takes only the expired lease.
    await database.execute(
        "INSERT INTO notifyq.workers (id, host, pid, queues, concurrency, version)"
        " VALUES ('w', 'h', 1, '{default}', 3, 'test')"
    )
    rows = await claim(database, kinds=["m"])
    await database.execute(
        "UPDATE notifyq.tasks SET locked_until = now() - interval '1 s' WHERE id = $1", second
    )
    assert [r["id"] for r in await database.fetch(sql.queries["recover_expired"], 10)] == [second]
    assert await progress(database, batch) == (3, 0, 1, 2)
    await finish(database, [r for r in rows if r["id"] != second])
    assert await progress(database, batch) == (3, 2, 1, 0)
    assert await status(database, callback) == "pending"
    assert third > first
    assert await flows.broken_invariants(database) == []


async def test_a_callback_that_also_has_parents_waits_for_both(database: db.Database) -> None:
    parent = await add(database, "p")
    batch = await flows.new_batch(database)
    await add(database, "m", batch_id=batch)
    callback = await add(database, "cb", after_batch=batch, depends_on=[parent])
    assert (
        await database.fetchval("SELECT waiting_on FROM notifyq.tasks WHERE id = $1", callback) == 2
    )
    await finish(database, await claim(database, kinds=["m"]))
    assert await status(database, callback) == "waiting"
    await finish(database, await claim(database, kinds=["p"]))
    assert await status(database, callback) == "pending"
    assert (await flows.events(database, callback))[-1] == ("released", parent, None)
    assert await flows.broken_invariants(database) == []


async def test_many_connections_draining_one_batch_release_its_callback_once(
    database_url: str,
) -> None:
    """Four connections claim and end the members of one batch (some fail, some are
    cancelled while pending), each outcome statement in its own transaction: the counters
    match the members, and the callback (policy 'run') is released exactly once."""
    members = 2000
    async with db.open_database(database_url, min_size=5, max_size=6) as pool:
        batch, callback = await chord(pool, members, "run")
        ids = [r["id"] for r in await pool.fetch("SELECT id FROM notifyq.tasks WHERE kind = 'm'")]

        async def drainer(n: int) -> None:
            worker = f"d{n}"
            while True:
                rows = await claim(pool, worker=worker, want=25, kinds=["m"])
                if not rows:
                    return
                await finish(pool, rows[:2], "failed", worker=worker)
                await finish(pool, rows[2:], "done", worker=worker)
                await pool.fetchval(sql.queries["cancel"], ids[(n * 7919 + len(rows)) % members])

        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                for n in range(4):
                    nursery.start_soon(drainer, n)
        total, done, failed, remaining = await progress(pool, batch)
        counted = await pool.fetchrow(
            "SELECT count(*) FILTER (WHERE status = 'done') AS done,"
            " count(*) FILTER (WHERE status IN ('error', 'cancelled')) AS failed"
            " FROM notifyq.tasks WHERE batch_id = $1",
            batch,
        )
        assert counted is not None
        assert (total, done, failed, remaining) == (
            members,
            counted["done"],
            counted["failed"],
            0,
        )
        assert await status(pool, callback) == "pending"
        assert [e for e, _, _ in await flows.events(pool, callback)] == ["waiting", "released"]


async def test_a_member_cancelled_at_insert_counts_as_failed_and_the_batch_completes(
    database: db.Database,
) -> None:
    # A member whose parent failed already is cancelled by its insert: it never passes
    # through an outcome statement, so the insert must count it as ended, or the batch
    # never completes and its callback waits forever.
    parent = await database.fetchval("INSERT INTO notifyq.tasks (kind) VALUES ('p') RETURNING id")
    await database.execute("SELECT notifyq.cancel($1)", parent)
    rows = await database.fetch(
        """
        WITH b AS (INSERT INTO notifyq.batches DEFAULT VALUES RETURNING id)
        INSERT INTO notifyq.tasks (kind, batch_id, after_batch, depends_on)
        SELECT 'm', b.id, NULL::bigint, ARRAY[$1::bigint] FROM b
        UNION ALL SELECT 'm', b.id, NULL, NULL::bigint[] FROM b
        UNION ALL SELECT 'cb', NULL, b.id, NULL::bigint[] FROM b
        RETURNING id, status, batch_id, after_batch
        """,
        parent,
    )
    [doomed, other, callback] = rows
    assert doomed["status"] == "cancelled"
    batch = int(callback["after_batch"])
    assert await progress(database, batch) == (2, 0, 1, 1)
    await database.execute("SELECT notifyq.cancel($1)", other["id"])
    assert await progress(database, batch) == (2, 0, 2, 0)
    assert await status(database, callback["id"]) == "cancelled"
    # Its retry (once the parent runs again) takes the failure back without going below 0.
    await database.execute("SELECT notifyq.retry($1)", parent)
    assert await database.fetchval("SELECT notifyq.retry($1)", doomed["id"]) == "waiting"
