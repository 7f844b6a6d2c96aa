"""The loop watchdog names who blocked the loop; a result over MAX_RESULT_BYTES is refused."""

from __future__ import annotations

import time
from typing import Any

import pytest

from notifyq import db
from notifyq.app import App, Task
from notifyq.engine import runner, verdict
from tests.helpers import captured_logs, eventually, insert, running_service, wait_ended


async def test_a_blocking_asyncio_handler_is_named(database: db.Database) -> None:
    app = App()

    @app.handler("aio_blocker", runtime="asyncio")
    async def aio_blocker(task: Task) -> str:
        time.sleep(1.2)  # noqa: ASYNC251  (the mistake under test)
        return "done"

    with captured_logs() as logs:
        async with running_service(database, app, lease_s=3) as service:
            task_id = await insert(database, "aio_blocker")
            await wait_ended(database, task_id)
            await eventually(lambda: _true(service.watch.blocked))
    [blocked] = [e for e in logs if e["event"] == "loop.blocked"]
    assert (blocked["task_id"], blocked["kind"]) == (task_id, "aio_blocker")
    assert "aio_blocker" in blocked["where"]
    assert "def handler" in blocked["why"]


async def test_notifyq_blocking_the_loop_blames_no_handler(
    database: db.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As the runner encoding a huge result did: the engine's own work, after the handler.
    judge = verdict.judge

    def slow_judge(*args: Any, **kwargs: Any) -> Any:
        time.sleep(1.2)
        return judge(*args, **kwargs)

    monkeypatch.setattr(runner, "judge", slow_judge)
    with captured_logs() as logs:
        async with running_service(database, lease_s=3) as service:
            task_id = await insert(database, "noop")
            await wait_ended(database, task_id)
            await eventually(lambda: _true(service.watch.blocked))
    [blocked] = [e for e in logs if e["event"] == "loop.blocked"]
    assert "task_id" not in blocked and "kind" not in blocked
    assert blocked["by"] == "notifyq (notifyq.engine.runner)"
    assert "slow_judge" in blocked["where"]
    assert blocked["why"].startswith("notifyq's own work blocked the event loop, not a handler")


async def test_a_result_over_max_result_bytes_ends_the_task_error(
    database: db.Database,
) -> None:
    app = App()

    @app.handler("big")
    async def big(task: Task) -> Any:
        return task.payload["v"] * task.payload["n"]

    async with running_service(database, app, max_result_bytes=4096):
        ids = [
            await insert(database, "big", {"v": v, "n": n})
            for v, n in [
                ("y", 4000),  # 4,002 bytes as JSON: stored
                ("y", 5000),  # a string longer than the limit
                ("é", 3000),  # 3,000 characters, 6,002 bytes
                (["y"], 1000),  # a list, 5,000 bytes as JSON
            ]
        ]
        rows = await wait_ended(database, *ids)
    assert (rows[0]["status"], rows[0]["result"]) == ("done", "y" * 4000)
    # Not retried: the same handler would return the same result again.
    over = ("error", 1, "result is over MAX_RESULT_BYTES (4096 bytes as JSON)")
    assert [(r["status"], r["attempts"], r["error"]) for r in rows[1:]] == [over] * 3


async def _true(value: object) -> bool:
    return bool(value)
