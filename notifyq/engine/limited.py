"""The claimer's bookkeeping of limited queues (a pure policy: no I/O, clock passed in).

Limited queues (``notifyq.queues``, migration 0006) are claimed by their own statement,
which enforces their limits and says, for each queue a limit held back, how long it will
be held: until its next rate token (seconds), or until a slot frees or its limits change
(``inf``: a notification says when). :class:`LimitedQueues` remembers that and decides,
for each claim, which queues the limited statement and the plain one get:

- a held queue is left out of the claims, and of the next-due question, until it may
  move: its time has come, a notification about it arrived, or the process registered as
  waiting (a freed slot then wakes it, so every queue is looked at once more);
- the ready limited queues take turns at being first, so that one cannot starve another;
- the limited statement takes rows for free workers only (a slot is never held by a task
  that waits in this process's buffer); when free workers, not a limit, bounded it, more
  rows may wait (:attr:`LimitedQueues.backlog`) and the next freed worker claims again;
- which queues are limited goes stale on a ``notifyq_queues`` notification and at every
  sweep; the claimer reads them again before its next claim.

The claimer owns its one instance and calls it from its own task only; tests pin each rule
(tests/unit/test_limited.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClaimPlan:
    """The queues one claim passes to each statement (store.claim_with_limits)."""

    limited: tuple[str, ...]  # ready limited queues, in this claim's turn order
    limited_limit: int  # rows the limited statement may take (free workers only)
    unlimited: tuple[str, ...]  # the queues the plain statement claims from
    limit: int  # rows the claim may take in all


class LimitedQueues:
    """Which of a process's queues are limited, which are held back and until when."""

    def __init__(self, queues: Iterable[str]) -> None:
        self.queues = tuple(queues)
        self.limited: frozenset[str] = frozenset()  # those of our queues with limits
        self.stale = True  # read the limits before the first claim
        # Queue -> when (the claimer's clock) a limit stops holding it back; inf: until a
        # notification about it.
        self.held: dict[str, float] = {}
        # A limited queue may have due rows that we left because no worker was free.
        self.backlog = False
        self._turn = 0  # rotates the order of limited queues between claims

    def read(self, limited: Iterable[str]) -> frozenset[str]:
        """The limits were read: ``limited`` names every limited queue. Returns ours; a
        queue no longer limited (or gone) is no longer held."""
        self.stale = False
        self.limited = frozenset(limited) & frozenset(self.queues)
        self.held = {q: t for q, t in self.held.items() if q in self.limited}
        return self.limited

    def notified(self, queue: str) -> None:
        """Rows appeared in ``queue`` or a slot of it freed (channel notifyq): a queue held
        until a slot frees may move now; one waiting for a rate token keeps its time."""
        if self.held.get(queue) == math.inf:
            del self.held[queue]

    def limits_changed(self, queue: str) -> None:
        """The limits of ``queue`` changed (channel notifyq_queues): read them again, and
        let it move now."""
        if queue in self.queues:
            self.stale = True
            self.held.pop(queue, None)

    def swept(self) -> None:
        """The safety-net sweep: read the limits again and hold nothing back (a
        notification may have been lost)."""
        self.stale = True
        self.held.clear()

    def registered(self) -> None:
        """The process registered as waiting: a freed slot now wakes it, but one may have
        freed between the claim and the registration, so look at every such queue once
        more (rate tokens keep their times)."""
        self.held = {q: t for q, t in self.held.items() if t != math.inf}

    def next_token_at(self) -> float:
        """When the earliest held queue may move by itself (inf: none will)."""
        return min(self.held.values(), default=math.inf)

    def due_queues(self) -> list[str]:
        """Queues whose next due row should wake the claimer: not held back by a limit,
        and not limited while they wait for a worker of ours."""
        return [
            q
            for q in self.queues
            if q not in self.held and not (self.backlog and q in self.limited)
        ]

    def plan(self, *, now: float, want: int, free_workers: int) -> ClaimPlan:
        """The queues of the next claim of up to ``want`` rows, at ``now``, with
        ``free_workers`` workers of ours free. Each call is a new turn."""
        ready = [q for q in self.queues if q in self.limited and self.held.get(q, 0.0) <= now]
        self._turn += 1
        if ready:
            k = self._turn % len(ready)
            ready = ready[k:] + ready[:k]
        limited_limit = min(want, max(0, free_workers)) if ready else 0
        unlimited = tuple(q for q in self.queues if q not in self.limited)
        return ClaimPlan(tuple(ready), limited_limit, unlimited, want)

    def claimed(
        self,
        plan: ClaimPlan,
        *,
        now: float,
        held_s: Mapping[str, float],
        took: Iterable[str],
    ) -> None:
        """The claim of ``plan`` is back at ``now``: ``held_s`` says how long a limit holds
        each queue it held (inf: until a notification), ``took`` names the queue of each
        row it took."""
        for queue in plan.limited:
            self.held.pop(queue, None)
        for queue, seconds in held_s.items():
            self.held[queue] = now + seconds  # inf stays inf
        from_limited = sum(1 for q in took if q in self.limited)
        # Our own free workers, not a limit, bounded the limited claim: more rows may wait
        # for the next worker that frees (no timer, no notification needed for that).
        unheld = [q for q in plan.limited if q not in held_s]
        limit = plan.limited_limit
        self.backlog = bool(unheld) and (
            limit == 0 or (from_limited == limit and limit < plan.limit)
        )
