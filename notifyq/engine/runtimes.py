"""Where a handler runs: on trio, in a worker thread (``def``), or on asyncio.

- ``trio``: an ``async def`` handler, awaited in the handler's own trio task.
- ``thread``: a plain ``def``, run by :class:`Threads` with ``trio.to_thread.run_sync``,
  bounded by the process's worker slots (a ``CapacityLimiter`` of WORKER_COUNT), so a
  blocking call stalls neither the event loop nor the heartbeat, the listener or the HTTP
  side. A thread cannot be interrupted: on cancel, time limit or shutdown trio stops waiting
  for it (``abandon_on_cancel``) and the attempt's outcome is decided without it; the thread
  runs to its end in the background, its result is dropped, and it holds its slot until it
  returns. :meth:`Threads.statistics` counts such abandoned threads still running (shown in
  ``/metrics`` and ``/health``); while they hold every slot the claims leave ``def`` kinds
  out (:mod:`notifyq.engine.capacity`).
- ``asyncio``: a coroutine function registered with ``runtime="asyncio"``, run on the
  process's own trio-asyncio loop (the one that drives asyncpg, see :mod:`notifyq.db`), so
  asyncio libraries work inside it; trio cancellation becomes asyncio cancellation.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio


@dataclass(frozen=True, slots=True)
class ThreadStatistics:
    running: int  # sync handlers running in a thread now (abandoned ones included)
    abandoned: int  # of those, threads whose attempt was given up (cancel, limit, shutdown)
    slots: int  # threads allowed at once (WORKER_COUNT)

    def counts(self) -> tuple[int, int]:
        """(running, abandoned), as /metrics shows them."""
        return self.running, self.abandoned


class _State:
    __slots__ = ("abandoned", "done", "started")

    def __init__(self) -> None:
        self.started = False
        self.done = False
        self.abandoned = False


class Threads:
    """The worker threads of one process's sync handlers."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.limiter = trio.CapacityLimiter(slots)
        self._lock = threading.Lock()  # the counters change in worker threads too
        self._running = 0
        self._abandoned = 0
        self._token: trio.lowlevel.TrioToken | None = None
        self._abandoned_ended: list[Callable[[], None]] = []

    def on_abandoned_end(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (in the trio thread) when an abandoned thread returns."""
        self._abandoned_ended.append(callback)

    def _tell_abandoned_ended(self) -> None:
        """(in a worker thread) Run the callbacks in the trio thread, if trio still runs."""
        token = self._token
        if token is None or not self._abandoned_ended:
            return
        for callback in self._abandoned_ended:
            try:
                token.run_sync_soon(callback)
            except trio.RunFinishedError:
                return  # the process is gone: nobody to tell

    def statistics(self) -> ThreadStatistics:
        with self._lock:
            return ThreadStatistics(self._running, self._abandoned, int(self.limiter.total_tokens))

    async def run(self, fn: Callable[[Any], Any], task: Any) -> Any:
        """``fn(task)`` in a worker thread; on cancellation, abandon the thread."""
        state = _State()
        self._token = trio.lowlevel.current_trio_token()

        def in_thread() -> Any:
            with self._lock:
                if state.abandoned:  # given up before the thread got to start
                    state.done = True
                    return None
                state.started = True
                self._running += 1
            try:
                result = fn(task)
                if inspect.isawaitable(result):
                    if inspect.iscoroutine(result):
                        result.close()
                    raise TypeError(
                        f"the handler of {getattr(task, 'kind', '?')!r} returned an awaitable "
                        "from a thread: make it an async def (trio) or register it with "
                        "runtime='asyncio'"
                    )
                return result
            finally:
                with self._lock:
                    self._running -= 1
                    state.done = True
                    if state.abandoned:
                        self._abandoned -= 1
                if state.abandoned:
                    self._tell_abandoned_ended()

        try:
            return await trio.to_thread.run_sync(
                in_thread, limiter=self.limiter, abandon_on_cancel=True
            )
        except trio.Cancelled:
            # The thread cannot be interrupted: trio has moved on. Count it while it runs;
            # whatever it returns later goes nowhere (and a stale outcome could not be
            # written anyway: the outcome write is fenced by owner and attempt).
            with self._lock:
                state.abandoned = True
                if state.started and not state.done:
                    self._abandoned += 1
            raise


async def run_asyncio(loop: Any, fn: Callable[[Any], Any], task: Any) -> Any:
    """``await fn(task)`` on the process's trio-asyncio ``loop``, from trio.

    The loop is passed explicitly: a handler task is not started inside the loop's context,
    where the bare ``aio_as_trio`` helper would look for it.
    """
    return await loop.run_aio_coroutine(run_on_asyncio(fn, task))


async def run_on_asyncio(fn: Callable[[Any], Any], task: Any) -> Any:
    """(asyncio side) The handler's coroutine. The loop watchdog finds the task of a
    blocking asyncio handler by this function's name and its ``task`` local."""
    return await fn(task)
