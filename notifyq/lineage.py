"""What a handler reads of its workflow: its parents' outcomes and its batch's results.

These are the only way a step receives results: notifyq does not copy a parent's result
into a dependent's payload. Every read is lazy (nothing is read for a task whose handler
does not ask: the claim statement returns no workflow column), made once per attempt and
cached on the task, except :meth:`Lineage.batch_results`, which streams.

Where the handler runs decides how the read reaches the database (one store, trio-native):

- trio: awaited directly;
- asyncio (``runtime="asyncio"``): the same coroutine, which hops to trio through the
  process's trio-asyncio loop (``loop.trio_as_future``);
- a thread (``def``): ``task.sync`` (:class:`SyncLineage`), which runs the read in the trio
  thread with ``trio.from_thread.run`` and blocks the handler's own worker thread while it
  runs (never the event loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any, TypeVar

import sniffio
import trio

from notifyq import db, store
from notifyq.errors import WorkflowError
from notifyq.store import BatchProgress, TaskState
from notifyq.vocabulary import Status

T = TypeVar("T")

PAGE_SIZE = 500
"""Members :meth:`Lineage.batch_results` reads per statement (one page held at a time)."""


async def _on_trio(fn: Callable[[], Awaitable[T]]) -> T:
    """``await fn()`` (a trio coroutine) from trio, or from an asyncio handler on the
    process's trio-asyncio loop."""
    if sniffio.current_async_library() == "asyncio":
        loop: Any = asyncio.get_running_loop()
        result: T = await loop.trio_as_future(fn)
        return result
    return await fn()


class Lineage:
    """The workflow reads of one attempt's task (its ``task.parents()`` and the others).

    Made on the first ask (see :meth:`notifyq.Task.parents`); the reads are cached here.
    """

    __slots__ = ("_batch", "_database", "_parents", "task_id")

    def __init__(self, database: db.Database, task_id: int) -> None:
        self._database = database
        self.task_id = task_id
        self._parents: Mapping[int, TaskState] | None = None
        self._batch: BatchProgress | None = None

    async def parents(self) -> Mapping[int, TaskState]:
        if self._parents is None:
            rows = await _on_trio(lambda: store.task_parents(self._database, self.task_id))
            self._parents = {r.id: r for r in rows}
        return self._parents

    async def parent_result(self) -> Any:
        return single_result(self.task_id, await self.parents())

    async def batch(self) -> BatchProgress:
        if self._batch is None:
            found = await _on_trio(lambda: store.task_batch(self._database, self.task_id))
            if found is None:
                raise WorkflowError(f"task {self.task_id} is no batch's callback (after_batch)")
            self._batch = found
        return self._batch

    async def batch_results(self, page_size: int = PAGE_SIZE) -> AsyncIterator[TaskState]:
        batch_id = (await self.batch()).id
        after = 0
        while True:
            page = await self.page(batch_id, after, page_size)
            for member in page:
                yield member
            if len(page) < page_size:
                return
            after = page[-1].id

    async def page(self, batch_id: int, after: int, page_size: int) -> list[TaskState]:
        return await _on_trio(
            lambda: store.batch_members(self._database, batch_id, after=after, limit=page_size)
        )


def single_result(task_id: int, parents: Mapping[int, TaskState]) -> Any:
    """The result of the one parent in ``parents``; a WorkflowError when there is not
    exactly one, or when it did not end done."""
    if len(parents) != 1:
        raise WorkflowError(
            f"task {task_id} has {len(parents)} parents; parent_result() needs exactly one"
        )
    [parent] = parents.values()
    if parent.status != Status.DONE:
        raise WorkflowError(f"parent task {parent.id} ended {parent.status}: {parent.error}")
    return parent.result


class SyncLineage:
    """``task.sync``: the reads of :class:`Lineage` from a ``def`` handler's worker thread.

    Each call runs the read in the trio thread (``trio.from_thread.run``) and waits for it
    in the handler's thread; only a thread that notifyq started for a handler can call it.
    """

    __slots__ = ("_lineage",)

    def __init__(self, lineage: Lineage) -> None:
        self._lineage = lineage

    def parents(self) -> Mapping[int, TaskState]:
        return trio.from_thread.run(self._lineage.parents)

    def parent_result(self) -> Any:
        return single_result(self._lineage.task_id, self.parents())

    def batch(self) -> BatchProgress:
        return trio.from_thread.run(self._lineage.batch)

    def batch_results(self, page_size: int = PAGE_SIZE) -> Iterator[TaskState]:
        batch_id = self.batch().id
        after = 0
        while True:
            page = trio.from_thread.run(self._lineage.page, batch_id, after, page_size)
            yield from page
            if len(page) < page_size:
                return
            after = page[-1].id
