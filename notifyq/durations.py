"""Durations as notifyq reads them from settings, flags and schedules: ``30``, ``2.5s``, ``7d``."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
DURATION_HELP = "a duration: seconds, or a number with ms, s, m, h or d (e.g. 30, 2.5s, 7d)"


# The longest duration notifyq takes (about a hundred years): PostgreSQL's intervals and
# Python's dates overflow not far beyond what a longer one would reach.
MAX_DURATION_DAYS = 36_500


class DurationTooLong(ValueError):
    """A duration above ``MAX_DURATION_DAYS``; the message says the bound."""


def parse_duration(value: object) -> float:
    """``30`` / ``"30"`` / ``"2.5s"`` / ``"5m"`` / ``"7d"`` -> seconds."""
    if isinstance(value, bool):
        raise ValueError(DURATION_HELP)
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(DURATION_HELP)
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds != seconds or seconds in (float("inf"), float("-inf")) or seconds < 0:
        raise ValueError(DURATION_HELP)
    if seconds > MAX_DURATION_DAYS * 86_400:
        raise DurationTooLong(f"at most {MAX_DURATION_DAYS}d")
    return seconds
