"""What the status page, the HTTP API and the CLI read: counts, lists, samples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from notifyq import db, sql
from notifyq.store.rows import PREVIEW_CHARS, Row, TaskRow

# --- reading: status page, HTTP API, CLI ------------------------------------------------


async def counts(database: db.Database) -> list[tuple[str, str, int]]:
    """(queue, status, rows) for every queue and status present."""
    return [(r["queue"], r["status"], r["n"]) for r in await database.fetch(sql.queries["counts"])]


async def replica_lag_s(database: db.Database) -> float:
    """Seconds the server of ``database`` (READ_DATABASE_URL) is behind its primary."""
    return float(await database.fetchval(sql.queries["replica_lag"]))


@dataclass(frozen=True)
class BatchGauges:
    """Batches not complete yet, and their members by state (``/metrics``)."""

    live: int
    done: int
    failed: int
    remaining: int


async def batch_gauges(database: db.Database) -> BatchGauges:
    """The live batches (not complete) and their members' counts, summed."""
    row = await database.fetchrow(sql.queries["batch_gauges"])
    assert row is not None  # an aggregate: one row, always
    return BatchGauges(**dict(row))


@dataclass(frozen=True)
class Backlog:
    """One queue's due work, for autoscalers (``/metrics``)."""

    due: int  # pending tasks whose run_at has passed
    oldest_s: float  # how long the oldest of them has been due, in seconds


async def due_backlog(database: db.Database) -> dict[str, Backlog]:
    """{queue: its due work}, for the queues that have some (``due_backlog``)."""
    rows = await database.fetch(sql.queries["due_backlog"])
    return {r["queue"]: Backlog(r["due"], r["oldest_s"]) for r in rows}


async def workers(database: db.Database, *, gone_after_s: float) -> list[Row]:
    """The registry, each row with its ``state``: 'gone' when its last heartbeat is older
    than ``gone_after_s`` (the reader's LEASE: the process's leases have expired too)."""
    return list(await database.fetch(sql.queries["workers"], gone_after_s))


async def connection_limits(database: db.Database) -> tuple[int, int]:
    """The server's ``max_connections``, and how many of them are reserved."""
    row = await database.fetchrow(sql.queries["connection_limits"])
    assert row is not None  # one row, always
    return int(row["max_connections"]), int(row["reserved"])


async def unserved(database: db.Database) -> list[Row]:
    """Pending tasks no registered process can run: (queue, kind, n)."""
    return list(await database.fetch(sql.queries["unserved"]))


async def list_tasks(
    database: db.Database,
    *,
    status: str | None,
    queue: str | None,
    kind: str | None,
    before: int | None,
    limit: int,
    preview_chars: int = PREVIEW_CHARS,
) -> list[TaskRow]:
    """Rows whose payload or result, when longer than ``preview_chars`` characters of JSON
    text, is None with its first characters in ``payload_preview``/``result_preview`` (cut
    in SQL: the big value never leaves the database)."""
    rows = await database.fetch(
        sql.queries["list_tasks"], status, queue, kind, before, limit, preview_chars
    )
    return [TaskRow.from_record(r) for r in rows]


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """A batch's progress (notifyq.batch_progress) and its callback's status."""

    id: int
    total: int
    done: int
    failed: int
    remaining: int
    sealed: bool
    callback_id: int | None
    callback_status: str | None
    created_at: datetime
    completed_at: datetime | None


async def batch_progress(database: db.Database, batch_id: int) -> BatchInfo | None:
    """One batch, or None."""
    row = await database.fetchrow(sql.queries["batch_progress"], batch_id)
    return None if row is None else BatchInfo(**dict(row.items()))


async def running_tasks(
    database: db.Database, limit: int, *, preview_chars: int = PREVIEW_CHARS
) -> list[TaskRow]:
    """The longest-running tasks, with previews as :func:`list_tasks` has them."""
    rows = await database.fetch(sql.queries["running_tasks"], limit, preview_chars)
    return [TaskRow.from_record(r) for r in rows]


async def recent_failures(
    database: db.Database, limit: int, *, preview_chars: int = PREVIEW_CHARS
) -> list[TaskRow]:
    """The latest failures, with previews as :func:`list_tasks` has them."""
    rows = await database.fetch(sql.queries["recent_failures"], limit, preview_chars)
    return [TaskRow.from_record(r) for r in rows]


@dataclass(frozen=True, slots=True)
class Confirmed:
    """A task as the table has it, for an id a notification named."""

    id: int
    status: str
    queue: str
    kind: str
    ended: bool  # ended (done, error, cancelled) recently
    cancel_requested: bool  # its cancel was requested recently


async def confirm_events(
    database: db.Database,
    *,
    ended: Sequence[int],
    cancel_requested: Sequence[int],
    within_s: float,
) -> dict[int, Confirmed]:
    """What the table says about ids that notifications named (one statement for all):
    {id: row} for the ids that exist; check ``ended`` / ``cancel_requested`` on each."""
    rows = await database.fetch(
        sql.queries["confirm_events"], list(ended), list(cancel_requested), within_s
    )
    return {
        r["id"]: Confirmed(
            r["id"], r["status"], r["queue"], r["kind"], r["ended"], r["cancel_requested"]
        )
        for r in rows
    }


