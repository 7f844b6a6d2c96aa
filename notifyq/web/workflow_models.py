"""The shapes of POST /workflows and GET /batches/{id} (their rules are notifyq.spec's and
notifyq.chain/group/chord's)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from notifyq.store import BatchInfo


class NewWorkflow(BaseModel):
    """Exactly one of ``chain`` (steps: a task, ``{"group": [tasks]}`` or ``{"chord":
    {"group": [tasks], "callback": task}}``), ``group`` (tasks) or ``chord``. A task is
    POST /tasks' body but ``unique_key``."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"minProperties": 1, "maxProperties": 1}
    )

    chain: list[dict[str, Any]] | None = Field(None, description="Steps run one after another")
    group: list[dict[str, Any]] | None = Field(None, description="Tasks run side by side")
    chord: dict[str, Any] | None = Field(
        None, description='{"group": [tasks], "callback": task}: the callback runs once after'
    )


class GroupOut(BaseModel):
    members: list[int] = Field(description="The members' ids, in the order given")


class ChordOut(GroupOut):
    batch_id: int
    callback_id: int


class CreatedWorkflow(BaseModel):
    """A chain's answer: every id it added (``ids``, step by step) and each step's ids (a
    task's id, a group's ``members``, a chord's ``members``, ``batch_id``, ``callback_id``).
    A group answers ``ids`` and ``members``; a chord those and its batch and callback."""

    ids: list[int]
    steps: list[int | ChordOut | GroupOut]


class CreatedGroup(GroupOut):
    ids: list[int]


class CreatedChord(ChordOut):
    ids: list[int]


class BatchOut(BaseModel):
    id: int
    total: int = Field(description="Members added")
    done: int = Field(description="Members that ended done")
    failed: int = Field(description="Members that ended error or cancelled")
    remaining: int = Field(description="Members not ended yet")
    sealed: bool = Field(description="Its callback was added: no more members")
    callback_id: int | None
    callback_status: str | None
    created_at: datetime
    completed_at: datetime | None

    @classmethod
    def from_info(cls, info: BatchInfo) -> BatchOut:
        return cls(
            id=info.id,
            total=info.total,
            done=info.done,
            failed=info.failed,
            remaining=info.remaining,
            sealed=info.sealed,
            callback_id=info.callback_id,
            callback_status=info.callback_status,
            created_at=info.created_at,
            completed_at=info.completed_at,
        )
