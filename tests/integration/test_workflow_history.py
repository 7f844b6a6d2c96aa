"""A task's history says what released or cancelled it: the parent, the batch, or its own
worker giving the attempt back; in the store's rows, the HTTP shape and `notifyq history`."""

from __future__ import annotations

import trio
from click.testing import CliRunner

from notifyq import db, store
from notifyq.cli import main
from notifyq.web import models
from tests import flows


async def _workflow(database: db.Database) -> tuple[int, int, int, int]:
    """A parent that ends done (releasing its child), the child's attempt given back by its
    worker, and a batch whose cancelled member cancels the callback: (parent, child, batch,
    callback)."""
    parent = await flows.add(database)
    child = await flows.add(database, depends_on=[parent])
    [claimed] = await flows.claim(database)
    await flows.finish(database, [claimed])  # the parent: done, the child released
    [again] = await flows.claim(database, worker="w2")
    await flows.finish(database, [again], "released", worker="w2")  # given back (shutdown)
    batch = await flows.new_batch(database)
    member = await flows.add(database, batch_id=batch)
    callback = await flows.add(database, after_batch=batch)
    assert await store.cancel(database, member) == "cancelled"
    return parent, child, batch, callback


async def test_history_names_the_parent_the_batch_and_a_give_back(database: db.Database) -> None:
    parent, child, batch, callback = await _workflow(database)
    events = [
        (e.event, e.worker, e.parent_id, e.batch_id, e.detail)
        for e in await store.task_history(database, child)
    ]
    assert events == [
        ("queued", None, None, None, None),
        ("waiting", None, None, None, None),
        ("released", None, parent, None, f"parent task {parent}"),
        ("started", "w2", None, None, None),
        ("released", "w2", None, None, "given back by its worker; the attempt is not counted"),
    ]
    last = (await store.task_history(database, callback))[-1]
    assert (last.event, last.parent_id, last.batch_id, last.detail) == (
        "cancelled",
        None,
        batch,
        f"batch {batch}",
    )
    shown = models.EventOut.from_row(last).model_dump()
    assert (shown["parent_id"], shown["batch_id"]) == (None, batch)


async def test_notifyq_history_prints_them(database: db.Database) -> None:
    parent, child, batch, callback = await _workflow(database)

    def history(task_id: int) -> list[str]:
        result = CliRunner(env={"DATABASE_URL": database.dsn, "LOG_LEVEL": "warning"}).invoke(
            main, ["history", str(task_id)]
        )
        assert result.exit_code == 0, result.output
        # Past the timestamp: event, attempt, worker, what caused it.
        return [" ".join(line.split()[2:]) for line in result.output.splitlines()]

    assert await trio.to_thread.run_sync(history, child) == [
        "queued attempt=0 -",
        "waiting attempt=0 -",
        f"released attempt=0 - (parent task {parent})",
        "started attempt=1 w2",
        "released attempt=1 w2 released by test (given back by its worker; the attempt is not counted)",
    ]
    lines = await trio.to_thread.run_sync(history, callback)
    assert lines[-1].startswith("cancelled attempt=0 - ") and lines[-1].endswith(
        f"(batch {batch})"
    ), lines
