"""What `notifyq bench harsh` reports: completion rates around a fault, the time back to
90 % of the rate before, latencies, log event counts, and the summary table."""

from __future__ import annotations

import itertools
import json
from typing import Any


def rate_between(per_tenth: dict[int, int], lo_s: float, hi_s: float) -> float:
    """Completions per second from ``lo_s`` to ``hi_s`` (seconds since the start)."""
    lo, hi = round(lo_s * 10), round(hi_s * 10)
    if hi <= lo:
        return 0.0
    return sum(per_tenth.get(t, 0) for t in range(lo, hi)) * 10 / (hi - lo)


def seconds_back_to_90(per_tenth: dict[int, int], prev: float, fault_end_s: float) -> float | None:
    """Seconds from the fault's end until a one-second window completes >= 90 % of
    ``prev`` per second (0 when the rate never fell below that)."""
    last = max(per_tenth, default=0)
    t = round(fault_end_s * 10)
    while t + 10 <= last + 1:
        if sum(per_tenth.get(i, 0) for i in range(t, t + 10)) >= 0.9 * prev:
            return max(0.0, t / 10 - fault_end_s)
        t += 1
    return None


def longest_gap(per_tenth: dict[int, int], lo_s: float, hi_s: float) -> float:
    """The longest time without a completion from ``lo_s`` to ``hi_s`` (seconds since the
    start), to a tenth: a failover's downtime, from the last commit before to the first
    after."""
    busy = [t for t in range(round(lo_s * 10), round(hi_s * 10) + 1) if per_tenth.get(t, 0)]
    if len(busy) < 2:
        return round(hi_s - lo_s, 1)
    return round(max(b - a for a, b in itertools.pairwise(busy)) / 10 - 0.1, 1)


def ms_of(row: Any) -> dict[str, float | None]:
    return {k: None if row[k] is None else round(row[k], 1) for k in ("p50_ms", "p95_ms")}


def event_counts(lines: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in lines:
        try:
            event = str(json.loads(line).get("event", "?"))
        except ValueError:
            event = "<text>"
        counts[event] = counts.get(event, 0) + 1
    return counts


def summary(reports: list[dict[str, Any]]) -> str:
    keys = [
        "tasks",
        "faults",
        "rate_before_per_s",
        "rate_during_per_s",
        "seconds_back_to_90pct",
        "longest_gap_s",
        "lost",
        "twice",
    ]
    lines = ["scenario             " + " ".join(f"{k:>22}" for k in keys)]
    for r in reports:
        lines.append(f"{r['scenario']:<20} " + " ".join(f"{r.get(k)!s:>22}" for k in keys))
    return "\n".join(lines)
