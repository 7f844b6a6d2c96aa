"""Workflows from task specifications: chains, groups and chords, added in one statement.

    flow = notifyq.chain(
        notifyq.task("fetch", {"url": url}),
        notifyq.group(notifyq.task("resize", {"size": s}) for s in (64, 256)),
        notifyq.task("publish"),
    )
    added = notifyq.enqueue_workflow(conn, flow)       # in the caller's transaction
    added.ids                                          # every task id, step by step

A step is a task (:func:`task`, a :class:`~notifyq.NewTask` or a mapping of
:func:`notifyq.enqueue`'s arguments), a :func:`group` or a :func:`chord`; a chain inside a
chain is flattened. Each step's tasks wait for the previous step's (``depends_on`` =
the previous task, every member of the previous group, or the previous chord's callback),
so the engine hands a step its parents' outcomes in chain order. A chord's members form a
batch (``notifyq.batches``): they are counted, not listed, so a chord of 100,000 members
is one counter; its callback (``after_batch``) runs once after the last member ends.

The whole workflow is one statement, one CTE per step (the ``workflow_*`` statements of
``queries.sql``, each step's parameters numbered after the previous step's; every value is
a bind parameter), so it exists if and only if the caller's transaction commits, needs no
reserved ids, and takes nothing but a producer's privileges. Within a step the ids follow
the order given: a group's member ids ascend in member order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Unpack

from notifyq import sql
from notifyq.errors import InvalidTask, InvalidWorkflow
from notifyq.producers.waiting import Watch
from notifyq.spec import MAX_PARENTS, NewTask, PlainOptions, from_item, new_task

# Steps per workflow: each is a CTE of one statement (15 parameters each).
MAX_STEPS = 500

TaskLike = NewTask | Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Group:
    """Tasks that run side by side; the next step waits for all of them."""

    tasks: tuple[NewTask, ...]


@dataclass(frozen=True, slots=True)
class Chord:
    """A group whose members form a batch, and the callback run once they all ended."""

    group: Group
    callback: NewTask


Step = NewTask | Group | Chord


@dataclass(frozen=True, slots=True)
class Chain:
    """Steps run one after the other (a step starts once the previous one ended)."""

    steps: tuple[Step, ...]


Workflow = Chain | Group | Chord


@dataclass(frozen=True, slots=True)
class GroupIds:
    """The ids of a group's members, in member order (ascending)."""

    members: tuple[int, ...]

    @property
    def ids(self) -> tuple[int, ...]:
        return self.members


@dataclass(frozen=True, slots=True)
class ChordIds:
    """A chord's member ids (member order), its batch's id and its callback's id."""

    members: tuple[int, ...]
    batch_id: int
    callback_id: int

    @property
    def ids(self) -> tuple[int, ...]:
        return (*self.members, self.callback_id)


StepIds = int | GroupIds | ChordIds


@dataclass(frozen=True, slots=True)
class ChainIds:
    """Each step's ids in chain order: a task's id, a :class:`GroupIds`, a
    :class:`ChordIds`."""

    steps: tuple[StepIds, ...]

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(i for step in self.steps for i in _ids_of(step))


Added = ChainIds | GroupIds | ChordIds


def _ids_of(step: StepIds) -> tuple[int, ...]:
    return (step,) if isinstance(step, int) else step.ids


def task(kind: str, payload: Any = None, **options: Unpack[PlainOptions]) -> NewTask:
    """One checked task for a workflow: :func:`notifyq.new_task`'s options but
    ``unique_key`` (a task with parents has none)."""
    return new_task(kind, payload, **options)


def _task(item: object) -> NewTask:
    if isinstance(item, Chain | Group | Chord):
        raise InvalidWorkflow(f"expected a task here, got a {type(item).__name__.lower()}")
    checked = from_item(item)  # type: ignore[arg-type]  # from_item names a bad type
    if checked.unique_key is not None:
        raise InvalidTask("unique_key", checked.unique_key, "a workflow's tasks take no unique_key")
    return checked


def group(*tasks: TaskLike | Iterable[TaskLike]) -> Group:
    """Tasks that run side by side: ``group(t1, t2)`` or ``group(t for t in ...)``."""
    items: list[object] = []
    for item in tasks:
        if isinstance(item, NewTask | Mapping | Chain | Group | Chord):
            items.append(item)
        else:
            items.extend(item)
    if not items:
        raise InvalidWorkflow("a group needs at least one task")
    members = []
    for member in items:
        if isinstance(member, Chain | Group | Chord):
            raise InvalidWorkflow(
                f"a group holds tasks, not a {type(member).__name__.lower()} "
                "(add the inner workflow on its own, or make its last step a chord)"
            )
        members.append(_task(member))
    return Group(tuple(members))


def chord(members: Group | Iterable[TaskLike], callback: TaskLike) -> Chord:
    """``members`` (a group) as a batch, and ``callback`` run once after they all ended."""
    grouped = members if isinstance(members, Group) else group(members)
    if isinstance(callback, Chain | Group | Chord):
        raise InvalidWorkflow(
            f"a chord's callback is a task, not a {type(callback).__name__.lower()} "
            "(chain the chord and the rest instead)"
        )
    return Chord(grouped, _task(callback))


