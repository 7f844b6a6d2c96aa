"""Results flow through a workflow built in Python: each step of a chain reads the previous
step's result, and a chord's callback reads its group's results in the group's order, on a
real service, with trio, asyncio and def handlers alike."""

from __future__ import annotations

from typing import Any

import pytest

import notifyq
from notifyq import db
from notifyq.client import Client
from tests.helpers import running_service


def result_app() -> notifyq.App:
    app = notifyq.App()

    @app.handler("start")
    async def start(task: notifyq.Task) -> int:
        return int(task.payload)

    @app.handler("double")  # trio
    async def double(task: notifyq.Task) -> int:
        return 2 * int(await task.parent_result())

    @app.handler("inc", runtime="asyncio")
    async def inc(task: notifyq.Task) -> int:
        return int(await task.parent_result()) + 1

    @app.handler("square")  # def, in a worker thread
    def square(task: notifyq.Task) -> int:
        previous = int(task.sync.parent_result())
        return previous * previous

    @app.handler("collect")
    async def collect(task: notifyq.Task) -> list[Any]:
        return [member.result async for member in task.batch_results(page_size=7)]

    @app.handler("count")
    def count(task: notifyq.Task) -> dict[str, int]:
        progress = task.sync.batch()
        return {"total": progress.total, "done": progress.done}

    return app


async def test_a_chain_passes_each_result_to_the_next_step(database: db.Database) -> None:
    client = Client(database)
    added = await client.enqueue_workflow(
        notifyq.chain(
            notifyq.task("start", 3),
            notifyq.task("double"),
            notifyq.task("inc"),
            notifyq.task("square"),
        )
    )
    async with running_service(database, result_app()):
        outcome = await client.wait_workflow(added, timeout_s=30)
    assert outcome.ok
    assert [t.result for t in outcome.tasks] == [3, 6, 7, 49]


@pytest.mark.parametrize("callback", ["collect", "count"])
async def test_a_chords_callback_reads_the_group_results_in_order(
    database: db.Database, callback: str
) -> None:
    client = Client(database)
    members = [notifyq.task("start", n) for n in range(40, 0, -1)]  # not in id order by value
    added = await client.enqueue_workflow(notifyq.chord(members, notifyq.task(callback)))
    async with running_service(database, result_app()):
        outcome = await client.wait_workflow(added, timeout_s=30)
    assert outcome.ok
    expected: Any = list(range(40, 0, -1)) if callback == "collect" else {"total": 40, "done": 40}
    assert [t.result for t in outcome.tasks] == [expected]
