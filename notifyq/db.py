"""A thin trio-native wrapper over asyncpg, driven through trio-asyncio.

asyncpg is an asyncio library. notifyq runs on trio, so one trio-asyncio loop is opened
at the top of the process and every asyncpg call crosses it here, and only here: the rest
of notifyq sees trio-native async methods and never touches asyncio.

Each crossing costs ~100-200 µs, so hot paths use :meth:`Database.run`, which runs an
asyncio coroutine (several statements) in a single hop.

Cancellation: cancelling the trio scope around a call cancels the asyncio task, which makes
asyncpg cancel the query on the server; the connection goes back to the pool usable.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeAlias, TypeVar

import asyncpg
import trio
import trio_asyncio

from notifyq import errors, logs

T = TypeVar("T")

Record: TypeAlias = asyncpg.Record
Connection: TypeAlias = asyncpg.Connection

# Errors that mean "the connection is gone", as opposed to "the statement was wrong".
# A statement that fails with one of these never reached a commit, so a caller may retry
# it when the statement is safe to repeat.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    # asyncpg can report a connection killed mid-statement as a protocol state error
    # (MagicStack/asyncpg#1069); the connection is unusable either way.
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    ConnectionError,
    OSError,
)

# Errors that mean "this server takes no writes now" (a standby, a demoted primary): the
# connection is up, the statement wrote nothing, and the writable server is elsewhere.
READ_ONLY_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.ReadOnlySQLTransactionError,
)


async def _init_connection(conn: asyncpg.Connection) -> None:
    # json/jsonb columns come back as Python values and go in as Python values.
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's reset query (UNLISTEN, RESET ALL, ...) on every release.

    It costs a round trip per pooled call, and notifyq's pooled connections never
    LISTEN, SET or hold session locks past a call (the migration lock is released in a
    finally). An open transaction is still rolled back by asyncpg itself.
    """


_loop_log = logs.get("notifyq.asyncio")


def _log_loop_error(_loop: object, context: dict[str, Any]) -> None:
    """The asyncio loop's reports (an exception nobody retrieved, a failing callback of the
    driver) as one structured event, instead of the default handler's plain-text traceback
    (tests/integration/test_loop_errors.py)."""
    exc = context.get("exception")
    details = {k: repr(v) for k, v in context.items() if k not in ("message", "exception")}
    _loop_log.error(
        "asyncio.error",
        message=str(context.get("message") or ""),
        error=f"{type(exc).__name__}: {exc}" if exc is not None else None,
        exc_info=exc,
        **details,
    )


def _refuse_stop(*_args: object) -> None:
    raise RuntimeError("a handler cannot stop notifyq's asyncio loop")


