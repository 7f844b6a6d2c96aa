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

The options are those of every entry point, checked by :mod:`notifyq.spec` before anything
reaches the database (:class:`InvalidTask` names the bad one), so a refused task never
aborts the caller's transaction. No driver is imported here; a connection tells which one
it belongs to.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Coroutine, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Unpack, overload

from notifyq.producers import drivers, waiting, workflows
from notifyq.producers.waiting import TaskOutcome, WorkflowOutcome
from notifyq.spec import NewTask, PlainOptions, TaskOptions, from_item, new_task

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

__all__ = [
    "NewTask",
    "TaskOptions",
    "TaskOutcome",
    "add",
    "enqueue",
    "enqueue_many",
    "enqueue_workflow",
    "new_task",
    "wait",
    "wait_workflow",
]


def _with_trace(task: NewTask) -> NewTask:
    # Only an application that imported OpenTelemetry can have a span to record; without
    # it this is one dictionary lookup and nothing is imported.
    if "opentelemetry.trace" not in sys.modules:
        return task
    from notifyq import otel

    return task.with_meta(otel.task_meta())


def _row(task: NewTask) -> list[Any]:
    """The parameters of the ``produce`` statement."""
    return [
        *task.parameters(),
        task.unique_key,
        task.concurrency_key,
        task.depends_on,
        task.on_parent_failure,
        *task.expiry(),
    ]


def _produce(task: NewTask) -> tuple[str, list[Any]]:
    """The statement that adds one task with its parameters: ``produce``, or
    ``produce_upsert`` when the task replaces or updates a live holder of its key."""
    if task.on_conflict == "keep":
        return "produce", _row(task)
    args = [*task.parameters(), task.unique_key, task.concurrency_key, task.on_conflict]
    return "produce_upsert", [*args, *task.expiry()]


def _columns(tasks: list[NewTask]) -> list[list[Any]]:
    """The arrays of the ``produce_many`` statement, one per column (no unique keys)."""
    rows = [_row(t) for t in tasks]
    return [[r[i] for r in rows] for i in (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14)]


@overload
def enqueue(
    conn: SyncConnection,
    kind: str,
    payload: Any = None,
    *,
    unique_key: None = None,
    **options: Unpack[PlainOptions],
) -> int: ...
@overload
def enqueue(
    conn: SyncConnection,
    kind: str,
    payload: Any = None,
    *,
    unique_key: str,
    **options: Unpack[PlainOptions],
) -> int | None: ...
@overload
def enqueue(
    conn: AsyncConnection,
    kind: str,
    payload: Any = None,
    *,
    unique_key: None = None,
    **options: Unpack[PlainOptions],
) -> Awaitable[int]: ...
@overload
def enqueue(
    conn: AsyncConnection,
    kind: str,
    payload: Any = None,
    *,
    unique_key: str,
    **options: Unpack[PlainOptions],
) -> Awaitable[int | None]: ...
@overload
def enqueue(
    conn: Any,
    kind: str,
    payload: Any = None,
    *,
    unique_key: str | None = None,
    **options: Unpack[PlainOptions],
) -> Any: ...
def enqueue(
    conn: Any,
    kind: str,
    payload: Any = None,
    *,
    unique_key: str | None = None,
    **options: Unpack[PlainOptions],
) -> int | Awaitable[int | None] | None:
    """Add a task in ``conn``'s current transaction and return its id (awaitable on an
    asyncio connection); the options are those of :func:`notifyq.new_task`.

    With ``unique_key``, while a live task of the queue holds the key nothing is added and
    the answer is None: a producer may not read other tasks, so it is not told which.
    """
    return add(conn, new_task(kind, payload, unique_key=unique_key, **options))


def add(conn: Any, task: NewTask) -> int | Awaitable[int | None] | None:
    """:func:`enqueue` of a task already checked (:func:`notifyq.new_task`, a typed
    task's ``new_task``)."""
    target = drivers.connection_of(conn)
    task = _with_trace(task)
    if isinstance(target, drivers.Sync):
        return _first_id(target.run(*_produce(task)))
    return _await_first_id(target.run(*_produce(task)))


def _first_id(rows: drivers.Rows) -> int | None:
    return int(rows[0][0]) if rows else None


async def _await_first_id(rows: Awaitable[drivers.Rows]) -> int | None:
    return _first_id(await rows)


def _steps(tasks: list[NewTask]) -> list[NewTask | list[NewTask]]:
    """The statements that add ``tasks`` in order: one per run of tasks without a unique
    key, one per task with one (which may be skipped)."""
    steps: list[NewTask | list[NewTask]] = []
    for task in tasks:
        if task.unique_key is not None:
            steps.append(task)
        elif steps and isinstance(steps[-1], list):
            steps[-1].append(task)
        else:
            steps.append([task])
    return steps


