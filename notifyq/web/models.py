"""The JSON shapes of the HTTP API: validated on the way in, documented in /openapi.json."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)

from notifyq import priorities, spec
from notifyq.store import PREVIEW_CHARS, Enqueued, EventRow, TaskRow
from notifyq.vocabulary import STATUSES, ParentFailure

if TYPE_CHECKING:
    Status = str
else:
    # notifyq.vocabulary's statuses, as the enum of the document and of the filter's check
    # (a Literal of a tuple is the Literal of its items).
    Status = Literal[STATUSES]
# The names of notifyq.priorities.NAMED (a test keeps the two the same).
PriorityName = Literal["low", "normal", "high", "urgent"]
PRIORITY_SCHEMA = {
    "anyOf": [
        {"type": "integer", "minimum": priorities.INT32_MIN, "maximum": priorities.INT32_MAX},
        {"type": "string", "enum": list(get_args(PriorityName))},
    ]
}
# One validator (one error, on the field itself); the document shows both forms.
Priority = Annotated[int, PlainValidator(priorities.parse), WithJsonSchema(PRIORITY_SCHEMA)]
INT32_MAX = 2**31 - 1
BIGINT_MAX = 2**63 - 1


def _storable_text(value: str) -> str:
    # notifyq.spec's rule; its InvalidTask is a ValueError, which pydantic reports.
    return spec.storable("text", value)


# PostgreSQL text holds neither NUL nor lone UTF-16 surrogates; the pattern says so too.
Name = Annotated[
    str,
    Field(
        min_length=1,
        max_length=spec.MAX_NAME_CHARS,
        # Checked by _storable_text; pydantic's regex engine cannot name surrogates.
        json_schema_extra={"pattern": r"^[^\x00\ud800-\udfff]+$"},
    ),
    AfterValidator(_storable_text),
]


def _shallow(value: Any) -> Any:
    """Refuse JSON nested deeper than notifyq.spec.MAX_JSON_DEPTH."""
    if not spec.depth_within(value):
        raise ValueError(f"nested deeper than {spec.MAX_JSON_DEPTH} levels")
    return value


# The options of POST /tasks as the document shows them: the shape is checked here, the
# rules (bounds, NUL, depth, size, names of priorities) by notifyq.spec, the one check of
# every entry point, so that a bad option gets the same words from HTTP as from Python and
# the CLI (tests/integration/test_one_task_check.py).
_TEXT_PATTERN = r"^[^\x00\ud800-\udfff]+$"


def _text(max_chars: int, *, pattern: bool = True) -> WithJsonSchema:
    schema: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": max_chars}
    return WithJsonSchema(schema | {"pattern": _TEXT_PATTERN} if pattern else schema)


def _seconds(low: float, high: float) -> WithJsonSchema:
    return WithJsonSchema({"type": "number", "minimum": low, "maximum": high})


class NewTask(BaseModel):
    """A task to add. ``run_at`` and ``delay`` are exclusive; neither means now."""

    model_config = ConfigDict(
        extra="forbid",
        # The document says what _one_schedule checks: not both run_at and delay non-null.
        json_schema_extra={
            "not": {
                "required": ["run_at", "delay"],
                "properties": {
                    "run_at": {"not": {"type": "null"}},
                    "delay": {"not": {"type": "null"}},
                },
            }
        },
    )

    kind: Annotated[str, _text(spec.MAX_NAME_CHARS)] = Field(description="Which handler runs it")
    payload: Any = Field(
        None,
        description=f"Any JSON value nested at most {spec.MAX_JSON_DEPTH} levels, at most "
        f"{spec.MAX_PAYLOAD_BYTES} bytes as compact JSON; null means {{}}",
    )
    queue: Annotated[str, _text(spec.MAX_NAME_CHARS)] = "default"
    priority: Annotated[Any, WithJsonSchema(PRIORITY_SCHEMA)] = Field(
        0, description=f"Higher runs first: {priorities.HELP}"
    )
    run_at: datetime | None = Field(
        None, description="Run no sooner than this (ISO 8601 with a time zone)"
    )
    delay: Annotated[float, Field(strict=True), _seconds(0, spec.MAX_DELAY_S)] | None = Field(
        None, description="Seconds from now to run no sooner than"
    )
    max_attempts: Annotated[
        int, WithJsonSchema({"type": "integer", "minimum": 1, "maximum": spec.MAX_ATTEMPTS})
    ] = 3
    timeout: (
        Annotated[float, Field(strict=True), _seconds(spec.MIN_TIMEOUT_S, spec.MAX_TIMEOUT_S)]
        | None
    ) = Field(None, description="Time limit of one attempt, in seconds (at least 1 ms)")
    concurrency_key: Annotated[str, _text(spec.MAX_CONCURRENCY_KEY_CHARS)] | None = Field(
        None, description="What the queue's per-key limit counts by (a customer id, say)"
    )

    unique_key: Annotated[str, _text(spec.MAX_UNIQUE_KEY_CHARS, pattern=False)] | None = Field(
        None,
        description="While a live (pending or in_progress) task of the queue has this key, "
        "nothing is added: the answer is that task (200, duplicate true)",
    )

    meta: (
        Annotated[Any, WithJsonSchema({"type": "object", "additionalProperties": True})] | None
    ) = Field(None, description="What travels with the task but is not its input (task.meta)")

    after: (
        Annotated[
            list[Any],
            WithJsonSchema(
                {
                    "type": "array",
                    "items": {"type": "integer", "minimum": 1},
                    "maxItems": spec.MAX_PARENTS,
                    "uniqueItems": True,
                }
            ),
        ]
        | None
    ) = Field(None, description="Ids of earlier tasks this one waits for (status waiting)")
    on_parent_failure: Annotated[
        str, WithJsonSchema({"enum": [p.value for p in ParentFailure]})
    ] = Field(
        ParentFailure.CANCEL.value,
        description="cancel: cancelled when a parent ends error or cancelled; run: runs anyway",
    )
    expires_at: datetime | None = Field(None, description="Start deadline (ISO 8601, a zone)")
    expires_in: (
        Annotated[float, Field(strict=True), _seconds(spec.MIN_TIMEOUT_S, spec.MAX_DELAY_S)] | None
    ) = Field(None, description="Start deadline in seconds from now (instead of expires_at)")
    on_conflict: Annotated[str, WithJsonSchema({"enum": list(spec.ON_CONFLICT)})] = Field(
        "keep",
        description="With a unique_key a live task holds: keep it (200, duplicate), replace "
        "its values and run_at (debounce) or update its values but keep run_at (throttle)",
    )

    def checked(self) -> spec.NewTask:
        """The one check of every entry point (notifyq.spec): this model gives the shape and
        the document, the check the rules."""
        return spec.new_task(
            self.kind,
            self.payload,
            queue=self.queue,
            priority=self.priority,
            delay=self.delay,
            run_at=self.run_at,
            max_attempts=self.max_attempts,
            timeout=self.timeout,
            unique_key=self.unique_key,
            concurrency_key=self.concurrency_key,
            meta=self.meta,
            after=self.after,
            on_parent_failure=self.on_parent_failure,
            expires=self.expires_at,
            expires_in=self.expires_in,
            on_conflict=self.on_conflict,
        )

    @model_validator(mode="after")
    def _one_schedule(self) -> NewTask:
        # Reported on the body as a whole: the rule is about two fields.
        spec.one_schedule(self.delay, self.run_at)
        return self


class RelatedOut(BaseModel):
    """A parent or child of a task, as GET /tasks/{id} lists it."""

    id: int
    status: Status
    kind: str
    via: str = Field(description="depends_on (a parent or dependent) or after_batch")


class BatchOut(BaseModel):
    """A batch's progress (notifyq.batch_progress)."""

    id: int
    total: int = Field(description="Members added")
    done: int
    failed: int = Field(description="Members that ended error or cancelled")
    remaining: int


