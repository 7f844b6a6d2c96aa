"""notifyq for Django: a ``django.tasks`` backend, a worker and the admin.

    INSTALLED_APPS = [..., "notifyq.contrib.django"]
    TASKS = {"default": {"BACKEND": "notifyq.contrib.django.NotifyqBackend"}}

``@task`` functions' ``.enqueue()`` add notifyq tasks on Django's own connection, in the
caller's ``transaction.atomic()`` (:mod:`.backend`); ``manage.py notifyq_worker`` runs them
(:mod:`.worker`); ``manage.py migrate`` brings notifyq's schema (:mod:`.apps`); the admin
lists ``notifyq.tasks`` (:mod:`.admin`). Nothing here is imported until Django asks for it.
"""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    # TASKS' "notifyq.contrib.django.NotifyqBackend": imported when Django first asks, so
    # that INSTALLED_APPS can name this package before the settings are ready.
    if name == "NotifyqBackend":
        return importlib.import_module("notifyq.contrib.django.backend").NotifyqBackend
    raise AttributeError(f"module 'notifyq.contrib.django' has no attribute {name!r}")