@overload
def enqueue_many(
    conn: SyncConnection, tasks: Iterable[NewTask | Mapping[str, Any]]
) -> list[int | None]: ...
@overload
def enqueue_many(
    conn: AsyncConnection, tasks: Iterable[NewTask | Mapping[str, Any]]
) -> Awaitable[list[int | None]]: ...
@overload
def enqueue_many(conn: Any, tasks: Iterable[NewTask | Mapping[str, Any]]) -> Any: ...
def enqueue_many(
    conn: Any, tasks: Iterable[NewTask | Mapping[str, Any]]
) -> list[int | None] | Awaitable[list[int | None]]:
    """Add many tasks in ``conn``'s current transaction; returns their ids in the order
    given (awaitable on an asyncio connection).

    Each item is a mapping of :func:`enqueue`'s arguments (``{"kind": ..., "payload": ...,
    "priority": "high"}``) or a :func:`notifyq.new_task` value. Every item is checked
    before any statement runs, so a bad one adds none. Tasks without a ``unique_key`` go in
    one statement per run of them; each task with one takes a statement of its own, and its
    id is None when a live task holds the key.
    """
    target = drivers.connection_of(conn, "notifyq.enqueue_many")
    steps = _steps([_with_trace(from_item(item)) for item in tasks])
    if isinstance(target, drivers.Async):
        return _ids(target, steps)
    ids: list[int | None] = []
    for step in steps:
        if isinstance(step, list):
            ids.extend(int(r[0]) for r in target.run("produce_many", _columns(step)))
        else:
            ids.append(_first_id(target.run(*_produce(step))))
    return ids


async def _ids(target: drivers.Async, steps: list[NewTask | list[NewTask]]) -> list[int | None]:
    ids: list[int | None] = []
    for step in steps:
        if isinstance(step, list):
            ids.extend(int(r[0]) for r in await target.run("produce_many", _columns(step)))
        else:
            ids.append(_first_id(await target.run(*_produce(step))))
    return ids


@overload
def enqueue_workflow(conn: SyncConnection, workflow: workflows.Workflow) -> workflows.Added: ...
@overload
def enqueue_workflow(
    conn: AsyncConnection, workflow: workflows.Workflow
) -> Awaitable[workflows.Added]: ...
@overload
def enqueue_workflow(conn: Any, workflow: workflows.Workflow) -> Any: ...
def enqueue_workflow(
    conn: Any, workflow: workflows.Workflow
) -> workflows.Added | Awaitable[workflows.Added]:
    """Add a :func:`notifyq.chain`, :func:`notifyq.group` or :func:`notifyq.chord` in
    ``conn``'s current transaction, in one statement; returns its ids (awaitable on an
    asyncio connection): :class:`ChainIds` (each step's), :class:`GroupIds` (the members',
    in order) or :class:`ChordIds` (members, batch, callback)."""
    target = drivers.connection_of(conn, "notifyq.enqueue_workflow")
    made = workflows.statement(workflows.as_workflow(workflow), each=_with_trace)
    query = drivers.Composed(made.text)
    if isinstance(target, drivers.Sync):
        return workflows.added(made, target.run(query, made.args))
    return _await_added(made, target.run(query, made.args))


async def _await_added(made: workflows.Statement, rows: Awaitable[drivers.Rows]) -> workflows.Added:
    return workflows.added(made, await rows)


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
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    return _wait(conn, waiting.Watch((task_id,)), timeout_s, "notifyq.wait")


@overload
def wait_workflow(
    conn: str | psycopg.Connection[Any], workflow: workflows.Added, *, timeout_s: float
) -> WorkflowOutcome: ...
@overload
def wait_workflow(
    conn: psycopg.AsyncConnection[Any], workflow: workflows.Added, *, timeout_s: float
) -> Coroutine[Any, Any, WorkflowOutcome]: ...
@overload
def wait_workflow(conn: Any, workflow: workflows.Added, *, timeout_s: float) -> Any: ...
def wait_workflow(conn: Any, workflow: workflows.Added, *, timeout_s: float) -> Any:
    """Wait until every task of a workflow :func:`enqueue_workflow` added ended; return its
    :class:`WorkflowOutcome` (the tasks in id order, a chord's batch progress).

    As :func:`wait` (the same connections, LISTEN notifyq_done as a hint, the rows decide,
    :class:`notifyq.WaitTimeout` after ``timeout_s``). A chord is waited for through its
    callback, which its batch releases (or cancels) once every member ended: its members
    are counted in the batch, not read one by one.
    """
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    return _wait(conn, workflows.watch(workflow), timeout_s, "notifyq.wait_workflow")


def _wait(conn: Any, watch: waiting.Watch, timeout_s: float, what: str) -> Any:
    if isinstance(conn, str):
        return waiting.wait_sync(conn, watch, timeout_s)
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(conn, psycopg.Connection):
        return waiting.wait_sync(conn, watch, timeout_s)
    if psycopg is not None and isinstance(conn, psycopg.AsyncConnection):
        return waiting.wait_async(conn, watch, timeout_s)
    asyncpg = sys.modules.get("asyncpg")
    if asyncpg is not None and isinstance(
        conn, asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
    ):
        return waiting.wait_async(conn, watch, timeout_s)
    raise TypeError(
        f"{what} needs a DSN, a psycopg 3 connection (sync or async) or an asyncpg "
        f"connection; got {type(conn).__module__}.{type(conn).__qualname__}"
    )
