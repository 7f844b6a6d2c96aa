"""What one stage offers another without naming it: the service hands each its peer.

The stages of :mod:`notifyq.engine` share only the ledger and the values here; none
imports another (the import-linter ``independence`` contract in pyproject.toml). Where a
stage acts for another, it holds a port, a :class:`typing.Protocol` that the other
implements and the service passes in: the writer claims the claimer's next rows in the
statement that records outcomes through a :class:`ClaimHandoff`, and never imports the
claimer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from notifyq import store


@dataclass(frozen=True, slots=True)
class Reservation:
    """A claim the writer makes for the claimer (see :meth:`ClaimHandoff.reserve`)."""

    want: int
    kinds: list[str]  # the kinds it may take
    appeared: int  # the claimer's count of wake-ups when it was made
    sent_at: float  # trio clock: the leases run from here


class ClaimHandoff(Protocol):
    """Claims that the writer makes, in its own statement, for the stage that claims.

    Between :meth:`reserve` and :meth:`settle` the claim is the writer's: the claiming
    stage claims nothing itself. Every reservation returned is settled exactly once, on
    success and on failure, from the writer's task.
    """

    @property
    def queues(self) -> tuple[str, ...]:
        """The queues the claim may take rows from."""
        ...

    def reserve(self, outcomes: int) -> Reservation | None:
        """The claim to make with the statement that writes ``outcomes`` outcomes
        (None: claim nothing this time)."""
        ...

    def settle(self, reservation: Reservation, rows: list[store.Claimed] | None) -> None:
        """The claim is over: ``rows`` it took (None: the statement failed, nothing was
        claimed). The rows are the claiming stage's from now on."""
        ...
