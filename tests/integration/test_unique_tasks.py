"""Unique tasks (migration 0005) from plain SQL: the partial unique index on (queue, unique_key)."""

from __future__ import annotations

import trio
import trio.testing

from notifyq import db, listen
from notifyq.client import Client

INSERT_KEYED = """
INSERT INTO notifyq.tasks (kind, unique_key) VALUES ('noop', $1)
ON CONFLICT DO NOTHING
RETURNING id
"""


async def live_with_key(database: db.Database, key: str) -> list[int]:
    rows = await database.fetch(
        "SELECT id FROM notifyq.tasks WHERE unique_key = $1"
        " AND status IN ('pending', 'in_progress') ORDER BY id",
        key,
    )
    return [r["id"] for r in rows]


async def test_sixteen_connections_racing_on_one_key_add_one_task(database: db.Database) -> None:
    added: list[int] = []
    go = trio.Event()
    async with db.open_database(database.dsn, min_size=16, max_size=16) as many:

        async def producer() -> None:
            await go.wait()
            for _ in range(100):
                task_id = await many.fetchval(INSERT_KEYED, "race")
                if task_id is not None:
                    added.append(task_id)

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for _ in range(16):
                    nursery.start_soon(producer)
                await trio.testing.wait_all_tasks_blocked()
                go.set()
    assert len(added) == 1
    assert await live_with_key(database, "race") == added
    # Once it ends the key is free again: the next insert adds a new task.
    await database.execute(
        "UPDATE notifyq.tasks SET status = 'done', finished_at = now() WHERE id = $1", added[0]
    )
    again = await database.fetchval(INSERT_KEYED, "race")
    assert again is not None and again != added[0]
    assert await live_with_key(database, "race") == [again]


async def test_in_progress_holds_the_key_and_every_end_frees_it(database: db.Database) -> None:
    first = await database.fetchval(INSERT_KEYED, "k")
    await database.execute(
        "UPDATE notifyq.tasks SET status = 'in_progress', locked_by = 'w', attempts = 1,"
        " locked_until = now() + interval '30 s' WHERE id = $1",
        first,
    )
    assert await database.fetchval(INSERT_KEYED, "k") is None
    for end in ("done", "error", "cancelled"):
        await database.execute(
            "UPDATE notifyq.tasks SET status = $2, locked_by = NULL, locked_until = NULL"
            " WHERE id = $1",
            first,
            end,
        )
        nxt = await database.fetchval(INSERT_KEYED, "k")
        assert nxt is not None, f"key not freed by {end}"
        first = nxt


async def test_multi_row_insert_skips_duplicates_row_by_row(database: db.Database) -> None:
    await database.fetchval(INSERT_KEYED, "a")
    rows = await database.fetch("""
        INSERT INTO notifyq.tasks (queue, kind, unique_key)
        VALUES ('default', 'noop', 'a'),      -- live already
               ('default', 'noop', 'b'),
               ('default', 'noop', 'b'),      -- twice in this very statement
               ('other',   'noop', 'a'),      -- another queue: its own key space
               ('default', 'noop', NULL),     -- no key: never a duplicate
               ('default', 'noop', NULL)
        ON CONFLICT (queue, unique_key)
            WHERE status IN ('pending', 'in_progress') AND unique_key IS NOT NULL
            DO NOTHING
        RETURNING queue, unique_key""")
    assert sorted((r["queue"], r["unique_key"] or "") for r in rows) == [
        ("default", ""),
        ("default", ""),
        ("default", "b"),
        ("other", "a"),
    ]


async def test_skipped_rows_do_not_reach_the_insert_trigger(database: db.Database) -> None:
    """The statement-level trigger sees only the rows added (its transition table)."""
    await database.execute(
        "INSERT INTO notifyq.waiters (worker_id, queues) VALUES ('w', '{default,other}')"
    )
    await database.fetchval(INSERT_KEYED, "x")  # wakes (and removes) the waiter
    await database.execute(
        "INSERT INTO notifyq.waiters (worker_id, queues) VALUES ('w', '{other}')"
    )
    async with listen.open_listener(database.loop, database.dsn, ["notifyq"]) as listener:
        await database.execute(
            "INSERT INTO notifyq.tasks (queue, kind, unique_key)"
            " VALUES ('default', 'noop', 'x') ON CONFLICT DO NOTHING"
        )
        # Nothing was added to 'other', so its waiter stays and nobody is notified.
        assert await database.fetchval("SELECT count(*) FROM notifyq.waiters") == 1
        await database.execute(
            "INSERT INTO notifyq.tasks (queue, kind, unique_key) VALUES ('other', 'noop', 'x'),"
            " ('default', 'noop', 'x') ON CONFLICT DO NOTHING"
        )
        with trio.fail_after(5):
            note = await listener.__anext__()
        assert (note.channel, note.payload) == ("notifyq", "other")
    assert await database.fetchval("SELECT count(*) FROM notifyq.waiters") == 0


async def test_retry_of_an_ended_task_whose_key_is_live_again_is_refused(
    database: db.Database,
) -> None:
    first = await database.fetchval(INSERT_KEYED, "r")
    await database.execute(
        "UPDATE notifyq.tasks SET status = 'error', finished_at = now() WHERE id = $1", first
    )
    second = await database.fetchval(INSERT_KEYED, "r")
    assert second is not None
    assert await database.fetchval("SELECT notifyq.retry($1)", first) == "duplicate"
    assert await live_with_key(database, "r") == [second]
    await database.execute("SELECT notifyq.cancel($1)", second)
    assert await database.fetchval("SELECT notifyq.retry($1)", first) == "requeued"
    assert await live_with_key(database, "r") == [first]


async def test_sixteen_producers_racing_through_the_python_api(database: db.Database) -> None:
    outcomes: list[tuple[int, bool]] = []
    go = trio.Event()
    async with db.open_database(database.dsn, min_size=16, max_size=16) as many:
        client = Client(many)

        async def producer() -> None:
            await go.wait()
            for _ in range(100):
                found = await client.enqueue_unique("noop", unique_key="py")
                outcomes.append((found.id, found.duplicate))

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for _ in range(16):
                    nursery.start_soon(producer)
                await trio.testing.wait_all_tasks_blocked()
                go.set()
    added = [task_id for task_id, duplicate in outcomes if not duplicate]
    assert len(outcomes) == 1600 and len(added) == 1
    assert {task_id for task_id, _ in outcomes} == set(added)
    assert await live_with_key(database, "py") == added
    await database.execute("UPDATE notifyq.tasks SET status = 'done' WHERE id = $1", added[0])
    assert await client_enqueue(database, "py") != added[0]


async def client_enqueue(database: db.Database, key: str) -> int:
    found = await Client(database).enqueue_unique("noop", unique_key=key)
    assert not found.duplicate
    return found.id
