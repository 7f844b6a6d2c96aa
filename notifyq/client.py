"""The Python API for producers and operators: enqueue, inspect, cancel, retry, wait.

    async with notifyq.open_client("postgresql://...") as client:
        task_id = await client.enqueue("reverse", "hello")
        task = await client.wait(task_id, timeout_s=10)

Everything here is also plain SQL (see the README); this is a convenience over it.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import trio

from notifyq import db, errors, listen, priorities, store
from notifyq.store import ENDED


class Client:
    def __init__(self, database: db.Database, *, listen_dsn: str | None = None) -> None:
        self.db = database
        # wait() LISTENs: it needs a session, so behind a transaction-pooling PgBouncer
        # this is a direct URL (LISTEN_DATABASE_URL).
        self.listen_dsn = listen_dsn or database.dsn

    async def enqueue(
        self,
        kind: str,
        payload: Any = None,
        *,
        queue: str = "default",
        priority: int | str = 0,
        delay_s: float = 0.0,
        run_at: datetime | None = None,
        max_attempts: int = 3,
        timeout_s: float | None = None,
        concurrency_key: str | None = None,
        unique_key: str | None = None,
    ) -> int:
        """Add a task and return its id. ``payload`` must be JSON-serialisable;
        ``priority`` an integer or low, normal, high, urgent; ``concurrency_key`` is what
        the queue's per-key limit counts by.

        With ``unique_key``, a live task of the same queue and key is not added again: its id
        is returned instead (``enqueue_unique`` says which happened)."""
        if unique_key is not None:
            found = await self.enqueue_unique(
                kind,
                payload,
                unique_key=unique_key,
                queue=queue,
                priority=priority,
                delay_s=delay_s,
                run_at=run_at,
                max_attempts=max_attempts,
                timeout_s=timeout_s,
                concurrency_key=concurrency_key,
            )
            return found.id
        number = priorities.parse(priority)
        self._check(payload, delay_s, timeout_s)
        row = await store.enqueue(
            self.db,
            queue=queue,
            kind=kind,
            payload={} if payload is None else payload,
            priority=number,
            run_at=run_at,
            delay_s=delay_s,
            max_attempts=max_attempts,
            timeout_s=timeout_s,
            concurrency_key=concurrency_key,
        )
        return int(row["id"])

    async def enqueue_unique(
        self,
        kind: str,
        payload: Any = None,
        *,
        unique_key: str,
        queue: str = "default",
        priority: int | str = 0,
        delay_s: float = 0.0,
        run_at: datetime | None = None,
        max_attempts: int = 3,
        timeout_s: float | None = None,
        concurrency_key: str | None = None,
    ) -> store.Enqueued:
        """Add a task unless a live (pending or in_progress) task of ``queue`` holds
        ``unique_key``; ``.duplicate`` says whether ``.row`` is that existing task."""
        number = priorities.parse(priority)
        self._check(payload, delay_s, timeout_s)
        if not unique_key or len(unique_key) > 512:
            raise ValueError(f"unique_key must be 1-512 characters, got {unique_key!r}")
        return await store.enqueue_unique(
            self.db,
            queue=queue,
            kind=kind,
            payload={} if payload is None else payload,
            priority=number,
            run_at=run_at,
            delay_s=delay_s,
            max_attempts=max_attempts,
            timeout_s=timeout_s,
            unique_key=unique_key,
            concurrency_key=concurrency_key,
        )

    @staticmethod
    def _check(payload: Any, delay_s: float, timeout_s: float | None) -> None:
        if not math.isfinite(delay_s) or delay_s < 0:
            raise ValueError(f"delay_s must be a finite number >= 0, got {delay_s}")
        if timeout_s is not None and not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        json.dumps(payload, allow_nan=False)  # fail here, with the caller's stack

    async def get(self, task_id: int) -> dict[str, Any]:
        row = await store.get_task(self.db, task_id)
        if row is None:
            raise errors.TaskNotFound(task_id)
        return dict(row)

    async def history(self, task_id: int) -> list[dict[str, Any]]:
        await self.get(task_id)
        return [dict(r) for r in await store.task_history(self.db, task_id)]

    async def cancel(self, task_id: int) -> str:
        """Cancel; returns 'cancelled' (was pending) or 'cancelling' (was running)."""
        status = await store.cancel(self.db, task_id)
        if status is None:
            raise errors.TaskNotFound(task_id)
        if status in ("done", "error"):
            raise errors.InvalidTransition(task_id, status, "cancel")
        return str(status)

    async def retry(self, task_id: int) -> str:
        """Put an 'error' or 'cancelled' task back to pending."""
        status = await store.retry(self.db, task_id)
        if status is None:
            raise errors.TaskNotFound(task_id)
        if status == "duplicate":
            raise errors.InvalidTransition(
                task_id, "a duplicate of a live task (same queue and unique key)", "retry"
            )
        if status != "requeued":
            raise errors.InvalidTransition(task_id, status, "retry")
        return "pending"

    async def wait(self, task_id: int, *, timeout_s: float | None = None) -> dict[str, Any]:
        """Wait until the task ends (LISTEN notifyq_done), then return its row.

        Raises trio.TooSlowError after ``timeout_s``.
        """
        with trio.fail_after(timeout_s if timeout_s is not None else math.inf):
            while True:
                try:
                    return await self._wait_once(task_id)
                except listen.ListenerLost:
                    await trio.sleep(0.2)  # reconnect, and look at the row again

    async def _wait_once(self, task_id: int) -> dict[str, Any]:
        async with listen.open_listener(
            self.db.loop, self.listen_dsn, ["notifyq_done"]
        ) as listener:
            # Subscribed first, then look: an end between the two is not missed.
            task = await self.get(task_id)
            if task["status"] in ENDED:
                return task
            async for note in listener:
                try:
                    ended = json.loads(note.payload)["id"] == task_id
                except (ValueError, KeyError, TypeError):
                    continue  # a bad payload never kills a waiter
                if ended:
                    return await self.get(task_id)
        raise listen.ListenerLost("the listener closed")


@asynccontextmanager
async def open_client(
    dsn: str,
    *,
    pool_size: int = 5,
    listen_dsn: str | None = None,
    statement_cache_size: int = 100,
) -> AsyncIterator[Client]:
    """A client on ``dsn``. Behind a transaction-pooling PgBouncer pass
    ``statement_cache_size=0`` and a direct ``listen_dsn`` for :meth:`Client.wait`."""
    async with db.open_database(
        dsn, min_size=1, max_size=pool_size, statement_cache_size=statement_cache_size
    ) as database:
        yield Client(database, listen_dsn=listen_dsn)
