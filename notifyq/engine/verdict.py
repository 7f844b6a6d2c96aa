"""What one attempt's result means: a pure decision, with no I/O and no clock of its own.

The runner gathers the facts (the handler's return value or exception, whether it was
stopped from outside and why, whether it overran its limit) into :class:`Facts`;
:func:`judge` turns them into the :class:`~notifyq.store.Outcome` the writer stores.
"""

from __future__ import annotations

import json
import random
import traceback
from dataclasses import dataclass
from typing import Any

from notifyq import errors
from notifyq.app import Task
from notifyq.engine.ledger import StopReason
from notifyq.store import Outcome, Verdict


@dataclass(frozen=True, slots=True)
class Retries:
    """The retry policy: exponential backoff from ``base_s``, capped at ``max_s``."""

    base_s: float
    max_s: float


@dataclass(frozen=True, slots=True)
class Facts:
    """How one attempt ended, as the runner saw it."""

    task_id: int
    attempt: int
    max_attempts: int
    returned: bool = False  # the handler returned (``value`` holds what)
    value: Any = None
    raised: BaseException | None = None  # the handler raised this on its own
    stopped: StopReason | None = None  # stopped from outside (or abandoned: see overran)
    overran: bool = False  # it ran past its time limit
    timeout_s: float | None = None


def judge(facts: Facts, retries: Retries, max_result_bytes: int | None = None) -> Outcome:
    """The outcome of one attempt (a result over ``max_result_bytes`` as JSON: failed)."""
    tid, attempt = facts.task_id, facts.attempt
    snooze = facts.value if facts.returned else facts.raised
    if isinstance(snooze, errors.Snooze) and facts.stopped is None and not facts.overran:
        # Not an attempt: pending again after the delay (the finish statement counts the
        # snooze and ends the task error beyond its max_snoozes).
        return Outcome(tid, attempt, Verdict.SNOOZED, delay_s=snooze.delay_s)
    if facts.returned and not facts.overran:
        try:
            result_json = encode_result(facts.value, max_result_bytes)
            return Outcome(tid, attempt, Verdict.DONE, result_json=result_json)
        except ValueError as exc:
            return Outcome(tid, attempt, Verdict.FAILED, error=str(exc))
    if facts.raised is not None and facts.stopped is None:
        return _failure(facts, facts.raised, retries)
    # Stopped from outside (or abandoned): the reason decides.
    reason = facts.stopped or ("timeout" if facts.overran else "cancel")
    if reason == "timeout":
        return _retry_or_fail(facts, f"timed out after {facts.timeout_s or 0:g} s", retries)
    if reason in ("shutdown", "lease_lost"):
        return Outcome(tid, attempt, Verdict.RELEASED)
    return Outcome(tid, attempt, Verdict.CANCELLED, error=Verdict.CANCELLED.value)


def no_handler(task: Task, retries: Retries) -> Outcome:
    """The outcome of an attempt of a kind this process has no handler for: retried (with
    backoff, an attempt spent) in case another process has one."""
    return failed(task, f"no handler for kind {task.kind!r} in this process", retries)


def failed(task: Task, message: str, retries: Retries) -> Outcome:
    """A failed attempt (``message``, as is), retried while attempts remain."""
    return _retry_or_fail(Facts(task.id, task.attempt, task.max_attempts), message, retries)


def _failure(facts: Facts, exc: BaseException, retries: Retries) -> Outcome:
    message = f"{type(exc).__name__}: {exc}"
    # Formatted here, on the failure path only: a success pays nothing for tracebacks.
    trace = format_traceback(exc)
    if isinstance(exc, errors.Fail):
        return Outcome(facts.task_id, facts.attempt, Verdict.FAILED, error=message, traceback=trace)
    if isinstance(exc, errors.Retry):
        return _retry_or_fail(facts, message, retries, delay_s=exc.delay_s, trace=trace)
    return _retry_or_fail(facts, message, retries, trace=trace)


