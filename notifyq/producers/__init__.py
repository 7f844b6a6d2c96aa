"""Producers on the caller's own connection, inside its transaction.

    task_id = notifyq.enqueue(conn, "resize", {"image": 7}, priority="high")
    ids = notifyq.enqueue_many(conn, [{"kind": "resize", "payload": {"image": i}} for i in ...])
    outcome = notifyq.wait(conn, task_id, timeout_s=30)   # after commit

``conn`` is what the application already holds: a psycopg 3 connection or cursor, an asyncpg
connection, or a SQLAlchemy 2 ``Connection``/``Session``. One name per operation for every
driver: on a blocking connection the call returns the value; on an asyncio one
(``psycopg.AsyncConnection``, asyncpg, ``AsyncConnection``/``AsyncSession``) it returns an
awaitable, so ``await notifyq.enqueue(conn, ...)``. Nothing commits: the task exists if and
only if the caller's transaction commits, and a waiting worker wakes at that commit.

The options are checked before anything reaches the database (:class:`InvalidTask` names the
bad one). No driver is imported here; a connection tells which one it belongs to.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Coroutine, Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, overload

from notifyq.producers import drivers
from notifyq.producers.spec import NewTask, TaskOptions, from_item, new_task
from notifyq.producers.spec import columns as _columns
from notifyq.producers.spec import row as _row
from notifyq.producers.waiting import TaskOutcome

if TYPE_CHECKING:
    import psycopg
    from sqlalchemy.engine import Connection as SAConnection
    from sqlalchemy.ext.asyncio import AsyncConnection as SAAsyncConnection
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session

    SyncConnection = psycopg.Connection[Any] | psycopg.Cursor[Any] | SAConnection | Session
    AsyncConnection = (
        psycopg.AsyncConnection[Any] | psycopg.AsyncCursor[Any] | SAAsyncConnection | AsyncSession
    )

__all__ = ["NewTask", "TaskOptions", "TaskOutcome", "enqueue", "enqueue_many", "new_task", "wait"]


def _with_trace(task: NewTask) -> NewTask:
    # Only an application that imported OpenTelemetry can have a span to record; without
    # it this is one dictionary lookup and nothing is imported.
    if "opentelemetry.trace" not in sys.modules:
        return task
    from notifyq import otel

    return task.with_meta(otel.task_meta())


@overload
def enqueue(
    conn: SyncConnection,
    kind: str,
    payload: Any = None,
    *,
    queue: str = ...,
    priority: int | str = ...,
    delay: float | timedelta | None = ...,
    run_at: datetime | None = ...,
    max_attempts: int = ...,
    timeout: float | timedelta | None = ...,
) -> int: ...
@overload
def enqueue(
    conn: AsyncConnection,
    kind: str,
    payload: Any = None,
    *,
    queue: str = ...,
    priority: int | str = ...,
    delay: float | timedelta | None = ...,
    run_at: datetime | None = ...,
    max_attempts: int = ...,
    timeout: float | timedelta | None = ...,
) -> Awaitable[int]: ...
@overload
def enqueue(
    conn: Any,
    kind: str,
    payload: Any = None,
    *,
    queue: str = ...,
    priority: int | str = ...,
    delay: float | timedelta | None = ...,
    run_at: datetime | None = ...,
    max_attempts: int = ...,
    timeout: float | timedelta | None = ...,
) -> Any: ...
def enqueue(
    conn: Any,
    kind: str,
    payload: Any = None,
    *,
    queue: str = "default",
    priority: int | str = 0,
    delay: float | timedelta | None = None,
    run_at: datetime | None = None,
    max_attempts: int = 3,
    timeout: float | timedelta | None = None,
) -> int | Awaitable[int]:
    """Add a task in ``conn``'s current transaction and return its id (awaitable on an
    asyncio connection).

    ``priority``: an integer (higher first) or ``low``/``normal``/``high``/``urgent``;
    ``delay`` (seconds or a timedelta) or ``run_at`` (an aware datetime): not before then;
    ``timeout``: the limit of one attempt (seconds or a timedelta).
    """
    target = drivers.connection_of(conn)
    task = _with_trace(
        new_task(
            kind,
            payload,
            queue=queue,
            priority=priority,
            delay=delay,
            run_at=run_at,
            max_attempts=max_attempts,
            timeout=timeout,
        )
    )
    args = _row(task)
    if isinstance(target, drivers.Sync):
        return int(target.run("produce", args)[0][0])
    return _first_id(target.run("produce", args))


async def _first_id(rows: Awaitable[drivers.Rows]) -> int:
    return int((await rows)[0][0])


@overload
def enqueue_many(
    conn: SyncConnection, tasks: Iterable[NewTask | Mapping[str, Any]]
) -> list[int]: ...
@overload
def enqueue_many(
    conn: AsyncConnection, tasks: Iterable[NewTask | Mapping[str, Any]]
) -> Awaitable[list[int]]: ...
@overload
def enqueue_many(conn: Any, tasks: Iterable[NewTask | Mapping[str, Any]]) -> Any: ...
def enqueue_many(
    conn: Any, tasks: Iterable[NewTask | Mapping[str, Any]]
) -> list[int] | Awaitable[list[int]]:
    """Add many tasks in one statement, in ``conn``'s current transaction; returns their
    ids in the order given (awaitable on an asyncio connection).

    Each item is a mapping of :func:`enqueue`'s arguments (``{"kind": ..., "payload": ...,
    "priority": "high"}``) or a :func:`notifyq.new_task` value. Every item is checked
    before the statement runs, so a bad one adds none.
    """
    target = drivers.connection_of(conn, "notifyq.enqueue_many")
    checked = [_with_trace(from_item(item)) for item in tasks]
    if isinstance(target, drivers.Sync):
        if not checked:
            return []
        return [int(r[0]) for r in target.run("produce_many", _columns(checked))]
    return _ids(target, checked)


async def _ids(target: drivers.Async, checked: list[NewTask]) -> list[int]:
    if not checked:
        return []
    return [int(r[0]) for r in await target.run("produce_many", _columns(checked))]


@overload
def wait(conn: str | psycopg.Connection[Any], task_id: int, *, timeout_s: float) -> TaskOutcome: ...
@overload
def wait(
    conn: psycopg.AsyncConnection[Any], task_id: int, *, timeout_s: float
) -> Coroutine[Any, Any, TaskOutcome]: ...
@overload
def wait(conn: Any, task_id: int, *, timeout_s: float) -> Any: ...
def wait(conn: Any, task_id: int, *, timeout_s: float) -> Any:
    """Wait until the task is done, error or cancelled; return its :class:`TaskOutcome`.

    ``conn``: a DSN or a psycopg connection (blocking), or a psycopg ``AsyncConnection`` or
    asyncpg connection (awaitable), outside a transaction. Raises
    :class:`notifyq.WaitTimeout` (a TimeoutError) after ``timeout_s``, :class:`TaskNotFound`
    when there is no such task.
    """
    from notifyq.producers import waiting

    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    if isinstance(conn, str):
        return waiting.wait_sync(conn, task_id, timeout_s)
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(conn, psycopg.Connection):
        return waiting.wait_sync(conn, task_id, timeout_s)
    if psycopg is not None and isinstance(conn, psycopg.AsyncConnection):
        return waiting.wait_async(conn, task_id, timeout_s)
    asyncpg = sys.modules.get("asyncpg")
    if asyncpg is not None and isinstance(
        conn, asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
    ):
        return waiting.wait_async(conn, task_id, timeout_s)
    raise TypeError(
        "notifyq.wait needs a DSN, a psycopg 3 connection (sync or async) or an asyncpg "
        f"connection; got {type(conn).__module__}.{type(conn).__qualname__}"
    )
