"""The scheduler stage: fires the due ticks of the schedules this process serves.

No leader and no polling loop. Every process that runs workers reads ``notifyq.schedules``,
sleeps until the earliest next tick of the schedules it serves (its queues, kinds it has a
handler for), and fires a due tick with ``notifyq.fire_schedule``: a compare-and-set on
``next_run_at`` that inserts the tick's task in the same statement, so of the processes
that wake for one tick exactly one enqueues it. The losers find the row moved and read the
schedules again. A change of the schedules (``notifyq_schedules``) wakes the stage; the
``FETCH_INTERVAL`` sweep covers a notification lost while the LISTEN connection was down.

A bad row (a cron expression or zone this process cannot read, a kind it has no handler
for) is logged once per definition and skipped; it never stops the process.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import trio

from notifyq import db, errors, logs, schedules, store
from notifyq.store import ScheduleRow

log = logs.get("notifyq.scheduler")

# A database that is away is retried after this long.
RETRY_S = 1.0
# Notified by a trigger when the schedules change (migration 0005).
SCHEDULES_CHANNEL = "notifyq_schedules"


@dataclass(frozen=True, slots=True)
class SchedulerStatistics:
    """What this process's scheduler did since it started."""

    ticks_fired: int
    ticks_missed: int
    duplicates_skipped: int
    bad_schedules: int

    @property
    def ticks(self) -> tuple[int, int, int]:
        """(fired, missed, fired onto a live task), as /metrics reports them."""
        return (self.ticks_fired, self.ticks_missed, self.duplicates_skipped)


class Scheduler:
    def __init__(
        self,
        database: db.Database,
        *,
        queues: Collection[str],
        kinds: Collection[str],
        sweep_s: float,
        declared: Iterable[schedules.Schedule] = (),
    ) -> None:
        self.db = database
        self.declared = list(declared)
        self.queues = frozenset(queues)
        self.kinds = frozenset(kinds)
        self.sweep_s = sweep_s
        self._changed = trio.Event()
        self._reported: dict[str, tuple[Any, ...]] = {}
        self._timings: dict[tuple[Any, ...], schedules.Timing] = {}
        self._fired = 0
        self._missed = 0
        self._duplicates = 0

    def statistics(self) -> SchedulerStatistics:
        return SchedulerStatistics(self._fired, self._missed, self._duplicates, len(self._reported))

    def on_schedules_changed(self, _payload: str = "") -> None:
        """A notification on ``notifyq_schedules`` (or a reconnect): read them again."""
        self._changed.set()

    async def declare(self) -> None:
        """Add or update the schedules the app declares (at start, before serving).

        Every process of the app does it; an unchanged definition writes nothing. A
        schedule removed from the code stays in the table until ``notifyq schedule remove``.
        """
        for schedule in self.declared:
            first = schedule.timing.next_after(datetime.now(UTC))
            change = await store.upsert_schedule(self.db, schedule, first_run=first)
            if change is not None:
                log.info(
                    "schedule.declared",
                    schedule=schedule.name,
                    change=change,
                    timing=schedule.timing.describe(),
                    kind=schedule.kind,
                )

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            self._changed = trio.Event()
            try:
                wait_s = await self.fire_due()
            except errors.DatabaseUnavailable as exc:
                log.warning("scheduler.database_unavailable", error=str(exc), retry_in_s=RETRY_S)
                wait_s = RETRY_S
            except errors.QueryError as exc:
                # A row PostgreSQL refuses to turn into a task; never a reason to stop.
                log.error("scheduler.query_failed", error=str(exc), retry_in_s=self.sweep_s)
                wait_s = self.sweep_s
            with trio.move_on_after(min(wait_s, self.sweep_s)):
                await self._changed.wait()

    async def fire_due(self) -> float:
        """Fire every due tick of the schedules this process serves; return the seconds
        until the next one (the sweep's period when there is none)."""
        table = await store.list_schedules(self.db)
        offset = timedelta(0) if table.now is None else table.now - datetime.now(UTC)
        earliest: datetime | None = None
        for row in table.rows:
            if row.paused or not self._serves(row):
                continue
            timing = self._timing(row)
            if timing is None:
                continue
            try:
                next_run_at = await self._fire(row, timing, offset)
            except schedules.ScheduleError as exc:  # a cron expression that stopped matching
                self._report(row, str(exc))
                continue
            if next_run_at is None:
                # Another process fired it, or the row changed under us: read again soon.
                self._changed.set()
            elif earliest is None or next_run_at < earliest:
                earliest = next_run_at
        if earliest is None:
            return self.sweep_s
        return max(0.0, (earliest - (datetime.now(UTC) + offset)).total_seconds())

    def _serves(self, row: ScheduleRow) -> bool:
        if row.queue not in self.queues:
            return False
        if row.kind not in self.kinds:
            self._report(row, f"no handler for kind {row.kind!r} in this process")
            return False
        return True

    def _timing(self, row: ScheduleRow) -> schedules.Timing | None:
        key = (row.cron, row.every_s, row.tz)
        timing = self._timings.get(key)
        if timing is None:
            try:
                every_s = None if row.every_s is None else schedules.every_seconds(row.every_s)
                timing = schedules.Timing(cron=row.cron, every_s=every_s, tz=row.tz)
            except schedules.ScheduleError as exc:
                self._report(row, str(exc))
                return None
            self._timings[key] = timing
        self._reported.pop(row.name, None)
        return timing

    def _report(self, row: ScheduleRow, why: str) -> None:
        """Log a schedule this process skips, once per definition."""
        definition = (row.cron, row.every_s, row.tz, row.kind, row.queue)
        if self._reported.get(row.name) != definition:
            self._reported[row.name] = definition
            log.warning("schedule.skipped", schedule=row.name, why=why)

    async def _fire(
        self, row: ScheduleRow, timing: schedules.Timing, offset: timedelta
    ) -> datetime | None:
        """Fire the due ticks of one schedule; return its next tick, or None if the row
        moved under this process."""
        due = row.next_run_at
        if due is None:
            first = timing.next_after(datetime.now(UTC) + offset)
            due = await store.schedule_first_run(self.db, row.name, first)
            if due is None:
                return None
        catch_up: schedules.CatchUp = "all" if row.catch_up == "all" else "coalesce"
        while True:
            firing = schedules.plan(
                timing,
                due,
                datetime.now(UTC) + offset,
                catch_up=catch_up,
                catch_up_limit=row.catch_up_limit,
            )
            if firing is None:
                return due
            result = await store.fire_schedule(
                self.db, name=row.name, due=due, tick=firing.tick, next_run_at=firing.next_run_at
            )
            if not result.fired:
                return None
            self._fired += 1
            self._missed += firing.missed
            if result.task_id is None:
                self._duplicates += 1
            log.info(
                "schedule.fired",
                schedule=row.name,
                tick=firing.tick.isoformat(),
                task_id=result.task_id,
                missed=firing.missed,
                next_run_at=firing.next_run_at.isoformat(),
            )
            due = firing.next_run_at
