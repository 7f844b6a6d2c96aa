"""The JSON shapes of the fleet's configuration: queue limits and periodic schedules."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from notifyq import limits, priorities, spec
from notifyq.store import PREVIEW_CHARS, SCHEDULES_PAGE_MAX
from notifyq.web.models import PRIORITY_SCHEMA, Name, _storable_text, _text

Limit = Annotated[int, Field(ge=1, le=1_000_000)]
RATE_PATTERN = r"^[1-9][0-9]{0,5}/([1-9][0-9]{0,2})?(ms|s|m|h|d)$"


def _rate_text(value: str) -> str:
    try:
        return str(limits.parse_rate(value))
    except limits.LimitError as exc:
        raise ValueError(str(exc)) from None


class QueueOut(BaseModel):
    """A queue's limits (null: none of that kind) and its live task counts."""

    name: str
    concurrency: int | None
    rate: str | None = Field(description="COUNT/PERIOD, e.g. 100/s, 10/m, 5/10s")
    per_key_concurrency: int | None
    paused: bool
    fair: bool = Field(False, description="Claims round-robin over concurrency_key")
    age_priority_after_s: float | None = Field(
        None, description="Priority aging: one priority more per this many seconds due"
    )
    pending: int
    in_progress: int


class QueueName(BaseModel):
    """The ``{name}`` of ``/queues/{name}``: the rule of a task's queue."""

    name: Name


class QueueFilter(BaseModel):
    """Query string of ``GET /queues``: by name, ``after`` continues a page."""

    model_config = ConfigDict(extra="forbid")

    after: Name | None = Field(None, description="Only names after this (from `next`)")
    limit: int = Field(100, ge=1, le=500)


class Queues(BaseModel):
    queues: list[QueueOut]
    next: str | None = Field(None, description="The next page, if there may be one")


class QueueChange(BaseModel):
    """Limits to set. A field left out keeps its value; null removes that limit; ``clear``
    removes every limit first."""

    model_config = ConfigDict(extra="forbid")

    concurrency: Limit | None = Field(None, description="At most N tasks in_progress at once")
    rate: (
        Annotated[
            str,
            # Every text the pattern allows is accepted (parse_rate also takes spaces).
            Field(max_length=64, json_schema_extra={"pattern": RATE_PATTERN}),
            AfterValidator(_rate_text),
        ]
        | None
    ) = Field(None, description="At most COUNT claims per PERIOD: 100/s, 10/m, 1000/h, 5/10s")
    per_key_concurrency: Limit | None = Field(
        None, description="At most N in_progress tasks per concurrency_key"
    )
    paused: bool = Field(
        False, description="true: claim nothing; false: claim again (left out: unchanged)"
    )
    fair: bool = Field(
        False, description="true: claim round-robin over concurrency_key (left out: unchanged)"
    )
    age_priority_after: float | None = Field(
        None,
        gt=0,
        le=1000 * 86400,
        description="Seconds per priority step of aging (null: no aging; left out: unchanged)",
    )
    clear: bool = False


class NewSchedule(BaseModel):
    """A periodic schedule: a task of ``kind`` at every tick of ``cron`` or ``every``."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    cron: (
        Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_storable_text)] | None
    ) = Field(None, description="Cron expression: 5 fields, or 6 with seconds first, or @daily ...")
    every: (
        Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_storable_text)] | None
    ) = Field(None, description="Interval: a whole number of seconds (30, 30s, 5m, 1h, 1d)")
    # The task's options: the shape here, the rules by notifyq.spec (as for POST /tasks), so
    # that a bad one gets the same words as from `notifyq schedule add` and Python.
    kind: Annotated[str, _text(spec.MAX_NAME_CHARS)] = Field(description="Which handler runs it")
    payload: Any = None
    queue: Annotated[str, _text(spec.MAX_NAME_CHARS)] = "default"
    priority: Annotated[Any, WithJsonSchema(PRIORITY_SCHEMA)] = Field(
        0, description=f"Higher runs first: {priorities.HELP}"
    )
    tz: Name = Field("UTC", description="IANA time zone of cron")
    catch_up: Literal["coalesce", "all"] = Field(
        "coalesce", description="After downtime: one run for the missed ticks, or each of them"
    )
    catch_up_limit: int = Field(100, ge=1, le=10_000)


class ScheduleFilter(BaseModel):
    """Query string of ``GET /schedules``: by name, ``after`` continues a page."""

    model_config = ConfigDict(extra="forbid")

    after: Name | None = Field(None, description="Only names after this (the next link has it)")
    limit: int = Field(100, ge=1, le=SCHEDULES_PAGE_MAX)


class ScheduleOut(BaseModel):
    name: str
    cron: str | None
    every_s: float | None
    tz: str
    kind: str
    payload: Any = Field(
        description="The tasks' JSON payload; when its JSON text is longer than "
        f"{PREVIEW_CHARS} characters, the first {PREVIEW_CHARS} characters of that text instead "
        "(see payload_truncated)"
    )
    payload_truncated: bool = Field(False, description="True when payload is a cut preview")
    queue: str
    priority: int
    catch_up: str
    catch_up_limit: int
    paused: bool
    last_run_at: datetime | None = Field(description="The tick fired last")
    next_run_at: datetime | None = Field(description="The next tick; null until computed")


class Schedules(BaseModel):
    schedules: list[ScheduleOut]
    next: str | None = Field(None, description="The next page, null on the last")


class ScheduleChange(BaseModel):
    name: str
    change: str = Field(description="added, replaced or unchanged")
    schedule: ScheduleOut
