"""The loop watchdog: notices when something blocked the event loop, and names it.

A handler that calls blocking code (``time.sleep``, a synchronous HTTP client, a long
computation) inside ``async def`` stops everything in the process: the heartbeat, the
listener, the other handlers and the HTTP side. Past LEASE the fleet takes the task back
and runs it again. A trio task ticks every ``TICK_S``; a thread watches the ticks and, when
they stop for longer than the threshold, looks at the event loop thread's stack to find
which attempt's handler is running. When the loop runs again, ``loop.blocked`` is logged
with how long it was blocked, the task id and kind (when a handler did it) and the function.
Nothing of this runs on the per-task path.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from types import FrameType

import trio

from notifyq import logs

log = logs.get("notifyq.worker")

TICK_S = 0.1
RUNNER_FILE = __file__.replace("watchdog.py", "runner.py")


@dataclass(frozen=True, slots=True)
class Culprit:
    task_id: int | None
    kind: str | None
    where: str  # function and line the loop thread was in


def find_culprit(frame: FrameType | None) -> Culprit | None:
    """The attempt whose handler runs in ``frame``'s stack (innermost first), if any."""
    if frame is None:
        return None
    where = f"{frame.f_code.co_name} ({frame.f_code.co_filename}:{frame.f_lineno})"
    walk: FrameType | None = frame
    while walk is not None:
        code = walk.f_code
        if code.co_name == "call" and code.co_filename == RUNNER_FILE:
            task = walk.f_locals.get("task")
            return Culprit(getattr(task, "id", None), getattr(task, "kind", None), where)
        walk = walk.f_back
    return Culprit(None, None, where)


class LoopWatch:
    def __init__(self, threshold_s: float) -> None:
        self.threshold_s = threshold_s
        self.blocked = 0  # times the loop was seen blocked
        self._tick = time.monotonic()
        self._culprit: Culprit | None = None
        self._loop_thread = threading.get_ident()

    async def serve(self) -> None:
        stop = threading.Event()
        watcher = threading.Thread(
            target=self._watch, args=(stop,), name="notifyq loop watchdog", daemon=True
        )
        self._loop_thread = threading.get_ident()
        watcher.start()
        try:
            while True:
                self._tick = time.monotonic()
                await trio.sleep(TICK_S)
                late = time.monotonic() - self._tick - TICK_S
                if late >= self.threshold_s:
                    self._report(late)
        finally:
            stop.set()

    def _report(self, late_s: float) -> None:
        self.blocked += 1
        culprit, self._culprit = self._culprit, None
        fields: dict[str, object] = {"blocked_s": round(late_s, 3)}
        if culprit is not None:
            fields.update(task_id=culprit.task_id, kind=culprit.kind, where=culprit.where)
        log.warning(
            "loop.blocked",
            **fields,
            why="blocking code in an async def handler stops heartbeats, the listener and "
            "the HTTP side; register blocking code as a plain def handler (run in a thread)",
        )

    def _watch(self, stop: threading.Event) -> None:
        while not stop.wait(TICK_S):
            if self._culprit is None and time.monotonic() - self._tick > self.threshold_s:
                frame = sys._current_frames().get(self._loop_thread)
                self._culprit = find_culprit(frame)
