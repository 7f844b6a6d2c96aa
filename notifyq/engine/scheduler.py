"""The scheduler stage: fires the due ticks of the schedules this process serves.

No leader and no polling loop. Every process that runs workers sleeps until the earliest
next tick of the schedules it serves (its queues, kinds it has a handler for; by the
database's clock), reads the due ones and fires them with ``notifyq.fire_schedules``
(migration 0012): one statement per batch that moves each row's ``next_run_at`` from the
value read (a compare-and-set under ``FOR UPDATE SKIP LOCKED``) and inserts the ticks'
tasks, so of the processes that wake for one tick exactly one enqueues it, and no other
transaction can make it wait. The losers read the schedules again shortly. A change of the
schedules (``notifyq_schedules``) wakes the stage; the ``FETCH_INTERVAL`` sweep covers a
notification lost while the LISTEN connection was down.

A bad row (a cron expression, zone, interval or time this process cannot read, a kind it
has no handler for) is logged once per definition as ``schedule.skipped`` and skipped; it
never stops the process.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import trio

from notifyq import db, errors, logs, schedules, store
from notifyq.store import DueSchedule

# Notified by a trigger when the schedules change (migration 0005).
from notifyq.vocabulary import SCHEDULES_CHANNEL as SCHEDULES_CHANNEL

log = logs.get("notifyq.scheduler")

# A database that is away is retried after this long.
RETRY_S = 1.0
# A due schedule this process could not fire (another one did, or a transaction holds its
# row) is read again after this long.
MOVED_RETRY_S = 0.2
# At most this many ticks (tasks) per statement that fires schedules; a catch-up of more
# (catch_up_limit is at most 10,000) goes alone.
BATCH_TICKS = 2_000

INSUFFICIENT_PRIVILEGE = "42501"  # PostgreSQL's SQLSTATE for "permission denied"


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
    """Fires the due ticks of the schedules this process may serve: those of its queues
    whose kind it has a handler for.

    ``declare`` writes the app's own schedules once at start; ``serve`` then loops: one
    ``fire_due`` pass, then a sleep until the earliest next tick, a change notification
    (``on_schedules_changed``, from the listener's fan-out) or the ``FETCH_INTERVAL`` sweep,
    whichever comes first. Exactly-once firing is the database's job (a compare-and-set on
    ``next_run_at``), not this object's: any number of processes may run one.

    Ownership: the task running ``serve`` owns every field; ``on_schedules_changed`` only
    sets the event that the loop replaces on each pass, and ``statistics()`` reads the
    counters as a frozen value. A bad schedule is reported once per definition and skipped,
    a database that is away is retried after ``RETRY_S``: neither ends the stage.
    """

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
        # Schedules whose last firing PostgreSQL refused (reported as skipped).
        self._refused: set[str] = set()
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
            change = await store.upsert_schedule(self.db, schedule)
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
                # A row PostgreSQL refuses to turn into a task, or a role that may not fire
                # schedules: never a reason to stop.
                why = (
                    "this role may not fire schedules: run `notifyq roles --worker ROLE`"
                    if exc.sqlstate == INSUFFICIENT_PRIVILEGE
                    else None
                )
                log.error(
                    "scheduler.query_failed", error=str(exc), why=why, retry_in_s=self.sweep_s
                )
                wait_s = self.sweep_s
            with trio.move_on_after(min(wait_s, self.sweep_s)):
                await self._changed.wait()

    async def fire_due(self) -> float:
        """Fire every due tick of the schedules this process serves; return the seconds
        until the next one (the sweep's period when there is none).

        Reads only the due rows (no payloads: the database copies them into the tasks), so
        a pass costs little however many schedules wait, and fires them in batches of one
        statement each, a catch-up's ticks included."""
        clock = await store.schedules_clock(self.db, queues=self.queues, kinds=self.kinds)
        read_at = trio.current_time()

        def now() -> datetime:
            # The database's clock, moved on by the time this pass has taken.
            return clock.now + timedelta(seconds=trio.current_time() - read_at)

        earliest = clock.next_due
        firings: list[tuple[str, datetime, schedules.Firing]] = []
        rows: dict[str, DueSchedule] = {}
        for row in await store.due_schedules(self.db, queues=self.queues):
            if not self._serves(row):
                continue
            if not row.readable:
                self._report(row, "next_run_at or last_run_at is outside 1970 to 9000")
                continue
            timing = self._timing(row)
            if timing is None:
                continue
            try:
                due = row.next_run_at
                if due is None:
                    due = await store.schedule_first_run(
                        self.db, row.name, timing.next_after(now())
                    )
                    if due is None:
                        continue  # removed meanwhile
                catch_up: schedules.CatchUp = "all" if row.catch_up == "all" else "coalesce"
                firing = schedules.plan(
                    timing, due, now(), catch_up=catch_up, catch_up_limit=row.catch_up_limit
                )
            except (schedules.ScheduleError, OverflowError, ValueError) as exc:
                # A cron expression that stopped matching, a tick past the dates Python has.
                self._report(row, str(exc))
                continue
            if firing is None:
                earliest = due if earliest is None else min(earliest, due)
            else:
                firings.append((row.name, due, firing))
                rows[row.name] = row
        for batch in _batches(firings):
            fired = await self._fire_batch(batch, rows)
            for name, _due, firing in batch:
                result = fired.get(name)
                if result is None and name in self._refused:
                    continue  # reported; due again at the next pass, not sooner
                if result is None:
                    # Another process fired it, the row changed, or a transaction holds it:
                    # read again shortly (not at once: a held row would spin this loop).
                    moved = now() + timedelta(seconds=MOVED_RETRY_S)
                    earliest = moved if earliest is None else min(earliest, moved)
                    continue
                self._record(name, firing, result)
                if earliest is None or firing.next_run_at < earliest:
                    earliest = firing.next_run_at
        if earliest is None:
            return self.sweep_s
        return max(0.0, (earliest - now()).total_seconds())

    async def _fire_batch(
        self, batch: list[tuple[str, datetime, schedules.Firing]], rows: dict[str, DueSchedule]
    ) -> dict[str, store.Fired]:
        """Fire a batch in one statement. If PostgreSQL refuses it (a task check the row's
        payload breaks, say), fire its schedules one by one, so that the one it refuses is
        skipped and reported and the others fire."""
        self._refused.difference_update(name for name, _, _ in batch)
        try:
            return await store.fire_schedules(self.db, batch)
        except errors.QueryError as exc:
            if exc.sqlstate == INSUFFICIENT_PRIVILEGE:
                # Not a bad row: this process's role may not fire schedules at all (`notifyq
                # roles --worker` grants it); serve() says so and tries again each sweep.
                raise
            if len(batch) == 1:
                name = batch[0][0]
                self._refused.add(name)
                self._report(rows[name], f"the database refuses its task: {exc}")
                return {}
        fired: dict[str, store.Fired] = {}
        for one in batch:
            fired.update(await self._fire_batch([one], rows))
        return fired

    def _record(self, name: str, firing: schedules.Firing, result: store.Fired) -> None:
        self._fired += result.tasks
        self._missed += firing.missed
        # A tick at or before the row's last run is never enqueued twice.
        self._duplicates += len(firing.ticks) - result.tasks
        log.info(
            "schedule.fired",
            schedule=name,
            tick=firing.tick.isoformat(),
            ticks=result.tasks,
            task_id=result.last_task_id,
            missed=firing.missed,
            next_run_at=firing.next_run_at.isoformat(),
        )

    def _serves(self, row: DueSchedule) -> bool:
        if row.kind not in self.kinds:
            self._report(row, f"no handler for kind {row.kind!r} in this process")
            return False
        return row.queue in self.queues

    def _timing(self, row: DueSchedule) -> schedules.Timing | None:
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
        if row.name not in self._refused:  # a refused one stays reported (logged once)
            self._reported.pop(row.name, None)
        return timing

    def _report(self, row: DueSchedule, why: str) -> None:
        """Log a schedule this process skips, once per definition."""
        definition = (row.cron, row.every_s, row.tz, row.kind, row.queue, row.readable)
        if self._reported.get(row.name) != definition:
            self._reported[row.name] = definition
            log.warning("schedule.skipped", schedule=row.name, why=why)


def _batches(
    firings: list[tuple[str, datetime, schedules.Firing]],
) -> Iterator[list[tuple[str, datetime, schedules.Firing]]]:
    """Firings in statements of at most BATCH_TICKS ticks (a bigger catch-up alone)."""
    batch: list[tuple[str, datetime, schedules.Firing]] = []
    size = 0
    for firing in firings:
        n = len(firing[2].ticks)
        if batch and size + n > BATCH_TICKS:
            yield batch
            batch, size = [], 0
        batch.append(firing)
        size += n
    if batch:
        yield batch
