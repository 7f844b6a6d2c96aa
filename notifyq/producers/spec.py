"""A task to add, checked before any statement runs: the same rules for every driver.

Everything a driver sends is text or a number (the payload as JSON text), so the
statements need no type codec of the caller's connection.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypedDict

from notifyq import priorities
from notifyq.errors import InvalidTask

MAX_DELAY_S = 10 * 365 * 86400.0  # ten years; also bounds a timeout
OPTION_NAMES = frozenset(
    {"queue", "priority", "delay", "run_at", "max_attempts", "timeout", "meta"}
)


class TaskOptions(TypedDict, total=False):
    """The options of :func:`notifyq.enqueue`, the same for every driver."""

    queue: str
    priority: int | str
    delay: float | timedelta | None
    run_at: datetime | None
    max_attempts: int
    timeout: float | timedelta | None


@dataclass(frozen=True, slots=True)
class NewTask:
    """One checked task: the values the producers' statements take."""

    queue: str
    kind: str
    payload_json: str
    priority: int
    run_at: datetime | None
    delay_s: float
    max_attempts: int
    timeout_s: float | None
    meta_json: str | None = None

    def with_meta(self, meta: Mapping[str, Any] | None) -> NewTask:
        if not meta:
            return self
        return NewTask(
            self.queue,
            self.kind,
            self.payload_json,
            self.priority,
            self.run_at,
            self.delay_s,
            self.max_attempts,
            self.timeout_s,
            json.dumps(meta),
        )


def _name(option: str, value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 128:
        raise InvalidTask(option, value, "expected a string of 1 to 128 characters")
    return value


def _seconds(option: str, value: object, *, above_zero: bool) -> float:
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise InvalidTask(option, value, "expected seconds (a number) or a timedelta")
    low_ok = seconds > 0 if above_zero else seconds >= 0
    if not (math.isfinite(seconds) and low_ok and seconds <= MAX_DELAY_S):
        bound = "above 0" if above_zero else "0 or more"
        raise InvalidTask(
            option,
            value,
            f"expected a finite number of seconds, {bound}, at most {MAX_DELAY_S:.0f}",
        )
    return seconds


def payload_json(payload: Any) -> str:
    """The payload as JSON text; None means ``{}`` (the column's default)."""
    try:
        text = json.dumps(
            {} if payload is None else payload, allow_nan=False, separators=(",", ":")
        )
    except (TypeError, ValueError) as exc:
        raise InvalidTask("payload", payload, f"expected a JSON value ({exc})") from None
    if "\\u0000" in text:
        raise InvalidTask("payload", payload, "PostgreSQL's jsonb cannot store a NUL character")
    return text


def new_task(
    kind: str,
    payload: Any = None,
    *,
    queue: str = "default",
    priority: int | str = 0,
    delay: float | timedelta | None = None,
    run_at: datetime | None = None,
    max_attempts: int = 3,
    timeout: float | timedelta | None = None,
) -> NewTask:
    """Check one task's options; raises :class:`InvalidTask` naming the bad option."""
    kind = _name("kind", kind)
    queue = _name("queue", queue)
    try:
        number = priorities.parse(priority)
    except priorities.PriorityError as exc:
        raise InvalidTask("priority", priority, f"expected {exc.expected}") from None
    if delay is not None and run_at is not None:
        raise InvalidTask("delay", delay, "give delay or run_at, not both")
    delay_s = 0.0 if delay is None else _seconds("delay", delay, above_zero=False)
    if run_at is not None:
        if not isinstance(run_at, datetime):
            raise InvalidTask("run_at", run_at, "expected a datetime")
        if run_at.utcoffset() is None:
            raise InvalidTask(
                "run_at",
                run_at,
                "expected a timezone-aware datetime (e.g. datetime.now(timezone.utc))",
            )
    if (
        isinstance(max_attempts, bool)
        or not isinstance(max_attempts, int)
        or not 1 <= max_attempts <= 1000
    ):
        raise InvalidTask("max_attempts", max_attempts, "expected an integer from 1 to 1000")
    timeout_s = None if timeout is None else _seconds("timeout", timeout, above_zero=True)
    return NewTask(
        queue, kind, payload_json(payload), number, run_at, delay_s, max_attempts, timeout_s
    )


def from_item(item: NewTask | Mapping[str, Any]) -> NewTask:
    """An item of ``enqueue_many``: a :class:`NewTask` or a mapping of new_task's arguments."""
    if isinstance(item, NewTask):
        return item
    if not isinstance(item, Mapping):
        raise TypeError(
            f"enqueue_many takes NewTask objects or mappings, got {type(item).__name__}"
        )
    unknown = set(item) - OPTION_NAMES - {"kind", "payload"}
    if unknown:
        raise TypeError(f"unknown task option(s): {', '.join(sorted(unknown))}")
    if "kind" not in item:
        raise TypeError("a task needs a 'kind'")
    return new_task(**item)


def columns(tasks: list[NewTask]) -> list[list[Any]]:
    """The nine arrays of the ``produce_many`` statement, one per column."""
    return [
        [t.queue for t in tasks],
        [t.kind for t in tasks],
        [t.payload_json for t in tasks],
        [t.priority for t in tasks],
        [t.run_at for t in tasks],
        [t.delay_s for t in tasks],
        [t.max_attempts for t in tasks],
        [t.timeout_s for t in tasks],
        [t.meta_json for t in tasks],
    ]


def row(task: NewTask) -> list[Any]:
    """The nine parameters of the ``produce`` statement."""
    return [
        task.queue,
        task.kind,
        task.payload_json,
        task.priority,
        task.run_at,
        task.delay_s,
        task.max_attempts,
        task.timeout_s,
        task.meta_json,
    ]
