"""Transactional handlers: the handler's writes and its task's ``done`` in one transaction.

A handler registered with ``transactional=True`` gets ``task.transaction``: a pool
connection inside a transaction, opened before the handler starts and held until its
outcome is decided. When the handler returns, the ``finish`` statement writes ``done`` on
that same connection — fenced by owner, claim token and attempt, as every outcome is — and
the transaction commits: the user's rows and the outcome land together. Anything else rolls
everything back first: an exception (then the usual retry or error goes to the writer), a
cancel, a time limit, shutdown, a lost lease (the fence refuses the write), a lost
connection or a failed commit (the task stays ``in_progress`` until the reaper hands it to a
new attempt, which finds none of the first one's rows).

What the handler holds, per runtime:

- trio: :class:`Statements` (``await execute / fetch / fetchrow / fetchval /
  executemany``), one hop to the asyncio loop per statement.
- asyncio: the asyncpg connection itself (the pool's proxy, unusable once given back).
- ``def`` in a worker thread: :class:`BlockingStatements`, the same methods blocking; each
  runs on the held connection from trio (``trio.from_thread.run``).

Both wrappers refuse every statement once the transaction is over, so that a thread that
was abandoned and goes on can never write outside it. At most
:func:`notifyq.budget.transactional_slots` run at once per process: each holds a connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from notifyq import db, db_transaction, errors, store
from notifyq.app import Runtime
from notifyq.store import Outcome


class Statements:
    """(trio) A transactional handler's statements, on its held connection."""

    def __init__(self, inner: db.TransactionConnection) -> None:
        self._inner = inner
        self._lock = trio.Lock()  # one statement at a time; the end waits for it
        self._over = False

    async def _call(self, method: Callable[..., Any], query: str, args: Sequence[Any]) -> Any:
        async with self._lock:
            if self._over:
                raise errors.TransactionOver(
                    "the task's transaction is over (committed or rolled back): "
                    "no statement runs outside it"
                )
            return await method(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        result: str = await self._call(self._inner.execute, query, args)
        return result

    async def fetch(self, query: str, *args: Any) -> list[db.Record]:
        result: list[db.Record] = await self._call(self._inner.fetch, query, args)
        return result

    async def fetchrow(self, query: str, *args: Any) -> db.Record | None:
        result: db.Record | None = await self._call(self._inner.fetchrow, query, args)
        return result

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._call(self._inner.fetchval, query, args)

    async def executemany(self, query: str, args: Sequence[Sequence[Any]]) -> None:
        await self._call(self._inner.executemany, query, (args,))

    async def close(self) -> None:
        """No statement runs after this; waits for the one running, if any."""
        async with self._lock:
            self._over = True


class BlockingStatements:
    """(worker thread) :class:`Statements` for a ``def`` handler: each call blocks the
    thread while trio runs the statement on the held connection."""

    def __init__(self, statements: Statements) -> None:
        self._statements = statements

    def execute(self, query: str, *args: Any) -> str:
        return trio.from_thread.run(self._statements.execute, query, *args)

    def fetch(self, query: str, *args: Any) -> list[db.Record]:
        return trio.from_thread.run(self._statements.fetch, query, *args)

    def fetchrow(self, query: str, *args: Any) -> db.Record | None:
        return trio.from_thread.run(self._statements.fetchrow, query, *args)

    def fetchval(self, query: str, *args: Any) -> Any:
        return trio.from_thread.run(self._statements.fetchval, query, *args)

    def executemany(self, query: str, args: Sequence[Sequence[Any]]) -> None:
        trio.from_thread.run(self._statements.executemany, query, args)


class HandlerTransaction:
    """One attempt's transaction, from before its handler starts until its end."""

    def __init__(self, held: db_transaction.OpenTransaction) -> None:
        self._held = held
        self.statements = Statements(held.statements)

    def for_runtime(self, runtime: Runtime) -> Any:
        """What ``task.transaction`` is in ``runtime``."""
        if runtime == "asyncio":
            return self._held.conn
        if runtime == "thread":
            return BlockingStatements(self.statements)
        return self.statements

    async def commit_done(self, *, owner: str, outcome: Outcome) -> str | None:
        """Write ``outcome`` (fenced) in the transaction and commit; the new status, or
        None when the fence refused it (then nothing is committed). Raises QueryError (the
        outcome or the transaction is unusable: nothing committed) or DatabaseUnavailable
        (the connection broke: whether it committed is unknown, and either way the user's
        rows and the outcome share its fate)."""
        await self.statements.close()
        if not self._held.in_transaction():
            raise errors.QueryError(
                "the handler ended its transaction itself (COMMIT or ROLLBACK): "
                "its writes could not be committed with the outcome"
            )

        async def write(conn: db.Connection) -> str | None:
            return await store.finish_in_transaction(conn, owner=owner, outcome=outcome)

        return await self._held.run_and_commit(write, commit_if=_written)

    async def end(self) -> None:
        """Refuse further statements (the transaction rolls back when the block ends)."""
        await self.statements.close()


def _written(status: str | None) -> bool:
    return status is not None


class Transactions:
    """Opens the transactions of one process's transactional handlers, at most ``slots`` at
    once (each holds a pool connection: notifyq.budget.transactional_slots)."""

    def __init__(self, database: db.Database | None, slots: int) -> None:
        self._db = database
        self.slots = slots
        self._limiter = trio.CapacityLimiter(slots)

    @property
    def open_now(self) -> int:
        return int(self._limiter.borrowed_tokens)

    @asynccontextmanager
    async def open(self) -> AsyncIterator[HandlerTransaction]:
        """A transaction for one attempt; rolled back at the end unless committed."""
        if self._db is None:
            raise RuntimeError("transactional handlers need the process's database")
        async with self._limiter, db_transaction.open_transaction(self._db) as held:
            handler_tx = HandlerTransaction(held)
            try:
                yield handler_tx
            finally:
                with trio.CancelScope(shield=True):
                    await handler_tx.end()
