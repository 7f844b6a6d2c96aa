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
from typing import Any, Unpack

import trio

from notifyq import db, errors, listen, spec, sql, store
from notifyq.producers import workflows
from notifyq.producers.waiting import WorkflowOutcome
from notifyq.vocabulary import DONE_CHANNEL, ENDED, Answer, Status


class Client:
    """Producers' and operators' calls on a notifyq database, from trio code.

    It holds the pool it was given (``database``; :func:`open_client` opens and closes one)
    and owns no connection of its own: each call takes a pooled connection for one
    statement, so any number of trio tasks may share one client and call it at once.
    :meth:`wait` is the exception: each call opens a dedicated LISTEN connection to
    ``listen_dsn`` (a session, never a transaction-pooling PgBouncer) for as long as it
    waits. A task it adds commits at once; to add a task inside your own transaction, use
    :func:`notifyq.enqueue` on your connection instead. It keeps no state between calls.
    """

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
        unique_key: str | None = None,
        delay_s: float | None = None,
        timeout_s: float | None = None,
        **options: Unpack[spec.PlainOptions],
    ) -> int:
        """Add a task and return its id; the options are those of every entry point
        (:func:`notifyq.new_task`), checked there (:class:`InvalidTask`). ``delay_s`` and
        ``timeout_s`` are deprecated aliases of ``delay`` and ``timeout`` (earlier READMEs
        showed them).

        With ``unique_key``, a live task of the same queue and key is not added again: its id
        is returned instead (``enqueue_unique`` says which happened)."""
        task = _task(kind, payload, unique_key, delay_s, timeout_s, options)
        return (await store.enqueue(self.db, task=task)).id

    async def enqueue_unique(
        self,
        kind: str,
        payload: Any = None,
        *,
        unique_key: str,
        delay_s: float | None = None,
        timeout_s: float | None = None,
        **options: Unpack[spec.PlainOptions],
    ) -> store.Enqueued:
        """Add a task unless a live (pending or in_progress) task of ``queue`` holds
        ``unique_key``; ``.duplicate`` says whether ``.row`` is that existing task."""
        if unique_key is None:
            raise errors.InvalidTask("unique_key", unique_key, "expected a string")
        task = _task(kind, payload, unique_key, delay_s, timeout_s, options)
        return await store.enqueue(self.db, task=task)

    async def enqueue_workflow(self, workflow: workflows.Workflow) -> workflows.Added:
        """Add a :func:`notifyq.chain`, ``group`` or ``chord`` in one statement (committed
        at once); its ids, as :func:`notifyq.enqueue_workflow` returns them."""
        made = workflows.statement(workflows.as_workflow(workflow))
        rows = await _workflow_rows(self.db, made)
        return workflows.added(made, rows)

    async def task(self, task_id: int) -> store.TaskRow:
        """The task's row, typed; :class:`TaskNotFound` if there is none."""
        row = await store.get_task(self.db, task_id)
        if row is None:
            raise errors.TaskNotFound(task_id)
        return row

    async def events(self, task_id: int) -> list[store.EventRow]:
        """The task's history, oldest first, typed; :class:`TaskNotFound` if there is none."""
        await self.task(task_id)
        return await store.task_history(self.db, task_id)

    async def get(self, task_id: int) -> dict[str, Any]:
        """The task's columns as a dict (:meth:`task` has them typed)."""
        return (await self.task(task_id)).as_dict()

    async def history(self, task_id: int) -> list[dict[str, Any]]:
        """The task's events as dicts (:meth:`events` has them typed)."""
        return [e.as_dict() for e in await self.events(task_id)]

    async def cancel(self, task_id: int) -> str:
        """Cancel; returns 'cancelled' (was pending) or 'cancelling' (was running)."""
        status = await store.cancel(self.db, task_id)
        if status is None:
            raise errors.TaskNotFound(task_id)
        if status in (Status.DONE, Status.ERROR):
            raise errors.InvalidTransition(task_id, status, "cancel")
        return str(status)

    async def retry(self, task_id: int) -> str:
        """Put an 'error' or 'cancelled' task back to pending ('pending'), or back to
        'waiting' when it is a dependent whose parent has not ended (a retried parent)."""
        status = await store.retry(self.db, task_id)
        if status is None:
            raise errors.TaskNotFound(task_id)
        if status == Answer.DUPLICATE:
            raise errors.InvalidTransition(
                task_id, "a duplicate of a live task (same queue and unique key)", "retry"
            )
        if status == Answer.PARENT_FAILED:
            raise errors.InvalidTransition(
                task_id, "cancelled by a parent that failed (retry the parent first)", "retry"
            )
        if status == Status.WAITING:
            return Status.WAITING.value  # retried: it waits for a parent that runs again
        if status != Answer.REQUEUED:
            raise errors.InvalidTransition(task_id, status, "retry")
        return Status.PENDING.value

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

    async def wait_workflow(
        self, workflow: workflows.Added, *, timeout_s: float | None = None
    ) -> WorkflowOutcome:
        """Wait until every task of ``workflow`` (what :meth:`enqueue_workflow` returned)
        ended, as :func:`notifyq.wait_workflow`; trio.TooSlowError after ``timeout_s``."""
        watch = workflows.watch(workflow)
        with trio.fail_after(timeout_s if timeout_s is not None else math.inf):
            while True:
                try:
                    return await self._wait_workflow_once(watch)
                except listen.ListenerLost:
                    await trio.sleep(0.2)  # reconnect, and look at the rows again

    async def _wait_workflow_once(self, watch: Any) -> WorkflowOutcome:
        async with listen.open_listener(self.db.loop, self.listen_dsn, [DONE_CHANNEL]) as listener:
            # Subscribed first, then look: an end between the two is not missed.
            while True:
                results = [
                    [tuple(r.values()) for r in await self.db.fetch(sql.queries[name], *args)]
                    for name, args in watch.reads()
                ]
                outcome: WorkflowOutcome | None = watch.settle(results)
                if outcome is not None:
                    return outcome
                async for note in listener:
                    try:
                        ours = json.loads(note.payload)["id"] in watch.hears
                    except (ValueError, KeyError, TypeError):
                        continue  # a bad payload never kills a waiter
                    if ours:
                        break
                else:
                    raise listen.ListenerLost("the listener closed")

    async def _wait_once(self, task_id: int) -> dict[str, Any]:
        async with listen.open_listener(self.db.loop, self.listen_dsn, [DONE_CHANNEL]) as listener:
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


async def _workflow_rows(database: db.Database, made: workflows.Statement) -> list[Any]:
    """The rows of a workflow's statement run on the pool (one statement: one transaction)."""
    return [tuple(r.values()) for r in await database.fetch(made.text, *made.args)]


def _task(
    kind: str,
    payload: Any,
    unique_key: str | None,
    delay_s: float | None,
    timeout_s: float | None,
    options: spec.PlainOptions,
) -> spec.NewTask:
    # delay_s and timeout_s: the names the README showed before delay and timeout.
    if delay_s is not None:
        if options.get("delay") is not None:
            raise TypeError("give delay or delay_s, not both")
        options = {**options, "delay": delay_s}
    if timeout_s is not None:
        if options.get("timeout") is not None:
            raise TypeError("give timeout or timeout_s, not both")
        options = {**options, "timeout": timeout_s}
    return spec.new_task(kind, payload, unique_key=unique_key, **options)


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