def _retry_or_fail(
    facts: Facts,
    message: str,
    retries: Retries,
    delay_s: float | None = None,
    trace: str | None = None,
) -> Outcome:
    tid, attempt = facts.task_id, facts.attempt
    if attempt >= facts.max_attempts:
        return Outcome(tid, attempt, Verdict.FAILED, error=message, traceback=trace)
    if delay_s is None:
        delay_s = backoff_s(attempt, retries.base_s, retries.max_s)
    return Outcome(tid, attempt, Verdict.RETRIED, error=message, delay_s=delay_s, traceback=trace)


# A failed attempt's traceback in the history (task_events.traceback, migration 0019) is
# cut to this many bytes of UTF-8: a deep recursion must not put megabytes in every row.
MAX_TRACEBACK_BYTES = 16 * 1024


def format_traceback(exc: BaseException, max_bytes: int = MAX_TRACEBACK_BYTES) -> str:
    """The exception's traceback as Python prints it, cut to ``max_bytes`` (see
    :func:`bounded`)."""
    return bounded("".join(traceback.format_exception(exc)), max_bytes)


def bounded(text: str, max_bytes: int) -> str:
    """``text`` storable in PostgreSQL (no NUL, no lone surrogate) and at most ``max_bytes``
    of UTF-8: if longer, its head (a third) and its tail (the rest: where the exception
    was raised), cut at line ends where there is one, with a line saying how much was
    cut in between."""
    text = text.replace("\x00", "\\0")
    data = text.encode("utf-8", "backslashreplace")
    if len(data) <= max_bytes:
        return data.decode() if len(data) != len(text) else text
    room = max(max_bytes - 64, 0)  # 64: the marker line, whatever the count
    head, tail = data[: room // 3], data[len(data) - (room - room // 3) :]
    if b"\n" in head:
        head = head[: head.rindex(b"\n") + 1]
    if b"\n" in tail[:-1]:
        tail = tail[tail.index(b"\n") + 1 :]
    cut = len(data) - len(head) - len(tail)
    marker = f"... {cut} bytes of traceback cut ...\n"
    # errors="ignore": a cut inside a multi-byte character drops that character's pieces.
    return head.decode(errors="ignore") + marker + tail.decode(errors="ignore")


def backoff_s(attempt: int, base_s: float, max_s: float, jitter: float = 0.25) -> float:
    """Exponential backoff after failed attempt number ``attempt`` (1-based), with ±jitter."""
    exponent = min(max(attempt - 1, 0), 60)  # 2**60 s is beyond any cap
    delay = base_s * (2**exponent) * random.uniform(1 - jitter, 1 + jitter)
    return float(min(max_s, delay))  # the cap holds after jitter too


# json.dumps with options builds a new encoder per call (~5 µs, measured on the drain).
_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False)


def encode_result(value: Any, max_bytes: int | None = None) -> str:
    """JSON text for a handler's return value; ValueError if PostgreSQL cannot store it, or
    if it is over ``max_bytes`` of UTF-8 (MAX_RESULT_BYTES).

    Encoded once: a string result already too long is refused before it is encoded, and
    the UTF-8 size is only counted when the character count cannot decide.
    """
    if value is None:
        return "null"
    too_big = ValueError(f"result is over MAX_RESULT_BYTES ({max_bytes} bytes as JSON)")
    if max_bytes is not None and isinstance(value, str) and len(value) > max_bytes:
        raise too_big
    try:
        encoded = _ENCODER.encode(value)
        has_nul = _has_nul(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"result is not JSON-serialisable: {exc}") from None
    except RecursionError:
        raise ValueError("result is nested too deeply to encode as JSON") from None
    if has_nul:
        raise ValueError("result contains a NUL character, which jsonb cannot store")
    # One to four UTF-8 bytes per character: count the bytes only between the two bounds.
    if (
        max_bytes is not None
        and len(encoded) * 4 > max_bytes
        and (len(encoded) > max_bytes or len(encoded.encode()) > max_bytes)
    ):
        raise too_big
    return encoded


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False
