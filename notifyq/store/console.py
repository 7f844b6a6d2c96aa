"""The operator console's statements: filtered lists and counts, bulk and one-task actions,
failure groups, a schedule's manual run, a task's whole payload or result.

Every filtered statement reads ``console_matching`` (the filter language's one SQL form) as
a derived table, put in place here once; no text from a request reaches the SQL, only bind
parameters. They run with custom plans (``console_custom_plans``): a plan made for the keys
a call gives, never a generic one that would keep every ``$n IS NULL OR`` branch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

import trio

from notifyq import db, errors, sql
from notifyq.filters import Instant, TaskFilter
from notifyq.store.rows import PREVIEW_CHARS, TaskRow
from notifyq.vocabulary import Action, Answer, Status

_FILTERED = ("console_list", "console_count", "console_bulk", "console_failures")
_MATCHING = f"({sql.queries['console_matching']})"
filtered: Final[Mapping[str, str]] = MappingProxyType(
    {name: sql.queries[name].replace("(/* matching */)", _MATCHING) for name in _FILTERED}
)
"""The filtered statements with the filter in place (``(/* matching */)`` in queries.sql)."""

COUNT_CAP = 100_000
"""How far :func:`count_tasks` counts by default (then ``capped``)."""
BATCH_MAX = 5_000
"""The most ids one bulk step locks."""
BUSY_TRIES = 5
BUSY_PAUSE_S = 0.05
"""A row another transaction holds (a claim, a heartbeat, another bulk action) is tried
again this many times, this far apart, before it counts as skipped."""


def _ilike(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _instant(bound: Instant | None) -> tuple[datetime | None, float | None]:
    return (None, None) if bound is None else (bound.at, bound.age_s)


def filter_args(f: TaskFilter) -> list[Any]:
    """``console_matching``'s $1..$20 for ``f``."""

    def listed(values: tuple[Any, ...] | None) -> list[Any] | None:
        return None if values is None else list(values)

    return [
        listed(f.status),
        listed(f.queue),
        listed(f.kind),
        listed(f.priority),
        listed(f.id),
        *_instant(f.created_after),
        *_instant(f.created_before),
        *_instant(f.finished_after),
        *_instant(f.finished_before),
        f.unique_key,
        f.concurrency_key,
        f.schedule,
        f.workflow,
        f.batch,
        None if f.error is None else _ilike(f.error),
        f.fingerprint,
    ]


async def _custom(database: db.Database, method: str, query: str, *args: Any) -> Any:
    """``conn.<method>(query, *args)`` in a transaction planned for its parameters."""

    async def go(conn: db.Connection) -> Any:
        await conn.execute(sql.queries["console_custom_plans"])
        return await getattr(conn, method)(query, *args)

    return await database.run_in_transaction(go)


async def find_tasks(
    database: db.Database,
    f: TaskFilter,
    *,
    before: int | None,
    limit: int,
    preview_chars: int = PREVIEW_CHARS,
) -> list[TaskRow]:
    """Matching tasks newest first, ids below ``before``; big payloads and results cut to
    previews as :func:`notifyq.store.list_tasks` cuts them."""
    rows = await _custom(
        database, "fetch", filtered["console_list"], *filter_args(f), before, limit, preview_chars
    )
    return [TaskRow.from_record(r) for r in rows]


@dataclass(frozen=True, slots=True)
class Counted:
    """How many tasks match (at most the cap: ``capped``), and the highest matching id."""

    count: int
    upto: int | None
    capped: bool


async def count_tasks(database: db.Database, f: TaskFilter, *, cap: int = COUNT_CAP) -> Counted:
    row = await _custom(database, "fetchrow", filtered["console_count"], *filter_args(f), cap)
    return Counted(count=int(row["n"]), upto=row["upto"], capped=int(row["n"]) >= cap)


@dataclass(frozen=True, slots=True)
class Acted:
    """What an action did to one task: ``changed``, and the answer (what changed, or the
    state that refused it: a status, 'unchanged', 'busy', 'missing', 'duplicate',
    'parent_failed')."""

    id: int
    changed: bool
    answer: str


@dataclass(frozen=True, slots=True)
class BulkStep:
    """One batch of a bulk action: tasks changed, matched but skipped (of which ``busy``:
    held by another transaction each time it was tried), and where the next batch starts
    (None: finished)."""

    changed: int
    skipped: int
    busy: int
    cursor: int | None
    acted: tuple[Acted, ...]


def _acted(rows: Sequence[Any]) -> list[Acted]:
    return [Acted(int(r["id"]), bool(r["changed"]), str(r["answer"])) for r in rows]


