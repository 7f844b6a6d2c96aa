"""The three kinds of handler — trio (async def), thread (def), asyncio — behave the same:
result, retry, time limit, cancel; a blocking def never stalls the process; an abandoned
thread's late result never lands."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import pytest
import trio

import notifyq
from notifyq import db, store
from notifyq.app import App, Task
from tests.helpers import eventually, running_service, running_web, task_row, until_running

RUNTIMES = ["trio", "thread", "asyncio"]


def app_of(runtime: str, kind: str, body: Callable[[Task], Any], sleep_s: float = 0.0) -> App:
    """An App with one handler of ``runtime`` that sleeps ``sleep_s`` (in that runtime's
    way) and then returns ``body(task)``."""
    app = App()
    if runtime == "trio":

        @app.handler(kind)
        async def on_trio(task: Task) -> Any:
            await trio.sleep(sleep_s)
            return body(task)

    elif runtime == "thread":

        @app.handler(kind)
        def in_thread(task: Task) -> Any:
            time.sleep(sleep_s)
            return body(task)

    else:

        @app.handler(kind, runtime="asyncio")
        async def on_asyncio(task: Task) -> Any:
            await asyncio.sleep(sleep_s)
            return body(task)

    assert app.handlers[kind].runtime == runtime
    return app


async def history(database: db.Database, task_id: int) -> list[str]:
    return [e.event for e in await store.task_history(database, task_id)]


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_result_is_stored(runtime: str, database: db.Database) -> None:
    app = app_of(runtime, "double", lambda task: task.payload * 2)
    task_id = await database.run(lambda conn: notifyq.enqueue(conn, "double", 21))
    async with running_service(database, app):
        await eventually(lambda: _status_is(database, task_id, "done"))
    row = await task_row(database, task_id)
    assert (row["result"], row["attempts"]) == (42, 1)


async def _status_is(database: db.Database, task_id: int, status: str) -> bool:
    return bool((await task_row(database, task_id))["status"] == status)


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_an_exception_is_retried(runtime: str, database: db.Database) -> None:
    def fail_first(task: Task) -> str:
        if task.attempt == 1:
            raise ValueError(f"attempt {task.attempt} of {runtime}")
        return "second time lucky"

    app = app_of(runtime, "flaky", fail_first)
    task_id = await database.run(lambda conn: notifyq.enqueue(conn, "flaky", max_attempts=3))
    async with running_service(database, app, retry_base_s=0.01):
        await eventually(lambda: _status_is(database, task_id, "done"))
    row = await task_row(database, task_id)
    assert (row["result"], row["attempts"]) == ("second time lucky", 2)
    assert row["error"] == f"ValueError: attempt 1 of {runtime}"
    assert await history(database, task_id) == ["queued", "started", "retried", "started", "done"]


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_a_retry_or_fail_signal_steers_the_task(runtime: str, database: db.Database) -> None:
    def signal(task: Task) -> None:
        if task.payload == "fail":
            raise notifyq.Fail("no point")
        raise notifyq.Retry("later", delay_s=3600)

    app = app_of(runtime, "signal", signal)
    failed = await database.run(lambda conn: notifyq.enqueue(conn, "signal", "fail"))
    later = await database.run(lambda conn: notifyq.enqueue(conn, "signal", "retry"))
    async with running_service(database, app):
        await eventually(lambda: _status_is(database, failed, "error"))
        await eventually(lambda: _has_event(database, later, "retried"))
    assert (await task_row(database, failed))["error"] == "Fail: no point"
    row = await task_row(database, later)
    assert (row["status"], row["error"]) == ("pending", "Retry: later")


async def _has_event(database: db.Database, task_id: int, event: str) -> bool:
    return event in await history(database, task_id)


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_a_time_limit_stops_the_attempt(runtime: str, database: db.Database) -> None:
    app = app_of(runtime, "slow", lambda task: "too late", sleep_s=3)
    task_id = await database.run(
        lambda conn: notifyq.enqueue(conn, "slow", timeout=0.3, max_attempts=1)
    )
    async with running_service(database, app) as service:
        await eventually(lambda: _status_is(database, task_id, "error"))
        row = await task_row(database, task_id)
        assert row["error"] == "timed out after 0.3 s"
        if runtime == "thread":
            # The thread cannot be interrupted: abandoned, counted while it still sleeps.
            assert service.runner.threads.statistics().abandoned == 1
            await eventually(lambda: _no_threads(service), timeout=10)
    assert (await task_row(database, task_id))["result"] is None


async def _no_threads(service: Any) -> bool:
    return bool(service.runner.threads.statistics().running == 0)


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_cancel_stops_a_running_task(runtime: str, database: db.Database) -> None:
    app = app_of(runtime, "long", lambda task: "never", sleep_s=2)
    task_id = await database.run(lambda conn: notifyq.enqueue(conn, "long"))
    async with running_service(database, app) as service:
        await until_running(service, task_id)
        assert await store.cancel(database, task_id) == "cancelling"
        await eventually(lambda: _status_is(database, task_id, "cancelled"))
        await eventually(lambda: _no_threads(service), timeout=10)
    assert (await task_row(database, task_id))["result"] is None
    assert (await history(database, task_id))[-1] == "cancelled"


async def test_an_abandoned_threads_late_result_never_overwrites_the_next_attempt(
    database: db.Database,
) -> None:
    release = threading.Event()
    app = App()

    @app.handler("stuck_once")
    def stuck_once(task: Task) -> str:
        if task.attempt == 1:
            release.wait(30)  # outlives its time limit; abandoned, not interrupted
            return "first (late)"
        return "second"

    task_id = await database.run(
        lambda conn: notifyq.enqueue(conn, "stuck_once", timeout=0.3, max_attempts=2)
    )
    async with running_service(database, app, retry_base_s=0.01) as service:
        await eventually(lambda: _status_is(database, task_id, "done"))
        assert service.runner.threads.statistics().abandoned == 1
        # The outcome write is fenced by owner and claim token: attempt 1's could not land.
        first = store.Outcome(task_id, 1, store.Verdict.DONE, result_json='"first"', token=1)
        refused = await store.finish(database, owner=service.worker_id, outcomes=[first])
        assert refused == {}
        release.set()  # the abandoned thread returns now; its value goes nowhere
        await eventually(lambda: _no_threads(service), timeout=10)
        assert service.runner.threads.statistics().abandoned == 0
    row = await task_row(database, task_id)
    assert (row["status"], row["result"], row["attempts"]) == ("done", "second", 2)
    assert row["error"] == "timed out after 0.3 s"


@pytest.mark.slow
async def test_a_blocking_def_never_stalls_health_nor_its_lease(database: db.Database) -> None:
    app = app_of("thread", "blocking", lambda task: "slept", sleep_s=5)
    task_id = await database.run(lambda conn: notifyq.enqueue(conn, "blocking"))
    async with running_web(database, app=app, lease_s=1.5) as web:
        await until_running(web.service, task_id)
        first_lease = (await task_row(database, task_id))["locked_until"]
        async with httpx.AsyncClient(base_url=web.url) as client:
            for _ in range(3):
                # A bound, not a measurement: the loop is never blocked, so /health comes
                # back in milliseconds while the thread sleeps.
                with trio.fail_after(1):
                    response = await client.get("/health")
                assert response.status_code == 200, response.text
                await trio.sleep(0.5)
            metrics = (await client.get("/metrics")).text
        assert "notifyq_handler_threads 1.0" in metrics
        # The heartbeat (every LEASE/3) kept extending the lease meanwhile.
        assert (await task_row(database, task_id))["locked_until"] > first_lease
        await eventually(lambda: _status_is(database, task_id, "done"), timeout=15)
    row = await task_row(database, task_id)
    assert (row["result"], row["attempts"]) == ("slept", 1)
    assert "recovered" not in await history(database, task_id)


async def test_an_asyncio_handler_uses_an_asyncio_library(database: db.Database) -> None:
    dsn = database.dsn
    app = App()

    @app.handler("asyncpg_sum", runtime="asyncio")
    async def asyncpg_sum(task: Task) -> int:
        # asyncpg on the process's own asyncio loop, with its own connection.
        conn = await asyncpg.connect(dsn)
        try:
            await asyncio.sleep(0)
            return int(await conn.fetchval("SELECT $1::int + $2::int", *task.payload))
        finally:
            await conn.close()

    task_id = await database.run(lambda conn: notifyq.enqueue(conn, "asyncpg_sum", [40, 2]))
    async with running_service(database, app):
        await eventually(lambda: _status_is(database, task_id, "done"))
    assert (await task_row(database, task_id))["result"] == 42