class Database:
    """A pool of connections with trio-native methods."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        loop: trio_asyncio.TrioEventLoop,
        dsn: str,
        *,
        statement_cache_size: int = 100,
    ) -> None:
        self._pool = pool
        self.loop = loop
        self.dsn = dsn
        self.statement_cache_size = statement_cache_size

    async def _hop(self, coro: Awaitable[T]) -> T:
        try:
            return await self.loop.run_aio_coroutine(coro)  # type: ignore[no-any-return]
        except CONNECTION_ERRORS as exc:
            raise errors.DatabaseUnavailable(
                f"database unavailable: {exc or type(exc).__name__}"
            ) from exc
        except asyncpg.exceptions.DeadlockDetectedError as exc:
            raise errors.StatementAborted(f"statement aborted: {exc}") from exc
        except READ_ONLY_ERRORS as exc:
            # A demoted primary or a standby: its sessions stay open but refuse every
            # write. The pool's connections are replaced at their next use, and the new
            # ones go to the writable server of a multi-host URL
            # (tests/integration/test_failover.py).
            await self.loop.run_aio_coroutine(self._pool.expire_connections())
            raise errors.ServerReadOnly(f"the server is read-only now: {exc}") from exc
        except asyncpg.PostgresError as exc:
            raise errors.QueryError(str(exc), sqlstate=exc.sqlstate) from exc

    async def _on_conn(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """(asyncio side) ``fn`` on a connection of the pool, given back after it."""
        async with self._pool.acquire() as conn:
            return await fn(conn)

    async def run(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run ``fn(connection)`` — an asyncio coroutine function — in one hop."""
        return await self._hop(self._on_conn(fn))

    async def run_in_transaction(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Like :meth:`run`, inside one transaction (rolled back if ``fn`` raises)."""

        async def in_transaction(conn: asyncpg.Connection) -> T:
            async with conn.transaction():
                return await fn(conn)

        return await self._hop(self._on_conn(in_transaction))

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return await self._hop(self._on_conn(lambda c: c.fetch(query, *args)))

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        return await self._hop(self._on_conn(lambda c: c.fetchrow(query, *args)))

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._hop(self._on_conn(lambda c: c.fetchval(query, *args)))

    async def execute(self, query: str, *args: Any) -> str:
        return await self._hop(self._on_conn(lambda c: c.execute(query, *args)))

    @asynccontextmanager
    async def open_sibling(
        self, *, max_size: int, dsn: str | None = None
    ) -> AsyncIterator[Database]:
        """A second pool to the same database (or to ``dsn``: a replica of it), on this
        one's loop: for a side whose statements must never wait for this pool's
        connections (the HTTP side's reads apart from the engine's outcome writes and
        heartbeats). It opens no connection until its first statement, so a server short
        of slots fails that statement (DatabaseUnavailable), not the start of the process."""
        dsn = dsn or self.dsn
        try:
            pool = await self.loop.run_aio_coroutine(
                _create_pool(
                    dsn,
                    min_size=0,
                    max_size=max_size,
                    statement_cache_size=self.statement_cache_size,
                )
            )
        except CONNECTION_ERRORS as exc:
            raise errors.DatabaseUnavailable(
                f"cannot connect to {logs.redact(dsn)}: {exc or type(exc).__name__}"
            ) from exc
        try:
            yield Database(pool, self.loop, dsn, statement_cache_size=self.statement_cache_size)
        finally:
            await _close_pool(self.loop, pool)

    @asynccontextmanager
    async def held(self, *, hold: bool = True) -> AsyncIterator[Database]:
        """A connection of the pool held for the block (see :class:`HeldConnection`);
        with ``hold`` false, this database itself (a connection from the pool per call)."""
        if not hold:
            yield self
            return
        held = HeldConnection(self)
        try:
            yield held
        finally:
            await held.release()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[TransactionConnection]:
        """A connection inside a transaction, one hop per statement.

        Commits when the block ends normally, rolls back when it raises or is cancelled.
        Prefer :meth:`run_in_transaction` on hot paths.
        """
        conn = await self._hop(self._pool.acquire())
        try:
            tx = conn.transaction()
            await self._hop(tx.start())
            try:
                yield TransactionConnection(self, conn)
            except BaseException:
                # Roll back even when cancelled: the connection must go back clean.
                with trio.CancelScope(shield=True):
                    await self._hop(tx.rollback())
                raise
            else:
                await self._hop(tx.commit())
        finally:
            with trio.CancelScope(shield=True):
                await self._hop(self._pool.release(conn))


class HeldConnection(Database):
    """The methods of :class:`Database`, on one pooled connection held from call to
    call (``Database.held``): for a stage that runs a statement every few hundred
    microseconds (the claimer, the writer).

    Taking a connection from asyncpg's pool and giving it back costs ~140 µs of CPU per
    statement (measured: ``SELECT 1`` 196 µs through the pool, 58 µs on a connection, on
    plain asyncio), more than the statement itself. The connection goes back to the pool
    (and a new one is taken at the next call) after an error of the connection or a
    cancelled call, so that a broken or half-used connection is never reused as is.
    """

    def __init__(self, database: Database) -> None:
        super().__init__(
            database._pool,
            database.loop,
            database.dsn,
            statement_cache_size=database.statement_cache_size,
        )
        self._conn: asyncpg.Connection | None = None

    async def _on_conn(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """(asyncio side) ``fn`` on the held connection, taken first if need be."""
        conn = self._conn
        if conn is None:
            conn = self._conn = await self._pool.acquire()
        try:
            return await fn(conn)
        except asyncpg.PostgresError as exc:
            if conn.is_in_transaction() or isinstance(exc, READ_ONLY_ERRORS):
                await self._give_back()
            raise
        except BaseException:  # the connection broke, or the call was cancelled mid-way
            await self._give_back()
            raise

    async def _give_back(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._pool.release(conn)

    async def release(self) -> None:
        """Give the connection back to the pool (the stage is done)."""
        with (
            trio.CancelScope(shield=True),
            trio.move_on_after(5),
            contextlib.suppress(*CONNECTION_ERRORS),
        ):
            await self.loop.run_aio_coroutine(self._give_back())


class TransactionConnection:
    """One connection inside a transaction; every method is one trio->asyncio hop."""

    def __init__(self, db: Database, conn: asyncpg.Connection) -> None:
        self._db = db
        self._conn = conn

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return await self._db._hop(self._conn.fetch(query, *args))

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        return await self._db._hop(self._conn.fetchrow(query, *args))

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._db._hop(self._conn.fetchval(query, *args))

    async def execute(self, query: str, *args: Any) -> str:
        return await self._db._hop(self._conn.execute(query, *args))

    async def executemany(self, query: str, args: Any) -> None:
        await self._db._hop(self._conn.executemany(query, args))


def _create_pool(
    dsn: str, *, min_size: int, max_size: int, statement_cache_size: int
) -> Awaitable[asyncpg.Pool]:
    return asyncpg.create_pool(  # type: ignore[no-any-return]
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_no_reset,
        statement_cache_size=statement_cache_size,
        # asyncpg arms a 300 s "close if inactive" timer on every release and cancels it on
        # the next acquire; trio-asyncio keeps cancelled timers until they would have
        # fired, so a busy process held ~300 s worth of them (tracemalloc: the RSS growth
        # of a 1,000,000-task drain). Pooled connections stay open instead.
        max_inactive_connection_lifetime=0,
    )


async def _close_pool(loop: trio_asyncio.TrioEventLoop, pool: asyncpg.Pool) -> None:
    with trio.CancelScope(shield=True):
        with trio.move_on_after(5) as cleanup:
            await loop.run_aio_coroutine(pool.close())
        if cleanup.cancelled_caught:
            pool.terminate()


@asynccontextmanager
async def open_database(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    statement_cache_size: int = 100,
) -> AsyncIterator[Database]:
    """Open a trio-asyncio loop and an asyncpg pool on it.

    The loop is a nursery, which would wrap any error of the caller's block in an
    exception group; a single error comes out as itself, so ``except TaskNotFound``
    around this block works as a reader expects.
    """
    try:
        async with trio_asyncio.open_loop() as loop:
            loop.set_exception_handler(_log_loop_error)
            try:
                pool = await loop.run_aio_coroutine(
                    _create_pool(
                        dsn,
                        min_size=min_size,
                        max_size=max_size,
                        statement_cache_size=statement_cache_size,
                    )
                )
            except CONNECTION_ERRORS as exc:
                raise errors.DatabaseUnavailable(
                    f"cannot connect to {logs.redact(dsn)}: {exc or type(exc).__name__}"
                ) from exc
            except asyncpg.PostgresError as exc:  # the server said no (28000, 3D000, ...)
                raise errors.DatabaseRefused(
                    f"cannot connect to {logs.redact(dsn)}: {exc or type(exc).__name__}"
                ) from exc
            try:
                # A runtime="asyncio" handler shares this loop: stopping it would leave
                # every statement of the process waiting forever, past any signal
                # (tests/acceptance/test_asyncio_loop_attacks.py). Only trio-asyncio's own
                # exit stops it: the refusal is lifted first.
                loop.stop = _refuse_stop
                yield Database(pool, loop, dsn, statement_cache_size=statement_cache_size)
            finally:
                del loop.stop  # the class's own again
                await _close_pool(loop, pool)
    except BaseExceptionGroup as group:
        inner: BaseException = group
        while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
            inner = inner.exceptions[0]
        if inner is group:
            raise
        raise inner from None
