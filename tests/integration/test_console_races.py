"""Bulk actions racing with live workers and with each other.

Two services (two fleets of workers, each with its own connections) drain tasks that fail
one time in four, while four operators, each on a pool of its own (as separate processes
would be), retry the failures, cancel pending and running tasks, make scheduled tasks due
now and change priorities, all in bulk steps over the same rows. Afterwards the ledger of
outcomes (the history) must show that no task ended twice without a retry between, that no
task was retried unless it had ended (never while pending or running), that every task
ended, and that every console event names its operator.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

import pytest
import trio

from notifyq import db, filters, store
from notifyq.app import App, Task
from notifyq.vocabulary import Action
from tests.helpers import eventually, running_service, wait_ended

WORK, LATER = 160, 40
ROUNDS = 12
ENDINGS = {"done", "failed", "cancelled", "expired"}


class Flaky(Exception):
    pass


def flaky_app(runs: Counter[int]) -> App:
    app = App()

    @app.handler("work")
    async def work(task: Task) -> int:
        runs[task.id] += 1
        await trio.sleep(random.uniform(0.002, 0.02))
        if task.payload % 4 == 0:
            raise Flaky(f"task {task.id} failed")
        return int(task.payload)

    @app.handler("slow")
    async def slow(task: Task) -> None:
        runs[task.id] += 1
        await trio.sleep(30)  # until its cancel arrives

    @app.handler("later")
    async def later(task: Task) -> None:
        runs[task.id] += 1

    return app


async def bulk(
    database: db.Database, action: Action, query: dict[str, str], actor: str, **kw: int
) -> tuple[int, int]:
    """One whole bulk action, step by step, as the page and the CLI run it."""
    f = filters.parse(query)
    counted = await store.count_tasks(database, f)
    if counted.upto is None:
        return 0, 0
    changed = skipped = 0
    cursor = None
    while True:
        step = await store.act_in_bulk(
            database, action, f, upto=counted.upto, cursor=cursor, batch=7, actor=actor, **kw
        )
        changed, skipped = changed + step.changed, skipped + step.skipped
        if step.cursor is None:
            return changed, skipped
        cursor = step.cursor


async def operator(
    database: db.Database, name: str, round_fn: Callable[[db.Database, str, int], object]
) -> None:
    async with database.open_sibling(max_size=2) as own:
        for n in range(ROUNDS):
            await round_fn(own, name, n)  # type: ignore[misc]
            await trio.sleep(0.01)


async def running(database: db.Database, ids: list[int]) -> bool:
    n = await database.fetchval(
        "SELECT count(*) FROM notifyq.tasks WHERE id = ANY($1::bigint[])"
        " AND status = 'in_progress'",
        ids,
    )
    return bool(n)


async def test_bulk_actions_race_workers_and_each_other(database: db.Database) -> None:
    runs: Counter[int] = Counter()
    work = [
        r["id"]
        for r in await database.fetch(
            "INSERT INTO notifyq.tasks (kind, payload, max_attempts)"
            " SELECT 'work', to_jsonb(g), 1 FROM generate_series(1, $1::int) g RETURNING id",
            WORK,
        )
    ]
    later = [
        r["id"]
        for r in await database.fetch(
            "INSERT INTO notifyq.tasks (kind, run_at) SELECT 'later', now() + interval '1 hour'"
            " FROM generate_series(1, $1::int) RETURNING id",
            LATER,
        )
    ]
    slow = [
        r["id"]
        for r in await database.fetch(
            "INSERT INTO notifyq.tasks (kind) SELECT 'slow' FROM generate_series(1, 3) RETURNING id"
        )
    ]
    rng = random.Random(7)

    async def retries(own: db.Database, name: str, n: int) -> None:
        await bulk(own, Action.RETRY, {"status": "error", "kind": "work"}, name)

    async def cancels(own: db.Database, name: str, n: int) -> None:
        if n == 0:
            # Running tasks: asked to stop, ended cancelled by their workers (once each).
            await eventually(lambda: running(own, slow))
            await bulk(own, Action.CANCEL, {"kind": "slow"}, name)
        some = ",".join(map(str, rng.sample(work, 12)))
        # Pending ones only, then any (a running one is asked to stop).
        await bulk(own, Action.CANCEL, {"id": some, "status": "pending"}, name)
        await bulk(own, Action.CANCEL, {"id": ",".join(map(str, rng.sample(work, 4)))}, name)

    async def nudges(own: db.Database, name: str, n: int) -> None:
        half = later[: LATER // 2] if n < ROUNDS - 1 else later
        await bulk(own, Action.RUN_NOW, {"id": ",".join(map(str, half))}, name)
        await bulk(own, Action.PRIORITY, {"kind": "work", "status": "pending"}, name, priority=n)

    async with (
        running_service(database, app=flaky_app(runs), worker_count=4),
        running_service(database, app=flaky_app(runs), worker_count=4),
    ):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(operator, database, "op-retry-1", retries)
            nursery.start_soon(operator, database, "op-retry-2", retries)
            nursery.start_soon(operator, database, "op-cancel", cancels)
            nursery.start_soon(operator, database, "op-nudge", nudges)
        rows = await wait_ended(database, *work, *later, *slow, timeout=60)

    # None lost: every task is still there and ended.
    assert len(rows) == WORK + LATER + len(slow)
    events = await database.fetch(
        "SELECT task_id, event, actor FROM notifyq.task_events ORDER BY task_id, id"
    )
    by_task: dict[int, list[tuple[str, str | None]]] = {}
    for e in events:
        by_task.setdefault(e["task_id"], []).append((e["event"], e["actor"]))
    requeued = 0
    for row in rows:
        history = [event for event, _ in by_task.get(row["id"], [])]
        ended = False
        for event in history:
            if event in ENDINGS:
                assert not ended, (row["id"], history)  # ended twice without a retry
                ended = True
            elif event == "requeued":
                # Retried only after it ended: never while pending or running.
                assert ended, (row["id"], history)
                ended = False
                requeued += 1
        assert ended, (row["id"], history)
        last = [e for e in history if e in ENDINGS][-1]
        assert row["status"] == {"done": "done", "failed": "error"}.get(last, "cancelled")
        # A handler ran at least once per started attempt that ended done or failed.
        assert runs[row["id"]] >= history.count("done") + history.count("failed")
    assert requeued > 0
    # The slow tasks that ran were ended by their workers (the engine: no actor).
    ledger = Counter((e["event"], e["actor"]) for e in events)
    assert ledger[("cancelled", None)] >= 1, ledger
    actors = Counter((event, actor) for history in by_task.values() for event, actor in history)
    operators = {"op-retry-1", "op-retry-2", "op-cancel", "op-nudge"}
    for (event, actor), _ in actors.items():
        if event in ("requeued", "run_now", "priority_changed"):
            assert actor in operators, (event, actor)
        if event in ("done", "failed"):
            assert actor is None, (event, actor)  # the engine's own
    assert {a for (e, a) in actors if e == "requeued"} <= {"op-retry-1", "op-retry-2"}


@pytest.mark.parametrize(
    ("action", "status"), [(Action.CANCEL, "pending"), (Action.RETRY, "error")]
)
async def test_concurrent_bulk_actions_change_each_task_once(
    database: db.Database, action: Action, status: str
) -> None:
    n = 400
    await database.execute(
        "INSERT INTO notifyq.tasks (kind, status, finished_at)"
        " SELECT 'x', $2, CASE WHEN $2 = 'error' THEN now() END FROM generate_series(1, $1::int)",
        n,
        status,
    )
    changed: list[int] = []

    async def actor(name: str) -> None:
        async with database.open_sibling(max_size=1) as own:
            done, _ = await bulk(own, action, {"status": status}, name)
            changed.append(done)

    async with trio.open_nursery() as nursery:
        for i in range(4):
            nursery.start_soon(actor, f"op-{i}")
    assert sum(changed) == n, changed
    event = {Action.CANCEL: "cancelled", Action.RETRY: "requeued"}[action]
    per_task = await database.fetch(
        "SELECT task_id, count(*) AS n FROM notifyq.task_events WHERE event = $1"
        " GROUP BY task_id HAVING count(*) <> 1",
        event,
    )
    assert per_task == []
    assert (
        await database.fetchval("SELECT count(*) FROM notifyq.task_events WHERE event = $1", event)
        == n
    )
