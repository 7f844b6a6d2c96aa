"""The fleet's configuration: queue limits and periodic schedules."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from notifyq import db, errors, limits, schedules, sql
from notifyq.store.rows import PREVIEW_CHARS

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
    fair: bool = False  # claims round-robin over concurrency_key (migration 0017)
    age_priority_after_s: float | None = None  # priority aging (migration 0017)


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
            r["fair"],
            r["age_priority_after_s"],
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
        change.fair,
        change.age_priority_after_s,
    )


async def clear_queue_limits(database: db.Database, name: str) -> bool:
    """Remove every limit of queue ``name``; whether it had a row."""
    return bool(await database.fetch(sql.queries["queue_clear"], name))


# --- schedules --------------------------------------------------------------------------

CHECK_VIOLATION = "23514"

# The longest page of schedules one read returns (GET /schedules, `schedule list`).
SCHEDULES_PAGE_MAX = 500


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    """A row of ``notifyq.schedules`` as shown (not checked: see ``schedules.define``).

    ``payload`` is None with ``payload_truncated`` set when its JSON text is longer than the
    read's preview length: ``payload_preview`` then holds its first characters. A
    ``next_run_at`` or ``last_run_at`` no process can read comes as None."""

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
    payload_preview: str | None = None

    @property
    def payload_truncated(self) -> bool:
        return self.payload_preview is not None


def _schedule_row(r: Any) -> ScheduleRow:
    return ScheduleRow(
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
        r["payload_preview"],
    )


async def list_schedules(
    database: db.Database,
    *,
    after: str | None = None,
    limit: int = SCHEDULES_PAGE_MAX,
    preview_chars: int = PREVIEW_CHARS,
) -> list[ScheduleRow]:
    """Schedules by name after ``after``, at most ``limit``, payloads cut past
    ``preview_chars`` characters of JSON text."""
    rows = await database.fetch(sql.queries["list_schedules"], after, limit, preview_chars)
    return [_schedule_row(r) for r in rows]


async def get_schedule(
    database: db.Database, name: str, *, preview_chars: int = PREVIEW_CHARS
) -> ScheduleRow | None:
    row = await database.fetchrow(sql.queries["get_schedule"], name, preview_chars)
    return None if row is None else _schedule_row(row)


@dataclass(frozen=True, slots=True)
class DueSchedule:
    """A schedule the scheduler may fire: its timing and state, not its payload."""

    name: str
    cron: str | None
    every_s: float | None
    kind: str
    queue: str
    tz: str
    catch_up: str
    catch_up_limit: int
    readable: bool  # False: next_run_at or last_run_at out of range (next_run_at reads None)
    next_run_at: datetime | None


@dataclass(frozen=True, slots=True)
class ScheduleClock:
    """The database's clock and the earliest future tick of the schedules served."""

    now: datetime
    next_due: datetime | None


async def schedules_clock(
    database: db.Database, *, queues: Collection[str], kinds: Collection[str]
) -> ScheduleClock:
    row = await database.fetchrow(sql.queries["schedules_clock"], list(queues), list(kinds))
    assert row is not None
    return ScheduleClock(row["db_now"], row["next_due"])


async def due_schedules(database: db.Database, *, queues: Collection[str]) -> list[DueSchedule]:
    """The active schedules of ``queues`` due by the database's clock (or without a next
    run yet), by name."""
    rows = await database.fetch(sql.queries["due_schedules"], list(queues))
    return [
        DueSchedule(
            r["name"],
            r["cron"],
            r["every_s"],
            r["kind"],
            r["queue"],
            r["tz"],
            r["catch_up"],
            r["catch_up_limit"],
            r["readable"],
            r["next_run_at"],
        )
        for r in rows
    ]


async def schedule_first_run(database: db.Database, name: str, first: datetime) -> datetime | None:
    """Set schedule ``name``'s first tick unless a process did; the tick in force (None:
    the schedule is gone)."""
    tick: datetime | None = await database.fetchval(sql.queries["schedule_first_run"], name, first)
    return tick


@dataclass(frozen=True, slots=True)
class Fired:
    """A schedule one :func:`fire_schedules` call advanced."""

    tasks: int  # tasks added (a tick at or before the row's last run gets none)
    last_task_id: int | None


async def fire_schedules(
    database: db.Database, firings: Sequence[tuple[str, datetime, schedules.Firing]]
) -> dict[str, Fired]:
    """Fire each (name, due read, firing) in one statement; the schedules fired, by name.
    A schedule absent from the answer moved, was paused, or is held by another transaction."""
    ticks = [(name, tick) for name, _, firing in firings for tick in firing.ticks]
    rows = await database.fetch(
        sql.queries["fire_schedules"],
        [name for name, _, _ in firings],
        [due for _, due, _ in firings],
        [firing.tick for _, _, firing in firings],
        [firing.next_run_at for _, _, firing in firings],
        [name for name, _ in ticks],
        [tick for _, tick in ticks],
    )
    return {r["name"]: Fired(r["tasks"], r["last_task_id"]) for r in rows}


async def upsert_schedule(database: db.Database, schedule: schedules.Schedule) -> str | None:
    """Add or replace a schedule's definition: 'added', 'replaced' or None (unchanged).

    A new schedule (or one whose timing changed) starts at its first tick after the
    database's clock, never the calling host's. Pausing is kept."""
    t = schedule.timing
    now: datetime = await database.fetchval(sql.queries["db_now"])
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
        t.next_after(now),
    )
    return change


async def pause_schedule(database: db.Database, name: str, *, paused: bool) -> bool:
    """Pause or resume; False if there is no such schedule. A row stored before migration
    0012 that breaks its checks (paused by it) cannot be resumed: ScheduleError."""
    try:
        return await database.fetchval(sql.queries["pause_schedule"], name, paused) is not None
    except errors.QueryError as exc:
        if exc.sqlstate != CHECK_VIOLATION:
            raise
        raise schedules.ScheduleError(
            f"schedule {name!r} breaks the table's checks ({exc}): replace its definition "
            "(schedule add) or remove it"
        ) from None


async def remove_schedule(database: db.Database, name: str) -> bool:
    """Delete a schedule (its tasks stay); False if there is none such."""
    return await database.fetchval(sql.queries["remove_schedule"], name) is not None