async def act_on_ids(
    database: db.Database,
    action: Action,
    ids: Sequence[int],
    *,
    actor: str,
    priority: int | None = None,
    statuses: Sequence[str] | None = None,
) -> list[Acted]:
    """``action`` on the tasks ``ids`` (those still in one of ``statuses``, when given),
    one short transaction per try; rows another transaction holds are tried again
    (BUSY_TRIES) and stay 'busy' after that. Tasks that do not exist come back 'missing'."""
    found: dict[int, Acted] = {}
    todo = list(dict.fromkeys(ids))
    for attempt in range(BUSY_TRIES):
        if attempt:
            await trio.sleep(BUSY_PAUSE_S)
        rows = await database.fetch(
            sql.queries["console_act_ids"],
            action.value,
            todo,
            actor,
            priority,
            None if statuses is None else list(statuses),
        )
        for acted in _acted(rows):
            found[acted.id] = acted
        todo = [i for i in todo if found[i].answer == "busy"]
        if not todo:
            break
    return [found[i] for i in dict.fromkeys(ids)]


def one_task_status(action: Action, task_id: int, acted: Acted) -> str:
    """The status a one-task action leaves (empty for priority: read it), or the error it
    is (TaskNotFound, InvalidTransition), in the words of :class:`notifyq.Client`'s cancel
    and retry."""
    answer = acted.answer
    if answer == "missing":
        raise errors.TaskNotFound(task_id)
    if answer == "busy":
        raise errors.InvalidTransition(task_id, "busy (another transaction holds it)", action)
    if action is Action.CANCEL and answer in (Status.CANCELLED, Answer.CANCELLING):
        return answer  # cancelling twice is harmless, as it always was
    if action is Action.RETRY:
        if answer == Answer.REQUEUED:
            return Status.PENDING.value
        if answer == Status.WAITING:
            return answer
        refusals = {
            Answer.DUPLICATE.value: "a duplicate of a live task (same queue and unique key)",
            Answer.PARENT_FAILED.value: "cancelled by a parent that failed (retry the parent "
            "first)",
        }
        answer = refusals.get(answer, answer)
    if action is Action.RUN_NOW:
        if acted.changed:
            return Status.PENDING.value
        if answer == "unchanged":
            answer = "pending and due already"
    if action is Action.PRIORITY and (acted.changed or answer == "unchanged"):
        return ""
    raise errors.InvalidTransition(task_id, answer, action.value.replace("_", " "))


async def act_in_bulk(
    database: db.Database,
    action: Action,
    f: TaskFilter,
    *,
    upto: int,
    cursor: int | None,
    batch: int,
    actor: str,
    priority: int | None = None,
) -> BulkStep:
    """One batch of ``action`` over the tasks matching ``f``: the next ``batch`` ids at most
    ``upto`` and below ``cursor``, newest first, each locked SKIP LOCKED and checked in
    ``notifyq.console_act``; busy rows tried again as :func:`act_on_ids` does."""
    rows = await _custom(
        database,
        "fetch",
        filtered["console_bulk"],
        *filter_args(f),
        action.value,
        upto,
        cursor,
        batch,
        actor,
        priority,
    )
    acted = {a.id: a for a in _acted(rows)}
    busy = [i for i, a in acted.items() if a.answer == "busy"]
    if busy:
        again_all = await act_on_ids(
            database, action, busy, actor=actor, priority=priority, statuses=f.status
        )
        for again in again_all:
            acted[again.id] = again
    done = tuple(acted.values())
    changed = sum(a.changed for a in done)
    return BulkStep(
        changed=changed,
        skipped=len(done) - changed,
        busy=sum(a.answer == "busy" for a in done),
        cursor=min(acted) if len(acted) >= batch else None,
        acted=done,
    )


@dataclass(frozen=True, slots=True)
class FailureGroup:
    """Tasks that failed the same way: one kind, one error shape (``message``)."""

    fingerprint: str
    kind: str
    error_class: str | None
    message: str
    count: int
    first_seen: datetime | None
    last_seen: datetime | None
    example_id: int


async def failure_groups(database: db.Database, f: TaskFilter, *, limit: int) -> list[FailureGroup]:
    """The matching tasks that have an error, grouped, biggest group first."""
    rows = await _custom(database, "fetch", filtered["console_failures"], *filter_args(f), limit)
    return [
        FailureGroup(
            fingerprint=r["fingerprint"],
            kind=r["kind"],
            error_class=r["error_class"],
            message=r["message"],
            count=int(r["n"]),
            first_seen=r["first_seen"],
            last_seen=r["last_seen"],
            example_id=int(r["example_id"]),
        )
        for r in rows
    ]


async def run_schedule(database: db.Database, name: str, *, actor: str) -> int | None:
    """One tick of schedule ``name`` now; the task's id, None for no such schedule."""
    task_id: int | None = await database.fetchval(sql.queries["console_run_schedule"], name, actor)
    return task_id


async def task_json(database: db.Database, task_id: int, *, column: str) -> tuple[bool, str | None]:
    """(found, JSON text) of the task's ``column``: 'payload' or 'result'."""
    query = sql.queries["task_payload_text" if column == "payload" else "task_result_text"]
    row = await database.fetchrow(query, task_id)
    return (False, None) if row is None else (True, row["text"])