class LiveBatchOut(BatchOut):
    callback_id: int | None = Field(description="The task it releases (null: none added yet)")


class TaskOut(BaseModel):
    id: int
    queue: str
    kind: str
    payload: Any = Field(
        description="The task's JSON value; in lists, when its JSON text is longer than "
        f"{PREVIEW_CHARS} characters, the first {PREVIEW_CHARS} characters of that text instead "
        "(see payload_truncated; GET /tasks/{id} has it whole)"
    )
    payload_truncated: bool = Field(
        False,
        description="In a list: payload is a cut preview of the JSON text; in GET "
        "/tasks/{id}: payload_preview is cut (payload is whole there)",
    )
    priority: int
    status: Status
    attempts: int
    max_attempts: int
    run_at: datetime
    timeout: float | None = Field(description="Seconds, or null for no limit of its own")
    locked_by: str | None
    locked_until: datetime | None
    cancel_requested_at: datetime | None
    result: Any = Field(description="The handler's return value; in lists cut like payload")
    result_truncated: bool = Field(
        False, description="As payload_truncated, for result and result_preview"
    )
    error: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    concurrency_key: str | None = None
    unique_key: str | None = None
    schedule_name: str | None = Field(None, description="The schedule whose tick added it")
    schedule_tick: datetime | None = Field(None, description="That tick")
    depends_on: list[int] | None = Field(None, description="Its parents' ids (workflows)")
    on_parent_failure: str = Field(
        "cancel", description="What a parent's failure does to it: cancel or run"
    )
    waiting_on: int = Field(0, description="While waiting: how many ends it still waits for")
    batch_id: int | None = Field(None, description="The batch it is a member of")
    after_batch: int | None = Field(None, description="The batch whose callback it is")
    snoozes: int = Field(0, description="How many times its handler snoozed it")
    expires_at: datetime | None = Field(None, description="Start deadline: never started after")
    parents: list[RelatedOut] | None = Field(
        None, description="GET /tasks/{id} only: its first 100 parents, in depends_on order"
    )
    children: list[RelatedOut] | None = Field(
        None, description="GET /tasks/{id} only: the first 100 that wait or waited for it"
    )
    children_more: bool = Field(False, description="More children than those listed")
    batch: BatchOut | None = Field(None, description="A callback's batch, in GET /tasks/{id}")
    payload_preview: str | None = Field(
        None, description=f"GET /tasks/{{id}}: the first {PREVIEW_CHARS} characters of its JSON"
    )
    result_preview: str | None = Field(None, description="GET /tasks/{id}: as payload_preview")

    @classmethod
    def from_row(cls, row: TaskRow) -> TaskOut:
        # A list row cut in SQL: its preview stands for the value, flagged as cut.
        return cls(
            id=row.id,
            queue=row.queue,
            kind=row.kind,
            payload=row.payload if row.payload_preview is None else row.payload_preview,
            payload_truncated=row.payload_preview is not None,
            priority=row.priority,
            status=row.status,
            attempts=row.attempts,
            max_attempts=row.max_attempts,
            run_at=row.run_at,
            timeout=None if row.timeout is None else row.timeout.total_seconds(),
            locked_by=row.locked_by,
            locked_until=row.locked_until,
            cancel_requested_at=row.cancel_requested_at,
            result=row.result if row.result_preview is None else row.result_preview,
            result_truncated=row.result_preview is not None,
            error=row.error,
            created_at=row.created_at,
            updated_at=row.updated_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            concurrency_key=row.concurrency_key,
            unique_key=row.unique_key,
            schedule_name=row.schedule_name,
            schedule_tick=row.schedule_tick,
            snoozes=row.snoozes,
            expires_at=row.expires_at,
            depends_on=row.depends_on,
            on_parent_failure=row.on_parent_failure,
            waiting_on=row.waiting_on,
            batch_id=row.batch_id,
            after_batch=row.after_batch,
            parents=None,
            children=None,
            children_more=False,
            batch=None,
            payload_preview=None,
            result_preview=None,
        )


