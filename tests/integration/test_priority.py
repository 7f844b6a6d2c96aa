"""`in_progress` means a handler runs the task, and priority decides when a worker frees.

The defect this pins: with WORKER_COUNT=5 and FETCH_LIMIT=10 a process claimed ten tasks ahead
of its five workers, so tasks sat `in_progress` with `started_at` set while nothing ran them,
and low-priority tasks claimed early ran before high-priority ones inserted later.
"""

from __future__ import annotations

import trio

from notifyq import db
from tests.helpers import running_service, wait_ended


async def count_in_progress(database: db.Database) -> int:
    return int(
        await database.fetchval("SELECT count(*) FROM notifyq.tasks WHERE status = 'in_progress'")
    )


async def test_no_more_tasks_in_progress_than_workers(database: db.Database) -> None:
    ids = [
        await database.fetchval(
            "INSERT INTO notifyq.tasks (kind, payload) VALUES ('sleep', '0.3') RETURNING id"
        )
        for _ in range(20)
    ]
    seen = 0
    async with running_service(database, worker_count=5, fetch_limit=10) as service:
        with trio.fail_after(30):
            while service.statistics().workers.done < len(ids):
                seen = max(seen, await count_in_progress(database))
                await trio.sleep(0.02)
        await wait_ended(database, *ids)
    assert seen == 5


async def test_a_freed_worker_takes_the_highest_priority_task(database: db.Database) -> None:
    async with running_service(database, worker_count=5, fetch_limit=10):
        busy = [
            await database.fetchval(
                "INSERT INTO notifyq.tasks (kind, payload) VALUES ('sleep', '0.5') RETURNING id"
            )
            for _ in range(5)
        ]
        with trio.fail_after(10):
            while await count_in_progress(database) < 5:  # noqa: ASYNC110  (another process's state)
                await trio.sleep(0.01)
        low = await database.fetch(
            "INSERT INTO notifyq.tasks (kind, payload, priority)"
            " SELECT 'sleep', '0.3', -10 FROM generate_series(1, 10) RETURNING id"
        )
        await trio.sleep(0.1)
        high = await database.fetch(
            "INSERT INTO notifyq.tasks (kind, payload, priority)"
            " SELECT 'sleep', '0.3', 10 FROM generate_series(1, 5) RETURNING id"
        )
        ids = busy + [r["id"] for r in low] + [r["id"] for r in high]
        rows = await wait_ended(database, *ids, timeout=30)
    started = sorted((r["started_at"], r["priority"]) for r in rows if r["id"] not in busy)
    assert [priority for _, priority in started[:5]] == [10] * 5


async def _drain_noops(database: db.Database, tasks: int, prefetch: int | None = None) -> int:
    """Claim statements a service with 2 workers needed to run ``tasks`` no-op tasks."""
    await database.execute(
        "INSERT INTO notifyq.tasks (kind) SELECT 'noop' FROM generate_series(1, $1::int)", tasks
    )
    async with running_service(database, worker_count=2, prefetch=prefetch) as service:
        with trio.fail_after(30):
            while service.statistics().workers.done < tasks:  # noqa: ASYNC110  (a count)
                await trio.sleep(0.01)
        return service.claimer.claims


async def test_short_tasks_are_claimed_ahead_of_the_workers_by_default(
    database: db.Database,
) -> None:
    # PREFETCH=auto: tasks far shorter than a claim round trip get a buffer (here up to 500
    # rows per claim for 2 workers), so the claims are far fewer than tasks / workers.
    assert await _drain_noops(database, 2000) < 2000 / 2 / 5


async def test_with_prefetch_0_a_claim_never_takes_more_than_the_free_workers(
    database: db.Database,
) -> None:
    assert await _drain_noops(database, 400, prefetch=0) >= 400 / 2
