"""What the store hands back and stores: typed task and event rows, previews, storable text.

The words the rows hold (statuses, verdicts) are :mod:`notifyq.vocabulary`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

MAX_ERROR_CHARS = 4000
PREVIEW_CHARS = 4096
"""Lists show a payload or result whose JSON text is longer than this as a preview."""

Row = Mapping[str, Any]
"""A record as the driver returns it (the workers' registry is still read as one)."""


def clean_text(text: str) -> str:
    """Text that PostgreSQL accepts (no NUL), cut to a readable length."""
    text = text.replace("\x00", "\\0")
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 15] + "… (truncated)"
    return text


@dataclass(frozen=True, slots=True)
class TaskRow:
    """One ``notifyq.tasks`` row as the reads hand it back (built in :meth:`from_record`).

    The fields are the table's columns in its order; a list row (``list_tasks``,
    ``running_tasks``, ``recent_failures``) leaves the columns it does not read at their
    defaults, and a payload or result longer than a preview is None there with its first
    characters in ``payload_preview``/``result_preview``. JSON columns hold Python values,
    ``timeout`` an interval.
    """

    id: int
    queue: str
    kind: str
    payload: Any
    priority: int
    status: str
    attempts: int
    max_attempts: int
    run_at: datetime
    timeout: timedelta | None
    locked_by: str | None
    locked_until: datetime | None
    cancel_requested_at: datetime | None
    result: Any
    error: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    unique_key: str | None = None
    schedule_name: str | None = None
    schedule_tick: datetime | None = None
    concurrency_key: str | None = None
    meta: Any = None
    claim_token: int | None = None
    depends_on: list[int] | None = None
    on_parent_failure: str = "cancel"
    waiting_on: int = 0
    has_dependents: bool = False
    batch_id: int | None = None
    after_batch: int | None = None
    snoozes: int = 0
    max_snoozes: int = 100
    expires_at: datetime | None = None
    payload_preview: str | None = None
    result_preview: str | None = None

    @classmethod
    def from_record(cls, record: Row) -> TaskRow:
        """The row of a statement's record; a column this class does not know is an error
        (a new column is added here, once)."""
        return cls(**record)

    def as_dict(self) -> dict[str, Any]:
        """The columns, as ``SELECT *`` has them (what :meth:`notifyq.Client.get` returns)."""
        return {name: getattr(self, name) for name in TASK_COLUMNS}


TASK_COLUMNS: tuple[str, ...] = tuple(
    f.name for f in fields(TaskRow) if not f.name.endswith("_preview")
)
"""The ``notifyq.tasks`` columns, in the table's order (``tests/integration/test_store.py``
keeps them equal)."""


@dataclass(frozen=True, slots=True)
class EventRow:
    """One entry of a task's history (``task_history``), oldest first. ``detail`` says
    which schedule and tick queued it, or what released or cancelled a dependent: the
    parent task (``parent_id``) or the batch (``batch_id``). A ``released`` with neither is
    an attempt its worker gave back (shutdown), which ``detail`` says too."""

    id: int
    task_id: int
    at: datetime
    event: str
    attempt: int
    worker: str | None
    error: str | None
    detail: str | None
    parent_id: int | None = None
    batch_id: int | None = None
    actor: str | None = None  # who caused it: api (or a token's name), cli, sql; None: engine
    # A failed attempt's outcome: the handler's traceback, bounded (migration 0019).
    traceback: str | None = None

    @classmethod
    def from_record(cls, record: Row) -> EventRow:
        return cls(**record)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
