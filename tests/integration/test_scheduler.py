"""The scheduler stage against a real PostgreSQL: exactly one task per tick across
processes, catch-up, bad rows skipped."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import trio

from notifyq import db
from notifyq.engine.scheduler import Scheduler
from tests.helpers import eventually

KINDS = {"noop", "reverse"}


def scheduler(database: db.Database, sweep_s: float = 5) -> Scheduler:
    return Scheduler(database, queues={"default"}, kinds=KINDS, sweep_s=sweep_s)


async def ticks(database: db.Database, name: str) -> list[datetime]:
    rows = await database.fetch(
        "SELECT schedule_tick FROM notifyq.tasks WHERE schedule_name = $1 ORDER BY id", name
    )
    return [r["schedule_tick"] for r in rows]


async def test_three_schedulers_fire_each_tick_once(database: db.Database) -> None:
    await database.execute(
        "INSERT INTO notifyq.schedules (name, every, kind) VALUES ('s', interval '1 s', 'noop')"
    )
    async with trio.open_nursery() as nursery:
        for _ in range(3):
            await nursery.start(scheduler(database).serve)
        await trio.sleep(3.5)
        nursery.cancel_scope.cancel()
    fired = await ticks(database, "s")
    assert len(fired) >= 3
    assert fired == sorted(set(fired)), "a tick was enqueued twice"
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(fired))
    # None fired before its tick (the database's clock); how late is printed, not asserted.
    lags = await database.fetch(
        "SELECT extract(epoch FROM created_at - schedule_tick)::float8 AS lag FROM notifyq.tasks"
    )
    assert all(r["lag"] >= 0 for r in lags), [r["lag"] for r in lags]
    print(
        f"fired {len(fired)} ticks, lag after the tick: max "
        f"{max(r['lag'] for r in lags) * 1000:.0f} ms"
    )


async def test_catch_up_coalesces_missed_ticks_into_one_run(database: db.Database) -> None:
    await database.execute(
        "INSERT INTO notifyq.schedules (name, every, kind, next_run_at)"
        " VALUES ('c', interval '1 s', 'noop', date_trunc('second', now()) - interval '10 s')"
    )
    s = scheduler(database)
    await s.fire_due()
    assert len(await ticks(database, "c")) == 1
    assert s.statistics().ticks_fired == 1
    assert s.statistics().ticks_missed >= 10


async def test_catch_up_all_fires_each_missed_tick_up_to_the_limit(database: db.Database) -> None:
    await database.execute(
        "INSERT INTO notifyq.schedules (name, every, kind, catch_up, catch_up_limit, next_run_at)"
        " VALUES ('a', interval '1 s', 'noop', 'all', 4,"
        "         date_trunc('second', now()) - interval '10 s')"
    )
    s = scheduler(database)
    await s.fire_due()
    fired = await ticks(database, "a")
    assert len(fired) == 4
    assert s.statistics().ticks_missed >= 7
    assert fired[-1] > datetime.now(UTC) - timedelta(seconds=2)


async def test_bad_rows_are_skipped_and_reported_once(database: db.Database) -> None:
    await database.execute("""
        INSERT INTO notifyq.schedules (name, cron, every, kind, tz, next_run_at) VALUES
          ('bad_cron', '61 * * * *', NULL, 'noop', 'UTC', NULL),
          ('bad_zone', '* * * * *', NULL, 'noop', 'Mars/Olympus', NULL),
          ('unknown_kind', NULL, interval '1 s', 'no_such_kind', 'UTC', now() - interval '1 s'),
          ('other_queue', NULL, interval '1 s', 'noop', 'UTC', now() - interval '1 s'),
          ('good', NULL, interval '1 s', 'noop', 'UTC', now() - interval '1 s')""")
    await database.execute(
        "UPDATE notifyq.schedules SET queue = 'elsewhere' WHERE name = 'other_queue'"
    )
    s = scheduler(database)
    await s.fire_due()
    await s.fire_due()
    assert s.statistics().bad_schedules == 3
    names = await database.fetch("SELECT DISTINCT schedule_name FROM notifyq.tasks")
    assert [r["schedule_name"] for r in names] == ["good"]


async def test_a_new_schedule_wakes_a_sleeping_scheduler(database: db.Database) -> None:
    s = scheduler(database, sweep_s=60)
    async with trio.open_nursery() as nursery:
        await nursery.start(s.serve)
        await trio.sleep(0.2)
        await database.execute(
            "INSERT INTO notifyq.schedules (name, every, kind) VALUES ('n', interval '1 s', 'noop')"
        )
        s.on_schedules_changed()  # what the listener does on notifyq_schedules
        await eventually(lambda: ticks(database, "n"), timeout=5)
        nursery.cancel_scope.cancel()
