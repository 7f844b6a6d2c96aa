"""What the SQL and the Python share: statuses, verdicts, display rows, storable text."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

MAX_ERROR_CHARS = 4000
PREVIEW_CHARS = 4096
"""Lists show a payload or result whose JSON text is longer than this as a preview."""

Row = Mapping[str, Any]
"""A display row (tasks, workers, history) as the HTTP models and the CLI read it."""


class Status(StrEnum):
    """The ``notifyq.tasks.status`` values. ``waiting``: a task with parents (depends_on) or a
    batch (after_batch) that have not all ended; never claimed (migration 0014)."""

    WAITING = "waiting"
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    ERROR = "error"
    CANCELLED = "cancelled"


ENDED: frozenset[str] = frozenset({Status.DONE, Status.ERROR, Status.CANCELLED})
LIVE: frozenset[str] = frozenset({Status.PENDING, Status.IN_PROGRESS})


class Verdict(StrEnum):
    """What one attempt ended as: the ``finish`` statement's outcomes and the event names.

    ``retried`` and ``released`` put the task back to pending (a released attempt is not
    counted: shutdown, lease lost); a retry or release of a task whose cancel was asked
    ends it ``cancelled`` instead.
    """

    DONE = "done"
    FAILED = "failed"
    RETRIED = "retried"
    CANCELLED = "cancelled"
    RELEASED = "released"


def clean_text(text: str) -> str:
    """Text that PostgreSQL accepts (no NUL), cut to a readable length."""
    text = text.replace("\x00", "\\0")
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 15] + "… (truncated)"
    return text
