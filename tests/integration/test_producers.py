"""notifyq.enqueue / enqueue_many / wait on the caller's own connection, for every driver.

Each driver runs in its own world (blocking calls, or ``asyncio.run``), as in the
applications that use them; none of it runs on trio.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import psycopg
import pytest
import sqlalchemy
import trio
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

import notifyq
from notifyq import db
from tests.helpers import running_service

DRIVERS = [
    "psycopg",
    "psycopg-cursor",
    "psycopg-async",
    "psycopg-async-cursor",
    "asyncpg",
    "asyncpg-pool",
    "sqlalchemy-connection",
    "sqlalchemy-session",
    "sqlalchemy-async-connection",
    "sqlalchemy-async-session",
]


def _sa_url(dsn: str, driver: str) -> str:
    return dsn.replace("postgresql://", f"postgresql+{driver}://", 1)


def run_in(driver: str, dsn: str, action: Callable[[Any], Any], *, commit: bool = True) -> Any:
    """``action(conn)`` in a transaction of ``driver`` on ``dsn``, then commit or roll back.

    For asyncio drivers ``action`` returns an awaitable, awaited in ``asyncio.run``.
    """
    if driver in ("psycopg", "psycopg-cursor"):
        with psycopg.connect(dsn) as conn:
            if driver == "psycopg":
                value = action(conn)
            else:
                with conn.cursor() as cur:
                    value = action(cur)
            conn.commit() if commit else conn.rollback()
            return value
    if driver in ("sqlalchemy-connection", "sqlalchemy-session"):
        engine = sqlalchemy.create_engine(_sa_url(dsn, "psycopg"))
        try:
            if driver == "sqlalchemy-connection":
                with engine.connect() as sa_conn:
                    value = action(sa_conn)
                    sa_conn.commit() if commit else sa_conn.rollback()
                    return value
            with Session(engine) as session:
                value = action(session)
                session.commit() if commit else session.rollback()
                return value
        finally:
            engine.dispose()
    return asyncio.run(_run_async(driver, dsn, action, commit))


async def _run_async(driver: str, dsn: str, action: Callable[[Any], Any], commit: bool) -> Any:
    if driver in ("psycopg-async", "psycopg-async-cursor"):
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            if driver == "psycopg-async":
                value = await action(conn)
            else:
                async with conn.cursor() as cur:
                    value = await action(cur)
            await (conn.commit() if commit else conn.rollback())
            return value
    if driver in ("asyncpg", "asyncpg-pool"):
        if driver == "asyncpg":
            conn = await asyncpg.connect(dsn)
            try:
                async with conn.transaction():
                    value = await action(conn)
                    if not commit:
                        raise _Rollback(value)
                return value
            except _Rollback as rolled_back:
                return rolled_back.value
            finally:
                await conn.close()
        async with (
            asyncpg.create_pool(dsn, min_size=1, max_size=1) as pool,
            pool.acquire() as pooled,
        ):
            tx = pooled.transaction()
            await tx.start()
            value = await action(pooled)
            await (tx.commit() if commit else tx.rollback())
            return value
    # SQLAlchemy's asyncio side: the connection on asyncpg, the session on psycopg.
    engine = create_async_engine(
        _sa_url(dsn, "asyncpg" if driver == "sqlalchemy-async-connection" else "psycopg")
    )
    try:
        if driver == "sqlalchemy-async-connection":
            async with engine.connect() as sa_conn:
                value = await action(sa_conn)
                await (sa_conn.commit() if commit else sa_conn.rollback())
                return value
        async with AsyncSession(engine) as session:
            value = await action(session)
            await (session.commit() if commit else session.rollback())
            return value
    finally:
        await engine.dispose()


class _Rollback(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


def query(dsn: str, text: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(text, args).fetchall()


@contextmanager
def waiting_worker(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection LISTENing on `notifyq`, recorded in notifyq.waiters as a process
    waiting for the default queue (what an idle notifyq process does)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("LISTEN notifyq")
        assert conn.execute("SELECT notifyq.go_idle('test-waiter', ARRAY['default'])").fetchone()
        yield conn


def notifications(conn: psycopg.Connection[Any], timeout: float) -> list[str]:
    return [n.payload for n in conn.notifies(timeout=timeout, stop_after=1)]


@pytest.mark.parametrize("driver", DRIVERS)
def test_commit_adds_the_task_and_wakes_a_waiting_worker(driver: str, database_url: str) -> None:
    with waiting_worker(database_url) as listener:
        task_id = run_in(
            driver,
            database_url,
            lambda conn: notifyq.enqueue(
                conn,
                "reverse",
                {"text": "héllo"},
                queue="default",
                priority="high",
                delay=timedelta(seconds=0),
                max_attempts=5,
                timeout=2.5,
            ),
        )
        assert notifications(listener, timeout=10) == ["default"]
    (row,) = query(
        database_url,
        "SELECT kind, payload, priority, max_attempts, timeout, "
        "status, queue FROM notifyq.tasks WHERE id = %s",
        task_id,
    )
    assert row == (
        "reverse",
        {"text": "héllo"},
        10,
        5,
        timedelta(seconds=2.5),
        "pending",
        "default",
    )


@pytest.mark.parametrize("driver", DRIVERS)
def test_rollback_adds_nothing_and_wakes_nobody(driver: str, database_url: str) -> None:
    with waiting_worker(database_url) as listener:
        run_in(driver, database_url, lambda conn: notifyq.enqueue(conn, "noop"), commit=False)
        assert notifications(listener, timeout=0.3) == []
    assert query(database_url, "SELECT count(*) FROM notifyq.tasks") == [(0,)]
    # The waiter was not consumed: the next producer that commits still wakes it.
    assert query(database_url, "SELECT worker_id FROM notifyq.waiters") == [("test-waiter",)]


@pytest.mark.parametrize("driver", DRIVERS)
def test_enqueue_many_adds_5000_tasks_in_one_statement(driver: str, database_url: str) -> None:
    tasks = [
        {"kind": "noop", "payload": {"n": n}, "priority": ["low", "urgent", n][n % 3]}
        for n in range(5000)
    ]
    ids = run_in(driver, database_url, lambda conn: notifyq.enqueue_many(conn, tasks))
    assert len(ids) == 5000 and ids == sorted(ids)
    rows = query(database_url, "SELECT id, payload, priority FROM notifyq.tasks ORDER BY id")
    assert [r[0] for r in rows] == ids
    assert [r[1]["n"] for r in rows] == list(range(5000))
    assert [r[2] for r in rows[:4]] == [-10, 20, 2, -10]


def test_enqueue_many_is_one_statement(database_url: str) -> None:
    executed: list[str] = []

    class Counting(psycopg.Cursor[Any]):
        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            executed.append(str(query))
            return super().execute(query, params, **kwargs)

    with psycopg.connect(database_url, cursor_factory=Counting) as conn:
        ids = notifyq.enqueue_many(conn, [notifyq.new_task("noop", n) for n in range(5000)])
    assert len(ids) == 5000
    assert len(executed) == 1 and executed[0].startswith("INSERT INTO notifyq.tasks")


def test_enqueue_many_of_nothing_runs_nothing(database_url: str) -> None:
    assert run_in("psycopg", database_url, lambda c: notifyq.enqueue_many(c, [])) == []
    assert run_in("asyncpg", database_url, lambda c: notifyq.enqueue_many(c, [])) == []


def test_options_reach_the_row(database_url: str) -> None:
    at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    with psycopg.connect(database_url) as conn:
        later = notifyq.enqueue(conn, "noop", None, queue="mail", run_at=at, priority=-3)
        soon = notifyq.enqueue(conn, "noop", [1, "x"], delay=60, priority="urgent")
    rows = dict(
        (r[0], r[1:])
        for r in query(
            database_url,
            "SELECT id, queue, run_at, priority, payload, run_at - created_at FROM notifyq.tasks",
        )
    )
    assert rows[later][:4] == ("mail", at, -3, {})
    assert rows[soon][2:4] == (20, [1, "x"])
    assert timedelta(seconds=59) < rows[soon][4] < timedelta(seconds=61)


def test_bad_options_are_refused_before_the_database(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        with pytest.raises(notifyq.InvalidTask) as caught:
            notifyq.enqueue(conn, "noop", priority="highest")
        assert str(caught.value) == (
            "invalid priority 'highest': expected an integer (higher runs first) or one of "
            "low (-10), normal (0), high (10), urgent (20)"
        )
        with pytest.raises(TypeError, match="unexpected keyword argument 'priorty'"):
            notifyq.enqueue(conn, "noop", priorty=1)  # type: ignore[call-overload]
        with pytest.raises(notifyq.InvalidTask, match="invalid max_attempts 0"):
            notifyq.enqueue_many(conn, [{"kind": "noop"}, {"kind": "noop", "max_attempts": 0}])
        conn.rollback()
    # Nothing of the batch was added: it was checked whole first.
    assert query(database_url, "SELECT count(*) FROM notifyq.tasks") == [(0,)]


def test_an_unsupported_connection_is_named() -> None:
    with pytest.raises(TypeError) as caught:
        notifyq.enqueue(object(), "noop")
    assert str(caught.value) == (
        "notifyq.enqueue needs a psycopg 3 connection or cursor, an asyncpg connection, or a "
        "SQLAlchemy 2 Connection/Session (sync or asyncio); got builtins.object"
    )


def test_an_asyncpg_pool_is_refused(database_url: str) -> None:
    async def go() -> None:
        async with asyncpg.create_pool(database_url, min_size=1, max_size=1) as pool:
            with pytest.raises(TypeError, match=r"pass a connection \(async with pool.acquire"):
                notifyq.enqueue(pool, "noop")

    asyncio.run(go())


async def test_a_running_service_runs_what_a_psycopg_producer_committed(
    database: db.Database,
) -> None:
    dsn = database.dsn

    def produce_and_wait() -> notifyq.TaskOutcome:
        with psycopg.connect(dsn) as conn:
            task_id = notifyq.enqueue(conn, "reverse", "hello", priority="urgent")
            conn.commit()
            return notifyq.wait(conn, task_id, timeout_s=20)

    async with running_service(database):
        outcome = await trio.to_thread.run_sync(produce_and_wait)
    assert (outcome.status, outcome.result, outcome.attempts) == ("done", "olleh", 1)


async def test_wait_from_asyncio_drivers_and_a_dsn(database: db.Database) -> None:
    dsn = database.dsn

    def waits() -> list[notifyq.TaskOutcome]:
        with psycopg.connect(dsn, autocommit=True) as conn:
            ids = [
                int(str(i))  # no unique keys: never None
                for i in notifyq.enqueue_many(
                    conn, [{"kind": "reverse", "payload": t} for t in ("ab", "cd", "ef")]
                )
            ]

        async def on_asyncio() -> list[notifyq.TaskOutcome]:
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as aconn:
                first = await notifyq.wait(aconn, ids[0], timeout_s=20)
            pg_conn = await asyncpg.connect(dsn)
            try:
                second = await notifyq.wait(pg_conn, ids[1], timeout_s=20)
            finally:
                await pg_conn.close()
            return [first, second]

        return [*asyncio.run(on_asyncio()), notifyq.wait(dsn, ids[2], timeout_s=20)]

    async with running_service(database):
        outcomes = await trio.to_thread.run_sync(waits)
    assert [o.result for o in outcomes] == ["ba", "dc", "fe"]


def test_wait_times_out_and_refuses_an_open_transaction(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        task_id = notifyq.enqueue(conn, "noop")
        with pytest.raises(ValueError, match="outside a transaction"):
            notifyq.wait(conn, task_id, timeout_s=1)
        conn.commit()
        with pytest.raises(notifyq.WaitTimeout) as caught:
            notifyq.wait(conn, task_id, timeout_s=0.2)
        assert str(caught.value) == f"task {task_id} did not end within 0.2 s"
        assert isinstance(caught.value, TimeoutError)
        with pytest.raises(notifyq.TaskNotFound):
            notifyq.wait(conn, task_id + 1, timeout_s=0.2)
        # The caller's connection is left as it was: no LISTEN remains.
        assert conn.execute("SELECT count(*) FROM pg_listening_channels()").fetchone() == (0,)


def test_payload_travels_as_json_text_whatever_the_driver_codecs(database_url: str) -> None:
    # An asyncpg connection with its own jsonb codec (as notifyq's pool has) gets the
    # same row as one without: the statements take text, never jsonb parameters.
    async def go() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.set_type_codec(
                "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
            )
            return int(await notifyq.enqueue(conn, "noop", {"a": [1, 2]}))
        finally:
            await conn.close()

    task_id = asyncio.run(go())
    assert query(database_url, "SELECT payload FROM notifyq.tasks WHERE id = %s", task_id) == [
        ({"a": [1, 2]},)
    ]


async def test_the_trio_client_takes_named_priorities(database: db.Database) -> None:
    client = notifyq.Client(database)
    task_id = await client.enqueue("noop", priority="urgent")
    assert (await client.get(task_id))["priority"] == 20
    with pytest.raises(ValueError, match="invalid priority 'top'"):
        await client.enqueue("noop", priority="top")