def chain(*steps: Step | Chain | Mapping[str, Any]) -> Chain:
    """Steps run one after the other; a chain inside is flattened."""
    flat: list[Step] = []
    for step in steps:
        if isinstance(step, Chain):
            flat.extend(step.steps)
        elif isinstance(step, Group | Chord):
            flat.append(step)
        else:
            flat.append(_task(step))
    if not flat:
        raise InvalidWorkflow("a chain needs at least one step")
    if len(flat) > MAX_STEPS:
        raise InvalidWorkflow(f"a chain has at most {MAX_STEPS} steps, got {len(flat)}")
    for before in flat[:-1]:
        if isinstance(before, Group) and len(before.tasks) > MAX_PARENTS:
            raise InvalidWorkflow(
                f"a step after a group waits for each member: at most {MAX_PARENTS}, got "
                f"{len(before.tasks)} (make it a chord: its callback waits for a batch)"
            )
    return Chain(tuple(flat))


# --- the statement ----------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\$(\d+)")


@dataclass(frozen=True, slots=True)
class Statement:
    """A workflow's statement ($n placeholders) and its parameters, for any driver."""

    text: str
    args: tuple[Any, ...]
    shape: tuple[str, ...]  # per step: "task", "group" or "chord"
    chained: bool  # a chain (ChainIds) rather than one group or chord


def _rows(step: Step) -> tuple[list[NewTask], int]:
    """The step's rows in order, and how many are members (the rest: the callback)."""
    if isinstance(step, NewTask):
        return [step], 1
    if isinstance(step, Group):
        return list(step.tasks), len(step.tasks)
    return [*step.group.tasks, step.callback], len(step.group.tasks)


def _columns(
    tasks: Sequence[NewTask], members: int, each: Callable[[NewTask], NewTask]
) -> list[list[Any]]:
    """The 15 arrays of ``workflow_step``, one per column."""
    columns: list[list[Any]] = [[] for _ in range(15)]
    for n, task_ in enumerate(tasks):
        t = each(task_)
        row = (
            *t.parameters(),
            t.concurrency_key,
            t.depends_on,
            t.on_parent_failure,
            n >= members,
            *t.expiry(),
        )
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns


def statement(workflow: Workflow, *, each: Callable[[NewTask], NewTask] = lambda t: t) -> Statement:
    """The one statement that adds ``workflow``: a step CTE per step (``workflow_step``),
    each with what its tasks wait for (``workflow_after_*``) and its batch
    (``workflow_batch``, a chord's) or none; the last SELECT returns each step's ids.
    ``each`` completes every task as it is written (the producer's trace context)."""
    steps = workflow.steps if isinstance(workflow, Chain) else (workflow,)
    ctes: list[str] = []
    args: list[Any] = []
    picks: list[str] = []
    shape: list[str] = []
    for k, step in enumerate(steps):
        if k == 0:
            after = sql.queries["workflow_after_nothing"]
        elif shape[-1] == "chord":
            after = sql.queries["workflow_after_callback"]
        else:
            after = sql.queries["workflow_after_step"]
        kind = "task" if isinstance(step, NewTask) else type(step).__name__.lower()
        batch = sql.queries["workflow_batch" if kind == "chord" else "workflow_no_batch"]
        ctes.append(f"a{k} AS ({after.replace('step_previous', f's{k - 1}')})")
        ctes.append(f"b{k} AS ({batch})")
        body = sql.queries["workflow_step"]
        body = _PLACEHOLDER.sub(lambda m: f"${int(m.group(1)) + len(args)}", body)
        body = body.replace("step_after", f"a{k}").replace("step_batch", f"b{k}")
        ctes.append(f"s{k} AS ({body})")
        tasks, members = _rows(step)
        args.extend(_columns(tasks, members, each))
        picks.append(
            sql.queries["workflow_ids"]
            .replace("step_tasks", f"s{k}")
            .replace("step_batch", f"b{k}")
        )
        shape.append(kind)
    text = "WITH " + ",\n".join(ctes) + "\n" + "\nUNION ALL\n".join(picks)
    return Statement(text, tuple(args), tuple(shape), isinstance(workflow, Chain))


def added(made: Statement, rows: Sequence[Sequence[Any]]) -> Added:
    """What the statement's rows say (one row per step, in order: ids, batch)."""
    steps: list[StepIds] = []
    for kind, (ids, batch) in zip(made.shape, rows, strict=True):
        ordered = tuple(int(i) for i in ids)
        if kind == "task":
            steps.append(ordered[0])
        elif kind == "group":
            steps.append(GroupIds(ordered))
        else:  # the callback is the chord's last row: its id is the greatest
            steps.append(ChordIds(ordered[:-1], int(batch), ordered[-1]))
    if made.chained or isinstance(steps[0], int):
        return ChainIds(tuple(steps))
    return steps[0]


def as_workflow(value: object) -> Workflow:
    """A chain, group or chord; a bare task is refused (``notifyq.enqueue`` adds it)."""
    if isinstance(value, Chain | Group | Chord):
        return value
    raise InvalidWorkflow(
        f"expected notifyq.chain, group or chord, got {type(value).__name__} "
        "(add a single task with notifyq.enqueue)"
    )


def watch(workflow: object) -> Watch:
    """What waiting for ``workflow`` (what :func:`added` returned) reads: every task but a
    chord's members, which their batch counts (their callback ends after them)."""
    if not isinstance(workflow, ChainIds | GroupIds | ChordIds):
        raise TypeError(
            "expected what notifyq.enqueue_workflow returned (ChainIds, GroupIds, ChordIds), "
            f"got {type(workflow).__name__}"
        )
    steps = workflow.steps if isinstance(workflow, ChainIds) else (workflow,)
    task_ids: list[int] = []
    batch_ids: list[int] = []
    for step in steps:
        if isinstance(step, ChordIds):
            task_ids.append(step.callback_id)
            batch_ids.append(step.batch_id)
        else:
            task_ids.extend(_ids_of(step))
    return Watch(tuple(task_ids), tuple(batch_ids), single=False)
