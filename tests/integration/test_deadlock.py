"""A deadlock aborts one statement: notifyq sees a passing error (StatementAborted, a
DatabaseUnavailable that every stage retries), not a QueryError that ends the process.

Found by `notifyq bench harsh --scenario kill-9`: under load a process's heartbeat and its
outcome writer locked the same task rows in opposite orders, and the deadlock error ended
the process. The heartbeat now never waits for a row lock (store.heartbeat), and the error
would be retried if it happened anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import trio

from notifyq import db, errors
from tests.helpers import insert


async def test_a_deadlock_is_a_statement_aborted(database: db.Database) -> None:
    a, b = await insert(database, "noop"), await insert(database, "noop")
    first_done = asyncio.Event()  # set (on the asyncio side) once both hold their first row
    holding = 0

    def crosswise(first: int, second: int) -> Callable[[db.Connection], Awaitable[None]]:
        async def tx(conn: db.Connection) -> None:
            nonlocal holding
            await conn.execute("UPDATE notifyq.tasks SET priority = 1 WHERE id = $1", first)
            holding += 1
            if holding == 2:
                first_done.set()
            await first_done.wait()
            await conn.execute("UPDATE notifyq.tasks SET priority = 2 WHERE id = $1", second)

        return tx

    outcomes: list[str] = []

    async def run(fn: Callable[[db.Connection], Awaitable[None]]) -> None:
        try:
            await database.run_in_transaction(fn)
            outcomes.append("committed")
        except errors.StatementAborted as exc:
            assert "deadlock detected" in str(exc)
            outcomes.append("aborted")

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, crosswise(a, b))
            nursery.start_soon(run, crosswise(b, a))
    assert sorted(outcomes) == ["aborted", "committed"]
    assert issubclass(errors.StatementAborted, errors.DatabaseUnavailable)
