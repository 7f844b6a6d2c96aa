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
from notifyq.vocabulary import DONE_CHANNEL, ENDED


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


def _is_ours(payload: str, task_id: int) -> bool:
    try:
        return bool(json.loads(payload)["id"] == task_id)
    except (ValueError, KeyError, TypeError):
        return False  # a bad payload never ends a wait


def _not_in_transaction(what: str) -> ValueError:
    return ValueError(
        f"{what} needs a connection outside a transaction (commit first): "
        "notifications reach a session only between transactions"
    )


def wait_sync(conn_or_dsn: Any, task_id: int, timeout_s: float) -> TaskOutcome:
    import psycopg

    if isinstance(conn_or_dsn, str):
        with psycopg.connect(conn_or_dsn, autocommit=True) as conn:
            return _wait_psycopg(conn, task_id, timeout_s)
    if isinstance(conn_or_dsn, psycopg.Connection):
        return _wait_psycopg(conn_or_dsn, task_id, timeout_s)
    raise unsupported(conn_or_dsn, "notifyq.wait")


def _wait_psycopg(conn: Any, task_id: int, timeout_s: float) -> TaskOutcome:
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
            outcome = _outcome(task_id, run("produce_outcome", task_id))
            remaining = deadline - time.monotonic()
            if outcome.ended:
                return outcome
            if remaining <= 0:
                raise WaitTimeout(task_id, timeout_s)
            for note in conn.notifies(timeout=remaining):
                if _is_ours(note.payload, task_id):
                    break
    finally:
        if not conn.closed and not was_listening:
            run("unlisten_done")


async def wait_async(conn: Any, task_id: int, timeout_s: float) -> TaskOutcome:
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(conn, psycopg.AsyncConnection):
        return await _wait_psycopg_async(conn, task_id, timeout_s)
    return await _wait_asyncpg(conn, task_id, timeout_s)


async def _wait_psycopg_async(conn: Any, task_id: int, timeout_s: float) -> TaskOutcome:
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
            outcome = _outcome(task_id, await run("produce_outcome", task_id))
            remaining = deadline - time.monotonic()
            if outcome.ended:
                return outcome
            if remaining <= 0:
                raise WaitTimeout(task_id, timeout_s)
            async for note in conn.notifies(timeout=remaining):
                if _is_ours(note.payload, task_id):
                    break
    finally:
        if not conn.closed and not was_listening:
            await run("unlisten_done")


async def _wait_asyncpg(conn: Any, task_id: int, timeout_s: float) -> TaskOutcome:
    import asyncio

    if conn.is_in_transaction():
        raise _not_in_transaction("notifyq.wait")
    heard = asyncio.Event()

    def on_done(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        if _is_ours(payload, task_id):
            heard.set()

    deadline = time.monotonic() + timeout_s
    was_listening = await conn.fetchval(statement("listening_done", "numeric_dollar"))
    await conn.add_listener(DONE_CHANNEL, on_done)  # LISTEN, in effect when it returns
    try:
        while True:
            heard.clear()  # before the read: an end after it sets the event again
            records = await conn.fetch(statement("produce_outcome", "numeric_dollar"), task_id)
            outcome = _outcome(task_id, [tuple(r) for r in records])
            remaining = deadline - time.monotonic()
            if outcome.ended:
                return outcome
            if remaining <= 0:
                raise WaitTimeout(task_id, timeout_s)
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
