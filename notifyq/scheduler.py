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

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import trio

from notifyq import db, errors, logs, schedules, sql

log = logs.get("notifyq.scheduler")

# A database that is away is retried after this long (the safety net's own pace).
RETRY_S = 1.0


@dataclass(frozen=True, slots=True)
class SchedulerStatistics:
    """What this process's scheduler did since it started."""

    ticks_fired: int
    ticks_missed: int
    duplicates_skipped: int
    bad_schedules: int


class Scheduler:
    def __init__(self, database: db.Database, *, queues: Collection[str],
                 kinds: Collection[str], sweep_s: float) -> None:
        self.db = database
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
        return SchedulerStatistics(self._fired, self._missed, self._duplicates,
                                   len(self._reported))

    def on_schedules_changed(self) -> None:
        """A notification on ``notifyq_schedules`` (or a reconnect): read them again."""
        self._changed.set()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        task_status.started()
        while True:
            self._changed = trio.Event()
            try:
                wait_s = await self.fire_due()
            except errors.DatabaseUnavailable as exc:
                log.warning("scheduler.database_unavailable", error=str(exc),
                            retry_in_s=RETRY_S)
                wait_s = RETRY_S
            with trio.move_on_after(min(wait_s, self.sweep_s)):
                await self._changed.wait()

    async def fire_due(self) -> float:
        """Fire every due tick of the schedules this process serves; return the seconds
        until the next one (the sweep's period when there is none)."""
        rows = await self.db.fetch(sql.queries["list_schedules"])
        offset = rows[0]["db_now"] - datetime.now(UTC) if rows else timedelta(0)
        earliest: datetime | None = None
        for row in rows:
            if row["paused"] or not self._serves(row):
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

    def _serves(self, row: Mapping[str, Any]) -> bool:
        if row["queue"] not in self.queues:
            return False
        if row["kind"] not in self.kinds:
            self._report(row, "no handler for kind {!r} in this process".format(row["kind"]))
            return False
        return True

    def _timing(self, row: Mapping[str, Any]) -> schedules.Timing | None:
        every = row["every_s"]
        key = (row["cron"], every, row["tz"])
        timing = self._timings.get(key)
        if timing is None:
            try:
                timing = schedules.Timing(
                    cron=row["cron"],
                    every_s=None if every is None else schedules.every_seconds(every),
                    tz=row["tz"])
            except schedules.ScheduleError as exc:
                self._report(row, str(exc))
                return None
            self._timings[key] = timing
        self._reported.pop(row["name"], None)
        return timing

    def _report(self, row: Mapping[str, Any], why: str) -> None:
        """Log a schedule this process skips, once per definition."""
        definition = (row["cron"], row["every_s"], row["tz"], row["kind"], row["queue"])
        if self._reported.get(row["name"]) != definition:
            self._reported[row["name"]] = definition
            log.warning("schedule.skipped", schedule=row["name"], why=why)

    async def _fire(self, row: Mapping[str, Any], timing: schedules.Timing,
                    offset: timedelta) -> datetime | None:
        """Fire the due ticks of one schedule; return its next tick, or None if the row
        moved under this process."""
        name = row["name"]
        due: datetime | None = row["next_run_at"]
        if due is None:
            first = timing.next_after(datetime.now(UTC) + offset)
            due = await self.db.fetchval(sql.queries["schedule_first_run"], name, first)
            if due is None:
                return None
        while True:
            firing = schedules.plan(timing, due, datetime.now(UTC) + offset,
                                    catch_up=row["catch_up"],
                                    catch_up_limit=row["catch_up_limit"])
            if firing is None:
                return due
            result = await self.db.fetchrow(sql.queries["fire_schedule"], name, due,
                                            firing.tick, firing.next_run_at)
            if result is None or not result["fired"]:
                return None
            self._fired += 1
            self._missed += firing.missed
            if result["task_id"] is None:
                self._duplicates += 1
            log.info("schedule.fired", schedule=name, tick=firing.tick.isoformat(),
                     task_id=result["task_id"], missed=firing.missed,
                     next_run_at=firing.next_run_at.isoformat())
            due = firing.next_run_at
