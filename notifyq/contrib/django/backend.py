"""``notifyq.contrib.django.NotifyqBackend``: Django's ``django.tasks`` on notifyq.

    TASKS = {
        "default": {
            "BACKEND": "notifyq.contrib.django.NotifyqBackend",
            "QUEUES": ["default", "emails"],          # Django's: the queue names allowed
            "OPTIONS": {"DATABASE": "default", "MAX_ATTEMPTS": 1, "MODULES": ["shop.jobs"]},
        }
    }

``enqueue`` adds the task on Django's connection of ``DATABASE`` in the current transaction:
inside ``transaction.atomic()`` (or ``ATOMIC_REQUESTS``) the task exists if and only if the
block commits; outside one, Django's autocommit commits it at once. The kind is the
function's module path (``myapp.tasks.send``), the payload ``{"args": [...], "kwargs":
{...}}``, the priority Django's own number (-100..100 sits inside notifyq's integers, and
Django's 0 is notifyq's ``normal``), ``run_after`` notifyq's ``run_at``, the queue name
notifyq's queue. The result id is the task id, as text.
"""

from __future__ import annotations

from typing import Any

from django.db import connections
from django.tasks import TaskResult, TaskResultStatus
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.exceptions import TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils import timezone
from django.utils.module_loading import import_string

from notifyq import producers, spec
from notifyq.contrib.django import connection, errors
from notifyq.vocabulary import Status

# Every Django task that a NotifyqBackend accepted, by kind: what the worker runs.
REGISTRY: dict[str, Any] = {}

_STATUS = {
    Status.WAITING: TaskResultStatus.READY,
    Status.PENDING: TaskResultStatus.READY,
    Status.IN_PROGRESS: TaskResultStatus.RUNNING,
    Status.DONE: TaskResultStatus.SUCCESSFUL,
    Status.ERROR: TaskResultStatus.FAILED,
    Status.CANCELLED: TaskResultStatus.FAILED,
}


class NotifyqBackend(BaseTaskBackend):
    supports_defer = True
    supports_async_task = True  # the worker runs a coroutine function with async_to_sync
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        unknown = set(self.options) - {"DATABASE", "MAX_ATTEMPTS", "MODULES"}
        if unknown:
            raise ValueError(f"unknown OPTIONS of task backend {alias!r}: {sorted(unknown)}")
        self.database: str = self.options.get("DATABASE", "default")
        self.max_attempts: int | None = self.options.get("MAX_ATTEMPTS")
        # Modules the worker imports besides every installed app's `tasks` module.
        self.modules: list[str] = list(self.options.get("MODULES", []))

    def validate_task(self, task: Any) -> None:
        super().validate_task(task)
        REGISTRY[task.module_path] = task

    def new_task(self, task: Any, args: Any, kwargs: Any) -> spec.NewTask:
        """The checked notifyq task of a Django task call (InvalidTask names a bad value,
        before any SQL)."""
        options: spec.PlainOptions = {"queue": task.queue_name, "priority": task.priority}
        if task.run_after is not None:
            options["run_at"] = task.run_after
        if self.max_attempts is not None:
            options["max_attempts"] = self.max_attempts
        payload = {"args": list(args), "kwargs": dict(kwargs)}
        return spec.new_task(task.module_path, payload, **options)

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        self.validate_task(task)
        added = self.new_task(task, args, kwargs)
        task_id = producers.add(connection.psycopg_of(connections[self.database]), added)
        result = TaskResult(
            task=task,
            id=str(task_id),
            status=TaskResultStatus.READY,
            enqueued_at=timezone.now(),
            started_at=None,
            last_attempted_at=None,
            finished_at=None,
            args=list(args),
            kwargs=dict(kwargs),
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> Any:
        from notifyq.contrib.django.models import Task, TaskEvent

        try:
            row = Task.objects.using(self.database).get(pk=int(result_id))
        except (ValueError, TypeError, Task.DoesNotExist):
            raise TaskResultDoesNotExist(result_id) from None
        try:
            django_task = import_string(row.kind)
        except ImportError:
            raise TaskResultDoesNotExist(result_id) from None
        events = list(
            TaskEvent.objects.using(self.database)
            .filter(task_id=row.id, attempt__gt=0)
            .values_list("attempt", "worker", "error")
        )
        payload = row.payload if isinstance(row.payload, dict) else {}
        result = TaskResult(
            task=django_task.using(priority=row.priority, queue_name=row.queue, backend=self.alias),
            id=str(row.id),
            status=_STATUS[Status(row.status)],
            enqueued_at=row.created_at,
            started_at=row.started_at,
            last_attempted_at=row.started_at,
            finished_at=row.finished_at,
            args=list(payload.get("args", [])),
            kwargs=dict(payload.get("kwargs", {})),
            backend=self.alias,
            errors=errors.task_errors(row.error, [e for _, _, e in events if e]),
            worker_ids=_workers(row, events),
        )
        if row.status == Status.DONE:
            object.__setattr__(result, "_return_value", row.result)
        return result


def _workers(row: Any, events: list[tuple[int, str | None, str | None]]) -> list[str]:
    """One worker per attempt that started (``TaskResult.attempts`` counts them)."""
    by_attempt = {attempt: worker or "" for attempt, worker, _ in events}
    if row.status == Status.IN_PROGRESS and row.attempts not in by_attempt:
        by_attempt[row.attempts] = row.locked_by or ""
    return [by_attempt[a] for a in sorted(by_attempt)]
