"""notifyq.schedules, notifyq.fire_schedule (migration 0005, redefined by 0012) and
notifyq.fire_schedules (0012) against a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import trio
import trio.testing

from notifyq import db, errors, listen

T0 = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 30, 12, 0, 1, tzinfo=UTC)
T2 = datetime(2026, 11, 30, 12, 0, 2, tzinfo=UTC)
FIRE = "SELECT * FROM notifyq.fire_schedule($1, $2, $3, $4)"


async def add_schedule(
    database: db.Database, name: str = "tick", next_run_at: datetime = T0
) -> None:
    await database.execute(
        "INSERT INTO notifyq.schedules (name, every, kind, payload, priority, next_run_at)"
        " VALUES ($1, interval '1 second', 'noop', '{\"x\": 1}', 7, $2)",
        name,
        next_run_at,
    )


async def test_racing_processes_fire_a_tick_once(database: db.Database) -> None:
    await add_schedule(database)
    results: list[tuple[bool, int | None]] = []
    go = trio.Event()
    async with db.open_database(database.dsn, min_size=16, max_size=16) as many:

        async def process() -> None:
            await go.wait()
            row = await many.fetchrow(FIRE, "tick", T0, T0, T1)
            assert row is not None
            results.append((row["fired"], row["task_id"]))

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for _ in range(16):
                    nursery.start_soon(process)
                await trio.testing.wait_all_tasks_blocked()
                go.set()
    winners = [r for r in results if r[0]]
    assert len(results) == 16 and len(winners) == 1
    task = await database.fetchrow("SELECT * FROM notifyq.tasks")
    assert task is not None and task["id"] == winners[0][1]
    assert (task["kind"], task["priority"], task["schedule_name"], task["schedule_tick"]) == (
        "noop",
        7,
        "tick",
        T0,
    )
    # No unique key: a tick is fired once because the schedules row says so.
    assert task["unique_key"] is None
    schedule = await database.fetchrow("SELECT * FROM notifyq.schedules")
    assert schedule is not None
    assert (schedule["next_run_at"], schedule["last_run_at"]) == (T1, T0)


async def test_a_tick_fired_from_a_stale_read_changes_nothing(database: db.Database) -> None:
    await add_schedule(database)
    assert tuple(await database.fetchrow(FIRE, "tick", T0, T0, T1)) == (True, 1)  # type: ignore[arg-type]
    # Another process still believes T0 is due: it fires nothing, even after the task ended.
    await database.execute("UPDATE notifyq.tasks SET status = 'done'")
    assert tuple(await database.fetchrow(FIRE, "tick", T0, T0, T1)) == (False, None)  # type: ignore[arg-type]
    assert tuple(await database.fetchrow(FIRE, "tick", T1, T1, T2)) == (True, 2)  # type: ignore[arg-type]


async def test_a_paused_schedule_fires_nothing(database: db.Database) -> None:
    await add_schedule(database)
    await database.execute("UPDATE notifyq.schedules SET paused = true")
    assert tuple(await database.fetchrow(FIRE, "tick", T0, T0, T1)) == (False, None)  # type: ignore[arg-type]
    assert await database.fetchval("SELECT count(*) FROM notifyq.tasks") == 0


async def test_a_producers_task_with_the_ticks_old_key_does_not_suppress_the_tick(
    database: db.Database,
) -> None:
    await add_schedule(database)
    await database.execute(
        "INSERT INTO notifyq.tasks (kind, unique_key)"
        " VALUES ('noop', 'schedule:tick:2026-11-30T12:00:00Z')"
    )
    assert tuple(await database.fetchrow(FIRE, "tick", T0, T0, T1)) == (True, 2)  # type: ignore[arg-type]
    assert await database.fetchval("SELECT count(*) FROM notifyq.tasks") == 2


FIRE_MANY = "SELECT * FROM notifyq.fire_schedules($1, $2, $3, $4, $5, $6)"


async def test_fire_schedules_fires_each_schedules_ticks_and_skips_a_held_row(
    database: db.Database,
) -> None:
    await add_schedule(database, "a")
    await add_schedule(database, "held")
    async with database.transaction() as other:
        await other.execute("SELECT 1 FROM notifyq.schedules WHERE name = 'held' FOR UPDATE")
        with trio.fail_after(10):  # SKIP LOCKED: never a wait on the held row
            rows = await database.fetch(
                FIRE_MANY,
                ["a", "held"],
                [T0, T0],
                [T1, T0],
                [T2, T1],
                ["a", "a", "held"],
                [T0, T1, T0],
            )
    assert [(r["name"], r["tasks"]) for r in rows] == [("a", 2)]
    ticks = await database.fetch(
        "SELECT schedule_name, schedule_tick FROM notifyq.tasks ORDER BY id"
    )
    assert [tuple(r) for r in ticks] == [("a", T0), ("a", T1)]
    # A tick at or before the row's last run is never enqueued again.
    await database.execute("UPDATE notifyq.schedules SET next_run_at = $1 WHERE name = 'a'", T1)
    rows = await database.fetch(FIRE_MANY, ["a"], [T1], [T1], [T2], ["a"], [T1])
    assert [(r["name"], r["tasks"], r["last_task_id"]) for r in rows] == [("a", 0, None)]
    assert await database.fetchval("SELECT count(*) FROM notifyq.tasks") == 2


async def test_definition_changes_notify_and_firings_do_not(database: db.Database) -> None:
    async with listen.open_listener(database.loop, database.dsn, ["notifyq_schedules"]) as listener:
        await add_schedule(database)
        with trio.fail_after(5):
            assert (await listener.__anext__()).payload == ""
        await database.fetchrow(FIRE, "tick", T0, T0, T1)  # a firing: no notification
        await database.execute("UPDATE notifyq.schedules SET paused = true")
        with trio.fail_after(5):
            assert (await listener.__anext__()).payload == "tick"
        await database.execute("DELETE FROM notifyq.schedules")
        with trio.fail_after(5):
            assert (await listener.__anext__()).payload == ""


@pytest.mark.parametrize(
    ("columns", "values", "constraint"),
    [
        ("every, cron", "interval '1 s', '* * * * *'", "schedules_timing_valid"),
        ("every", "interval '0.5 s'", "schedules_every_valid"),
        ("every", "interval '1.5 s'", "schedules_every_valid"),
        ("every, catch_up", "interval '1 s', 'some'", "schedules_catch_up_valid"),
        ("every, tz", "interval '1 s', repeat('x', 129)", "schedules_tz_valid"),
        ("cron", "repeat('1', 300) || ' * * * *'", "schedules_cron_length_valid"),
        ("every", "interval '36501 days'", "schedules_every_max_valid"),
        ("every, next_run_at", "interval '1 s', '-infinity'", "schedules_next_run_at_valid"),
        ("every, last_run_at", "interval '1 s', '0044-03-15 BC'", "schedules_last_run_at_valid"),
    ],
)
async def test_bad_schedule_rows_are_refused(
    database: db.Database, columns: str, values: str, constraint: str
) -> None:
    with pytest.raises(errors.QueryError, match=constraint):
        await database.execute(
            f"INSERT INTO notifyq.schedules (name, kind, {columns}) VALUES ('s', 'noop', {values})"
        )
