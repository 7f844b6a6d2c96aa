"""Schedules against what a producer, a bad row, a wrong host clock or a long outage can do:
no producer transaction holds the schedules up or suppresses a tick, bad rows are refused
(migration 0012) or skipped, first ticks come from the database's clock, catch-up is one
batch."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import trio

from notifyq import db, errors, migrations, schedules, store
from notifyq.engine.scheduler import Scheduler
from tests.helpers import captured_logs, eventually, running_service, running_web
from tests.integration.test_web_api import post

KINDS = {"noop", "reverse"}


def scheduler(database: db.Database, **kwargs: Any) -> Scheduler:
    return Scheduler(database, queues={"default"}, kinds=KINDS, sweep_s=5, **kwargs)


async def tick_count(database: db.Database, name: str) -> int:
    n: int = await database.fetchval(
        "SELECT count(*) FROM notifyq.tasks WHERE schedule_name = $1", name
    )
    return n


async def test_a_producer_holding_a_ticks_key_neither_stalls_nor_suppresses_it(
    database: db.Database,
) -> None:
    # 'held' sorts before 'other': a scheduler that waits on held's tick never reaches other.
    await database.execute(
        "INSERT INTO notifyq.schedules (name, every, kind, next_run_at) VALUES"
        " ('held', interval '1 s', 'noop', date_trunc('second', now()) + interval '1 s'),"
        " ('other', interval '1 s', 'noop', date_trunc('second', now()) + interval '1 s')"
    )
    first: datetime = await database.fetchval(
        "SELECT next_run_at FROM notifyq.schedules WHERE name = 'held'"
    )
    held = [first + timedelta(seconds=i) for i in range(30)]
    async with database.transaction() as producer:
        # The keys the ticks' tasks had: predictable, and any producer may insert them.
        await producer.execute(
            "INSERT INTO notifyq.tasks (kind, unique_key)"
            " SELECT 'noop', 'schedule:held:' || to_char(t AT TIME ZONE 'UTC',"
            '                 \'YYYY-MM-DD"T"HH24:MI:SS"Z"\')'
            "   FROM unnest($1::timestamptz[]) AS t",
            held,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(scheduler(database).serve)
            await eventually(lambda: tick_count(database, "other"), timeout=10)
            await eventually(lambda: tick_count(database, "held"), timeout=10)
            nursery.cancel_scope.cancel()
    fired = await database.fetchval(
        "SELECT min(schedule_tick) FROM notifyq.tasks WHERE schedule_name = 'held'"
    )
    assert fired == first


class HostClockAhead(datetime):
    """``datetime`` on a host whose clock is an hour ahead of the database's."""

    @classmethod
    def now(cls, tz: Any = None) -> Any:
        return datetime.now(tz) + timedelta(hours=1)


@pytest.fixture
def host_clock_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("notifyq.engine.scheduler", "notifyq.web.fleet_api", "notifyq.cli.schedules"):
        monkeypatch.setattr(f"{module}.datetime", HostClockAhead, raising=False)


async def first_tick(database: db.Database, name: str) -> timedelta:
    """How far after the database's clock schedule ``name``'s next run lies."""
    ahead: timedelta = await database.fetchval(
        "SELECT next_run_at - now() FROM notifyq.schedules WHERE name = $1", name
    )
    return ahead


@pytest.mark.usefixtures("host_clock_ahead")
async def test_a_new_schedules_first_tick_comes_from_the_database_clock(
    database: db.Database,
) -> None:
    declared = schedules.define("declared", every="10s", kind="noop")
    await scheduler(database, declared=[declared]).declare()
    assert timedelta(0) < await first_tick(database, "declared") <= timedelta(seconds=10)
    async with running_web(database, workers=False) as web:
        reply = await post(
            web.test_client(), "/schedules", {"name": "posted", "every": "10s", "kind": "noop"}
        )
        assert reply.status_code == 200, await reply.get_data(as_text=True)
    assert timedelta(0) < await first_tick(database, "posted") <= timedelta(seconds=10)


async def test_a_catch_up_fires_its_ticks_in_one_batch(database: db.Database) -> None:
    await database.execute(
        "INSERT INTO notifyq.schedules (name, every, kind, catch_up, catch_up_limit, next_run_at)"
        " VALUES ('down', interval '1 s', 'noop', 'all', 10000,"
        "         date_trunc('second', now()) - interval '3 hours')"
    )
    s = scheduler(database)
    with captured_logs() as logs:
        await s.fire_due()
    fired = [e for e in logs if e["event"] == "schedule.fired"]
    assert [(e["schedule"], e["ticks"]) for e in fired] == [("down", 10_000)]
    assert await tick_count(database, "down") == 10_000
    assert s.statistics().ticks_fired == 10_000
    assert s.statistics().ticks_missed >= 800


async def test_many_due_schedules_fire_in_one_pass(database: db.Database) -> None:
    await database.execute(
        "INSERT INTO notifyq.schedules (name, every, kind, next_run_at)"
        " SELECT 's' || i, interval '1 hour', 'noop', date_trunc('hour', now())"
        "   FROM generate_series(1, 2000) AS i"
    )
    s = scheduler(database)
    await s.fire_due()
    assert await tick_count(database, "s1") == 1
    counts = await database.fetchval(
        "SELECT count(DISTINCT schedule_name) FROM notifyq.tasks WHERE schedule_name IS NOT NULL"
    )
    assert counts == 2000
    assert s.statistics().ticks_fired == 2000


# --- bad rows (migration 0012) -----------------------------------------------------------

