"""A pooled connection inside a transaction that its holder commits or not: a
transactional handler's (notifyq.engine.transactions). Part of the driver wrapper
(:mod:`notifyq.db`): the asyncio side of it is here and there only."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
import trio

from notifyq import db, errors

T = TypeVar("T")


@asynccontextmanager
async def open_transaction(database: db.Database) -> AsyncIterator[OpenTransaction]:
    """A connection of the pool inside a transaction, for a block that decides itself
    whether to commit (:class:`OpenTransaction`)."""
    pool = database._pool

    async def begin() -> tuple[asyncpg.Connection, Any]:
        # One hop for both: each crossing to the asyncio loop costs ~100-200 µs.
        conn = await pool.acquire()
        try:
            tx = conn.transaction()
            await tx.start()
        except BaseException:
            await pool.release(conn)
            raise
        return conn, tx

    conn, tx = await database._hop(begin())
    held = OpenTransaction(database, conn, tx)
    try:
        yield held
    finally:
        with (
            trio.CancelScope(shield=True),
            trio.move_on_after(5) as late,
            contextlib.suppress(*db.CONNECTION_ERRORS, asyncpg.PostgresError),
        ):
            await database.loop.run_aio_coroutine(held._end(database._pool))
        if late.cancelled_caught:
            conn.terminate()


class OpenTransaction:
    """A pooled connection inside a transaction held for a block
    (:func:`open_transaction`): committed only by :meth:`run_and_commit`, rolled back
    otherwise when the block ends (cancelled, failed, or simply not committed)."""

    def __init__(self, database: db.Database, conn: db.Connection, tx: Any) -> None:
        self._db = database
        self.conn = conn  # asyncpg's pool proxy: unusable once given back to the pool
        self._tx = tx
        self.committed = False
        self.statements = db.TransactionConnection(database, conn)

    async def run_and_commit(
        self, fn: Callable[[db.Connection], Awaitable[T]], *, commit_if: Callable[[T], bool]
    ) -> T:
        """``fn(connection)``, then COMMIT when ``commit_if(its result)``; one hop."""

        async def both() -> T:
            result = await fn(self.conn)
            if commit_if(result):
                await self._tx.commit()
                self.committed = True
            return result

        return await self._db._hop(both())

    def in_transaction(self) -> bool:
        """Whether the transaction is still open (False: someone ran COMMIT or ROLLBACK);
        raises DatabaseUnavailable when the connection is gone."""
        try:
            return bool(self.conn.is_in_transaction()) and not self.conn.is_closed()
        except asyncpg.exceptions.InterfaceError as exc:  # the pool took the dead one back
            raise errors.DatabaseUnavailable(f"database unavailable: {exc}") from exc

    async def _end(self, pool: asyncpg.Pool) -> None:
        """(asyncio side) Roll back unless committed, and give the connection back; one
        that cannot be rolled back (broken, or busy with a statement of a handler that
        goes on) is closed instead, so that nothing half-done ever returns to the pool."""
        conn = self.conn
        try:
            if conn.is_closed():  # asyncpg's pool took the dead connection back itself
                return
        except asyncpg.exceptions.InterfaceError:
            return
        try:
            if not self.committed and conn.is_in_transaction():
                await self._tx.rollback()
        except BaseException:
            conn.terminate()
            raise
        finally:
            await pool.release(conn)
