"""Unmanaged models over notifyq's tables: Django reads them, notifyq's migrations own them."""

from __future__ import annotations

from django.db import models

from notifyq.vocabulary import STATUSES


class Task(models.Model):
    """A row of ``notifyq.tasks`` (read-only to Django: a change goes through notifyq's
    SQL functions, as the admin's retry and cancel actions do)."""

    id = models.BigAutoField(primary_key=True)
    queue = models.TextField()
    kind = models.TextField()
    payload = models.JSONField(null=True)
    priority = models.IntegerField()
    status = models.TextField(choices=[(s, s) for s in STATUSES])
    attempts = models.IntegerField()
    max_attempts = models.IntegerField()
    run_at = models.DateTimeField()
    locked_by = models.TextField(null=True)
    result = models.JSONField(null=True)
    error = models.TextField(null=True)
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)

    class Meta:
        managed = False
        db_table = '"notifyq"."tasks"'
        ordering = ("-id",)

    def __str__(self) -> str:
        return f"{self.kind} #{self.id}"


class TaskEvent(models.Model):
    """A row of ``notifyq.task_events``: one per ended attempt (and other changes)."""

    id = models.BigIntegerField(primary_key=True)
    task = models.ForeignKey(Task, on_delete=models.DO_NOTHING, db_constraint=False)
    at = models.DateTimeField()
    event = models.TextField()
    attempt = models.IntegerField()
    worker = models.TextField(null=True)
    error = models.TextField(null=True)

    class Meta:
        managed = False
        db_table = '"notifyq"."task_events"'
        ordering = ("id",)
