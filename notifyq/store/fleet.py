"""The fleet's configuration: queue limits and periodic schedules."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from notifyq import db, limits, schedules, sql

# --- queue limits: CLI, HTTP, App declarations ---------------------------------------


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """A queue's limits (None: none of that kind) and its live task counts."""

    name: str
    concurrency: int | None
    rate: limits.Rate | None
    per_key_concurrency: int | None
    paused: bool
    pending: int
    in_progress: int
    updated_at: datetime | None  # None: the queue has tasks but no row in notifyq.queues


def _rate(count: int | None, period_s: float | None) -> limits.Rate | None:
    return None if count is None or period_s is None else limits.Rate(count, period_s)


async def list_queues(
    database: db.Database, *, after: str | None = None, limit: int | None = None
) -> list[QueueInfo]:
    """Every queue that has limits or live tasks, by name; a page of at most ``limit``
    (None: all) of the names after ``after``."""
    return [
        QueueInfo(
            r["name"],
            r["concurrency"],
            _rate(r["rate_count"], r["rate_period_s"]),
            r["per_key_concurrency"],
            r["paused"],
            r["pending"],
            r["in_progress"],
            r["updated_at"],
        )
        for r in await database.fetch(sql.queries["queue_list"], after, limit)
    ]


async def set_queue_limits(database: db.Database, change: limits.LimitChange) -> None:
    """Apply ``change`` (only its fields; a queue without a row gets one)."""
    rate = change.rate
    await database.fetch(
        sql.queries["queue_set"],
        change.name,
        change.concurrency,
        rate.count if rate else None,
        rate.period_s if rate else None,
        change.per_key_concurrency,
        change.paused,
        sorted(change.fields),
    )


async def clear_queue_limits(database: db.Database, name: str) -> bool:
    """Remove every limit of queue ``name``; whether it had a row."""
    return bool(await database.fetch(sql.queries["queue_clear"], name))


# --- schedules --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    """A row of ``notifyq.schedules`` as stored (not checked: see ``schedules.define``)."""

    name: str
    cron: str | None
    every_s: float | None
    kind: str
    payload: Any
    queue: str
    priority: int
    tz: str
    catch_up: str
    catch_up_limit: int
    paused: bool
    next_run_at: datetime | None
    last_run_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ScheduleTable:
    """Every schedule, and the database's clock when they were read (None: no rows)."""

    rows: list[ScheduleRow]
    now: datetime | None


async def list_schedules(database: db.Database) -> ScheduleTable:
    rows = await database.fetch(sql.queries["list_schedules"])
    now = rows[0]["db_now"] if rows else None
    return ScheduleTable(
        [
            ScheduleRow(
                r["name"],
                r["cron"],
                r["every_s"],
                r["kind"],
                r["payload"],
                r["queue"],
                r["priority"],
                r["tz"],
                r["catch_up"],
                r["catch_up_limit"],
                r["paused"],
                r["next_run_at"],
                r["last_run_at"],
                r["created_at"],
                r["updated_at"],
            )
            for r in rows
        ],
        now,
    )


async def schedule_first_run(database: db.Database, name: str, first: datetime) -> datetime | None:
    """Set schedule ``name``'s first tick unless a process did; the tick in force (None:
    the schedule is gone)."""
    tick: datetime | None = await database.fetchval(sql.queries["schedule_first_run"], name, first)
    return tick


@dataclass(frozen=True, slots=True)
class Fired:
    fired: bool  # this call advanced the schedule (exactly one caller per tick does)
    task_id: int | None  # the tick's new task; None if not fired or its task was live


async def fire_schedule(
    database: db.Database, *, name: str, due: datetime, tick: datetime, next_run_at: datetime
) -> Fired:
    """Fire ``tick`` of schedule ``name`` read as due at ``due``; move it to ``next_run_at``."""
    row = await database.fetchrow(sql.queries["fire_schedule"], name, due, tick, next_run_at)
    assert row is not None  # the function returns one row
    return Fired(bool(row["fired"]), row["task_id"])


async def upsert_schedule(
    database: db.Database, schedule: schedules.Schedule, *, first_run: datetime
) -> str | None:
    """Add or replace a schedule's definition: 'added', 'replaced' or None (unchanged).

    ``first_run`` is its next tick if it is new or its timing changed; pausing is kept."""
    t = schedule.timing
    change: str | None = await database.fetchval(
        sql.queries["upsert_schedule"],
        schedule.name,
        t.cron,
        t.every_s,
        schedule.kind,
        {} if schedule.payload is None else schedule.payload,  # null means {}, as for tasks
        schedule.queue,
        schedule.priority,
        t.tz,
        schedule.catch_up,
        schedule.catch_up_limit,
        first_run,
    )
    return change


async def pause_schedule(database: db.Database, name: str, *, paused: bool) -> bool:
    """Pause or resume; False if there is no such schedule."""
    return await database.fetchval(sql.queries["pause_schedule"], name, paused) is not None


async def remove_schedule(database: db.Database, name: str) -> bool:
    """Delete a schedule (its tasks stay); False if there is none such."""
    return await database.fetchval(sql.queries["remove_schedule"], name) is not None
