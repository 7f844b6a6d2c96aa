"""The JSON shapes of the console's endpoints: counts, bulk actions, attempts, failures."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from notifyq import filters
from notifyq.store import BATCH_MAX, EventRow, FailureGroup
from notifyq.vocabulary import Verdict
from notifyq.web.models import BIGINT_MAX, PRIORITY_SCHEMA

FILTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "The filter language (docs/http.md, Filters): every key optional, ANDed; "
    "lists as arrays or comma-separated strings; times ISO 8601 or an age (90s, 15m, 1h, 2d)",
    "properties": {key: {"type": ["string", "integer", "array"]} for key in filters.KEYS},
}


class TaskQuery(BaseModel):
    """Query string of ``GET /tasks``: the filter language's keys (docs/http.md), newest
    first; ``before`` continues a page."""

    model_config = ConfigDict(extra="allow")

    before: Annotated[int, Field(ge=1, le=BIGINT_MAX)] | None = Field(
        None, description="Only ids below this (from the previous page's next link)"
    )
    limit: int = Field(50, ge=1, le=500)
    status: str | None = Field(None, description="Statuses, comma-separated")
    queue: str | None = None
    kind: str | None = None
    priority: str | None = Field(None, description="Integers or names, comma-separated")
    id: str | None = Field(None, description="Task ids, comma-separated")
    created_after: str | None = Field(None, description="ISO 8601, or an age: 90s, 15m, 1h, 2d")
    created_before: str | None = None
    finished_after: str | None = None
    finished_before: str | None = None
    unique_key: str | None = None
    concurrency_key: str | None = None
    schedule: str | None = Field(None, description="A schedule's name")
    workflow: str | None = Field(None, description="A task id: it and its descendants")
    batch: str | None = Field(None, description="A batch id: its members")
    error: str | None = Field(None, description="Case-insensitive substring of the error")
    fingerprint: str | None = Field(None, description="A failure group (GET /failures)")


PAGE_KEYS = ("before", "limit")


class CountOut(BaseModel):
    count: int = Field(description="Matching tasks, counted up to the cap")
    upto: int | None = Field(
        description="The highest matching id: give it to a bulk action so that tasks added "
        "later are not touched (null: none match)"
    )
    capped: bool = Field(description="True when count stopped at the cap (there may be more)")


class BulkIn(BaseModel):
    """One step of a bulk action: the next `batch` matching tasks with ids at most `upto`
    and below `cursor`, newest first."""

    model_config = ConfigDict(extra="forbid")

    filter: Annotated[dict[str, Any], WithJsonSchema(FILTER_SCHEMA)] = Field(default_factory=dict)
    upto: int = Field(ge=1, le=BIGINT_MAX, description="From GET /tasks/count")
    cursor: int | None = Field(
        None, ge=1, le=BIGINT_MAX, description="The previous step's cursor (null: the first)"
    )
    batch: int = Field(1000, ge=1, le=BATCH_MAX)
    priority: Annotated[Any, WithJsonSchema(PRIORITY_SCHEMA)] = Field(
        None, description="The new priority (the priority action only)"
    )


class BulkOut(BaseModel):
    changed: int
    skipped: int = Field(
        description="Matched, but their state no longer allowed the action (or held by "
        "another transaction each time: busy)"
    )
    busy: int = Field(0, description="Of the skipped, those another transaction held")
    cursor: int | None = Field(description="Give it to the next step; null: finished")


class PriorityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    priority: Annotated[Any, WithJsonSchema(PRIORITY_SCHEMA)]


class AttemptOut(BaseModel):
    attempt: int
    worker: str | None
    started_at: datetime | None
    ended_at: datetime | None = Field(description="null: it runs now")
    outcome: str | None = Field(
        description="The event that ended it: done, failed, retried, cancelled, released, "
        "recovered, snoozed, expired; null while it runs"
    )
    error: str | None
    traceback: str | None = Field(None, description="Where the history keeps one")


ATTEMPT_ENDS = frozenset({*(v.value for v in Verdict), "recovered", "expired"})


def attempts_from(events: Sequence[EventRow]) -> list[AttemptOut]:
    """A task's attempts from its history (oldest first): each ``started`` opens one, the
    next event that ends an attempt closes it."""
    out: list[AttemptOut] = []
    current: AttemptOut | None = None
    for e in events:
        if e.event == "started":
            current = AttemptOut(
                attempt=e.attempt,
                worker=e.worker,
                started_at=e.at,
                ended_at=None,
                outcome=None,
                error=None,
                traceback=None,
            )
            out.append(current)
        elif e.event in ATTEMPT_ENDS and current is not None and current.outcome is None:
            current.ended_at = e.at
            current.outcome = e.event
            current.error = e.error
            current.traceback = e.traceback
            current = None
    return out


class Attempts(BaseModel):
    task_id: int
    attempts: list[AttemptOut]


class FailureGroupOut(BaseModel):
    fingerprint: str = Field(description="The group's id; filter with fingerprint=")
    kind: str
    error_class: str | None = Field(description="The error's class (the text before ':')")
    message: str = Field(
        description="The error's first line with numbers, hex, uuids and quoted strings "
        "replaced (<n>, <hex>, <uuid>, <str>)"
    )
    count: int
    first_seen: datetime | None
    last_seen: datetime | None
    example_id: int = Field(description="The group's newest task")

    @classmethod
    def from_group(cls, g: FailureGroup) -> FailureGroupOut:
        return cls(
            fingerprint=g.fingerprint,
            kind=g.kind,
            error_class=g.error_class,
            message=g.message,
            count=g.count,
            first_seen=g.first_seen,
            last_seen=g.last_seen,
            example_id=g.example_id,
        )


class Failures(BaseModel):
    groups: list[FailureGroupOut]


class ScheduleRun(BaseModel):
    name: str
    task_id: int = Field(description="The task this run added")
