"""What an attempt ended as, and how that becomes a row in the ``finish`` statement."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, Literal

OutcomeKind = Literal["done", "error", "retry", "cancelled", "release"]

MAX_ERROR_CHARS = 4000


@dataclass(frozen=True, slots=True)
class Outcome:
    task_id: int
    attempt: int
    kind: OutcomeKind
    result_json: str | None = None
    error: str | None = None
    delay_s: float = 0.0


def clean_text(text: str) -> str:
    """Text that PostgreSQL accepts (no NUL), cut to a readable length."""
    text = text.replace("\x00", "\\0")
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 15] + "… (truncated)"
    return text


# json.dumps with options builds a new encoder per call (~5 µs, measured on the drain).
_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False)


def encode_result(value: Any) -> str:
    """JSON text for a handler's return value; ValueError if PostgreSQL cannot store it."""
    if value is None:
        return "null"
    try:
        encoded = _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"result is not JSON-serialisable: {exc}") from None
    if _has_nul(value):
        raise ValueError("result contains a NUL character, which jsonb cannot store")
    return encoded


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def backoff_s(attempt: int, base_s: float, max_s: float, jitter: float = 0.25) -> float:
    """Exponential backoff after failed attempt number ``attempt`` (1-based), with ±jitter."""
    exponent = min(max(attempt - 1, 0), 60)  # 2**60 s is beyond any cap
    delay = base_s * (2**exponent) * random.uniform(1 - jitter, 1 + jitter)
    return float(min(max_s, delay))  # the cap holds after jitter too


def as_columns(outcomes: list[Outcome]) -> tuple[list[Any], ...]:
    """The ``finish`` statement's array parameters ($2..$7)."""
    return (
        [o.task_id for o in outcomes],
        [o.attempt for o in outcomes],
        [o.kind for o in outcomes],
        [o.result_json for o in outcomes],
        [clean_text(o.error) if o.error is not None else None for o in outcomes],
        [o.delay_s for o in outcomes],
    )
