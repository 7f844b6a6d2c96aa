"""A Django task's exception as notifyq stores it, and back as Django's ``TaskError``.

notifyq keeps an attempt's error as text (``Type: message``). The worker stores a Django
task's exception as ``TaskFailed: <module.Class>: <message>`` followed by its traceback, so
``get_result()`` can give ``TaskError(exception_class_path, traceback)`` as the standard
asks; errors of notifyq's own (a timeout, a payload that is not ``{"args", "kwargs"}``)
name notifyq's or Python's class.
"""

from __future__ import annotations

import builtins
import traceback

from django.tasks.base import TaskError

from notifyq import errors as notifyq_errors

_PREFIX = "TaskFailed: "


class TaskFailed(Exception):
    """A Django task raised ``exception``: its class path, message and traceback."""

    @classmethod
    def of(cls, exception: BaseException) -> TaskFailed:
        kind = type(exception)
        text = "".join(traceback.format_exception(exception))
        return cls(f"{kind.__module__}.{kind.__qualname__}: {exception}\n{text}")


def task_error(stored: str) -> TaskError:
    """Django's TaskError of one stored error text."""
    if stored.startswith(_PREFIX):
        first, _, rest = stored[len(_PREFIX) :].partition("\n")
        return TaskError(exception_class_path=first.partition(":")[0], traceback=rest)
    name = stored.partition(":")[0].strip()
    if hasattr(notifyq_errors, name):
        path = f"notifyq.errors.{name}"
    elif isinstance(getattr(builtins, name, None), type):
        path = f"builtins.{name}"
    else:
        path = "builtins.Exception"
    return TaskError(exception_class_path=path, traceback=stored)


def task_errors(last: str | None, attempts: list[str]) -> list[TaskError]:
    """The errors of a task, oldest first: each failed attempt's, else its last one (a task
    cancelled before it ran has no failed attempt)."""
    texts = attempts or ([last] if last else [])
    return [task_error(t) for t in texts]
