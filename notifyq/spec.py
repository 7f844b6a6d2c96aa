"""One task specification: the options of a new task and the one check of them, used by every
entry point (``notifyq.enqueue``/``enqueue_many``, ``Client.enqueue``, ``POST /tasks``,
``notifyq enqueue``, schedules). Pure (the standard library, notifyq's errors and
priorities), so a producer imports it without any driver.

The check refuses, with :class:`InvalidTask` naming the option, everything PostgreSQL or a
driver would refuse, so that a bad value never reaches the caller's transaction (a refused
statement aborts it): a NUL or a lone surrogate in any string (text columns and JSON
strings and keys alike), a number JSON cannot write (NaN, infinity), a timeout that rounds
to a zero interval, values outside the table's CHECK constraints; and notifyq's own limits
(:data:`MAX_PAYLOAD_BYTES`, :data:`MAX_JSON_DEPTH`).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict

from notifyq import priorities
from notifyq.errors import InvalidTask
from notifyq.vocabulary import ParentFailure

# The bounds of notifyq.tasks' CHECK constraints (migrations 0001, 0005, 0006).
MAX_NAME_CHARS = 128  # kind and queue
MAX_UNIQUE_KEY_CHARS = 512
MAX_CONCURRENCY_KEY_CHARS = 256
MAX_ATTEMPTS = 1000
# Far enough for any schedule, near enough that PostgreSQL's interval arithmetic holds.
MAX_DELAY_S = 10 * 365 * 86400.0
# An interval keeps microseconds; below a millisecond a limit means nothing to a handler.
MIN_TIMEOUT_S = 0.001
MAX_TIMEOUT_S = 365 * 86400.0
# notifyq's own limits on a task's JSON (payload and meta), counted on the compact UTF-8
# text: a payload is the handler's input, not a place for files.
MAX_PAYLOAD_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 64
# notifyq's own limit on a task's parents (``after``): a dependent's insert locks each one;
# fan-in beyond this is a batch (notifyq.chord), whose members are counted, not listed.
MAX_PARENTS = 1000
MAX_TASK_ID = 2**63 - 1  # bigint
# What a live task holding the new task's unique_key becomes (notifyq.enqueue_unique in SQL).
ON_CONFLICT = ("keep", "replace", "update")


# Compact JSON, non-ASCII as UTF-8 (so that the size counted is the size sent).
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
# An escaped NUL in JSON text: "\u0000" after an even number of backslashes.
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
# Any surrogate code point in a str is a lone one: UTF-8 cannot encode it.
_SURROGATE = re.compile("[\ud800-\udfff]")


class PlainOptions(TypedDict, total=False):
    """The options but ``unique_key`` (whose presence changes what a producer returns)."""

    queue: str
    priority: int | str
    delay: float | timedelta | None
    run_at: datetime | None
    max_attempts: int
    timeout: float | timedelta | None
    concurrency_key: str | None
    meta: Mapping[str, Any] | None
    after: Iterable[int] | None
    on_parent_failure: str
    expires: datetime | None
    expires_in: float | timedelta | None
    on_conflict: str


class TaskOptions(PlainOptions, total=False):
    """The options of a new task, the same for every entry point."""

    unique_key: str | None


OPTION_NAMES = TaskOptions.__optional_keys__
"""Every option of :func:`new_task` (``enqueue_many`` items take these, kind and payload)."""


@dataclass(frozen=True, slots=True)
class NewTask:
    """One checked task: the values the statements that add it take (JSON as text)."""

    queue: str
    kind: str
    payload_json: str
    priority: int
    run_at: datetime | None  # in UTC
    delay_s: float
    max_attempts: int
    timeout_s: float | None
    meta_json: str | None = None
    unique_key: str | None = None
    concurrency_key: str | None = None
    after: tuple[int, ...] = ()  # the parents' ids, in the order given (depends_on)
    on_parent_failure: str = ParentFailure.CANCEL.value
    expires_at: datetime | None = None  # start deadline, in UTC
    expires_in_s: float | None = None  # start deadline from the insert (the database's now)
    on_conflict: str = "keep"  # what a live holder of the unique_key becomes: ON_CONFLICT

    def expiry(self) -> tuple[datetime | None, float | None]:
        """The last two parameters of the statements that add a task (see queries.sql)."""
        return self.expires_at, self.expires_in_s

    @property
    def depends_on(self) -> str | None:
        """``after`` as the text of a bigint[] (NULL: no parent), for any driver."""
        return "{" + ",".join(map(str, self.after)) + "}" if self.after else None

    def parameters(self) -> tuple[Any, ...]:
        """$1-$9 of every statement that adds a task (`enqueue`, `enqueue_unique`,
        `produce`): queue, kind, payload, priority, run_at, delay, attempts, timeout, meta."""
        return (
            self.queue,
            self.kind,
            self.payload_json,
            self.priority,
            self.run_at,
            self.delay_s,
            self.max_attempts,
            self.timeout_s,
            self.meta_json,
        )

    def with_meta(self, extra: Mapping[str, Any] | None) -> NewTask:
        """The task with ``extra`` added to its meta (the trace context); the task's own
        keys win."""
        if not extra:
            return self
        own = {} if self.meta_json is None else json.loads(self.meta_json)
        return replace(self, meta_json=json_text("meta", {**extra, **own}))


def text(option: str, value: object, max_chars: int) -> str:
    """A string PostgreSQL's text holds, of 1 to ``max_chars`` characters."""
    if not isinstance(value, str) or not 1 <= len(value) <= max_chars:
        raise InvalidTask(option, value, f"expected a string of 1 to {max_chars} characters")
    return storable(option, value)


