"""A process claims only what it can start: kinds it has a handler for, and `def` kinds only
while a thread slot is free."""

from __future__ import annotations

import threading

import httpx

from notifyq import db
from notifyq.app import App, Task
from tests.helpers import (
    captured_logs,
    eventually,
    insert,
    running_service,
    running_web,
    task_row,
    wait_ended,
)


async def test_a_kind_without_a_handler_stays_pending_unclaimed(database: db.Database) -> None:
    # A rolling deploy: this (old) process does not know `new_kind` yet. It must leave the
    # task to a process that does, not end it `error` (or spend its attempts).
    unknown = await insert(database, "new_kind", max_attempts=5)
    known = await insert(database, "noop")
    async with running_service(database) as service:
        await wait_ended(database, known)
        # Claims after the known task ended (a notification makes the claimer look again).
        claims = service.claimer.claims
        await database.execute("SELECT pg_notify('notifyq', 'default')")
        await eventually(lambda: _true(service.claimer.claims > claims))
    row = await task_row(database, unknown)
    assert (row["status"], row["attempts"], row["error"]) == ("pending", 0, None)


async def test_a_new_process_that_knows_the_kind_runs_it(database: db.Database) -> None:
    task_id = await insert(database, "new_kind")
    async with running_service(database):
        pass
    app = App()

    @app.handler("new_kind")
    async def new_kind(task: Task) -> str:
        return "ran"

    async with running_service(database, app):
        [row] = await wait_ended(database, task_id)
    assert (row["status"], row["result"], row["attempts"]) == ("done", "ran", 1)


async def _true(value: bool) -> bool:
    return value


async def test_a_limited_queue_leaves_a_kind_without_a_handler_pending_unclaimed(
    database: db.Database,
) -> None:
    # claim_limited takes only the process's kinds too (migration 0011): the row stays
    # pending, no attempt spent, for a process that has the handler.
    await database.execute("INSERT INTO notifyq.queues (name, concurrency) VALUES ('lim', 5)")
    unknown = await insert(database, "new_kind", queue="lim", max_attempts=5)
    known = await insert(database, "noop", queue="lim")
    async with running_service(database, queues=["lim"]) as service:
        await wait_ended(database, known)
        claims = service.claimer.claims
        await database.execute("SELECT pg_notify('notifyq', 'lim')")
        await eventually(lambda: _true(service.claimer.claims > claims))
    row = await task_row(database, unknown)
    assert (row["status"], row["attempts"], row["error"]) == ("pending", 0, None)


async def test_stuck_threads_leave_def_kinds_to_others_and_health_says_so(
    database: db.Database,
) -> None:
    gate = threading.Event()
    app = App()

    @app.handler("stuck", timeout_s=0.1)
    def stuck(task: Task) -> str:
        gate.wait(60)  # ignores its time limit: abandoned, its thread keeps the one slot
        return "late"

    @app.handler("quick_def")
    def quick_def(task: Task) -> str:
        return "ran"

    try:
        with captured_logs() as logs:
            await _stuck_then_freed(database, app, gate)
    finally:
        gate.set()
    # Said once when it starts and once when it ends, not at every claim.
    said = [e["event"] for e in logs if e["event"].startswith("claim.threads_")]
    assert said == ["claim.threads_full", "claim.threads_free"]


async def _stuck_then_freed(database: db.Database, app: App, gate: threading.Event) -> None:
    """One slot, held by `stuck`; then freed by ``gate``."""
    async with (
        running_web(database, app=app, worker_count=1) as web,
        httpx.AsyncClient(base_url=web.url, timeout=10) as http,
    ):
        threads = web.service.runner.threads
        await insert(database, "stuck")
        await eventually(lambda: _true(threads.statistics().abandoned == 1))
        waiting = await insert(database, "quick_def")
        other = await insert(database, "noop")
        await wait_ended(database, other)  # async kinds still run
        # The def task is not claimed (it could not start): no attempt spent, no
        # "timed out" without running.
        row = await task_row(database, waiting)
        assert (row["status"], row["attempts"]) == ("pending", 0)
        health = (await http.get("/health")).json()
        assert health["status"] == "degraded"
        assert health["checks"]["threads"] == {
            "ok": False,
            "detail": "1 of 1 thread slots held by handlers that ignored their time "
            "limit; def kinds are left to other processes until one returns",
        }
        gate.set()  # the stuck thread returns: its slot is free again
        [row] = await wait_ended(database, waiting)
        assert (row["status"], row["result"], row["attempts"]) == ("done", "ran", 1)
        assert (await http.get("/health")).json()["status"] == "ok"
