"""Snooze: a handler puts its task back to pending for a while without spending an attempt."""

from __future__ import annotations

from datetime import timedelta

import notifyq
from notifyq import db, store
from notifyq.app import App, Task
from tests.helpers import insert, running_service, wait_ended


async def _events(database: db.Database, task_id: int) -> list[str]:
    return [r.as_dict()["event"] for r in await store.task_history(database, task_id)]


async def test_a_raised_or_returned_snooze_comes_back_later_without_spending_an_attempt(
    database: db.Database,
) -> None:
    app = App()

    @app.handler("poll")
    async def poll(task: Task) -> object:
        row = await database.fetchval("SELECT snoozes FROM notifyq.tasks WHERE id = $1", task.id)
        if row == 0:
            raise notifyq.Snooze(0.2)
        if row == 1:
            return notifyq.Snooze(timedelta(seconds=0.1))
        return "ready"

    async with running_service(database, app=app):
        task_id = await insert(database, "poll", max_attempts=1)
        (row,) = await wait_ended(database, task_id)
    # One attempt allowed, three runs: a snooze spends none.
    assert (row["status"], row["result"], row["attempts"], row["snoozes"]) == (
        "done",
        "ready",
        1,
        2,
    )
    assert await _events(database, task_id) == [
        "queued",
        "started",
        "snoozed",
        "started",
        "snoozed",
        "started",
        "done",
    ]


async def test_a_task_over_its_snooze_limit_ends_error_with_the_reason(
    database: db.Database,
) -> None:
    app = App()

    @app.handler("forever")
    async def forever(task: Task) -> object:
        return notifyq.Snooze(0)

    async with running_service(database, app=app):
        task_id = await insert(database, "forever", max_snoozes=2)
        (row,) = await wait_ended(database, task_id)
    assert (row["status"], row["snoozes"]) == ("error", 2)
    assert row["error"] == "snoozed 2 times, the task's limit (max_snoozes)"
    assert await _events(database, task_id) == [
        "queued",
        "started",
        "snoozed",
        "started",
        "snoozed",
        "started",
        "failed",
    ]