def storable(option: str, value: str) -> str:
    """A string PostgreSQL's text holds: no NUL, no lone surrogate."""
    if "\x00" in value:
        raise InvalidTask(option, value, "PostgreSQL text cannot hold a NUL character")
    if _SURROGATE.search(value):
        raise InvalidTask(option, value, "expected valid Unicode (no lone surrogates)")
    return value


def depth_within(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether no list or object in ``value`` is nested deeper than ``limit`` (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True


def json_text(option: str, value: Any) -> str:
    """``value`` as the compact JSON text that jsonb stores."""
    try:
        written = _ENCODER.encode(value)
    except RecursionError:
        written = None  # deeper than Python's own limit: named below
    except (TypeError, ValueError) as exc:
        raise InvalidTask(option, value, f"expected a JSON value ({exc})") from None
    # Each level takes two characters of the text: a short one cannot be too deep.
    if written is None or (len(written) > 2 * MAX_JSON_DEPTH and not depth_within(value)):
        raise InvalidTask(option, value, f"nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        size = len(written.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidTask(option, value, "expected valid Unicode (no lone surrogates)") from None
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidTask(
            option, value, f"expected at most {MAX_PAYLOAD_BYTES} bytes of JSON, got {size}"
        )
    # The plain search is fast; the pattern tells an escaped NUL from an escaped backslash
    # followed by "u0000".
    if "\\u0000" in written and _JSON_NUL.search(written):
        raise InvalidTask(option, value, "PostgreSQL's jsonb cannot store a NUL character")
    return written


def payload_json(payload: Any) -> str:
    """The payload as JSON text; None means ``{}`` (the column's default)."""
    return json_text("payload", {} if payload is None else payload)


def meta_json(meta: object) -> str | None:
    if meta is None:
        return None
    if not isinstance(meta, Mapping):
        raise InvalidTask("meta", meta, "expected a JSON object")
    return json_text("meta", meta)


def seconds(option: str, value: object, low: float, high: float) -> float:
    """A number of seconds (or a timedelta) from ``low`` to ``high``."""
    if isinstance(value, timedelta):
        number = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int beyond any float
            number = math.inf
    else:
        raise InvalidTask(option, value, "expected seconds (a number) or a timedelta")
    if not (math.isfinite(number) and low <= number <= high):
        raise InvalidTask(option, value, seconds_rule(low, high))
    return number


def seconds_rule(low: float, high: float) -> str:
    """What :func:`seconds` expects, in words (an entry point that parses durations itself
    states a bound it passes the same way)."""
    at_least = "0 or more" if low == 0 else f"at least {low:g}"
    return f"expected a finite number of seconds, {at_least}, at most {high:.0f}"


def one_schedule(delay: object, run_at: object) -> None:
    """The rules of delay and run_at together: not both; run_at with a time zone."""
    if delay is not None and run_at is not None:
        raise InvalidTask("delay", delay, "give delay or run_at, not both")
    if isinstance(run_at, datetime) and run_at.utcoffset() is None:
        raise InvalidTask(
            "run_at",
            run_at,
            "expected a timezone-aware datetime (e.g. datetime.now(timezone.utc), or "
            "2026-01-01T12:00:00Z in JSON)",
        )


def priority_number(value: object) -> int:
    """A priority given as a number or a name (``high``), as its number."""
    try:
        return priorities.parse(value)
    except priorities.PriorityError as exc:
        raise InvalidTask("priority", value, f"expected {exc.expected}") from None


def parents(value: object) -> tuple[int, ...]:
    """``after``: distinct task ids, at most :data:`MAX_PARENTS`, in the order given."""
    if value is None:
        return ()
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise InvalidTask("after", value, "expected a list of task ids")
    ids = list(value)
    for item in ids:
        if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= MAX_TASK_ID:
            raise InvalidTask("after", ids, f"expected task ids (integers from 1 to {MAX_TASK_ID})")
    if len(ids) > MAX_PARENTS:
        raise InvalidTask("after", ids, f"expected at most {MAX_PARENTS} parents, got {len(ids)}")
    twice = [item for item, n in Counter(ids).items() if n > 1]
    if twice:
        raise InvalidTask("after", ids, f"task {twice[0]} is named twice")
    return tuple(ids)


def parent_failure(value: object) -> str:
    """``on_parent_failure``: one of :class:`notifyq.vocabulary.ParentFailure`."""
    if value not in tuple(ParentFailure):
        choices = " or ".join(p.value for p in ParentFailure)
        raise InvalidTask("on_parent_failure", value, f"expected {choices}")
    return str(value)


def _run_at(value: object, option: str = "run_at") -> datetime:
    if not isinstance(value, datetime):
        raise InvalidTask(option, value, "expected a datetime")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidTask(option, value, "expected a time from year 1 to 9999 in UTC") from None


def deadline(
    expires: object, expires_in: object, run_at: datetime | None, delay_s: float
) -> tuple[datetime | None, float | None]:
    """A start deadline: ``expires`` (a timezone-aware datetime) or ``expires_in`` (seconds
    from the insert), not both, and after the task is due when both are known."""
    if expires is not None and expires_in is not None:
        raise InvalidTask("expires_in", expires_in, "give expires or expires_in, not both")
    if expires_in is not None:
        in_s = seconds("expires_in", expires_in, MIN_TIMEOUT_S, MAX_DELAY_S)
        if run_at is None and in_s <= delay_s:
            rule = f"expected more than the delay ({delay_s:g} s)"
            raise InvalidTask("expires_in", expires_in, rule)
        return None, in_s
    if expires is None:
        return None, None
    if isinstance(expires, datetime) and expires.utcoffset() is None:
        raise InvalidTask("expires", expires, "expected a timezone-aware datetime")
    at = _run_at(expires, "expires")
    if run_at is not None and at <= run_at:
        raise InvalidTask("expires", expires, "expected a time after run_at")
    return at, None


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
    unique_key: str | None = None,
    concurrency_key: str | None = None,
    meta: Mapping[str, Any] | None = None,
    after: Iterable[int] | None = None,
    on_parent_failure: str = ParentFailure.CANCEL.value,
    expires: datetime | None = None,
    expires_in: float | timedelta | None = None,
    on_conflict: str = "keep",
) -> NewTask:
    """Check one task's options; raises :class:`InvalidTask` naming the bad option."""
    kind = text("kind", kind, MAX_NAME_CHARS)
    queue = text("queue", queue, MAX_NAME_CHARS)
    number = priority_number(priority)
    one_schedule(delay, run_at)
    delay_s = 0.0 if delay is None else seconds("delay", delay, 0.0, MAX_DELAY_S)
    at = None if run_at is None else _run_at(run_at)
    if (
        isinstance(max_attempts, bool)
        or not isinstance(max_attempts, int)
        or not 1 <= max_attempts <= MAX_ATTEMPTS
    ):
        raise InvalidTask(
            "max_attempts", max_attempts, f"expected an integer from 1 to {MAX_ATTEMPTS}"
        )
    timeout_s = (
        None if timeout is None else seconds("timeout", timeout, MIN_TIMEOUT_S, MAX_TIMEOUT_S)
    )
    if unique_key is not None:
        unique_key = text("unique_key", unique_key, MAX_UNIQUE_KEY_CHARS)
    if concurrency_key is not None:
        concurrency_key = text("concurrency_key", concurrency_key, MAX_CONCURRENCY_KEY_CHARS)
    parent_ids = parents(after)
    if parent_ids and unique_key is not None:
        # tasks_unique_key_without_parents: a waiting task's release must never meet a
        # duplicate, so the schema refuses the pair; say so before the statement runs.
        raise InvalidTask("unique_key", unique_key, "a task with parents (after) has no unique_key")
    policy = parent_failure(on_parent_failure)
    expires_at, expires_in_s = deadline(expires, expires_in, at, delay_s)
    if on_conflict not in ON_CONFLICT:
        raise InvalidTask("on_conflict", on_conflict, "expected keep, replace or update")
    if on_conflict != "keep" and unique_key is None:
        raise InvalidTask("on_conflict", on_conflict, "only a task with a unique_key has one")
    return NewTask(
        queue,
        kind,
        payload_json(payload),
        number,
        at,
        delay_s,
        max_attempts,
        timeout_s,
        meta_json(meta),
        unique_key,
        concurrency_key,
        parent_ids,
        policy,
        expires_at,
        expires_in_s,
        on_conflict,
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
