"""The console's filter language: which tasks an operator means, in one form for the HTTP
query string, a JSON body and the CLI's options.

Every key is optional; the keys given are ANDed. Lists are comma-separated (``status=error,
cancelled``) or, in JSON, arrays. Times are ISO 8601 (no zone: UTC) or an age before now,
``90s``, ``15m``, ``1h``, ``2d``, which the database resolves against its own clock. An
unknown key or a bad value raises :class:`FilterError` naming the key: HTTP answers 422
with it, the CLI one line and exit 2.

Pure (the standard library and notifyq's vocabulary): ``tests/unit/test_filters.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from notifyq import priorities
from notifyq.durations import DurationTooLong, parse_duration
from notifyq.vocabulary import ENDED, STATUSES

LIST_KEYS = ("status", "queue", "kind", "priority", "id")
TIME_KEYS = ("created_after", "created_before", "finished_after", "finished_before")
TEXT_KEYS = ("unique_key", "concurrency_key", "schedule", "error", "fingerprint")
ID_KEYS = ("workflow", "batch")
KEYS = LIST_KEYS + TIME_KEYS + TEXT_KEYS + ID_KEYS
"""Every key of the language, in the order the documents list them."""

MAX_ITEMS = 1000  # values of one list key
MAX_TEXT_CHARS = 1000
BIGINT_MAX = 2**63 - 1
_AGE = re.compile(r"^\s*\d+(?:\.\d+)?\s*(ms|s|m|h|d)\s*$")
_FINGERPRINT = re.compile(r"^[0-9a-f]{16}$")


class FilterError(ValueError):
    """A filter the language refuses: ``key`` is the key at fault."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


@dataclass(frozen=True, slots=True)
class Instant:
    """A bound in time: an absolute ``at``, or ``age_s`` seconds before the database's now."""

    at: datetime | None = None
    age_s: float | None = None

    def text(self) -> str:
        if self.at is not None:
            return self.at.isoformat()
        assert self.age_s is not None
        return f"{self.age_s:g}s"


@dataclass(frozen=True, slots=True)
class TaskFilter:
    """A parsed filter. ``None`` everywhere: every task."""

    status: tuple[str, ...] | None = None
    queue: tuple[str, ...] | None = None
    kind: tuple[str, ...] | None = None
    priority: tuple[int, ...] | None = None
    id: tuple[int, ...] | None = None
    created_after: Instant | None = None
    created_before: Instant | None = None
    finished_after: Instant | None = None
    finished_before: Instant | None = None
    unique_key: str | None = None
    concurrency_key: str | None = None
    schedule: str | None = None
    error: str | None = None
    fingerprint: str | None = None
    workflow: int | None = None
    batch: int | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    def only_ended(self) -> bool:
        """Every status asked for has ended (done, error, cancelled): the CLI's ``--since``
        then means finished_after."""
        return self.status is not None and all(s in ENDED for s in self.status)

    def as_query(self) -> dict[str, str]:
        """The filter in its text form, keys in :data:`KEYS` order (a ``next`` link, the
        CLI's request): ``parse(f.as_query()) == f``."""
        out: dict[str, str] = {}
        for key in KEYS:
            value = getattr(self, key)
            if value is None:
                continue
            if isinstance(value, tuple):
                out[key] = ",".join(str(v) for v in value)
            elif isinstance(value, Instant):
                out[key] = value.text()
            else:
                out[key] = str(value)
        return out

    def describe(self) -> str:
        """One line for people: ``status=error kind=resize`` (``every task`` when empty)."""
        query = self.as_query()
        return " ".join(f"{k}={v}" for k, v in query.items()) or "every task"