class CreatedTask(TaskOut):
    duplicate: bool = Field(
        description="true: not added, this is the live task that holds the unique_key"
    )
    change: str = Field(
        "added",
        description="added, or what on_conflict did to the live task holding the "
        "unique_key: kept, replaced (debounce), updated (throttle)",
    )

    @classmethod
    def from_enqueued(cls, found: Enqueued) -> CreatedTask:
        return cls.model_validate(
            TaskOut.from_row(found.row).model_dump()
            | {"duplicate": found.duplicate, "change": found.change}
        )


class TaskPage(BaseModel):
    tasks: list[TaskOut]
    next: str | None = Field(description="URL of the next (older) page, or null at the end")


class EventOut(BaseModel):
    id: int
    task_id: int
    event: str
    attempt: int
    worker: str | None
    error: str | None
    at: datetime
    detail: str | None = Field(
        None,
        description="On 'queued': the schedule and tick that added the task, if one did; on "
        "'released' and 'cancelled': the parent task or batch that caused it, or, on a "
        "'released' with neither, that its worker gave the attempt back (shutdown)",
    )
    parent_id: int | None = Field(
        None, description="The parent task whose end released or cancelled this one"
    )
    batch_id: int | None = Field(
        None, description="The batch whose completion released or cancelled this callback"
    )
    actor: str | None = Field(
        None, description="Who caused it: api (or a token's name), cli, sql; null: the engine"
    )
    traceback: str | None = Field(None, description="A failed attempt's traceback (16 KiB)")

    @classmethod
    def from_row(cls, row: EventRow) -> EventOut:
        return cls.model_validate(row.as_dict())


class History(BaseModel):
    task_id: int
    events: list[EventOut]


class ActionResult(BaseModel):
    id: int
    status: str = Field(
        description="cancelled, cancelling (still running), pending, or waiting (a retried "
        "dependent whose parent has not ended)"
    )


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorOut(BaseModel):
    error: ErrorBody
