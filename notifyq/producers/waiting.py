"""Waiting for a task's end from sync or asyncio code: LISTEN notifyq_done, then the row.

A notification is only a hint that some task ended; the row is read to see what happened
(and read once right after LISTEN took effect, so an end between the two is not missed).
Notifications reach a session only between transactions, so the connection must not be
inside one: commit the task first.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from notifyq.errors import TaskNotFound, WaitTimeout
from notifyq.producers.drivers import parameters, statement, unsupported
from notifyq.vocabulary import DONE_CHANNEL, ENDED, Status


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    """Where a task stands; ``ended`` once it is done, error or cancelled."""

    id: int
    status: str
    result: Any
    error: str | None
    attempts: int

    @property
    def ended(self) -> bool:
        return self.status in ENDED


def _outcome(task_id: int, rows: Sequence[Sequence[Any]]) -> TaskOutcome:
    if not rows:
        raise TaskNotFound(task_id)
    id_, status, result, error, attempts = rows[0]
    return TaskOutcome(
        int(id_), str(status), None if result is None else json.loads(result), error, int(attempts)
    )


def _is_ours(payload: str, task_ids: frozenset[int]) -> bool:
    try:
        return json.loads(payload)["id"] in task_ids
    except (ValueError, KeyError, TypeError):
        return False  # a bad payload never ends a wait


@dataclass(frozen=True, slots=True)
class BatchCounts:
    """A chord's batch as a wait reads it (driver-free): members added, ended done, ended
    error or cancelled, not ended."""

    id: int
    total: int
    done: int
    failed: int
    remaining: int


@dataclass(frozen=True, slots=True)
class WorkflowOutcome:
    """Where a workflow stands: its tasks in id order (chain order, member order; a chord's
    members are counted in ``batches``, not listed: its callback stands for them)."""

    tasks: tuple[TaskOutcome, ...]
    batches: tuple[BatchCounts, ...]

    @property
    def ended(self) -> bool:
        return all(t.ended for t in self.tasks)

    @property
    def ok(self) -> bool:
        """Every task listed and every batch member ended done."""
        return all(t.status == Status.DONE for t in self.tasks) and not any(
            b.failed or b.remaining for b in self.batches
        )

    def __getitem__(self, task_id: int) -> TaskOutcome:
        for task in self.tasks:
            if task.id == task_id:
                return task
        raise KeyError(task_id)


@dataclass(frozen=True, slots=True)
class Watch:
    """What a wait reads and which notifications wake it: one task, or a workflow's tasks
    and batches. ``reads`` are named statements with their arguments."""

    task_ids: tuple[int, ...]
    batch_ids: tuple[int, ...] = ()
    single: bool = True

    @property
    def hears(self) -> frozenset[int]:
        return frozenset(self.task_ids)

    def reads(self) -> list[tuple[str, tuple[Any, ...]]]:
        if self.single:
            return [("produce_outcome", (self.task_ids[0],))]
        found = [("produce_outcomes", (list(self.task_ids),))]
        if self.batch_ids:
            found.append(("produce_batches", (list(self.batch_ids),)))
        return found

    def settle(self, results: Sequence[Sequence[Sequence[Any]]]) -> Any:
        """The outcome once everything watched ended, else None."""
        if self.single:
            outcome = _outcome(self.task_ids[0], results[0])
            return outcome if outcome.ended else None
        tasks = tuple(_outcome(int(r[0]), [r]) for r in results[0])
        if len(tasks) < len(self.task_ids):
            missing = sorted(set(self.task_ids) - {t.id for t in tasks})
            raise TaskNotFound(missing[0])
        batches = tuple(BatchCounts(*map(int, r)) for r in (results[1] if self.batch_ids else []))
        workflow = WorkflowOutcome(tasks, batches)
        return workflow if workflow.ended else None

    def timed_out(self, timeout_s: float) -> WaitTimeout:
        return WaitTimeout(self.task_ids[0], timeout_s)


def _not_in_transaction(what: str) -> ValueError:
    return ValueError(
        f"{what} needs a connection outside a transaction (commit first): "
        "notifications reach a session only between transactions"
    )


def wait_sync(conn_or_dsn: Any, watch: Watch, timeout_s: float) -> Any:
    import psycopg

    if isinstance(conn_or_dsn, str):
        with psycopg.connect(conn_or_dsn, autocommit=True) as conn:
            return _wait_psycopg(conn, watch, timeout_s)
    if isinstance(conn_or_dsn, psycopg.Connection):
        return _wait_psycopg(conn_or_dsn, watch, timeout_s)
    raise unsupported(conn_or_dsn, "notifyq.wait")


def _wait_psycopg(conn: Any, watch: Watch, timeout_s: float) -> Any:
    from psycopg.pq import TransactionStatus

    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise _not_in_transaction("notifyq.wait")
    deadline = time.monotonic() + timeout_s

    def run(name: str, *args: Any) -> list[Any]:
        with conn.cursor() as cur:
            cur.execute(statement(name, "pyformat"), parameters(args, "pyformat"))
            rows = list(cur.fetchall()) if cur.description else []
        if not conn.autocommit:
            conn.commit()  # end the transaction the statement began: back to idle
        return rows

    was_listening = bool(run("listening_done")[0][0])
    run("listen_done")
    try:
        while True:
            outcome = watch.settle([run(name, *args) for name, args in watch.reads()])
            remaining = deadline - time.monotonic()
            if outcome is not None:
                return outcome
            if remaining <= 0:
                raise watch.timed_out(timeout_s)
            for note in conn.notifies(timeout=remaining):
                if _is_ours(note.payload, watch.hears):
                    break
    finally:
        if not conn.closed and not was_listening:
            run("unlisten_done")


async def wait_async(conn: Any, watch: Watch, timeout_s: float) -> Any:
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(conn, psycopg.AsyncConnection):
        return await _wait_psycopg_async(conn, watch, timeout_s)
    return await _wait_asyncpg(conn, watch, timeout_s)


async def _wait_psycopg_async(conn: Any, watch: Watch, timeout_s: float) -> Any:
    from psycopg.pq import TransactionStatus

    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise _not_in_transaction("notifyq.wait")
    deadline = time.monotonic() + timeout_s

    async def run(name: str, *args: Any) -> list[Any]:
        async with conn.cursor() as cur:
            await cur.execute(statement(name, "pyformat"), parameters(args, "pyformat"))
            rows = list(await cur.fetchall()) if cur.description else []
        if not conn.autocommit:
            await conn.commit()
        return rows

    was_listening = bool((await run("listening_done"))[0][0])
    await run("listen_done")
    try:
        while True:
            outcome = watch.settle([await run(name, *args) for name, args in watch.reads()])
            remaining = deadline - time.monotonic()
            if outcome is not None:
                return outcome
            if remaining <= 0:
                raise watch.timed_out(timeout_s)
            async for note in conn.notifies(timeout=remaining):
                if _is_ours(note.payload, watch.hears):
                    break
    finally:
        if not conn.closed and not was_listening:
            await run("unlisten_done")


async def _wait_asyncpg(conn: Any, watch: Watch, timeout_s: float) -> Any:
    import asyncio

    if conn.is_in_transaction():
        raise _not_in_transaction("notifyq.wait")
    heard = asyncio.Event()

    def on_done(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        if _is_ours(payload, watch.hears):
            heard.set()

    deadline = time.monotonic() + timeout_s
    was_listening = await conn.fetchval(statement("listening_done", "numeric_dollar"))
    await conn.add_listener(DONE_CHANNEL, on_done)  # LISTEN, in effect when it returns
    try:
        while True:
            heard.clear()  # before the read: an end after it sets the event again
            results = [
                [tuple(r) for r in await conn.fetch(statement(name, "numeric_dollar"), *args)]
                for name, args in watch.reads()
            ]
            outcome = watch.settle(results)
            remaining = deadline - time.monotonic()
            if outcome is not None:
                return outcome
            if remaining <= 0:
                raise watch.timed_out(timeout_s)
            # On a timeout: one last read, then WaitTimeout.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(heard.wait(), remaining)
    finally:
        if not conn.is_closed():
            # asyncpg UNLISTENs once its last callback goes, even when the application's
            # own LISTEN (a plain statement) came first: that LISTEN is set again.
            await conn.remove_listener(DONE_CHANNEL, on_done)
            if was_listening:
                await conn.execute(statement("listen_done", "numeric_dollar"))
