"""PREFETCH=auto: the buffer ahead of the workers holds what they finish in one claim round
trip, and nothing for tasks longer than a round trip (engine/ledger.py, AutoPrefetch)."""

from __future__ import annotations

from notifyq.engine.ledger import AUTO_PREFETCH_MAX, Ledger


def fed(ledger: Ledger, round_trip_s: float, run_s: float) -> Ledger:
    for _ in range(50):
        ledger.claim_round_trip(round_trip_s)
        ledger.handler_ran(run_s)
    return ledger


def test_no_buffer_until_a_handler_time_is_known() -> None:
    ledger = Ledger(10, None)
    ledger.claim_round_trip(0.001)
    assert ledger.capacity == 10


def test_tasks_longer_than_a_round_trip_get_no_buffer() -> None:
    assert fed(Ledger(5, None), 0.001, 0.3).capacity == 5
    assert fed(Ledger(5, None), 0.001, 0.002).capacity == 5


def test_short_tasks_get_what_the_workers_finish_in_a_round_trip() -> None:
    assert fed(Ledger(10, None), 0.001, 0.0001).capacity == 10 + 100
    assert fed(Ledger(10, None), 0.001, 0.000_001).capacity == 10 + AUTO_PREFETCH_MAX


def test_the_buffer_shrinks_when_tasks_grow_longer() -> None:
    ledger = fed(Ledger(10, None), 0.001, 0.000_01)
    assert ledger.capacity == 10 + AUTO_PREFETCH_MAX
    assert fed(ledger, 0.001, 0.5).capacity == 10


def test_a_fixed_prefetch_never_moves() -> None:
    assert fed(Ledger(10, 0), 0.001, 0.000_01).capacity == 10
    assert fed(Ledger(10, 40), 0.001, 0.5).capacity == 50
    assert Ledger(10, 40).most == 50
    assert Ledger(10, None).most == 10 + AUTO_PREFETCH_MAX
