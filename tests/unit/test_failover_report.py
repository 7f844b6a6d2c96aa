"""The downtime `bench failover` reports: the longest time without a completion."""

from __future__ import annotations

from notifyq.bench.harsh_report import longest_gap


def test_longest_gap_is_from_the_last_completion_before_to_the_first_after() -> None:
    # Completions every tenth until 1.0 s, none until 3.5 s, then again.
    per_tenth = {t: 5 for t in range(11)} | {t: 5 for t in range(35, 50)}
    assert longest_gap(per_tenth, 0.0, 5.0) == 2.4  # 1.0 s ... 3.5 s, tenths in between


def test_longest_gap_without_a_pause_is_zero() -> None:
    assert longest_gap({t: 1 for t in range(50)}, 0.0, 4.9) == 0.0


def test_longest_gap_with_no_completion_is_the_whole_window() -> None:
    assert longest_gap({}, 1.0, 4.0) == 3.0
