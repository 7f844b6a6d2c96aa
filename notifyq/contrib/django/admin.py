"""The admin over ``notifyq.tasks``: a read-only list with filters, and retry and cancel
actions through notifyq's SQL functions (the same rules as ``notifyq cancel``/``retry``
and the HTTP API: a task that cannot change is reported, not changed)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import connections

from notifyq.contrib.django.models import Task
from notifyq.producers import drivers


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "kind",
        "queue",
        "status",
        "priority",
        "attempts",
        "run_at",
        "finished_at",
    )
    list_filter = ("status", "queue", "kind")
    search_fields = ("kind", "=id")
    date_hierarchy = "created_at"
    actions = ("retry", "cancel")
    readonly_fields = tuple(f.name for f in Task._meta.fields)

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    @admin.action(description="Retry the selected tasks", permissions=["change"])
    def retry(self, request: Any, queryset: Any) -> None:
        self._each(request, queryset, "retry")

    @admin.action(description="Cancel the selected tasks", permissions=["change"])
    def cancel(self, request: Any, queryset: Any) -> None:
        self._each(request, queryset, "cancel")

    def _each(self, request: Any, queryset: Any, action: str) -> None:
        answers: dict[str, list[int]] = {}
        with connections[queryset.db].cursor() as cursor:
            for task_id in queryset.values_list("id", flat=True):
                cursor.execute(drivers.statement(action, "format"), [task_id])
                (answer,) = cursor.fetchone()
                answers.setdefault(str(answer), []).append(task_id)
        for answer, ids in sorted(answers.items()):
            self.message_user(
                request, f"{action} {', '.join(map(str, ids))}: {answer}", messages.INFO
            )
