"""The fleet's upkeep: the reaper, retention of tasks and history, the history's partitions."""

from __future__ import annotations

from dataclasses import dataclass

from notifyq import db, sql


@dataclass(frozen=True, slots=True)
class Recovered:
    """A task the reaper took back from a lost process."""

    id: int
    queue: str
    status: str
    lost_worker: str


async def reap(
    database: db.Database, *, every_s: float, limit: int, forget_after_s: float
) -> list[Recovered]:
    """If it is this process's turn: recover expired leases, forget stale registry rows."""

    async def turn(conn: db.Connection) -> list[Recovered]:
        if not await conn.fetchval(sql.queries["take_maintenance_turn"], "reaper", every_s):
            return []
        rows = await conn.fetch(sql.queries["recover_expired"], limit)
        await conn.execute(sql.queries["forget_stale_workers"], forget_after_s)
        if rows:
            # Their slots are free: wake the processes waiting for limited queues (rows
            # back to pending notify through their trigger; ended ones would not).
            await conn.execute(sql.queries["slots_freed"], sorted({r["queue"] for r in rows}))
        return [Recovered(r["id"], r["queue"], r["status"], r["lost_worker"]) for r in rows]

    return await database.run_in_transaction(turn)


async def expire_tasks(database: db.Database, *, limit: int) -> int:
    """End up to ``limit`` tasks past their start deadline (``expires_at``) that never
    started, as cancelled with the history event ``expired``; how many."""
    return len(await database.fetch(sql.queries["expire_tasks"], limit))


async def take_turn(database: db.Database, job: str, every_s: float) -> bool:
    """Whether this process gets the fleet's turn for maintenance ``job`` now."""
    return bool(await database.fetchval(sql.queries["take_maintenance_turn"], job, every_s))


async def delete_ended_before(database: db.Database, *, older_than_s: float, limit: int) -> int:
    """Delete up to ``limit`` tasks that ended more than ``older_than_s`` ago; how many."""
    return len(await database.fetch(sql.queries["prune"], older_than_s, limit))


@dataclass(frozen=True, slots=True)
class HistoryDrop:
    """The history partitions a retention turn dropped, and those it left for the next
    turn because the history was in use (a long reader)."""

    dropped: list[str]
    busy: list[str]


async def drop_history_days(database: db.Database, *, older_than_s: float) -> HistoryDrop:
    """Drop the history partitions older than ``older_than_s``, never waiting for a lock."""
    rows = await database.fetch(sql.queries["prune_history"], older_than_s)
    return HistoryDrop(
        [r["partition"] for r in rows if r["dropped"]],
        [r["partition"] for r in rows if not r["dropped"]],
    )


@dataclass(frozen=True, slots=True)
class Partitions:
    """What one turn of the partition job did."""

    created: list[str]
    legacy_attached: bool


async def maintain_partitions(database: db.Database, *, days_ahead: int) -> Partitions:
    """Create the history's missing day partitions, attach the pre-0007 rows if detached."""
    rows = await database.fetch(sql.queries["ensure_event_partitions"], days_ahead)
    attached = await database.fetchval(sql.queries["attach_legacy_events"])
    return Partitions([r["created"] for r in rows], attached is not None)
