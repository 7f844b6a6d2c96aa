"""Transactional handlers: the handler's own writes and the task's `done` commit together,
in all three runtimes; a failure, a cancel, a lost lease or a lost connection writes none
of them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import trio

import notifyq
from notifyq import db, sql
from notifyq.app import App, Task
from tests.helpers import eventually, insert, running_service, task_row, until_running, wait_ended

RUNTIMES = ["trio", "thread", "asyncio"]

EFFECT = "INSERT INTO effects (task_id, attempt) VALUES ($1, $2)"


async def effects(database: db.Database, task_id: int) -> list[int]:
    """The attempts whose user row for ``task_id`` was committed."""
    await _table(database)
    rows = await database.fetch(
        "SELECT attempt FROM effects WHERE task_id = $1 ORDER BY attempt", task_id
    )
    return [r["attempt"] for r in rows]


async def _table(database: db.Database) -> None:
    await database.execute("CREATE TABLE IF NOT EXISTS effects (task_id bigint, attempt int)")


def writing_app(
    runtime: str,
    kind: str,
    after: Callable[[Task], Any] = lambda task: "ok",
    *,
    wait: Any = None,
) -> App:
    """A transactional handler of ``runtime`` that inserts its user row, then waits for
    ``wait`` (a trio.Event for trio, a threading.Event otherwise), then returns
    ``after(task)`` (or raises what it raises)."""
    app = App()
    if runtime == "trio":

        @app.handler(kind, transactional=True)
        async def on_trio(task: Task) -> Any:
            await task.transaction.execute(EFFECT, task.id, task.attempt)
            if wait is not None:
                await wait.wait()
            return after(task)

    elif runtime == "thread":

        @app.handler(kind, transactional=True)
        def in_thread(task: Task) -> Any:
            task.transaction.execute(EFFECT, task.id, task.attempt)
            if wait is not None:
                wait.wait(30)
                # An abandoned thread that goes on must be refused, not reach the database.
                task.transaction.execute(EFFECT, task.id, task.attempt + 100)
            return after(task)

    else:

        @app.handler(kind, runtime="asyncio", transactional=True)
        async def on_asyncio(task: Task) -> Any:
            await task.transaction.execute(EFFECT, task.id, task.attempt)
            if wait is not None:
                while not wait.is_set():  # noqa: ASYNC110 (a threading.Event: the test sets it)
                    await asyncio.sleep(0.01)
            return after(task)

    assert app.handlers[kind].transactional
    return app


def event_for(runtime: str) -> Any:
    return trio.Event() if runtime == "trio" else threading.Event()


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_writes_commit_with_done(runtime: str, database: db.Database) -> None:
    await _table(database)
    app = writing_app(runtime, "write", lambda task: {"wrote": task.id})
    task_id = await insert(database, "write")
    async with running_service(database, app):
        [row] = await wait_ended(database, task_id)
    assert (row["status"], row["result"]) == ("done", {"wrote": task_id})
    assert await effects(database, task_id) == [1]


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_an_exception_rolls_the_writes_back(runtime: str, database: db.Database) -> None:
    await _table(database)

    def fail_first(task: Task) -> str:
        if task.attempt == 1:
            raise ValueError("first attempt fails after writing")
        return "second"

    app = writing_app(runtime, "flaky", fail_first)
    task_id = await insert(database, "flaky")
    failing = await insert(database, "flaky", max_attempts=1)
    async with running_service(database, app, retry_base_s=0.01):
        rows = await wait_ended(database, task_id, failing)
    assert [(r["status"], r["attempts"]) for r in rows] == [("done", 2), ("error", 1)]
    assert "first attempt fails" in rows[1]["error"]
    assert await effects(database, task_id) == [2]
    assert await effects(database, failing) == []


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_a_cancel_rolls_the_writes_back(runtime: str, database: db.Database) -> None:
    await _table(database)
    release = event_for(runtime)
    app = writing_app(runtime, "held", wait=release)
    task_id = await insert(database, "held")
    try:
        async with running_service(database, app) as service:
            await until_running(service, task_id)
            await eventually(lambda: _locked(database))
            await database.execute(
                "UPDATE notifyq.tasks SET cancel_requested_at = now() WHERE id = $1", task_id
            )
            await database.execute("SELECT pg_notify('notifyq_cancel', $1)", str(task_id))
            [row] = await wait_ended(database, task_id)
    finally:
        release.set()
    assert row["status"] == "cancelled"
    assert await effects(database, task_id) == []


async def _locked(database: db.Database) -> bool:
    """Some handler's transaction has written its user row (seen as a lock held)."""
    rows = await database.fetch(
        "SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
        " WHERE c.relname = 'effects' AND l.mode = 'RowExclusiveLock'"
    )
    return bool(rows)


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_a_lost_lease_rolls_the_writes_back(runtime: str, database: db.Database) -> None:
    await _table(database)
    release = event_for(runtime)
    app = writing_app(runtime, "slow", lambda task: "stale", wait=release)

    async def expire_and_steal(conn: db.Connection) -> list[db.Record]:
        await conn.execute(
            "UPDATE notifyq.tasks SET locked_until = now() - interval '1 s' WHERE id = $1", task_id
        )
        await conn.fetch(sql.queries["recover_expired"], 100)
        return list(await conn.fetch(sql.queries["claim"], ["default"], 1, "thief", 30.0, ["slow"]))

    try:
        async with running_service(database, app=app, lease_s=30) as service:
            task_id = await insert(database, "slow")
            await until_running(service, task_id)
            await eventually(lambda: _locked(database))
            [taken] = await database.run_in_transaction(expire_and_steal)
            assert (taken["id"], taken["attempts"]) == (task_id, 2)
            release.set()

            async def gone() -> bool:
                return not service.ledger.attempts

            await eventually(gone)
    finally:
        release.set()
    row = await task_row(database, task_id)
    assert (row["status"], row["locked_by"], row["result"]) == ("in_progress", "thief", None)
    assert await effects(database, task_id) == []


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_a_lost_connection_leaves_the_task_to_the_reaper(
    runtime: str, database: db.Database
) -> None:
    """The handler's connection dies before the outcome is written: nothing of the first
    attempt is committed; the lease runs out, the task runs again and commits once."""
    await _table(database)
    pids: list[int] = []
    release = event_for(runtime)

    def remember(task: Task) -> str:
        return f"attempt {task.attempt}"

    app = App()
    if runtime == "trio":

        @app.handler("fragile", transactional=True)
        async def on_trio(task: Task) -> str:
            pids.append(await task.transaction.fetchval("SELECT pg_backend_pid()"))
            await task.transaction.execute(EFFECT, task.id, task.attempt)
            if task.attempt == 1:
                await release.wait()
            return remember(task)

    elif runtime == "thread":

        @app.handler("fragile", transactional=True)
        def in_thread(task: Task) -> str:
            pids.append(task.transaction.fetchval("SELECT pg_backend_pid()"))
            task.transaction.execute(EFFECT, task.id, task.attempt)
            if task.attempt == 1:
                release.wait(30)
            return remember(task)

    else:

        @app.handler("fragile", transactional=True, runtime="asyncio")
        async def on_asyncio(task: Task) -> str:
            pids.append(await task.transaction.fetchval("SELECT pg_backend_pid()"))
            await task.transaction.execute(EFFECT, task.id, task.attempt)
            if task.attempt == 1:
                while not release.is_set():  # noqa: ASYNC110 (a threading.Event: the test sets it)
                    await asyncio.sleep(0.01)
            return remember(task)

    try:
        async with running_service(database, app=app, lease_s=1.5) as service:
            task_id = await insert(database, "fragile")
            await until_running(service, task_id)
            await eventually(lambda: _locked(database))
            await database.execute("SELECT pg_terminate_backend($1)", pids[0])
            release.set()
            [row] = await wait_ended(database, task_id, timeout=20)
    finally:
        release.set()
    assert (row["status"], row["attempts"], row["result"]) == ("done", 2, "attempt 2")
    assert await effects(database, task_id) == [2]


