"""The words of notifyq's contract, spelled once: statuses, verdicts, answers, channels.

What the SQL, the engine, the HTTP side, the CLI, the page and the producers all say about a
task. The standard library only, so that anything imports it (a producer without asyncpg
or trio, the page's template): ``tests/unit/test_vocabulary.py`` checks that importing it
loads no driver, pins these words to the schema's CHECK constraints and triggers, and
fails when a module outside this one spells a status or a channel again.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Status(StrEnum):
    """The ``notifyq.tasks.status`` values. ``waiting``: a task whose parents (``depends_on``)
    or batch (``after_batch``) have not all ended; it is never claimed."""

    WAITING = "waiting"
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    ERROR = "error"
    CANCELLED = "cancelled"


ENDED: frozenset[str] = frozenset({Status.DONE, Status.ERROR, Status.CANCELLED})
"""The statuses a task never leaves on its own (``retry`` puts error and cancelled back)."""
LIVE: frozenset[str] = frozenset({Status.PENDING, Status.IN_PROGRESS})
"""The statuses of a task that may still run (a ``unique_key`` is held while live)."""
STATUSES: tuple[str, ...] = tuple(s.value for s in Status)
"""Every status in the order a reader follows a task (the page's columns)."""


class Verdict(StrEnum):
    """What one attempt ended as: the ``finish`` statement's outcomes and the event names.

    ``retried``, ``released`` and ``snoozed`` put the task back to pending (a released or
    snoozed attempt is not counted: shutdown, lease lost, the handler's ``notifyq.Snooze``);
    a retry, release or snooze of a task whose cancel was asked ends it ``cancelled``
    instead, and a snooze beyond the task's ``max_snoozes`` ends it ``error``.
    """

    DONE = "done"
    FAILED = "failed"
    RETRIED = "retried"
    CANCELLED = "cancelled"
    RELEASED = "released"
    SNOOZED = "snoozed"


class Event(StrEnum):
    """History events that are neither a verdict nor an answer: what the console's actions
    write (``notifyq.console_act``, migration 0018). Each event names its ``actor``."""

    RUN_NOW = "run_now"  # a pending task due later made due now; a schedule's manual run
    PRIORITY_CHANGED = "priority_changed"


class Actor(StrEnum):
    """``notifyq.task_events.actor``: who caused an event (NULL: the engine). The HTTP API
    names itself ``api`` (or the name of the token a request carried)."""

    API = "api"
    CLI = "cli"
    SQL = "sql"


class Action(StrEnum):
    """The console's actions on tasks (``notifyq.console_act``; HTTP ``run-now`` is
    ``run_now`` here)."""

    CANCEL = "cancel"
    RETRY = "retry"
    RUN_NOW = "run_now"
    PRIORITY = "priority"


class ParentFailure(StrEnum):
    """``notifyq.tasks.on_parent_failure``: what a parent that ended error or cancelled does
    to its dependent: cancel it (the default), or let it run once every parent ended."""

    CANCEL = "cancel"
    RUN = "run"


class Answer(StrEnum):
    """What ``notifyq.cancel_task`` and ``notifyq.retry_task`` answer besides a status."""

    CANCELLING = "cancelling"  # cancel: the task runs; its process is asked to stop it
    REQUEUED = "requeued"  # retry: back to pending with a fresh attempt budget
    DUPLICATE = "duplicate"  # retry refused: a live task of the queue holds its unique_key
    PARENT_FAILED = (
        "parent_failed"  # retry refused: a parent still failed (on_parent_failure cancel)
    )


# The channels notifyq's triggers and functions notify on (LISTEN them from any client).
QUEUE_CHANNEL: Final = "notifyq"
"""Rows of a queue became claimable while some process waits for it; payload: the queue."""
DONE_CHANNEL: Final = "notifyq_done"
"""A task ended (done, error, cancelled); payload: JSON with its id and status."""
CANCEL_CHANNEL: Final = "notifyq_cancel"
"""Cancellation of a running task was asked; payload: the task id."""
LIMITS_CHANNEL: Final = "notifyq_queues"
"""A queue's limits changed; payload: the queue."""
SCHEDULES_CHANNEL: Final = "notifyq_schedules"
"""A schedule was added, changed or removed; payload: its name, or empty for several."""
PROBE_CHANNEL_PREFIX: Final = "notifyq_probe_"
"""Each process's own health probe channel starts with this (then its pid and a token)."""

CHANNELS: tuple[str, ...] = (
    QUEUE_CHANNEL,
    DONE_CHANNEL,
    CANCEL_CHANNEL,
    LIMITS_CHANNEL,
    SCHEDULES_CHANNEL,
)
"""Every channel the schema notifies on."""
