"""What a process can start now: which kinds its claims take, and how many rows.

- Kinds: only those it has a handler for. A row of another kind stays pending, untouched,
  for a process that has one (during a rolling deploy, old processes leave new kinds to
  new ones); the status page and ``notifyq status`` list such rows while no live process
  serves their kind.
- Threads: a plain ``def`` handler runs in a thread slot (WORKER_COUNT of them). A handler
  that ignored its time limit or a cancel is abandoned, but its thread cannot be
  interrupted and keeps its slot until it returns (:mod:`notifyq.engine.runtimes`). While
  such stuck threads leave no slot free, the claims leave ``def`` kinds out (other
  processes take them) instead of claiming rows that could not start and would end
  "timed out" without running. This is logged once when it starts and once when it ends,
  and ``/health`` reports the process as degraded with the count of stuck threads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from notifyq import logs
from notifyq.engine.ledger import Ledger
from notifyq.engine.runtimes import Threads

log = logs.get("notifyq.worker")


class Capacity:
    def __init__(self, runtimes: Mapping[str, str], threads: Threads, ledger: Ledger) -> None:
        """``runtimes``: {kind: runtime} of the process's handlers."""
        self.kinds = sorted(runtimes)
        self.thread_kinds = frozenset(k for k, r in runtimes.items() if r == "thread")
        self._without_threads = [k for k in self.kinds if k not in self.thread_kinds]
        self.threads = threads
        self.ledger = ledger
        self.threads_full = False  # stuck threads hold every slot: `def` kinds left out
        self._freed: list[Callable[[], None]] = []
        threads.on_abandoned_end(self._thread_returned)

    def on_thread_freed(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when a stuck thread returns while `def` kinds are left out."""
        self._freed.append(callback)

    def stuck(self) -> int:
        """Threads of abandoned handlers still running (each holds a slot)."""
        return self.threads.statistics().abandoned

    def claimable(self, want: int) -> tuple[list[str], int]:
        """The kinds to claim and how many rows (at most ``want``), so that each row can
        start at once."""
        stuck = self.stuck() if self.thread_kinds else 0
        free = want
        if stuck:
            # Every def attempt not over holds (or is about to take) a slot as well.
            waiting = sum(
                1
                for a in self.ledger.attempts.values()
                if not a.over and a.task.kind in self.thread_kinds
            )
            free = self.threads.slots - stuck - waiting
        self._note(stuck, full=free <= 0)
        if free <= 0:
            return self._without_threads, want
        return self.kinds, min(want, free)

    def _note(self, stuck: int, *, full: bool) -> None:
        """Say once, not per claim, when stuck threads start or stop holding `def` kinds."""
        if full == self.threads_full:
            return
        self.threads_full = full
        if full:
            log.warning(
                "claim.threads_full",
                stuck=stuck,
                slots=self.threads.slots,
                kinds=sorted(self.thread_kinds),
                why="handlers that ignored their time limit still run in every thread slot "
                "(a thread cannot be interrupted): these kinds are left to other processes "
                "until one returns",
            )
        else:
            log.info("claim.threads_free", kinds=sorted(self.thread_kinds))

    def _thread_returned(self) -> None:
        if self.threads_full:
            for callback in self._freed:
                callback()
