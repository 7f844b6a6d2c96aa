"""The caller's connection: which driver it is, and a named statement run on it.

Detection never imports a driver: a connection of a driver that was never imported cannot
exist, so each check first looks the driver up in ``sys.modules``. The statements are the
named ones of ``queries.sql`` (``$1`` placeholders); :func:`statement` converts them to the
driver's parameter style, in this one place.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from notifyq import sql

_DOLLAR = re.compile(r"\$(\d+)")

ParamStyle = Literal["numeric_dollar", "pyformat", "format"]
Rows = list[Sequence[Any]]


@dataclass(frozen=True, slots=True)
class Composed:
    """A statement made of named ones (a workflow's, producers/workflows.py), $n
    placeholders in the order they appear; run like a name."""

    text: str


Query = str | Composed


def statement(query: Query, style: ParamStyle) -> str:
    """The named (or composed) statement with the placeholders of ``style``."""
    if isinstance(query, Composed):
        return _convert(query.text, query.text, style)
    return _named(query, style)


@functools.cache
def _named(name: str, style: ParamStyle) -> str:
    return _convert(name, sql.queries[name], style)


def _convert(name: str, text: str, style: ParamStyle) -> str:
    if style == "numeric_dollar":
        return text
    text = text.replace("%", "%%")
    if style == "pyformat":
        return _DOLLAR.sub(lambda m: f"%(p{m.group(1)})s", text)
    numbers = [int(n) for n in _DOLLAR.findall(text)]
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(f"query {name[:40]!r} cannot be written in the 'format' style")
    return _DOLLAR.sub("%s", text)


def parameters(args: Sequence[Any], style: ParamStyle) -> dict[str, Any] | tuple[Any, ...]:
    if style == "pyformat":
        return {f"p{i}": value for i, value in enumerate(args, start=1)}
    return tuple(args)


@dataclass(frozen=True, slots=True)
class Sync:
    """A blocking connection: ``run(name, args)`` returns the rows."""

    run: Callable[[Query, Sequence[Any]], Rows]
    driver: str


@dataclass(frozen=True, slots=True)
class Async:
    """An asyncio connection: ``run(name, args)`` is a coroutine returning the rows."""

    run: Callable[[Query, Sequence[Any]], Awaitable[Rows]]
    driver: str


def _name_of(conn: object) -> str:
    cls = type(conn)
    return f"{cls.__module__}.{cls.__qualname__}"


def unsupported(conn: object, what: str = "notifyq.enqueue") -> TypeError:
    return TypeError(
        f"{what} needs a psycopg 3 connection or cursor, an asyncpg connection, or a "
        f"SQLAlchemy 2 Connection/Session (sync or asyncio); got {_name_of(conn)}"
    )


def connection_of(conn: object, what: str = "notifyq.enqueue") -> Sync | Async:
    """How to run statements on ``conn``, in its current transaction."""
    found = _psycopg(conn) or _asyncpg(conn, what) or _sqlalchemy(conn, what)
    if found is None:
        raise unsupported(conn, what)
    return found


def _psycopg(conn: object) -> Sync | Async | None:
    psycopg = sys.modules.get("psycopg")
    if psycopg is None:
        return None
    # A cursor's own results stay untouched: statements run on a new cursor of its
    # connection, in the same transaction.
    if isinstance(conn, psycopg.Cursor | psycopg.AsyncCursor):
        conn = conn.connection
    if isinstance(conn, psycopg.Connection):
        sync_conn = conn

        def run(name: Query, args: Sequence[Any]) -> Rows:
            with sync_conn.cursor() as cur:
                cur.execute(statement(name, "pyformat"), parameters(args, "pyformat"))
                return list(cur.fetchall()) if cur.description else []

        return Sync(run, "psycopg")
    if isinstance(conn, psycopg.AsyncConnection):
        async_conn = conn

        async def arun(name: Query, args: Sequence[Any]) -> Rows:
            async with async_conn.cursor() as cur:
                await cur.execute(statement(name, "pyformat"), parameters(args, "pyformat"))
                return list(await cur.fetchall()) if cur.description else []

        return Async(arun, "psycopg")
    return None


def _asyncpg(conn: object, what: str) -> Async | None:
    asyncpg = sys.modules.get("asyncpg")
    if asyncpg is None:
        return None
    if isinstance(conn, asyncpg.Pool):
        raise TypeError(
            f"{what} runs in the caller's transaction: pass a connection "
            "(async with pool.acquire() as conn), not the pool"
        )
    if not isinstance(conn, asyncpg.Connection | asyncpg.pool.PoolConnectionProxy):
        return None
    pg_conn: Any = conn

    async def arun(name: Query, args: Sequence[Any]) -> Rows:
        records = await pg_conn.fetch(statement(name, "numeric_dollar"), *args)
        return [tuple(r) for r in records]

    return Async(arun, "asyncpg")


def _style(dialect: Any, conn: object, what: str) -> ParamStyle:
    style = dialect.paramstyle
    if style not in ("numeric_dollar", "pyformat", "format"):
        raise TypeError(
            f"{what} does not support SQLAlchemy's {dialect.name}+{dialect.driver} driver "
            f"(parameter style {style!r}); use psycopg or asyncpg"
        ) from None
    if dialect.name != "postgresql":
        raise unsupported(conn, what)
    return style  # type: ignore[no-any-return]


def _sqlalchemy(conn: object, what: str) -> Sync | Async | None:
    if "sqlalchemy" not in sys.modules:
        return None
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session

    if isinstance(conn, Session):
        # The session's connection, inside the session's transaction (begun if need be).
        conn = conn.connection()
    if isinstance(conn, Connection):
        sa_conn = conn
        style = _style(conn.dialect, conn, what)

        def run(name: Query, args: Sequence[Any]) -> Rows:
            result = sa_conn.exec_driver_sql(statement(name, style), parameters(args, style))
            return [tuple(r) for r in result.fetchall()] if result.returns_rows else []

        return Sync(run, f"sqlalchemy+{conn.dialect.driver}")
    if "sqlalchemy.ext.asyncio" not in sys.modules:
        return None
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

    if isinstance(conn, AsyncSession):
        session = conn

        async def session_run(name: Query, args: Sequence[Any]) -> Rows:
            return await _run_async_sa(await session.connection(), name, args, what)

        return Async(session_run, "sqlalchemy")
    if isinstance(conn, AsyncConnection):
        async_conn = conn

        async def arun(name: Query, args: Sequence[Any]) -> Rows:
            return await _run_async_sa(async_conn, name, args, what)

        return Async(arun, "sqlalchemy")
    return None


async def _run_async_sa(conn: Any, name: Query, args: Sequence[Any], what: str) -> Rows:
    style = _style(conn.dialect, conn, what)
    result = await conn.exec_driver_sql(statement(name, style), parameters(args, style))
    return [tuple(r) for r in result.fetchall()] if result.returns_rows else []