def parse(values: Mapping[str, Any], *, ignore: Iterable[str] = ()) -> TaskFilter:
    """The filter that ``values`` (query-string text, or JSON values) describe. Keys in
    ``ignore`` (a page's own parameters: limit, before) are passed over; any other key that
    is not the language's is an error, as is an empty value."""
    skip = set(ignore)
    found: dict[str, Any] = {}
    for key, raw in values.items():
        if key in skip:
            continue
        if key not in KEYS:
            raise FilterError(key, f"unknown filter; the keys are {', '.join(KEYS)}")
        if raw is None:
            continue
        if key in LIST_KEYS:
            found[key] = _list(key, raw)
        elif key in TIME_KEYS:
            found[key] = _instant(key, raw)
        elif key in ID_KEYS:
            found[key] = _task_id(key, raw)
        else:
            found[key] = _text(key, raw)
    return TaskFilter(**found)


def _pieces(key: str, raw: Any) -> list[Any]:
    if isinstance(raw, list | tuple):
        items = list(raw)
    elif isinstance(raw, str):
        items = [p.strip() for p in raw.split(",")]
    else:
        items = [raw]
    if not items or any(i == "" or i is None for i in items):
        raise FilterError(key, "empty value; give one or more, comma-separated")
    if len(items) > MAX_ITEMS:
        raise FilterError(key, f"at most {MAX_ITEMS} values")
    return items


def _list(key: str, raw: Any) -> tuple[Any, ...]:
    items = _pieces(key, raw)
    if key == "status":
        for item in items:
            if item not in STATUSES:
                raise FilterError(key, f"{item!r} is not a status ({', '.join(STATUSES)})")
        return tuple(dict.fromkeys(items))
    if key == "priority":
        try:
            return tuple(dict.fromkeys(priorities.parse(i) for i in items))
        except priorities.PriorityError as exc:
            raise FilterError(key, f"expected {exc.expected}") from None
    if key == "id":
        return tuple(dict.fromkeys(_task_id(key, i) for i in items))
    return tuple(dict.fromkeys(_text(key, i) for i in items))


def _task_id(key: str, raw: Any) -> int:
    if isinstance(raw, bool):
        raise FilterError(key, f"{raw!r} is not a task id")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str) and raw.strip().isdigit():
        value = int(raw.strip())
    else:
        raise FilterError(key, f"{raw!r} is not a task id (a positive integer)")
    if not 1 <= value <= BIGINT_MAX:
        raise FilterError(key, f"{value} is not a task id (1 to {BIGINT_MAX})")
    return value


def _text(key: str, raw: Any) -> str:
    if not isinstance(raw, str) or raw == "":
        raise FilterError(key, "expected a non-empty string")
    if len(raw) > MAX_TEXT_CHARS:
        raise FilterError(key, f"at most {MAX_TEXT_CHARS} characters")
    if "\x00" in raw or any(0xD800 <= ord(c) <= 0xDFFF for c in raw):
        raise FilterError(key, "contains a character PostgreSQL text cannot hold")
    if key == "fingerprint" and not _FINGERPRINT.match(raw):
        raise FilterError(key, "expected 16 lowercase hex digits (a failure group's id)")
    return raw


def _instant(key: str, raw: Any) -> Instant:
    if not isinstance(raw, str) or not raw.strip():
        raise FilterError(key, "expected an ISO 8601 time or an age such as 90s, 15m, 1h, 2d")
    text = raw.strip()
    if _AGE.match(text):
        try:
            return Instant(age_s=parse_duration(text))
        except DurationTooLong as exc:
            raise FilterError(key, f"{text!r}: {exc}") from None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise FilterError(
            key, f"{text!r} is neither an ISO 8601 time nor an age such as 90s, 15m, 1h, 2d"
        ) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    if not 1970 <= at.year < 9000:
        raise FilterError(key, f"{text!r} is out of range (years 1970 to 8999)")
    return Instant(at=at)


def with_since(base: TaskFilter, since: Instant | None, until: Instant | None) -> TaskFilter:
    """The CLI's ``--since`` / ``--until``: finished_after / finished_before when every
    status asked for has ended, else created_after / created_before."""
    if since is None and until is None:
        return base
    if base.only_ended():
        names = ("finished_after", "finished_before")
    else:
        names = ("created_after", "created_before")
    changes = {n: v for n, v in zip(names, (since, until), strict=True) if v is not None}
    values = {f.name: getattr(base, f.name) for f in fields(base)} | changes
    return TaskFilter(**values)
