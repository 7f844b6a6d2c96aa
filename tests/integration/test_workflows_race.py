"""The race that matters (migration 0014): a dependent inserted in one transaction while its
last parent ends in another is never left waiting, and never released twice.

Two connections, both READ COMMITTED, interleaved at every step: the child's INSERT before
or after the parent's end statement, each side committing or rolling back, and the parent
ending through each of notifyq's statements (finish, finish_and_claim, the reaper, cancel).
A step that must wait for the other transaction is checked to be waiting for a lock
(pg_stat_activity), never given time by a sleep. Then many producers and many finishers at
once, with the invariants read from the tables at the end.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import pytest
import trio
import trio.lowlevel

from notifyq import db, errors, sql
from tests import flows
from tests.flows import add, claim, status
from tests.helpers import eventually

MECHANISMS = ["finish", "finish_and_claim", "reaper", "cancel"]


async def blocked_on_a_lock(database: db.Database, pid: int) -> None:
    """Return once backend ``pid`` waits for a lock (fail after 10 s)."""
    await eventually(
        lambda: database.fetchval(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
        ),
        interval=0.005,
    )


async def prepare_parent(database: db.Database, mechanism: str) -> tuple[int, list[Any]]:
    """A parent ready to be ended by ``mechanism``: claimed (its lease expired, for the
    reaper) or pending (cancel)."""
    parent = await add(database, "p", max_attempts=1)
    rows: list[Any] = []
    if mechanism != "cancel":
        rows = await claim(database, kinds=["p"])
    if mechanism == "reaper":
        await database.execute(
            "UPDATE notifyq.tasks SET locked_until = now() - interval '1 s' WHERE id = $1",
            parent,
        )
    return parent, rows


async def end_parent(conn: db.Database, mechanism: str, parent: int, rows: list[Any]) -> bool:
    """End the parent through ``mechanism`` on ``conn``; whether this statement ended it (the
    reaper skips a row another transaction holds: SKIP LOCKED)."""
    if mechanism == "finish":
        return bool(await flows.finish(conn, rows))
    if mechanism == "finish_and_claim":
        out = await conn.fetch(
            sql.queries["finish_and_claim"],
            *flows.outcome_args("w", rows, "done"),
            ["default"],
            0,
            flows.LEASE_S,
            ["none"],
        )
        return any(r["id"] == parent for r in out)
    if mechanism == "reaper":
        return any(r["id"] == parent for r in await conn.fetch(sql.queries["recover_expired"], 10))
    return bool(await conn.fetchval(sql.queries["cancel"], parent) == "cancelled")


async def insert_child(conn: db.Database, parent: int) -> int:
    # Policy 'run': every mechanism (the reaper's error, cancel) releases it.
    return await add(conn, "c", depends_on=[parent], policy="run")


async def in_background(
    nursery: trio.Nursery, fn: Callable[[], Awaitable[Any]]
) -> Callable[[], Awaitable[Any]]:
    """Start ``fn``; return an awaitable getter of its result."""
    done = trio.Event()
    box: list[Any] = []

    async def run() -> None:
        box.append(await fn())
        done.set()

    nursery.start_soon(run)

    async def result() -> Any:
        await done.wait()
        return box[0]

    return result


async def released_by(database: db.Database, child: int) -> list[int | None]:
    return [p for e, p, _ in await flows.events(database, child) if e == "released"]


@pytest.fixture
async def pool(database_url: str) -> Any:
    async with db.open_database(database_url, min_size=3, max_size=6) as database:
        yield database


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_child_inserted_first_the_parents_end_waits_and_releases_it(
    pool: db.Database, mechanism: str
) -> None:
    parent, rows = await prepare_parent(pool, mechanism)
    async with pool.held() as c, pool.held() as f, trio.open_nursery() as nursery:
        await c.execute("BEGIN")
        child = await insert_child(c, parent)
        await f.execute("BEGIN")
        f_pid = await f.fetchval("SELECT pg_backend_pid()")
        if mechanism == "reaper":
            # SKIP LOCKED: the reaper passes over the row the insert holds, at once.
            ended_now = await end_parent(f, mechanism, parent, rows)
            await c.execute("COMMIT")
        else:
            ended = await in_background(nursery, lambda: end_parent(f, mechanism, parent, rows))
            await blocked_on_a_lock(pool, f_pid)
            await c.execute("COMMIT")
            ended_now = await ended()
        await f.execute("COMMIT")
    if mechanism == "reaper":
        # Its next turn ends it.
        assert not ended_now
        assert await end_parent(pool, mechanism, parent, rows)
    else:
        assert ended_now
    assert await status(pool, child) == "pending"
    assert await released_by(pool, child) == [parent]
    assert await flows.broken_invariants(pool) == []


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_parent_ended_first_the_insert_waits_and_finds_it_ended(
    pool: db.Database, mechanism: str
) -> None:
    parent, rows = await prepare_parent(pool, mechanism)
    async with pool.held() as c, pool.held() as f, trio.open_nursery() as nursery:
        await f.execute("BEGIN")
        assert await end_parent(f, mechanism, parent, rows)
        await c.execute("BEGIN")
        c_pid = await c.fetchval("SELECT pg_backend_pid()")
        inserted = await in_background(nursery, lambda: insert_child(c, parent))
        await blocked_on_a_lock(pool, c_pid)
        await f.execute("COMMIT")
        child = await inserted()
        # Read committed: the insert read the parent's newest (ended) version.
        assert await status(c, child) == "pending"
        await c.execute("COMMIT")
    assert await status(pool, child) == "pending"
    assert await flows.events(pool, child) == []
    assert await flows.broken_invariants(pool) == []


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_child_insert_rolled_back_while_the_end_waited(
    pool: db.Database, mechanism: str
) -> None:
    parent, rows = await prepare_parent(pool, mechanism)
    async with pool.held() as c, pool.held() as f, trio.open_nursery() as nursery:
        await c.execute("BEGIN")
        await insert_child(c, parent)
        await f.execute("BEGIN")
        f_pid = await f.fetchval("SELECT pg_backend_pid()")
        if mechanism == "reaper":
            ended_now = await end_parent(f, mechanism, parent, rows)
            await c.execute("ROLLBACK")
        else:
            ended = await in_background(nursery, lambda: end_parent(f, mechanism, parent, rows))
            await blocked_on_a_lock(pool, f_pid)
            await c.execute("ROLLBACK")
            ended_now = await ended()
        await f.execute("COMMIT")
    assert ended_now == (mechanism != "reaper")
    if not ended_now:
        assert await end_parent(pool, mechanism, parent, rows)
    assert await pool.fetchval("SELECT count(*) FROM notifyq.tasks WHERE kind = 'c'") == 0
    assert await status(pool, parent) in flows.ENDED
    assert await flows.broken_invariants(pool) == []


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_parent_end_rolled_back_while_the_insert_waited(
    pool: db.Database, mechanism: str
) -> None:
    parent, rows = await prepare_parent(pool, mechanism)
    async with pool.held() as c, pool.held() as f, trio.open_nursery() as nursery:
        await f.execute("BEGIN")
        assert await end_parent(f, mechanism, parent, rows)
        await c.execute("BEGIN")
        c_pid = await c.fetchval("SELECT pg_backend_pid()")
        inserted = await in_background(nursery, lambda: insert_child(c, parent))
        await blocked_on_a_lock(pool, c_pid)
        await f.execute("ROLLBACK")
        child = await inserted()
        await c.execute("COMMIT")
    assert await status(pool, child) == "waiting"
    assert await end_parent(pool, mechanism, parent, rows)
    assert await status(pool, child) == "pending"
    assert await released_by(pool, child) == [parent]
    assert await flows.broken_invariants(pool) == []


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("first", ["insert", "end"])
async def test_one_after_the_other(pool: db.Database, mechanism: str, first: str) -> None:
    parent, rows = await prepare_parent(pool, mechanism)
    if first == "insert":
        child = await insert_child(pool, parent)
        assert await status(pool, child) == "waiting"
        assert await end_parent(pool, mechanism, parent, rows)
        assert await released_by(pool, child) == [parent]
    else:
        assert await end_parent(pool, mechanism, parent, rows)
        child = await insert_child(pool, parent)
        assert await flows.events(pool, child) == []
    assert await status(pool, child) == "pending"
    assert await flows.broken_invariants(pool) == []


@pytest.mark.parametrize("first", ["callback", "last member"])
async def test_callback_insert_and_the_last_members_end_interleaved(
    pool: db.Database, first: str
) -> None:
    batch = await flows.new_batch(pool)
    await add(pool, "m", batch_id=batch)
    rows = await claim(pool, kinds=["m"])
    async with pool.held() as c, pool.held() as f, trio.open_nursery() as nursery:
        await c.execute("BEGIN")
        await f.execute("BEGIN")
        if first == "callback":
            callback = await add(c, "cb", after_batch=batch)
            f_pid = await f.fetchval("SELECT pg_backend_pid()")
            ended = await in_background(nursery, lambda: flows.finish(f, rows))
            await blocked_on_a_lock(pool, f_pid)
            await c.execute("COMMIT")
            assert await ended()
            await f.execute("COMMIT")
        else:
            assert await flows.finish(f, rows)
            c_pid = await c.fetchval("SELECT pg_backend_pid()")
            added = await in_background(nursery, lambda: add(c, "cb", after_batch=batch))
            await blocked_on_a_lock(pool, c_pid)
            await f.execute("COMMIT")
            callback = await added()
            await c.execute("COMMIT")
    assert await status(pool, callback) == "pending"
    assert [b for e, _, b in await flows.events(pool, callback) if e == "released"] == [batch]
    assert await flows.broken_invariants(pool) == []


async def test_many_producers_and_finishers_leave_nothing_waiting_and_release_once(
    database_url: str,
) -> None:
    """Producers insert chains and diamonds over whatever exists (in one-task and
    several-task transactions) while finishers claim and end tasks (done, failed, cancel of
    waiting ones) through the real statements. At the end no task is waiting, none was
    released twice, and no task with policy 'cancel' ran after a parent failed."""
    producers, finishers, per_producer = 4, 4, 150
    rng = random.Random(22)
    known: list[int] = []
    producing = [producers]
    deadlocks = [0]

    async with db.open_database(database_url, min_size=8, max_size=10) as pool:

        async def producer(n: int) -> None:
            for i in range(per_producer):
                size = 1 if i % 3 else 3
                picks = [
                    (
                        rng.randint(0, 3),
                        rng.choice(["a", "b"]),
                        rng.choice(["cancel", "cancel", "run"]),
                    )
                    for _ in range(size)
                ]
                while True:
                    mine: list[int] = []  # this transaction's own: parents for its next tasks
                    try:
                        async with pool.transaction() as tx:
                            for k, kind, policy in picks:
                                seen = known[-40:] + mine
                                parents = rng.sample(seen, k=min(len(seen), k))
                                mine.append(
                                    await add(tx, kind, depends_on=parents or None, policy=policy)
                                )
                        break
                    except errors.StatementAborted:
                        # Several inserts of one transaction lock their parents insert by
                        # insert: two such transactions can cross (README). Rolled back
                        # whole, so the producer adds them again.
                        deadlocks[0] += 1
                known.extend(mine)  # committed: other producers may name them
                await trio.lowlevel.checkpoint()
            producing[0] -= 1

        async def retried(statement: Callable[[], Awaitable[Any]]) -> None:
            """As the engine's writer does: an outcome statement that was a deadlock's
            victim wrote nothing and is run again (the rows are still owned)."""
            while True:
                try:
                    await statement()
                    return
                except errors.StatementAborted:
                    deadlocks[0] += 1

        async def finisher(n: int) -> None:
            worker = f"f{n}"
            while True:
                rows = await claim(pool, worker=worker, want=rng.randint(1, 8), kinds=["a", "b"])
                if rows:
                    failed = [r for r in rows if rng.random() < 0.15]
                    done = [r for r in rows if r not in failed]
                    if done and rng.random() < 0.5:
                        await retried(
                            partial(
                                pool.fetch,
                                sql.queries["finish_and_claim"],
                                *flows.outcome_args(worker, done, "done"),
                                ["default"],
                                0,
                                flows.LEASE_S,
                                ["none"],
                            )
                        )
                    elif done:
                        await retried(partial(flows.finish, pool, done, "done", worker=worker))
                    if failed:
                        await retried(partial(flows.finish, pool, failed, "failed", worker=worker))
                elif producing[0] == 0:
                    left = await pool.fetchval(
                        "SELECT count(*) FROM notifyq.tasks"
                        " WHERE status IN ('pending', 'in_progress')"
                    )
                    if left == 0:
                        return
                if known and rng.random() < 0.02:
                    await pool.fetchval(sql.queries["cancel"], rng.choice(known[-20:]))
                await trio.lowlevel.checkpoint()

        with trio.fail_after(240):
            async with trio.open_nursery() as nursery:
                for i in range(producers):
                    nursery.start_soon(producer, i)
                for i in range(finishers):
                    nursery.start_soon(finisher, i)

        counts = dict(
            await pool.fetch("SELECT status, count(*) FROM notifyq.tasks GROUP BY status")
        )
        assert "waiting" not in counts, counts
        assert sum(counts.values()) == producers * per_producer * 5 // 3
        assert await flows.broken_invariants(pool) == []
        ran_after_failure = await pool.fetchval(
            """
            SELECT count(*) FROM notifyq.tasks c
             WHERE c.on_parent_failure = 'cancel' AND c.status IN ('done', 'error')
               AND EXISTS (SELECT 1 FROM notifyq.tasks p
                            WHERE p.id = ANY (c.depends_on) AND p.status IN ('error', 'cancelled'))
            """
        )
        assert ran_after_failure == 0
        released = await pool.fetchval(
            "SELECT count(*) FROM notifyq.task_events WHERE event = 'released'"
            " AND parent_id IS NOT NULL"
        )
        waited = await pool.fetchval(
            "SELECT count(*) FROM notifyq.task_events WHERE event = 'waiting'"
        )
        assert 0 < released <= waited
        # Deadlocks only where a client transaction locks parents across statements.
        assert deadlocks[0] < producers * per_producer // 10, deadlocks
