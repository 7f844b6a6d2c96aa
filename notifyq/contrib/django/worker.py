"""The App of ``manage.py notifyq_worker``: every Django task a NotifyqBackend accepted,
as a ``def`` handler of its kind (a worker thread each, with Django set up).

Built when imported (``--app notifyq.contrib.django.worker:app``), after the ``tasks``
module of every installed app and the backends' ``MODULES`` are imported, since a Django
task is known only once its module ran. A kind without a handler here is not claimed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from django.db import close_old_connections
from django.tasks import TaskContext, TaskResultStatus, task_backends
from django.tasks.signals import task_finished, task_started
from django.utils import timezone
from django.utils.json import normalize_json
from django.utils.module_loading import autodiscover_modules

import notifyq
from notifyq.app import App
from notifyq.contrib.django.backend import REGISTRY, NotifyqBackend
from notifyq.contrib.django.errors import TaskFailed, task_error
from notifyq.errors import HandlerSignal, PayloadError


def arguments(payload: Any) -> tuple[list[Any], dict[str, Any]]:
    """``{"args": [...], "kwargs": {...}}``, as the backend writes it (plain SQL may not)."""
    if not isinstance(payload, dict) or not set(payload) <= {"args", "kwargs"}:
        raise PayloadError(f'expected {{"args": [...], "kwargs": {{...}}}}, got {payload!r:.80}')
    args, kwargs = payload.get("args", []), payload.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise PayloadError(f"expected args as a list and kwargs as an object, got {payload!r:.80}")
    return args, kwargs


def handler_of(django_task: Any) -> Callable[[notifyq.Task], Any]:
    def run(task: notifyq.Task) -> Any:
        # As Django does around a request: drop this thread's connections that are past
        # CONN_MAX_AGE or broken before the task, and after it.
        close_old_connections()
        try:
            args, kwargs = arguments(task.payload)
            backend = django_task.get_backend()
            result = backend.get_result(str(task.id))  # RUNNING: this attempt holds it
            if django_task.takes_context:
                args = [TaskContext(task_result=result), *args]
            task_started.send(sender=type(backend), task_result=result)
            try:
                value = normalize_json(django_task.call(*args, **kwargs))
            except HandlerSignal:
                raise  # notifyq.Retry / Fail from the task: the engine's to act on
            except Exception as exc:
                failed = TaskFailed.of(exc)
                _ended(result, TaskResultStatus.FAILED, error=failed)
                # Inside the except block: Django's receiver logs the exception with it.
                task_finished.send(sender=type(backend), task_result=result)
                raise failed from exc
            _ended(result, TaskResultStatus.SUCCESSFUL, value=value)
            task_finished.send(sender=type(backend), task_result=result)
            return value
        finally:
            close_old_connections()

    return run


def _ended(result: Any, status: Any, *, value: Any = None, error: Any = None) -> None:
    """The attempt's outcome on its TaskResult, for task_finished's receivers (the row is
    written by the engine once the handler returns)."""
    object.__setattr__(result, "status", status)
    object.__setattr__(result, "finished_at", timezone.now())
    object.__setattr__(result, "_return_value", value)
    if error is not None:
        result.errors.append(task_error(f"{type(error).__name__}: {error}"))


def build_app() -> App:
    autodiscover_modules("tasks")
    for alias in task_backends.settings:
        backend = task_backends[alias]
        if isinstance(backend, NotifyqBackend):
            for module in backend.modules:
                importlib.import_module(module)
    app = App()
    for kind, django_task in REGISTRY.items():
        app.handler(kind)(handler_of(django_task))
    return app


app = build_app()