async def test_plain_handlers_get_no_transaction(database: db.Database) -> None:
    seen: list[Any] = []
    app = App()

    @app.handler("plain")
    async def plain(task: Task) -> None:
        seen.append(task.transaction)

    task_id = await insert(database, "plain")
    async with running_service(database, app):
        await wait_ended(database, task_id)
    assert seen == [None]


async def test_many_transactional_handlers_on_a_small_pool(database: db.Database) -> None:
    """More transactional handlers than the pool has free connections: they wait for one,
    and the engine's own statements (heartbeats, outcomes) never starve."""
    await _table(database)
    app = writing_app("trio", "write")
    ids = [await insert(database, "write") for _ in range(30)]
    async with running_service(database, app, pool_size=4, worker_count=8, lease_s=2):
        rows = await wait_ended(database, *ids, timeout=30)
    assert {r["status"] for r in rows} == {"done"}
    for task_id in ids:
        assert await effects(database, task_id) == [1]


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_a_time_limit_rolls_the_writes_back(runtime: str, database: db.Database) -> None:
    await _table(database)
    release = event_for(runtime)
    app = writing_app(runtime, "overrun", wait=release)
    app.handlers["overrun"] = replace(app.handlers["overrun"], timeout_s=0.3)
    task_id = await insert(database, "overrun", max_attempts=1)
    try:
        async with running_service(database, app):
            [row] = await wait_ended(database, task_id)
    finally:
        release.set()
    assert row["status"] == "error" and "timed out" in row["error"]
    assert await effects(database, task_id) == []


