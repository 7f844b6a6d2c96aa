"""notifyq: a PostgreSQL task queue woken by NOTIFY, run on trio.

``import notifyq`` is light: the producers (:func:`enqueue`, :func:`enqueue_many`,
:func:`wait`) import no driver, and the trio side (``App``, ``Client``, ...) is imported on
first use, so a Django or FastAPI process that only enqueues never loads trio or asyncpg.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from notifyq.errors import (
    Fail,
    InvalidTask,
    InvalidWorkflow,
    NotifyqError,
    PayloadError,
    Retry,
    Snooze,
    TaskNotFound,
    WaitTimeout,
    WorkflowError,
)
from notifyq.producers import (
    NewTask,
    TaskOutcome,
    enqueue,
    enqueue_many,
    enqueue_workflow,
    new_task,
    wait,
    wait_workflow,
)
from notifyq.producers.waiting import BatchCounts, WorkflowOutcome
from notifyq.producers.workflows import (
    Chain,
    ChainIds,
    Chord,
    ChordIds,
    Group,
    GroupIds,
    chain,
    chord,
    group,
    task,
)
from notifyq.version import __version__

if TYPE_CHECKING:
    from notifyq.app import App, Task, current_task
    from notifyq.client import Client, open_client
    from notifyq.store import BatchProgress, TaskState

# Imported on first use (PEP 562): name -> module.
_LAZY = {
    "App": "notifyq.app",
    "Task": "notifyq.app",
    "current_task": "notifyq.app",
    "Client": "notifyq.client",
    "open_client": "notifyq.client",
    "TaskState": "notifyq.store",
    "BatchProgress": "notifyq.store",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'notifyq' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "App",
    "BatchCounts",
    "BatchProgress",
    "Chain",
    "ChainIds",
    "Chord",
    "ChordIds",
    "Client",
    "Fail",
    "Group",
    "GroupIds",
    "InvalidTask",
    "InvalidWorkflow",
    "NewTask",
    "NotifyqError",
    "PayloadError",
    "Retry",
    "Snooze",
    "Task",
    "TaskNotFound",
    "TaskOutcome",
    "TaskState",
    "WaitTimeout",
    "WorkflowError",
    "WorkflowOutcome",
    "__version__",
    "chain",
    "chord",
    "current_task",
    "enqueue",
    "enqueue_many",
    "enqueue_workflow",
    "group",
    "new_task",
    "open_client",
    "task",
    "wait",
    "wait_workflow",
]
