"""What the stages of one process share: the attempts it holds, and who may change what.

An :class:`Attempt` lives in :attr:`Ledger.attempts` from the claim until its outcome is
written (or given up), under its task id and claim token: a task re-claimed while a stale
run of it still ends is two attempts, each fenced by its own token. Every field has one
owner:

=================  ==========================================================
``attempts``       entries added by the claimer, removed by the writer
``claimed``        the claimer (rows claimed so far)
``handed_over``    the runner (attempts whose outcome went to the writer)
``written``        the writer (outcomes written or given up)
``stopping``       the service (set once, when shutdown starts)
``limited``        the claimer (which of the process's queues have limits)
``capacity``       with ``PREFETCH=auto``, its :class:`AutoPrefetch` (fed by the claimer's
                   round trips and the runner's handler times); else fixed at start
``doorbell``       rung by anyone who frees room; waited on by the claimer only
``recheck``        rung when the rows of running attempts must be read again now (a
                   cancel notification); waited on by the lease keeper only
=================  ==========================================================

The other stages read them. On an Attempt, the claimer sets the task and the first lease;
the runner ``started``, ``stop_at``, ``over`` and ``transacted``; the heartbeat ``lease_until``.
``request_stop`` may be called by anyone (cancel, shutdown, lease lost).

Beyond the ledger, a stage that acts for another holds a port (:mod:`notifyq.engine.ports`)
the service hands it; no stage imports another.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import trio

from notifyq.app import Task
from notifyq.settings import Settings

# How long a handler gets to react to cancellation before it is abandoned.
CANCEL_GRACE_S = 2.0

StopReason = Literal["cancel", "shutdown", "lease_lost", "timeout"]
# How a transactional attempt's own commit went (the runner wrote its outcome itself):
# committed, refused by the fence (nothing written), or lost with its connection (nothing
# known: the lease decides; the reaper gives the task to a new attempt).
Transacted = Literal["committed", "fenced", "lost"]


def holds_connections(settings: Settings) -> bool:
    """Whether the claimer and the writer hold a connection each: only if the pool keeps
    two more for the heartbeat, the reaper and the rest (POOL_SIZE at least 4)."""
    return settings.pool_size >= 4


@dataclass(eq=False)
class Attempt:
    """One claimed attempt of a task, from claim until its outcome is written."""

    task: Task
    lease_until: float  # trio clock; the lease is surely valid before this
    lag_s: float = 0.0  # claim time minus run_at
    timeout_s: float | None = None  # the row's own time limit; once started, the one applied
    started: float = 0.0  # trio clock when the handler started; 0: not started
    handler_scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    stop_reason: StopReason | None = None
    undecodable: str | None = None  # the payload could not be decoded: fail without running
    token: int = 0  # the claim token (store.Claimed.token): outcome and heartbeat name it
    # trio clock when the handler must be over: its time limit, or a stop asked; the
    # overseer abandons a handler still running CANCEL_GRACE_S after that.
    stop_at: float = math.inf
    over: bool = False  # its outcome went to the writer (the runner sets it, once)
    abandoned: bool = False  # given up while its handler ignored cancellation
    # A transactional attempt whose outcome the runner wrote itself: the writer only
    # records it (None: the writer writes the outcome, as for every other attempt).
    transacted: Transacted | None = None

    @property
    def key(self) -> tuple[int, int]:
        """Its place in :attr:`Ledger.attempts`."""
        return (self.task.id, self.token)

    def request_stop(self, reason: StopReason) -> None:
        """Cancel the handler; the first reason given decides the verdict."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self.handler_scope.cancel()
        self.stop_at = min(self.stop_at, trio.current_time())