BAD_ROWS = """
INSERT INTO notifyq.schedules (name, cron, every, kind, tz, paused, queue,
                               next_run_at, last_run_at) VALUES
  ('zone_dir', '* * * * *', NULL, 'noop', 'Europe', false, 'default', NULL, NULL),
  ('zone_long', '* * * * *', NULL, 'noop', repeat('x', 300), false, 'default', NULL, NULL),
  ('cron_digits', repeat('1', 4300) || ' * * * *', NULL, 'noop', 'UTC', false, 'default',
   NULL, NULL),
  ('every_huge', NULL, interval '9000 years', 'noop', 'UTC', false, 'default', NULL, NULL),
  ('bc_paused', NULL, interval '1 s', 'noop', 'UTC', true, 'default',
   '0044-03-15 12:00:00+00 BC', '0044-03-15 12:00:00+00 BC'),
  ('bc_elsewhere', NULL, interval '1 s', 'noop', 'UTC', false, 'elsewhere',
   '0044-03-15 12:00:00+00 BC', NULL),
  ('infinite', NULL, interval '1 s', 'noop', 'UTC', false, 'default', 'infinity', '-infinity'),
  ('good', NULL, interval '1 s', 'noop', 'UTC', false, 'default', NULL, NULL)
"""


async def test_migration_0012_keeps_bad_rows_out_of_the_way_and_refuses_new_ones(
    empty_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    every = migrations.available
    async with db.open_database(empty_database_url, min_size=1, max_size=10) as database:
        monkeypatch.setattr(migrations, "available", lambda: [m for m in every() if m.version < 12])
        await migrations.migrate(database)
        await database.execute(BAD_ROWS)
        monkeypatch.setattr(migrations, "available", every)
        assert [m.version for m in await migrations.migrate(database)][:1] == [12]
        rows = {
            r["name"]: dict(r)
            for r in await database.fetch(
                "SELECT name, paused, next_run_at, last_run_at FROM notifyq.schedules"
            )
        }
        # Rows whose definition breaks the new rules are paused (and keep their values, so
        # that the operator sees them); state no process can read is cleared.
        for name in ("zone_long", "cron_digits", "every_huge"):
            assert rows[name]["paused"], name
        for name in ("bc_paused", "bc_elsewhere", "infinite"):
            assert (rows[name]["next_run_at"], rows[name]["last_run_at"]) == (None, None), name
        assert not rows["good"]["paused"] and not rows["zone_dir"]["paused"]
        with pytest.raises(schedules.ScheduleError, match="'zone_long' breaks the table's checks"):
            await store.pause_schedule(database, "zone_long", paused=False)
        refused = [
            "UPDATE notifyq.schedules SET tz = repeat('x', 300) WHERE name = 'good'",
            "UPDATE notifyq.schedules SET every = interval '9000 years' WHERE name = 'good'",
            "UPDATE notifyq.schedules SET cron = repeat('1', 4300) || ' * * * *', every = NULL"
            " WHERE name = 'good'",
            "UPDATE notifyq.schedules SET next_run_at = '0044-03-15 BC' WHERE name = 'good'",
            "UPDATE notifyq.schedules SET last_run_at = 'infinity' WHERE name = 'good'",
        ]
        for statement in refused:
            with pytest.raises(errors.QueryError, match="violates check constraint"):
                await database.execute(statement)
        # A process serves the good schedule and its tasks beside them, and stops gracefully.
        with captured_logs() as logs:
            async with running_service(database, worker_count=2) as service:
                assert service is not None
                await eventually(lambda: tick_count(database, "good"), timeout=10)
                task_id = await database.fetchval(
                    "INSERT INTO notifyq.tasks (kind) VALUES ('noop') RETURNING id"
                )
                await eventually(
                    lambda: database.fetchval(
                        "SELECT status = 'done' FROM notifyq.tasks WHERE id = $1", task_id
                    ),
                    timeout=10,
                )
        skipped = {e["schedule"] for e in logs if e["event"] == "schedule.skipped"}
        assert "zone_dir" in skipped


async def test_every_row_check_is_in_force_after_the_migration(database: db.Database) -> None:
    with pytest.raises(errors.QueryError, match="schedules_every_max_valid"):
        await database.execute(
            "INSERT INTO notifyq.schedules (name, every, kind) VALUES ('x', '9000 years', 'noop')"
        )
    valid = await database.fetchval(
        "SELECT bool_and(convalidated) FROM pg_constraint"
        " WHERE conrelid = 'notifyq.schedules'::regclass AND conname LIKE 'schedules_%_at_valid'"
    )
    assert valid is True


async def test_a_schedule_the_database_refuses_to_fire_does_not_hold_up_the_others(
    database: db.Database,
) -> None:
    # A check on tasks that the schedule row does not meet (a later limit, say): that row
    # may not stop the batch it shares with others.
    await database.execute(
        "ALTER TABLE notifyq.tasks ADD CONSTRAINT no_poison CHECK (payload <> '\"poison\"')"
    )
    await database.execute(
        "INSERT INTO notifyq.schedules (name, every, kind, payload, next_run_at) VALUES"
        " ('a', interval '1 h', 'noop', '{}', date_trunc('hour', now())),"
        " ('b_poison', interval '1 h', 'noop', '\"poison\"', date_trunc('hour', now())),"
        " ('c', interval '1 h', 'noop', '{}', date_trunc('hour', now()))"
    )
    s = scheduler(database)
    with captured_logs() as logs:
        await s.fire_due()
        await s.fire_due()  # b_poison is still due: tried again, reported once
    assert (await tick_count(database, "a"), await tick_count(database, "c")) == (1, 1)
    skipped = [e["schedule"] for e in logs if e["event"] == "schedule.skipped"]
    assert skipped == ["b_poison"]
