"""Maintenance shared by every process on the database, taken in turns so that one process
per interval does each job.

- the reaper returns tasks of lost processes (expired leases) to pending, or ends them
  when their attempts are used up, and forgets registry rows that stopped heart-beating;
- retention deletes tasks that ended more than RETENTION ago, in bounded batches, and
  drops the history's day partitions older than that (no row-by-row DELETE), never
  waiting for the lock that takes (a day in use is dropped at a later turn);
- the expiry sweep ends tasks that were not started by their ``expires_at`` (every
  process sweeps about every second; SKIP LOCKED shares the rows, and a sweep that finds
  nothing writes nothing, so it needs no turn);
- the partitioner creates the history's day partitions ahead of time and, once after an
  upgrade from a schema before version 7, attaches the old history (migration 0007).

Retention at its three levels, each named for what it does:

- this stage: ``serve_retention`` takes the turn about once a minute and
  ``apply_retention`` runs one whole pass (``notifyq prune`` runs it too);
- the store, one statement each: ``store.delete_ended_before`` deletes one batch of ended
  tasks, ``store.drop_history_days`` drops the history's days past retention;
- the SQL keeps the word: the queries ``prune`` and ``prune_history``, and the function
  ``notifyq.prune_event_partitions`` that the latter calls. That function was created by an
  applied migration and is granted to the roles, so it keeps its name; so do the turn
  ("prune", shared with processes of older versions), the ``notifyq prune`` command and the
  log events ``prune``, ``prune.failed`` and ``prune.history_busy`` that operators watch.
"""

from __future__ import annotations

import random

import trio

from notifyq import db, errors, logs, store
from notifyq.settings import Settings

log = logs.get("notifyq.service")

REAP_INTERVAL_S = 5.0
REAP_BATCH = 1000
RETENTION_INTERVAL_S = 60.0
RETENTION_BATCH = 1000
PARTITION_INTERVAL_S = 600.0
EXPIRY_INTERVAL_S = 1.0
EXPIRY_BATCH = 1000
PARTITION_DAYS_AHEAD = 3  # today and three more days: processes down for days still have them


class Reaper:
    """Gives back the tasks of processes that died holding them: an ``in_progress`` row
    whose lease (``locked_until``) has passed, or whose owner left the worker registry, goes
    back to ``pending``, or ends (``error`` once its attempts are used up, ``cancelled`` if a
    cancel was asked); a registry row that stopped heart-beating for three leases is
    forgotten. The rules are the ``recover_expired`` statement's.

    Every process runs one, about every ``LEASE / 3`` (at most ``REAP_INTERVAL_S``, with
    jitter), but the database gives the turn to one process per interval, and each turn
    takes at most ``REAP_BATCH`` rows. A database that is away is logged and the next turn
    tries again. ``recovered`` counts the rows this process's turns took (for /metrics);
    only the task running ``serve`` writes it.
    """

    def __init__(self, database: db.Database, settings: Settings) -> None:
        self.db = database
        self.settings = settings
        self.recovered = 0  # tasks this process's reaper gave back to pending or ended

    async def serve(self) -> None:
        interval = min(REAP_INTERVAL_S, self.settings.lease_s / 3)
        while True:
            await trio.sleep(interval * random.uniform(0.8, 1.2))
            try:
                rows = await store.reap(
                    self.db,
                    every_s=interval * 0.9,
                    limit=REAP_BATCH,
                    forget_after_s=self.settings.lease_s * 3,
                )
            except errors.DatabaseUnavailable as exc:
                log.warning("reaper.failed", error=str(exc))
                continue
            self.recovered += len(rows)
            for row in rows:
                log.warning(
                    "task.recovered", task_id=row.id, status=row.status, lost_worker=row.lost_worker
                )


class Expirer:
    """Ends the tasks that were not started by their start deadline (``expires_at``):
    ``cancelled``, error ``expired: not started by <time>``, history ``expired``, at most
    ``EXPIRY_BATCH`` per statement, again at once while a batch comes back full. The claims
    never start such a task, so this only makes the end prompt (about a second late at
    most) rather than decides it. ``expired`` counts the tasks this process ended (for
    /metrics); only the task running ``serve`` writes it."""

    def __init__(self, database: db.Database) -> None:
        self.db = database
        self.expired = 0

    async def serve(self) -> None:
        while True:
            await trio.sleep(EXPIRY_INTERVAL_S * random.uniform(0.8, 1.2))
            try:
                while (n := await store.expire_tasks(self.db, limit=EXPIRY_BATCH)) > 0:
                    self.expired += n
                    log.info("tasks.expired", tasks=n)
                    if n < EXPIRY_BATCH:
                        break
            except errors.DatabaseUnavailable as exc:
                log.warning("expiry.failed", error=str(exc))


async def serve_retention(database: db.Database, retention_s: float) -> None:
    """Apply RETENTION about once a minute, one process per turn (the turn is still named
    "prune", so that processes of older versions share it)."""
    while True:
        await trio.sleep(RETENTION_INTERVAL_S * random.uniform(0.8, 1.2))
        try:
            if await store.take_turn(database, "prune", RETENTION_INTERVAL_S * 0.9):
                await apply_retention(database, retention_s)
        except errors.DatabaseUnavailable as exc:
            log.warning("prune.failed", error=str(exc))


async def apply_retention(
    database: db.Database, older_than_s: float, batch: int = RETENTION_BATCH
) -> int:
    """Delete tasks that ended more than ``older_than_s`` ago, in bounded batches, and drop
    the history partitions older than that. Returns the tasks deleted."""
    total = 0
    while True:
        deleted = await store.delete_ended_before(database, older_than_s=older_than_s, limit=batch)
        total += deleted
        if deleted < batch:
            break
        await trio.lowlevel.checkpoint()  # let others run between batches
    history = await store.drop_history_days(database, older_than_s=older_than_s)
    if total or history.dropped:
        log.info(
            "prune", deleted=total, partitions_dropped=history.dropped, older_than_s=older_than_s
        )
    if history.busy:
        # A long transaction holds the history: waiting for it would stall every outcome
        # write queued behind the lock request. The next turn tries again.
        log.warning("prune.history_busy", partitions_left=history.busy)
    return total


async def serve_partitioner(
    database: db.Database, *, interval_s: float = PARTITION_INTERVAL_S
) -> None:
    """Keep the history's day partitions ahead of time, one process per turn.

    Runs at start-up too (a fresh database, or processes back after days down). A failure (the
    database away, a lock not granted within 2 s) is logged and retried at the next turn:
    until then events land in the default partition, and the next turn moves them.
    """
    while True:
        try:
            if await store.take_turn(database, "partitions", interval_s * 0.9):
                done = await store.maintain_partitions(database, days_ahead=PARTITION_DAYS_AHEAD)
                if done.created or done.legacy_attached:
                    log.info(
                        "partitions",
                        created=done.created,
                        legacy_attached=done.legacy_attached,
                    )
        except errors.NotifyqError as exc:
            log.warning("partitions.failed", error=str(exc))
        await trio.sleep(interval_s * random.uniform(0.8, 1.2))
