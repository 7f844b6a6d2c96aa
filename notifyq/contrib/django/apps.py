"""The installed app: ``manage.py migrate`` brings notifyq's schema up to date."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db import connections
from django.db.models.signals import post_migrate


class NotifyqConfig(AppConfig):
    name = "notifyq.contrib.django"
    label = "notifyq"
    verbose_name = "notifyq"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from notifyq.contrib.django import admin  # noqa: F401  (registers the ModelAdmin)

        post_migrate.connect(_migrate_notifyq, sender=self, dispatch_uid="notifyq.migrate")


def _migrate_notifyq(sender: Any, *, using: str = "default", **kwargs: Any) -> None:
    """After every ``manage.py migrate``, apply notifyq's pending migrations (its numbered
    SQL files, under their advisory lock; nothing when up to date) to that database. This
    app's own Django migration only describes the unmanaged models."""
    from notifyq.contrib.django import schema  # trio and asyncpg: only when migrating

    schema.migrate(connections[using])
