"""Producers' and the client's statements: enqueue (unique or not), get, history, cancel, retry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from notifyq import db, errors, sql
from notifyq.spec import NewTask
from notifyq.store.rows import EventRow, Row, TaskRow

# --- producers and the client -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Enqueued:
    """What an enqueue did: added ``row``, or (with a unique key) found it live: duplicate."""

    row: TaskRow
    duplicate: bool
    # added, or what the task's on_conflict did to the live holder: kept, replaced, updated
    change: str = "added"

    @property
    def id(self) -> int:
        return self.row.id


# A duplicate whose live task ends (or commits) between the insert's check and its read
# makes the statement return nothing; running it again settles it.
UNIQUE_ATTEMPTS = 20


async def enqueue(database: db.Database, *, task: NewTask) -> Enqueued:
    """Add a checked task (:func:`notifyq.spec.new_task`, the one check of every entry
    point); with a unique key, unless a live task of its queue holds it (then that one)."""
    if task.unique_key is None:
        added: Row | None = await database.fetchrow(
            sql.queries["enqueue"],
            *task.parameters(),
            task.concurrency_key,
            task.depends_on,
            task.on_parent_failure,
            *task.expiry(),
        )
        assert added is not None  # INSERT ... RETURNING always returns the row
        return Enqueued(TaskRow.from_record(added), duplicate=False)
    if task.on_conflict != "keep":
        return await database.run_in_transaction(partial(_upsert, task))
    for _ in range(UNIQUE_ATTEMPTS):
        row: Row | None = await database.fetchrow(
            sql.queries["enqueue_unique"],
            *task.parameters(),
            task.unique_key,
            task.concurrency_key,
            *task.expiry(),
        )
        if row is not None:
            found = {k: v for k, v in row.items() if k != "added"}
            change = "added" if row["added"] else "kept"
            return Enqueued(TaskRow.from_record(found), duplicate=not row["added"], change=change)
    raise errors.NotifyqError(
        f"unique key {task.unique_key!r} of queue {task.queue!r} kept changing hands; try again"
    )


async def _upsert(task: NewTask, conn: db.Connection) -> Enqueued:
    args = (*task.parameters(), task.unique_key, task.concurrency_key, task.on_conflict)
    done = await conn.fetchrow(sql.queries["enqueue_upsert"], *args, *task.expiry())
    row = await conn.fetchrow(sql.queries["get_task"], done["id"])
    change = str(done["change"])
    return Enqueued(TaskRow.from_record(row), duplicate=change != "added", change=change)


async def due_or_running(database: db.Database, queues: Sequence[str], kinds: Sequence[str]) -> int:
    """Tasks of ``queues`` running, or pending, due now and of ``kinds`` (notifyq.testing's
    "idle")."""
    return int(await database.fetchval(sql.queries["testing_busy"], list(queues), list(kinds)))


async def seed(database: db.Database, count: int) -> list[int]:
    """Add ``count`` demo tasks in one statement; their ids."""
    return [r["id"] for r in await database.fetch(sql.queries["seed"], count)]


async def get_task(database: db.Database, task_id: int) -> TaskRow | None:
    row: Row | None = await database.fetchrow(sql.queries["get_task"], task_id)
    return None if row is None else TaskRow.from_record(row)


async def task_history(database: db.Database, task_id: int) -> list[EventRow]:
    """The task's events, oldest first (empty for no such task)."""
    return [
        EventRow.from_record(r) for r in await database.fetch(sql.queries["task_history"], task_id)
    ]


async def cancel(database: db.Database, task_id: int) -> str | None:
    """The SQL function's answer: 'cancelled', 'cancelling', an ended status, or None."""
    status: str | None = await database.fetchval(sql.queries["cancel"], task_id)
    return status


async def retry(database: db.Database, task_id: int) -> str | None:
    """'requeued', the status that refused the retry, or None (no such task)."""
    status: str | None = await database.fetchval(sql.queries["retry"], task_id)
    return status
