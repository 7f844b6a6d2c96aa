"""Per-queue limits as values: what `notifyq queue set`, `App.queue` and `POST /queues/{name}`
accept, and how a rate is written (``100/s``, ``10/m``, ``1000/h``, ``5/10s``).

Pure: no I/O. The limits themselves are enforced in SQL (``notifyq.claim_limited``,
migration 0006).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final

from notifyq import errors

# The bounds of the table's CHECK constraints (migration 0006).
MAX_LIMIT = 1_000_000
MIN_RATE_PERIOD_S = 0.001
MAX_RATE_PERIOD_S = 1000 * 86_400.0

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*(ms|s|m|h|d)\s*$")

# The fields a change may set; names as in `queue_set`'s list of fields to apply.
FIELDS = ("concurrency", "rate", "per_key_concurrency", "paused")


class LimitError(errors.ConfigError):
    """A limit has a bad value; the message says which and what is accepted."""


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``count`` claims in any window of ``period_s`` seconds."""

    count: int
    period_s: float

    def __str__(self) -> str:
        for unit in ("d", "h", "m", "s"):
            size = _UNITS[unit]
            if self.period_s == size:
                return f"{self.count}/{unit}"
        if self.period_s < 1:
            return f"{self.count}/{self.period_s * 1000:g}ms"
        return f"{self.count}/{self.period_s:g}s"


def parse_rate(text: str) -> Rate:
    """``"100/s"`` -> Rate(100, 1.0); ``"5/10s"`` -> Rate(5, 10.0)."""
    match = _RATE.match(text)
    if match is None:
        raise LimitError(
            f"invalid rate {text!r}: expected COUNT/PERIOD, e.g. 100/s, 10/m, 1000/h or 5/10s"
        )
    count, amount, unit = int(match.group(1)), match.group(2), match.group(3)
    period_s = float(amount or 1) * _UNITS[unit]
    if not 1 <= count <= MAX_LIMIT:
        raise LimitError(f"invalid rate {text!r}: the count must be from 1 to {MAX_LIMIT}")
    # The database keeps whole microseconds; a period under 1 ms would round towards 0.
    if not MIN_RATE_PERIOD_S <= period_s <= MAX_RATE_PERIOD_S:
        raise LimitError(f"invalid rate {text!r}: the period must be from 1ms to 1000d")
    return Rate(count, period_s)


def check_limit(name: str, value: int) -> int:
    """A concurrency limit: an integer from 1 to MAX_LIMIT."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise LimitError(f"invalid {name} {value!r}: expected an integer from 1 to {MAX_LIMIT}")
    return value


MAX_AGE_PRIORITY_AFTER_S = 1000 * 86400.0


def check_age(value: object) -> float:
    """``age_priority_after``: seconds (more than 0, at most 1000 days) per priority step."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= MAX_AGE_PRIORITY_AFTER_S
    ):
        raise LimitError(
            f"invalid age_priority_after {value!r}: expected seconds, more than 0, "
            f"at most {MAX_AGE_PRIORITY_AFTER_S:.0f}"
        )
    return float(value)


def check_queue_name(name: str) -> str:
    if not isinstance(name, str) or not name or len(name) > 128:
        raise LimitError(f"invalid queue name {name!r}: expected 1 to 128 characters")
    return name


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """A queue's limits; None means no limit of that kind."""

    name: str
    concurrency: int | None = None
    rate: Rate | None = None
    per_key_concurrency: int | None = None
    paused: bool = False

    @property
    def limited(self) -> bool:
        return (
            self.paused
            or self.concurrency is not None
            or self.rate is not None
            or self.per_key_concurrency is not None
        )


@dataclass(frozen=True, slots=True)
class LimitChange:
    """A change to a queue's limits: only the fields in ``fields`` are set; the others keep
    their stored value. A field set to None removes that limit."""

    name: str
    fields: frozenset[str]
    concurrency: int | None = None
    rate: Rate | None = None
    per_key_concurrency: int | None = None
    paused: bool | None = None
    fair: bool | None = None  # round-robin over concurrency_key (README "Fair queues")
    age_priority_after_s: float | None = None  # priority aging (README "Priority aging")


class Keep(enum.Enum):
    """The stored value of a field stays as it is."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP


def change(
    name: str,
    *,
    concurrency: int | Keep | None = KEEP,
    rate: Rate | str | Keep | None = KEEP,
    per_key_concurrency: int | Keep | None = KEEP,
    paused: bool | None = None,
    fair: bool | None = None,
    age_priority_after: float | Keep | None = KEEP,
) -> LimitChange:
    """Build a checked change. ``KEEP`` (the default) leaves a field as stored; None removes
    that limit; ``rate`` may be given as text (``"100/s"``); ``paused`` None keeps it."""
    fields: set[str] = set()
    new_concurrency = new_per_key = None
    new_rate: Rate | None = None
    if concurrency is not KEEP:
        fields.add("concurrency")
        new_concurrency = None if concurrency is None else check_limit("concurrency", concurrency)
    if rate is not KEEP:
        fields.add("rate")
        new_rate = parse_rate(rate) if isinstance(rate, str) else rate
    if per_key_concurrency is not KEEP:
        fields.add("per_key_concurrency")
        new_per_key = (
            None
            if per_key_concurrency is None
            else check_limit("per_key_concurrency", per_key_concurrency)
        )
    if paused is not None:
        fields.add("paused")
    if fair is not None:
        fields.add("fair")
    age_s = None
    if age_priority_after is not KEEP:
        fields.add("age_priority_after")
        age_s = None if age_priority_after is None else check_age(age_priority_after)
    return LimitChange(
        check_queue_name(name),
        frozenset(fields),
        new_concurrency,
        new_rate,
        new_per_key,
        paused,
        fair,
        age_s,
    )
