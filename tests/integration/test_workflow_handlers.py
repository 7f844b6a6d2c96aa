"""What a handler sees of its workflow: task.parents(), task.parent_result(), task.batch()
and task.batch_results(), in the three runtimes (trio, def in a thread, asyncio)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from notifyq import db, errors
from notifyq.app import App, Task
from tests import flows
from tests.helpers import running_service, task_row, wait_ended

RUNTIMES = ["trio", "thread", "asyncio"]


def _plain(parents: Any) -> list[list[Any]]:
    return [[i, p.id, p.status, p.result, p.error] for i, p in parents.items()]


def reading_app(runtime: str) -> App:
    """Kind 'look': returns its parents as a list, and its single parent's result (or the
    error that says why there is none); kind 'collect': a batch callback that returns its
    batch's progress and every member's result, in member order."""
    app = App()
    if runtime == "trio":

        @app.handler("look")
        async def look(task: Task) -> Any:
            return await _look_async(task)

        @app.handler("collect")
        async def collect(task: Task) -> Any:
            return await _collect_async(task)

    elif runtime == "asyncio":

        @app.handler("look", runtime="asyncio")
        async def look_aio(task: Task) -> Any:
            await asyncio.sleep(0)  # really on asyncio
            return await _look_async(task)

        @app.handler("collect", runtime="asyncio")
        async def collect_aio(task: Task) -> Any:
            await asyncio.sleep(0)
            return await _collect_async(task)

    else:

        @app.handler("look")
        def look_sync(task: Task) -> Any:
            parents = task.sync.parents()
            assert task.sync.parents() is parents  # read once, then cached
            try:
                single: Any = task.sync.parent_result()
            except errors.WorkflowError as exc:
                single = f"error: {exc}"
            return {"parents": _plain(parents), "single": single}

        @app.handler("collect")
        def collect_sync(task: Task) -> Any:
            batch = task.sync.batch()
            results = [[m.id, m.status, m.result] for m in task.sync.batch_results(page_size=2)]
            return {"batch": [batch.id, batch.total, batch.done, batch.failed], "results": results}

    return app


async def _look_async(task: Task) -> Any:
    parents = await task.parents()
    assert await task.parents() is parents  # read once, then cached
    try:
        single: Any = await task.parent_result()
    except errors.WorkflowError as exc:
        single = f"error: {exc}"
    return {"parents": _plain(parents), "single": single}


async def _collect_async(task: Task) -> Any:
    batch = await task.batch()
    results = [[m.id, m.status, m.result] async for m in task.batch_results(page_size=2)]
    return {"batch": [batch.id, batch.total, batch.done, batch.failed], "results": results}


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_a_handler_reads_its_parents_in_depends_on_order(
    runtime: str, database: db.Database
) -> None:
    first = await flows.add(database, "reverse")
    second = await flows.add(database, "reverse")
    await database.execute(
        "UPDATE notifyq.tasks SET payload = to_jsonb(format('p%s', id)) WHERE id IN ($1, $2)",
        first,
        second,
    )
    # The order of depends_on, not of ids; a chain step of one parent.
    both = await flows.add(database, "look", depends_on=[second, first], policy="run")
    one = await flows.add(database, "look", depends_on=[second])
    async with running_service(database, reading_app(runtime)):
        await wait_ended(database, both, one)
    got = await task_row(database, both)
    assert got["status"] == "done", got["error"]
    assert got["result"] == {
        "parents": [
            [second, second, "done", f"{second}p", None],
            [first, first, "done", f"{first}p", None],
        ],
        "single": f"error: task {both} has 2 parents; parent_result() needs exactly one",
    }
    assert (await task_row(database, one))["result"] == {
        "parents": [[second, second, "done", f"{second}p", None]],
        "single": f"{second}p",
    }


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_a_failed_parent_is_seen_and_parent_result_says_so(
    runtime: str, database: db.Database
) -> None:
    parent = await flows.add(database, "reverse")  # payload {}: fails, no retry
    child = await flows.add(database, "look", depends_on=[parent], policy="run")
    async with running_service(database, reading_app(runtime)):
        await wait_ended(database, child)
    result = (await task_row(database, child))["result"]
    [[pid, _, status, value, error]] = result["parents"]
    assert (pid, status, value) == (parent, "error", None)
    assert error.startswith("PayloadError: expected a JSON string")
    assert result["single"] == f"error: parent task {parent} ended error: {error}"


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_a_task_without_parents_reads_none(runtime: str, database: db.Database) -> None:
    lone = await flows.add(database, "look")
    async with running_service(database, reading_app(runtime)):
        await wait_ended(database, lone)
    assert (await task_row(database, lone))["result"] == {
        "parents": [],
        "single": f"error: task {lone} has 0 parents; parent_result() needs exactly one",
    }


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_a_callback_reads_its_batch_in_member_order(
    runtime: str, database: db.Database
) -> None:
    batch = await flows.new_batch(database)
    members = [await flows.add(database, "noop", batch_id=batch) for _ in range(5)]
    callback = await flows.add(database, "collect", after_batch=batch)
    async with running_service(database, reading_app(runtime)):
        await wait_ended(database, callback)
    got = await task_row(database, callback)
    assert got["status"] == "done", got["error"]
    assert got["result"] == {
        "batch": [batch, 5, 5, 0],
        "results": [[m, "done", None] for m in members],
    }


async def test_batch_of_a_task_that_is_no_callback_is_an_error(database: db.Database) -> None:
    app = App()

    @app.handler("ask")
    async def ask(task: Task) -> Any:
        with pytest.raises(errors.WorkflowError, match=f"task {task.id} is no batch's callback"):
            await task.batch()
        with pytest.raises(errors.WorkflowError, match="no batch's callback"):
            async for _ in task.batch_results():
                pass
        return "checked"

    lone = await flows.add(database, "ask")
    async with running_service(database, app):
        await wait_ended(database, lone)
    assert (await task_row(database, lone))["result"] == "checked"
