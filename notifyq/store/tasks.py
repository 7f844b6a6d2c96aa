"""Producers' and the client's statements: enqueue (unique or not), get, history, cancel, retry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from notifyq import db, errors, sql
from notifyq.store.vocabulary import Row

# --- producers and the client -----------------------------------------------------------


async def enqueue(
    database: db.Database,
    *,
    queue: str,
    kind: str,
    payload: Any,
    priority: int,
    run_at: datetime | None,
    delay_s: float,
    max_attempts: int,
    timeout_s: float | None,
    concurrency_key: str | None = None,
) -> Row:
    row: Row | None = await database.fetchrow(
        sql.queries["enqueue"],
        queue,
        kind,
        payload,
        priority,
        run_at,
        delay_s,
        max_attempts,
        timeout_s,
        concurrency_key,
    )
    assert row is not None  # INSERT ... RETURNING always returns the row
    return row


@dataclass(frozen=True, slots=True)
class Enqueued:
    """What an enqueue with a unique key did: added ``row``, or found it live (duplicate)."""

    row: Row
    duplicate: bool

    @property
    def id(self) -> int:
        return int(self.row["id"])


# A duplicate whose live task ends (or commits) between the insert's check and its read
# makes the statement return nothing; running it again settles it.
UNIQUE_ATTEMPTS = 20


async def enqueue_unique(
    database: db.Database,
    *,
    queue: str,
    kind: str,
    payload: Any,
    priority: int,
    run_at: datetime | None,
    delay_s: float,
    max_attempts: int,
    timeout_s: float | None,
    unique_key: str,
    concurrency_key: str | None = None,
) -> Enqueued:
    """Add a task unless a live task of ``queue`` holds ``unique_key`` (then return that)."""
    for _ in range(UNIQUE_ATTEMPTS):
        row: Row | None = await database.fetchrow(
            sql.queries["enqueue_unique"],
            queue,
            kind,
            payload,
            priority,
            run_at,
            delay_s,
            max_attempts,
            timeout_s,
            unique_key,
            concurrency_key,
        )
        if row is not None:
            task = {k: v for k, v in row.items() if k != "added"}
            return Enqueued(task, duplicate=not row["added"])
    raise errors.NotifyqError(
        f"unique key {unique_key!r} of queue {queue!r} kept changing hands; try again"
    )


async def due_or_running(database: db.Database, queues: Sequence[str], kinds: Sequence[str]) -> int:
    """Tasks of ``queues`` running, or pending, due now and of ``kinds`` (notifyq.testing's
    "idle")."""
    return int(await database.fetchval(sql.queries["testing_busy"], list(queues), list(kinds)))


async def seed(database: db.Database, count: int) -> list[int]:
    """Add ``count`` demo tasks in one statement; their ids."""
    return [r["id"] for r in await database.fetch(sql.queries["seed"], count)]


async def get_task(database: db.Database, task_id: int) -> Row | None:
    row: Row | None = await database.fetchrow(sql.queries["get_task"], task_id)
    return row


async def task_history(database: db.Database, task_id: int) -> list[Row]:
    return list(await database.fetch(sql.queries["task_history"], task_id))


async def cancel(database: db.Database, task_id: int) -> str | None:
    """The SQL function's answer: 'cancelled', 'cancelling', an ended status, or None."""
    status: str | None = await database.fetchval(sql.queries["cancel"], task_id)
    return status


async def retry(database: db.Database, task_id: int) -> str | None:
    """'requeued', the status that refused the retry, or None (no such task)."""
    status: str | None = await database.fetchval(sql.queries["retry"], task_id)
    return status
