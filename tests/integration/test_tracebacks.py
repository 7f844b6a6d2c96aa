"""A failed attempt keeps its handler's traceback in the history (migration 0019): in every
runtime, on the event of that attempt, bounded; a success writes none."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
import trio

import notifyq
from notifyq import db, store
from notifyq.app import App, Task
from notifyq.engine.verdict import MAX_TRACEBACK_BYTES
from tests.helpers import eventually, running_service, running_web, task_row

RUNTIMES = ["trio", "thread", "asyncio"]


def broken_on_first_attempt(task: Task) -> str:
    """Fails its first attempt (a frame the traceback must name), then succeeds."""
    if task.attempt == 1:
        raise ValueError(f"first attempt of {task.payload}")
    return "fine"


def app_of(runtime: str, kind: str) -> App:
    app = App()
    if runtime == "trio":

        @app.handler(kind)
        async def on_trio(task: Task) -> Any:
            await trio.lowlevel.checkpoint()
            return broken_on_first_attempt(task)

    elif runtime == "thread":

        @app.handler(kind)
        def in_thread(task: Task) -> Any:
            time.sleep(0)
            return broken_on_first_attempt(task)

    else:

        @app.handler(kind, runtime="asyncio")
        async def on_asyncio(task: Task) -> Any:
            await asyncio.sleep(0)
            return broken_on_first_attempt(task)

    return app


async def _ended(database: db.Database, task_id: int) -> bool:
    return (await task_row(database, task_id))["status"] in ("done", "error")


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_a_failed_attempt_keeps_its_traceback_on_its_event(
    runtime: str, database: db.Database
) -> None:
    task_id = await database.run(lambda conn: notifyq.enqueue(conn, "flaky", runtime))
    async with running_service(database, app_of(runtime, "flaky"), retry_base_s=0.01):
        await eventually(lambda: _ended(database, task_id))
    events = [e for e in await store.task_history(database, task_id) if e.id]
    assert [(e.event, e.attempt) for e in events] == [("retried", 1), ("done", 2)]
    retried, done = events
    assert retried.error == f"ValueError: first attempt of {runtime}"
    assert retried.traceback is not None
    assert retried.traceback.startswith("Traceback (most recent call last):\n")
    assert 'in broken_on_first_attempt\n    raise ValueError(f"first attempt' in retried.traceback
    assert retried.traceback.endswith(f"ValueError: first attempt of {runtime}\n")
    # A success writes none.
    assert done.traceback is None


async def test_a_huge_traceback_is_cut_and_successes_write_none(database: db.Database) -> None:
    app = App()

    def down(n: int) -> None:
        if n == 0:
            raise RuntimeError("at the bottom")
        over(n - 1)

    def over(n: int) -> None:  # two frames in turn: Python does not fold them
        down(n)

    @app.handler("deep")
    async def deep(task: Task) -> None:
        down(300)  # some 600 frames: about 45 KiB of traceback

    @app.handler("fine")
    async def fine(task: Task) -> str:
        return "ok"

    deep_id = await database.fetchval(
        "INSERT INTO notifyq.tasks (kind, max_attempts) VALUES ('deep', 1) RETURNING id"
    )
    await database.execute(
        "INSERT INTO notifyq.tasks (kind) SELECT 'fine' FROM generate_series(1, 20)"
    )
    async with running_service(database, app):
        await eventually(
            lambda: database.fetchval(
                "SELECT count(*) = 21 FROM notifyq.tasks WHERE status IN ('done', 'error')"
            )
        )
    [failed] = [e for e in await store.task_history(database, deep_id) if e.id]
    assert (failed.event, failed.error) == ("failed", "RuntimeError: at the bottom")
    assert failed.traceback is not None
    assert len(failed.traceback.encode()) <= MAX_TRACEBACK_BYTES
    assert failed.traceback.startswith("Traceback (most recent call last):\n")
    assert " bytes of traceback cut ...\n" in failed.traceback
    assert failed.traceback.endswith("RuntimeError: at the bottom\n")
    counts = await database.fetchrow(
        "SELECT count(*) FILTER (WHERE event = 'done') AS done,"
        " count(traceback) AS tracebacks FROM notifyq.task_events"
    )
    assert counts is not None
    assert (counts["done"], counts["tracebacks"]) == (20, 1)


async def test_the_history_endpoint_shows_the_traceback(database: db.Database) -> None:
    task_id = await database.run(lambda conn: notifyq.enqueue(conn, "flaky", "web"))
    async with (
        running_web(database, app=app_of("trio", "flaky"), retry_base_s=0.01) as web,
        httpx.AsyncClient(base_url=web.url) as client,
    ):
        await eventually(lambda: _ended(database, task_id))
        reply = await client.get(f"/tasks/{task_id}/history")
    assert reply.status_code == 200
    events = {e["event"]: e for e in reply.json()["events"]}
    assert events["retried"]["traceback"].endswith("ValueError: first attempt of web\n")
    assert events["done"]["traceback"] is None
    assert events["queued"]["traceback"] is None