async def test_tasks_enqueued_in_the_transaction_exist_only_if_done(
    database: db.Database,
) -> None:
    """A follow-up enqueued with notifyq.enqueue on the asyncio handler's connection is
    added by the commit of `done`, and rolled back with a failed attempt: exactly one."""
    app = App()

    @app.handler("parent", transactional=True, runtime="asyncio")
    async def parent(task: Task) -> None:
        await notifyq.enqueue(task.transaction, "noop", {"from": task.id, "try": task.attempt})
        if task.attempt == 1:
            raise ValueError("the first attempt fails after enqueueing")

    task_id = await insert(database, "parent")
    async with running_service(database, app, retry_base_s=0.01):
        [row] = await wait_ended(database, task_id)
        follow_ups = await database.fetch(
            "SELECT payload FROM notifyq.tasks WHERE kind = 'noop' ORDER BY id"
        )
    assert (row["status"], row["attempts"]) == ("done", 2)
    assert [r["payload"] for r in follow_ups] == [{"from": task_id, "try": 2}]


async def test_a_handler_that_returns_despite_a_cancel_commits_its_writes_with_done(
    database: db.Database,
) -> None:
    # A handler in a shielded section cannot be cancelled; it returns. Like any handler
    # that returned, it ends done, and then its writes must be there: done and the rows
    # commit together or not at all.
    await _table(database)
    release = trio.Event()
    app = App()

    @app.handler("shielded", transactional=True)
    async def shielded(task: Task) -> str:
        await task.transaction.execute(EFFECT, task.id, task.attempt)
        with trio.CancelScope(shield=True):
            await release.wait()
        return "returned"

    task_id = await insert(database, "shielded")
    async with running_service(database, app) as service:
        await until_running(service, task_id)
        await eventually(lambda: _locked(database))
        await database.execute(
            "UPDATE notifyq.tasks SET cancel_requested_at = now() WHERE id = $1", task_id
        )
        await database.execute("SELECT pg_notify('notifyq_cancel', $1)", str(task_id))
        await eventually(lambda: _cancel_seen(service, task_id))
        release.set()
        [row] = await wait_ended(database, task_id)
    assert row["status"] == "done"
    assert await effects(database, task_id) == [1]


async def _cancel_seen(service: Any, task_id: int) -> bool:
    return any(
        a.task.id == task_id and a.stop_reason is not None for a in service.ledger.attempts.values()
    )


async def test_a_transactional_done_frees_its_limited_queues_slot_for_other_processes(
    database: db.Database,
) -> None:
    # One slot in queue "api". Process A holds it with a transactional handler; process B,
    # which runs the other kind only, waits for the slot. A's commit of done must wake B
    # (as the batched outcome write does), not leave it to its sweep a minute later.
    await _table(database)
    release = trio.Event()
    first, second = App(), App()
    first.queue("api", concurrency=1)
    second.queue("api", concurrency=1)

    @first.handler("tx", transactional=True)
    async def tx(task: Task) -> None:
        await task.transaction.execute(EFFECT, task.id, task.attempt)
        await release.wait()

    @second.handler("other")
    async def other(task: Task) -> None:
        return None

    settings: dict[str, Any] = {"queues": ["api"], "fetch_interval_s": 60}
    async with running_service(database, first, **settings) as a:
        held = await insert(database, "tx", queue="api")
        await until_running(a, held)
        async with running_service(database, second, **settings):
            waiting = await insert(database, "other", queue="api")
            await eventually(
                lambda: database.fetchval(
                    "SELECT count(*) = 2 FROM notifyq.waiters WHERE 'api' = ANY(queues)"
                )
            )
            release.set()
            with trio.fail_after(20):  # far below FETCH_INTERVAL: woken, not swept
                [row] = await wait_ended(database, waiting)
    assert row["status"] == "done"
    assert await effects(database, held) == [1]