@dataclass(frozen=True, slots=True)
class Pickup:
    samples: int
    p50_ms: float | None
    p95_ms: float | None


async def pickup_sample(database: db.Database, *, window_s: float, limit: int) -> Pickup:
    row = await database.fetchrow(sql.queries["pickup_sample"], window_s, limit)
    assert row is not None  # an aggregate always returns one row
    return Pickup(row["n"], row["p50_ms"], row["p95_ms"])


async def ended_per_minute(
    database: db.Database, *, since: float, until: float, bounded: bool = False
) -> list[tuple[int, str, int]]:
    """(minute, status, count) of tasks that ended in [since, until) (unix seconds).

    ``bounded`` runs it under a short statement timeout (a first read of a busy hour).
    """

    async def read(conn: db.Connection) -> list[tuple[int, str, int]]:
        if bounded:
            await conn.execute(sql.queries["sample_timeout"])
        rows = await conn.fetch(sql.queries["ended_per_minute"], since, until)
        return [(r["minute"], r["status"], r["n"]) for r in rows]

    return await database.run_in_transaction(read)


async def ended_last_minute(database: db.Database) -> int:
    return int(await database.fetchval(sql.queries["ended_last_minute"]))


async def ping(database: db.Database) -> None:
    await database.fetchval(sql.queries["ping"])


async def live_processes(database: db.Database, *, host: str, within_s: float) -> int:
    """Processes on ``host`` that heart-beat within ``within_s`` seconds."""
    return int(await database.fetchval(sql.queries["host_alive"], host, within_s))


# --- workflows: a task's parents, children and batch --------------------------------------

CHILDREN_SCAN = 50_000
"""How many tasks after a parent :func:`task_children` looks through for dependents that
no longer wait (those still waiting are found anywhere, over their index)."""


@dataclass(frozen=True, slots=True)
class TaskState:
    """Where a related task stands: a parent (``task.parents()``) or a batch member."""

    id: int
    status: str
    result: Any
    error: str | None


@dataclass(frozen=True, slots=True)
class BatchProgress:
    """A batch (``notifyq.batch_progress``): members added, ended done, ended failed (error
    or cancelled), still to end; sealed once its callback was added."""

    id: int
    total: int
    done: int
    failed: int
    remaining: int
    sealed: bool
    callback_id: int | None
    created_at: datetime
    completed_at: datetime | None

    @classmethod
    def from_record(cls, record: Row) -> BatchProgress:
        return cls(**record)


@dataclass(frozen=True, slots=True)
class Related:
    """A task's parent or child as the task's page lists it. A child waits or waited for
    the task: ``via`` 'depends_on' (a dependent) or 'after_batch' (the callback of the
    batch the task is a member of); a parent is 'depends_on'."""

    id: int
    status: str
    kind: str
    via: str


async def task_parents(database: db.Database, task_id: int) -> list[TaskState]:
    """The parents of ``task_id`` in its ``depends_on`` order (empty: none, or no task)."""
    rows = await database.fetch(sql.queries["task_parents"], task_id)
    return [TaskState(r["id"], r["status"], r["result"], r["error"]) for r in rows]


async def task_batch(database: db.Database, task_id: int) -> BatchProgress | None:
    """The batch whose callback ``task_id`` is, or None."""
    row = await database.fetchrow(sql.queries["task_batch"], task_id)
    return None if row is None else BatchProgress.from_record(row)


async def batch_members(
    database: db.Database, batch_id: int, *, after: int, limit: int
) -> list[TaskState]:
    """A page of the batch's members in id order: ids above ``after``, at most ``limit``."""
    rows = await database.fetch(sql.queries["batch_members"], batch_id, after, limit)
    return [TaskState(r["id"], r["status"], r["result"], r["error"]) for r in rows]


async def task_children(
    database: db.Database, task_id: int, *, limit: int, scan: int = CHILDREN_SCAN
) -> list[Related]:
    """Up to ``limit`` tasks that wait or waited for ``task_id``, by id (see the statement
    for where they are looked for)."""
    rows = await database.fetch(sql.queries["task_children"], task_id, limit, scan)
    return [Related(r["id"], r["status"], r["kind"], r["via"]) for r in rows]


async def task_parents_brief(database: db.Database, task_id: int, *, limit: int) -> list[Related]:
    """The first ``limit`` parents of ``task_id`` in ``depends_on`` order: id, kind and
    status only (their results stay in the database)."""
    rows = await database.fetch(sql.queries["task_parents_brief"], task_id, limit)
    return [Related(r["id"], r["status"], r["kind"], "depends_on") for r in rows]


async def live_batches(database: db.Database, *, limit: int) -> list[BatchProgress]:
    """Up to ``limit`` batches not complete yet, newest first."""
    rows = await database.fetch(sql.queries["live_batches"], limit)
    return [BatchProgress.from_record(r) for r in rows]
