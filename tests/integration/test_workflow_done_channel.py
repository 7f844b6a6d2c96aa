"""`LISTEN notifyq_done` hears every task that ends, dependents cancelled by a parent's
failure included, down the chain; the Python client's wait() returns on it."""

from __future__ import annotations

import json

import trio

from notifyq import db, listen
from notifyq.client import Client
from notifyq.vocabulary import DONE_CHANNEL
from tests import flows


async def test_a_cancelled_dependent_is_announced_and_waited_for(database: db.Database) -> None:
    parent = await flows.add(database, "k")
    child = await flows.add(database, "k", depends_on=[parent])
    grandchild = await flows.add(database, "k", depends_on=[child])
    client = Client(database)
    heard: dict[int, str] = {}
    waited: dict[str, object] = {}
    async with (
        listen.open_listener(database.loop, database.dsn, [DONE_CHANNEL]) as listener,
        trio.open_nursery() as nursery,
    ):

        async def wait_for_grandchild(task_status: trio.TaskStatus[None]) -> None:
            task_status.started()
            waited.update(await client.wait(grandchild, timeout_s=10))

        await nursery.start(wait_for_grandchild)
        [claimed] = await flows.claim(database, kinds=["k"])
        assert claimed["id"] == parent
        await flows.finish(database, [claimed], "failed")  # max_attempts 1: error
        with trio.fail_after(10):
            async for note in listener:
                body = json.loads(note.payload)
                heard[body["id"]] = body["status"]
                if grandchild in heard:
                    break
    assert heard == {parent: "error", child: "cancelled", grandchild: "cancelled"}
    assert waited["status"] == "cancelled"
    assert waited["error"] == f"parent task {child} ended cancelled"