class Doorbell:
    """Wakes one stage: anyone may ring, only that stage waits."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def ring(self) -> None:
        self._event.set()

    async def wait_until(self, deadline: float) -> None:
        """Until the next ring (one that comes after this call) or ``deadline``."""
        self._event = trio.Event()
        with trio.move_on_at(deadline):
            await self._event.wait()


# PREFETCH=auto: the most claimed tasks that wait ahead of the workers, and how fast the
# averages of round trips and handler times follow the latest ones.
AUTO_PREFETCH_MAX = 500
AUTO_SMOOTHING = 0.2
# A handler time below this counts as this (a no-op takes a few µs; it bounds the ratio).
SHORTEST_RUN_S = 20e-6


class AutoPrefetch:
    """``PREFETCH=auto``: hold ahead of the workers what they finish in one claim round trip.

    The buffer is WORKER_COUNT x (claim round trip / handler time), at most
    AUTO_PREFETCH_MAX, both times as moving averages. Tasks that run longer than a round
    trip get no buffer at all: then, as with ``PREFETCH=0``, every ``in_progress`` task has a
    handler and the priority order decides the moment a worker frees
    (tests/integration/test_priority.py). Tasks shorter than a round trip get the batches
    that hide it; a claimed task then waits for a worker about one round trip at most, and
    a higher-priority task inserted meanwhile waits that long behind it. Until the first
    handler time is known there is no buffer.
    """

    def __init__(self, worker_count: int) -> None:
        self.workers = worker_count
        self.round_trip_s = 0.0
        self.run_s = math.inf  # unknown: no buffer

    def extra(self) -> int:
        """Claimed tasks to hold beyond the workers now."""
        if self.run_s >= self.round_trip_s:  # unknown (inf), or longer than a round trip
            return 0
        wanted = self.workers * self.round_trip_s / max(self.run_s, SHORTEST_RUN_S)
        return min(AUTO_PREFETCH_MAX, round(wanted))

    def round_trip(self, seconds: float) -> None:
        self.round_trip_s += AUTO_SMOOTHING * (seconds - self.round_trip_s)

    def ran(self, seconds: float) -> None:
        if self.run_s == math.inf:
            self.run_s = seconds
        else:
            self.run_s += AUTO_SMOOTHING * (seconds - self.run_s)


class Ledger:
    """What the stages of one process share: the attempts held, the counts, two doorbells.

    It owns nothing of its own and does no I/O: each field has one writer (the table in
    the module's doc), every stage reads. All of them run in the process's one trio
    thread, so no lock guards it; a worker thread or the asyncio loop never touches it.
    Nobody waits on it but through its doorbells: the claimer on :attr:`doorbell`, the
    lease keeper on :attr:`recheck`.
    """

    def __init__(self, worker_count: int, prefetch: int | None = 0) -> None:
        # Claimed attempts not yet written a process holds at most: WORKER_COUNT +
        # PREFETCH. With PREFETCH 0 every claimed attempt has a worker: `in_progress` means
        # a handler runs it, and the priority order decides the moment a worker frees
        # (tests/integration/test_priority.py). PREFETCH None (auto, the default): the
        # buffer follows the handlers' times (AutoPrefetch), from 0 up to its maximum.
        self.auto = AutoPrefetch(worker_count) if prefetch is None else None
        self.most = worker_count + (AUTO_PREFETCH_MAX if prefetch is None else prefetch)
        self.capacity = worker_count + (prefetch or 0)
        self.attempts: dict[tuple[int, int], Attempt] = {}  # by (task id, claim token)
        self.claimed = 0
        self.handed_over = 0
        self.written = 0
        self.stopping = False
        self.limited: frozenset[str] = frozenset()
        self.doorbell = Doorbell()
        self.recheck = Doorbell()

    def claim_round_trip(self, seconds: float) -> None:
        """The claimer: a claim (or the writer's outcome-and-claim) took ``seconds``."""
        if self.auto is not None:
            self.auto.round_trip(seconds)
            self.capacity = self.auto.workers + self.auto.extra()

    def handler_ran(self, seconds: float) -> None:
        """The runner: a handler ran ``seconds`` (from its start to its outcome)."""
        if self.auto is not None:
            self.auto.ran(seconds)
            self.capacity = self.auto.workers + self.auto.extra()

    @property
    def busy(self) -> int:
        """Claimed attempts whose outcome has not reached the writer yet."""
        return self.claimed - self.handed_over

    @property
    def unwritten(self) -> int:
        """Claimed attempts whose outcome is not written yet."""
        return self.claimed - self.written

    @property
    def room(self) -> int:
        """How many more attempts the claimer may take now.

        Counted against written outcomes, not finished handlers: a row stays
        `in_progress` until its outcome is written, so a process never has more rows
        `in_progress` than WORKER_COUNT + PREFETCH, and a writer that falls behind holds
        the claimer back instead of piling up leases.
        """
        return self.capacity - self.unwritten

    def running(self) -> list[tuple[int, int]]:
        """The (task id, claim token) of every attempt held."""
        return list(self.attempts)

    def holds(self, task_id: int) -> bool:
        """Whether some attempt of ``task_id`` is held."""
        return any(held_id == task_id for held_id, _ in self.attempts)
