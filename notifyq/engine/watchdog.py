"""The loop watchdog: notices when something blocked the event loop, and names it.

A handler that calls blocking code (``time.sleep``, a synchronous HTTP client, a long
computation) inside ``async def`` stops everything in the process: the heartbeat, the
listener, the other handlers and the HTTP side. Past LEASE the fleet takes the task back
and runs it again. A trio task ticks every ``TICK_S``; a thread watches the ticks and, when
they stop for longer than the threshold, looks at the event loop thread's stack to find
which attempt's handler is running: an ``async def`` on trio (in ``Runner.call``) or a
``runtime="asyncio"`` one (in ``runtimes.run_on_asyncio``). When the loop runs again,
``loop.blocked`` is logged with how long it was blocked and the function; with the task id
and kind when a handler did it, else ``by`` names notifyq's own module that did (encoding
an outcome, say), and no handler is blamed. Nothing of this runs on the per-task path.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass
from types import FrameType

import trio

from notifyq import logs

log = logs.get("notifyq.worker")

TICK_S = 0.1
# The frames a handler runs under: (function, file) of the runner and of the asyncio runtime.
HANDLER_FRAMES = {
    ("call", __file__.replace("watchdog.py", "runner.py")),
    ("run_on_asyncio", __file__.replace("watchdog.py", "runtimes.py")),
}
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep

HANDLER_WHY = (
    "blocking code in a handler on the event loop (an async def, or runtime='asyncio') stops "
    "heartbeats, the listener and the HTTP side; register blocking code as a plain def "
    "handler (run in a thread)"
)
NOTIFYQ_WHY = (
    "notifyq's own work blocked the event loop, not a handler (a large result or payload to "
    "encode, or a machine short of CPU): heartbeats, the listener and the HTTP side waited"
)


@dataclass(frozen=True, slots=True)
class Culprit:
    task_id: int | None  # the attempt whose handler ran, if one did
    kind: str | None
    where: str  # function and line the loop thread was in
    by: str | None = None  # no handler: notifyq's module that ran (None: neither)


def find_culprit(frame: FrameType | None) -> Culprit | None:
    """The attempt whose handler runs in ``frame``'s stack (innermost first), if any; else
    the innermost module of notifyq's own on that stack."""
    if frame is None:
        return None
    where = f"{frame.f_code.co_name} ({frame.f_code.co_filename}:{frame.f_lineno})"
    ours: str | None = None
    walk: FrameType | None = frame
    while walk is not None:
        code = walk.f_code
        if (code.co_name, code.co_filename) in HANDLER_FRAMES:
            task = walk.f_locals.get("task")
            return Culprit(getattr(task, "id", None), getattr(task, "kind", None), where)
        if ours is None and code.co_filename.startswith(PACKAGE_DIR):
            ours = walk.f_globals.get("__name__")
        walk = walk.f_back
    return Culprit(None, None, where, by=f"notifyq ({ours})" if ours else None)


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
        why = "the event loop was blocked: heartbeats, the listener and the HTTP side waited"
        if culprit is not None and culprit.task_id is not None:
            fields.update(task_id=culprit.task_id, kind=culprit.kind, where=culprit.where)
            why = HANDLER_WHY
        elif culprit is not None:
            fields.update(by=culprit.by or "code outside notifyq's stages", where=culprit.where)
            if culprit.by is not None:
                why = NOTIFYQ_WHY
        log.warning("loop.blocked", **fields, why=why)

    def _watch(self, stop: threading.Event) -> None:
        while not stop.wait(TICK_S):
            if self._culprit is None and time.monotonic() - self._tick > self.threshold_s:
                frame = sys._current_frames().get(self._loop_thread)
                self._culprit = find_culprit(frame)
