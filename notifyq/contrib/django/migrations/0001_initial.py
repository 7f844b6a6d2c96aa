"""The unmanaged models over notifyq's tables (Django creates nothing: notifyq's own
migrations, applied after every ``manage.py migrate``, own the schema)."""

from __future__ import annotations

from typing import Any

from django.db import migrations, models

from notifyq.vocabulary import STATUSES


class Migration(migrations.Migration):
    initial = True
    dependencies: tuple[Any, ...] = ()

    operations = (
        migrations.CreateModel(
            name="Task",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("queue", models.TextField()),
                ("kind", models.TextField()),
                ("payload", models.JSONField(null=True)),
                ("priority", models.IntegerField()),
                ("status", models.TextField(choices=[(s, s) for s in STATUSES])),
                ("attempts", models.IntegerField()),
                ("max_attempts", models.IntegerField()),
                ("run_at", models.DateTimeField()),
                ("locked_by", models.TextField(null=True)),
                ("result", models.JSONField(null=True)),
                ("error", models.TextField(null=True)),
                ("created_at", models.DateTimeField()),
                ("started_at", models.DateTimeField(null=True)),
                ("finished_at", models.DateTimeField(null=True)),
            ],
            options={"db_table": '"notifyq"."tasks"', "ordering": ("-id",), "managed": False},
        ),
        migrations.CreateModel(
            name="TaskEvent",
            fields=[
                ("id", models.BigIntegerField(primary_key=True, serialize=False)),
                ("at", models.DateTimeField()),
                ("event", models.TextField()),
                ("attempt", models.IntegerField()),
                ("worker", models.TextField(null=True)),
                ("error", models.TextField(null=True)),
                (
                    "task",
                    models.ForeignKey(
                        db_constraint=False,
                        on_delete=models.DO_NOTHING,
                        to="notifyq.task",
                    ),
                ),
            ],
            options={"db_table": '"notifyq"."task_events"', "ordering": ("id",), "managed": False},
        ),
    )
